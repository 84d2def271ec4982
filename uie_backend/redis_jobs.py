"""Training jobs on a Redis queue (RQ), for several backend replicas behind one Label Studio.

With ``REDIS_URL`` set, "Start Training" on any replica puts a job on the ``uie-training`` queue, and
workers (``rq worker --url $REDIS_URL uie-training``, on any machine) run it. Model versions live on storage
the replicas share (``UIE_CHECKPOINT_DIR``, ``UIE_DATA_DIR``): every replica serves whatever ``model_best``
points at, so they agree on the active model without talking to each other.

A project never trains twice at once, whichever replica was asked and however many workers run:

* a project has at most one *waiting* job; a request while one waits collapses into it, as with
  :class:`jobs.JobRunner` (the waiting job pulls the annotations when it starts, so it misses none);
* a worker holds the project's lock while it trains; a job of the same project picked up meanwhile by
  another worker waits for it. The lock expires ``LOCK_TTL_S`` after its worker dies, so a killed
  worker cannot block a project for ever.

The worker's own environment decides how it trains (``UIE_DEVICE``, ``UIE_TRAIN_*``): the GPU machine
trains, the replicas only serve.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, get_current_job
from rq.job import Job, JobStatus

from . import jobs
from .config import Settings
from .jsonio import read_json

log = logging.getLogger(__name__)

QUEUE = "uie-training"
LOCK_TTL_S = 60                 # a dead worker's project lock frees itself after this
WAITING_TTL_S = 7 * 24 * 3600   # a forgotten "waiting job" claim cannot outlive a week
KEEP_RESULTS_S = 7 * 24 * 3600  # finished and failed jobs stay listed in /training this long
SETUP_TTL_S = 30 * 24 * 3600    # a project's Label Studio address and token, unless /setup renews them
NOT_STARTED_STATES = (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED)
WAITING_STATES = (*NOT_STARTED_STATES, JobStatus.STARTED)
# Deletes the project's "waiting job" claim only if it is still this job's (a newer request may own it).
_RELEASE_CLAIM = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
# Counts an annotation event; at the N-th (ARGV[1]) starts again from 0 and answers 1, atomically, whichever
# replica the events reach.
_COUNT_ANNOTATION = ("local n = redis.call('incr', KEYS[1]) "
                     "if n >= tonumber(ARGV[1]) then redis.call('set', KEYS[1], 0) return 1 end return 0")


class QueueUnavailable(RuntimeError):
    """Redis cannot be reached; the message names the queue, never the URL (it may hold a password)."""


def _waiting_key(project: str) -> str:
    return f"uie:project:{project}:waiting-job"


def _setup_key(project_id: int) -> str:
    return f"uie:project:{project_id}:setup"


def _annotations_key(project_id: int) -> str:
    return f"uie:project:{project_id}:annotations-since-training"


def _lock_key(project: str) -> str:
    return f"uie:project:{project}:training"


class RedisJobRunner:
    """The same interface as :class:`jobs.JobRunner` (submit, status, wait_idle), backed by RQ."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
        self.queue = Queue(QUEUE, connection=self.redis)

    def submit(self, request) -> dict:
        """Queue a job for the request's project, or join the one already waiting for that project."""
        project = str(request.project_id)
        with unavailable_as_error():
            job_id, joined = enqueue_once(self.queue, _waiting_key(project), jobs.new_job_id(), run_queued_job,
                                          request, meta={"project": project}, job_timeout=self.settings.train_timeout_s,
                                          description=f"train project {project}")
        if joined:
            log.info("project %s: job %s is waiting; this request joins it", project, job_id)
            return {"job": job_id, "state": "queued", "follow_up_queued": True}
        log.info("project %s: training job %s queued on %s", project, job_id, QUEUE)
        return {"job": job_id, "state": "queued"}

    def count_annotation(self, project_id: int, every: int) -> bool:
        """Count one annotation event in Redis: every ``every``-th across all replicas makes training due."""
        with unavailable_as_error():
            return bool(self.redis.eval(_COUNT_ANNOTATION, 1, _annotations_key(project_id), every))

    def remember_setup(self, project_id: int, connection: dict) -> None:
        """Keep what ``/setup`` said in Redis: Label Studio may send it to one replica and Start Training to
        another. Refreshed by every /setup (Label Studio sends one before each prediction round)."""
        with unavailable_as_error():
            self.redis.set(_setup_key(project_id), json.dumps(connection), ex=SETUP_TTL_S)

    def setup_of(self, project_id: int | None) -> dict:
        if project_id is None:
            return {}
        with unavailable_as_error():
            stored = self.redis.get(_setup_key(project_id))
        return json.loads(stored) if stored else {}

    def status(self) -> dict:
        with unavailable_as_error():
            queued, running, ended = self._job_ids()
            waiting = [_describe(job) for job in self._fetch(queued)]
            started = [_describe(job) for job in self._fetch(running)]
            recent = sorted((_describe(job) for job in self._fetch(ended)),
                            key=lambda job: job["finished_at"] or 0, reverse=True)[:jobs.HISTORY]
        return {"is_training": bool(started), "running": started, "queued": waiting, "recent": recent,
                "follow_ups": sorted({job["project"] for job in waiting})}

    def _job_ids(self) -> tuple[list[str], list[str], list[str]]:
        """The ids of queued, running and recently ended jobs, each job in exactly one list.

        A job moves queue -> intermediate list (taken by a worker) -> started registry -> finished or
        failed registry, and the lists are read one after the other: read in that order, a job that moves
        meanwhile is seen twice (and kept in its later place), never missed. A job a worker has taken but
        not yet registered as started counts as running: nothing else would show it.
        """
        queued = list(dict.fromkeys(self.queue.get_job_ids() + claimed_jobs(self.queue, _waiting_key("*"))))
        taken = self.queue.intermediate_queue.get_job_ids()
        started = self.queue.started_job_registry.get_job_ids()
        # scored by expiry, the same TTL for all: the newest jobs come first in descending order
        ended = (self.queue.finished_job_registry.get_job_ids(0, jobs.HISTORY - 1, desc=True)
                 + self.queue.failed_job_registry.get_job_ids(0, jobs.HISTORY - 1, desc=True))
        running = [job_id for job_id in dict.fromkeys(taken + started) if job_id not in ended]
        queued = [job_id for job_id in queued if job_id not in running and job_id not in ended]
        return queued, running, ended

    def _fetch(self, ids: list[str]) -> list[Job]:
        return [job for job in Job.fetch_many(ids, connection=self.redis) if job is not None]

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is queued or running (tests, graceful shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with unavailable_as_error():
                queued, running, _ = self._job_ids()
            if not queued and not running:
                return True
            time.sleep(0.2)
        return False


def enqueue_once(queue: Queue, waiting_key: str, job_id: str, function, *args, **options) -> tuple[str, bool]:
    """Queue ``function(*args)`` as job ``job_id`` unless the project's job is still waiting to start (its id is
    at ``waiting_key``): then answer that job's id, and True, joined. The key is claimed atomically
    (``SET NX``), so requests at any number of replicas at once queue one job; a claim whose job is gone
    (finished, failed, deleted by hand) is dropped. The job deletes the claim when it starts (``release_claim``)."""
    redis = queue.connection
    while not redis.set(waiting_key, job_id, nx=True, ex=WAITING_TTL_S):
        if (waiting := waiting_job(queue, waiting_key)) is not None:
            return waiting.id, True
        redis.delete(waiting_key)
    queue.enqueue(function, *args, job_id=job_id, result_ttl=KEEP_RESULTS_S, failure_ttl=KEEP_RESULTS_S, **options)
    return job_id, False


def waiting_job(queue: Queue, waiting_key: str) -> Job | None:
    """The project's job that waits to start, if its claim names one that still does."""
    waiting = queue.connection.get(waiting_key)
    job = queue.fetch_job(waiting.decode()) if waiting is not None else None
    return job if job is not None and job.get_status() in WAITING_STATES else None


def claimed_jobs(queue: Queue, claims: str) -> list[str]:
    """The ids of the jobs that projects' waiting claims (keys matching ``claims``) name and that have not
    started. A worker of several queues (``make worker``: training and pre-annotation) takes a job with
    BLPOP, which leaves it in none of RQ's lists until it starts (RQ keeps an intermediate list only for a
    worker of one queue): meanwhile its claim is what shows it, and a status without it said "idle"."""
    redis = queue.connection
    keys = list(redis.scan_iter(match=claims, count=1000))
    ids = [value.decode() for value in redis.mget(keys) if value] if keys else []
    return [job.id for job in Job.fetch_many(ids, connection=redis)
            if job is not None and job.get_status(refresh=False) in NOT_STARTED_STATES]


def release_claim(job: Job, waiting_key: str) -> None:
    """The job has started: a request from now on needs a job of its own (this one no longer sees it)."""
    job.connection.eval(_RELEASE_CLAIM, 1, waiting_key, job.id)


def run_queued_job(request) -> dict:
    """The job a worker runs: take the project's lock, then train as ``jobs.execute`` does."""
    job = get_current_job()
    settings = Settings.from_env()  # the worker's: its device and training settings
    project = job.meta["project"]
    lock = job.connection.lock(_lock_key(project), timeout=LOCK_TTL_S, thread_local=False)
    if not lock.acquire(blocking=False):
        log.info("project %s: another worker is training it; job %s waits", project, job.id)
        job.meta["waiting_since"] = time.time()
        job.save_meta()
        lock.acquire()
    stop = threading.Event()
    threading.Thread(target=keep_locked, args=(lock, stop), daemon=True).start()
    try:
        release_claim(job, _waiting_key(project))  # the annotations are pulled from here on
        job_dir = settings.data_dir / "runs" / job.id
        job.meta.update(dir=str(job_dir), training_started_at=time.time())
        job.save_meta()
        log.info("project %s: training job %s started, log %s", project, job.id, job_dir / "train.log")
        summary = jobs.execute(request, settings, job_dir)
    finally:
        job.meta["training_finished_at"] = time.time()  # recorded while the lock is still held
        job.save_meta()
        stop.set()
        lock.release()
    if summary.get("activated"):
        from .redis_preannotation import after_training  # (here: that module builds on this one)
        after_training(job.connection, settings, request, summary["version"])
    return summary


def keep_locked(lock, stop: threading.Event) -> None:
    """Renew the project lock while the job runs; it lapses within LOCK_TTL_S once the process is gone."""
    while not stop.wait(LOCK_TTL_S / 3):
        try:
            lock.reacquire()
        except RedisError as exc:  # Redis restarting: retried on the next beat, and logged meanwhile
            log.warning("could not renew the project lock: %s", exc)


def _describe(job: Job) -> dict:
    """One job as /training shows it: the same fields as :meth:`jobs.Job.to_dict`."""
    job_dir = job.meta.get("dir")
    outcome = read_json(Path(job_dir) / "result.json") if job_dir else None
    status = job.get_status(refresh=False)
    state = {JobStatus.STARTED: "running", JobStatus.FINISHED: "succeeded"}.get(
        status, "queued" if status in WAITING_STATES else "failed")
    error = None
    if state == "failed":
        error = (outcome or {}).get("error") or _last_line(job) or f"job {status}"
    if state == "running":  # RQ's "started" covers waiting for the project's lock and tidying up after training
        phase = ("finishing" if "training_finished_at" in job.meta else
                 "training" if "training_started_at" in job.meta else "waiting for the project's lock")
    else:
        phase = state
    return {"id": job.id, "project": job.meta.get("project"), "dir": job_dir, "state": state, "phase": phase,
            "queued_at": _timestamp(job.enqueued_at), "started_at": job.meta.get("training_started_at"),
            "finished_at": job.meta.get("training_finished_at") or _timestamp(job.ended_at), "error": error,
            "summary": (outcome or {}).get("summary"),
            "progress": read_json(Path(job_dir) / "progress.json") if job_dir else None}


def _last_line(job: Job) -> str | None:
    result = job.latest_result()
    text = getattr(result, "exc_string", None) or ""
    return text.strip().splitlines()[-1] if text.strip() else None


def _timestamp(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()  # RQ keeps UTC


@contextmanager
def unavailable_as_error(queue: str = QUEUE) -> Iterator[None]:
    """Turn Redis being unreachable into :class:`QueueUnavailable` (a clear 503, not a 500)."""
    try:
        yield
    except RedisError as exc:
        raise QueueUnavailable(f"the job queue (Redis, {queue}) cannot be reached: {type(exc).__name__}") from None
