"""Pre-annotation jobs on a Redis queue, for replicas that share one (README, "Several replicas").

With ``REDIS_URL`` set, a replica runs no pre-annotation job itself. ``POST /preannotate``, an activation at
any replica, a training run a worker finishes with an activation, and the resumption of a job cut short all
put a job on the ``uie-preannotation`` queue, and an ``rq worker`` runs it (``make worker`` listens to both
queues, training first). The workers, because pre-annotating a project is batch prediction, which the
training machine (with its GPU, when it has one) does fastest, and the replicas keep their CPUs for
interactive ``/predict``.

One job per project, as with training: a project has at most one waiting job (more requests join it), and
the job that runs holds the project's lock in Redis, renewed while it runs and lapsing ``LOCK_TTL_S`` after its
worker dies. The job itself is preannotation.py's, with the same status files on the shared ``UIE_DATA_DIR``:
every replica's ``GET /preannotation`` shows them, and a job whose lock lapsed shows as ``interrupted`` and is
queued again by the next ``/setup`` of its project or the next start of a replica.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from redis import Redis
from redis.exceptions import LockError, RedisError
from rq import Queue, get_current_job

from .config import Settings
from .jsonio import write_json
from .labelstudio import Connection
from .preannotation import Preannotator
from .redis_jobs import QUEUE as TRAINING_QUEUE
from .redis_jobs import (LOCK_TTL_S, QueueUnavailable, claimed_jobs, enqueue_once, keep_locked, release_claim,
                         unavailable_as_error, waiting_job)
from .training import TrainingRequest

log = logging.getLogger(__name__)

QUEUE = "uie-preannotation"
JOB_TIMEOUT_S = 24 * 3600  # RQ's default (180 s) would end a large project's job; one cut short is resumed
WAIT_FOR_LOCK_S = 1.0
YIELD_CHECK_S = 2.0  # how often a running job looks for training jobs waiting


def _lock_key(project_id: int) -> str:
    return f"uie:project:{int(project_id)}:preannotation"


def _waiting_key(project_id: int | str) -> str:
    return f"uie:project:{project_id}:preannotation-waiting-job"


class RedisProjectLock:
    """``preannotation.ProjectLock`` held in Redis, so that it keeps apart the jobs of every machine."""

    def __init__(self, redis: Redis, project_id: int):
        self.redis = redis
        self.key = _lock_key(project_id)
        self._lock = redis.lock(self.key, timeout=LOCK_TTL_S, thread_local=False)
        self._renewing: threading.Event | None = None

    def acquire(self) -> bool:
        if not self._lock.acquire(blocking=False):
            return False
        self._renewing = threading.Event()
        threading.Thread(target=keep_locked, args=(self._lock, self._renewing), daemon=True).start()
        return True

    def release(self) -> None:
        if self._renewing is None:
            return
        self._renewing.set()
        self._renewing = None
        try:
            self._lock.release()
        except (LockError, RedisError) as exc:  # lapsed (Redis was away too long): it frees itself anyway
            log.warning("the pre-annotation lock %s could not be released: %s", self.key, exc)

    def is_free(self) -> bool:
        """False when Redis cannot say: a job is shown as it last wrote, never wrongly as interrupted."""
        try:
            return not self.redis.exists(self.key)
        except RedisError as exc:
            log.warning("cannot tell whether a pre-annotation job runs (%s): %s", self.key, exc)
            return False


def enqueue(redis: Redis, project_id: int, reason: str, connection: Connection) -> dict:
    """Queue the project's job, or join the one of it that waits to start."""
    queue = Queue(QUEUE, connection=redis)
    job_id = f"preannotate-{int(project_id)}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    with unavailable_as_error(QUEUE):
        job_id, joined = enqueue_once(queue, _waiting_key(project_id), job_id, run_queued_preannotation,
                                      project_id, reason, connection.url, connection.token,
                                      meta={"project": str(project_id)}, job_timeout=JOB_TIMEOUT_S,
                                      description=f"pre-annotate project {project_id}")
    if joined:
        return {"project": project_id, "state": "queued", "job": job_id,
                "detail": "a pre-annotation job of this project waits to start: this request joins it"}
    log.info("project %s: pre-annotation job %s queued on %s (%s)", project_id, job_id, QUEUE, reason)
    return {"project": project_id, "state": "queued", "job": job_id, "reason": reason}


def after_training(redis: Redis, settings: Settings, request: TrainingRequest, version: str) -> None:
    """A worker's training run activated ``version``: queue its pre-annotation, as a single server starts it."""
    if not settings.preannotate_on_activation:
        return
    url = settings.label_studio_url or request.label_studio_url
    token = settings.label_studio_api_key or request.label_studio_token
    if not url or not token:
        log.warning("project %s: not pre-annotated: no Label Studio address and token", request.project_id)
        return
    try:
        enqueue(redis, request.project_id, f"version {version} activated", Connection(url, token))
    except QueueUnavailable as exc:  # Redis away: the version is served all the same, and /preannotate can start it
        log.warning("project %s: not pre-annotated: %s", request.project_id, exc)


def run_queued_preannotation(project_id: int, reason: str, url: str, token: str) -> dict:
    """The job a worker runs: wait for the project's lock, then run preannotation.py's job to its end."""
    job = get_current_job()
    settings = Settings.from_env()  # the worker's: UIE_DEVICE, UIE_PREANNOTATE_PAGE, the shared folders
    connection = Connection(url, token)
    jobs = Preannotator(settings, lambda _: connection, project_lock=lambda p: RedisProjectLock(job.connection, p))
    while jobs.start(project_id, reason)["state"] != "started":
        if "waiting_since" not in job.meta:
            log.info("project %s: another worker pre-annotates it; job %s waits", project_id, job.id)
            job.meta["waiting_since"] = time.time()
            job.save_meta()
        time.sleep(WAIT_FOR_LOCK_S)
    release_claim(job, _waiting_key(project_id))  # from here on, a request needs a job of its own
    done, yielded = threading.Event(), threading.Event()
    threading.Thread(target=_yield_to_training, args=(jobs, job.connection, done, yielded), daemon=True).start()
    jobs.wait_idle(float("inf"))
    done.set()
    status = jobs.status_of(project_id)
    if yielded.is_set() and status["state"] == "stopped":
        # written before the job is queued again: once queued, its own status may be written at any moment
        status.update(state="paused", note="gave way to a training job; queued again to do what is left")
        write_json(jobs.status_path(project_id), status)
        enqueue(job.connection, project_id, "resumed after a training job", connection)
        log.info("project %s: pre-annotation %s", project_id, status["note"])
    if status["state"] == "failed":
        raise RuntimeError(f"project {project_id}: pre-annotation failed: {status.get('error')}")
    return status


def _yield_to_training(jobs: Preannotator, redis: Redis, done: threading.Event, yielded: threading.Event) -> None:
    """Stop the job at its next page when a training job is queued: a worker takes the training queue first,
    so the run starts at once, and the job queued again afterwards does what is left (for the version the
    run may have activated). Pre-annotating a large project would otherwise hold up training for an hour."""
    training = Queue(TRAINING_QUEUE, connection=redis)
    while not done.wait(YIELD_CHECK_S):
        try:
            waiting = training.count
        except RedisError:
            continue  # Redis away: the job's own calls are unaffected; it is checked again
        if waiting:
            yielded.set()
            jobs.stop_all(timeout=0)
            return


class QueuedPreannotator(Preannotator):
    """A replica's pre-annotation with ``REDIS_URL``: jobs go to the queue; statuses are the shared files."""

    def __init__(self, settings: Settings, connection_for):
        self.redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
        self.queue = Queue(QUEUE, connection=self.redis)
        super().__init__(settings, connection_for, project_lock=lambda p: RedisProjectLock(self.redis, p))

    def start(self, project_id: int, reason: str) -> dict:
        return enqueue(self.redis, project_id, reason, self.connection_of(project_id))

    def is_running(self, project_id: int) -> bool:
        """Queued, waiting for its lock, or running, at any worker."""
        with unavailable_as_error(QUEUE):
            if waiting_job(self.queue, _waiting_key(project_id)) is not None:
                return True
        return not self._project_lock(project_id).is_free()

    def after_activation(self, project_id: int, version: str) -> None:
        try:
            super().after_activation(project_id, version)
        except QueueUnavailable as exc:  # the activation stands; /preannotate can start the job later
            log.warning("project %s: not pre-annotated: %s", project_id, exc)

    def wait_idle(self, timeout: float) -> bool:
        """Block until no pre-annotation job is queued or running at any worker; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with unavailable_as_error(QUEUE):
                busy = (self.queue.count or self.queue.intermediate_queue.get_job_ids()
                        or claimed_jobs(self.queue, _waiting_key("*")) or self.queue.started_job_registry.get_job_ids())
            if not busy:
                return True
            time.sleep(0.2)
        return False

    def stop_all(self, timeout: float = 30.0) -> bool:
        return True  # nothing of it runs in this process
