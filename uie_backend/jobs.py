"""Background training jobs: answered at once, run in a separate process, one per project at a time.

Label Studio waits at most 100 s for "Start Training" and 1 s for annotation webhooks, and fine-tuning takes
minutes, so the server only queues. The job runs in a *spawned* process (forking a process that has
loaded paddle segfaults), which also means a crash or a SIGKILL of the job cannot take the server or its
loaded model down. Requests that arrive while a project's job runs collapse into one follow-up run, which
pulls the annotations again and so includes every one made in the meantime.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .config import Settings
from .jsonio import read_json, write_json

log = logging.getLogger(__name__)

HISTORY = 20


@dataclass
class Job:
    id: str
    project: str
    dir: Path
    state: str = "running"              # running | succeeded | failed
    pid: int | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    error: str | None = None
    summary: dict | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["dir"] = str(self.dir)
        data["progress"] = read_json(self.dir / "progress.json")
        return data


def new_job_id() -> str:
    """Sortable by start time, unique across processes and machines."""
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


class JobRunner:
    def __init__(self, settings: Settings):
        self.settings = settings
        # called with (project id, version) after a run activated a new version (the pre-annotation job starts)
        self.on_activated: Callable[[int, str], None] | None = None
        self._lock = threading.Lock()
        self._running: dict[str, Job] = {}
        self._follow_up: dict[str, object] = {}
        self._history: deque[Job] = deque(maxlen=HISTORY)
        self._setups: dict[int, dict] = {}
        self._annotations: dict[int, int] = {}

    def count_annotation(self, project_id: int, every: int) -> bool:
        """Count one annotation event of the project; True for every ``every``-th (auto-training is due)."""
        with self._lock:
            count = self._annotations.get(project_id, 0) + 1
            self._annotations[project_id] = count % every
            return count >= every

    def remember_setup(self, project_id: int, connection: dict) -> None:
        """Keep what ``/setup`` said (Label Studio's URL and token): Start Training brings neither."""
        self._setups[project_id] = connection

    def setup_of(self, project_id: int | None) -> dict:
        return self._setups.get(project_id, {})

    def submit(self, request) -> dict:
        """Start a job for the request's project, or remember it as that project's follow-up run."""
        project = str(request.project_id)
        with self._lock:
            running = self._running.get(project)
            if running:
                self._follow_up[project] = request
                log.info("project %s: job %s is running; a follow-up run is queued", project, running.id)
                return {"job": running.id, "state": "running", "follow_up_queued": True}
            job = self._start(project, request)
            return {"job": job.id, "state": job.state}

    def _start(self, project: str, request) -> Job:
        job_id = new_job_id()
        job = Job(job_id, project, self.settings.data_dir / "runs" / job_id)
        job.dir.mkdir(parents=True, exist_ok=True)
        process = multiprocessing.get_context("spawn").Process(
            target=run_job, args=(request, self.settings, job.dir), name=f"train-{job_id}")
        process.start()
        job.pid = process.pid
        self._running[project] = job
        log.info("project %s: training job %s started (pid %s), log %s", project, job_id, process.pid,
                 job.dir / "train.log")
        threading.Thread(target=self._watch, args=(job, process), daemon=True).start()
        return job

    def _watch(self, job: Job, process) -> None:
        process.join()
        outcome = read_json(job.dir / "result.json") or {}
        job.finished_at = time.time()
        job.summary = outcome.get("summary")
        if process.exitcode == 0 and outcome.get("state") == "succeeded":
            job.state = "succeeded"
        else:
            job.state = "failed"
            job.error = outcome.get("error") or f"training process ended with exit code {process.exitcode}" + (
                " (killed by a signal)" if process.exitcode and process.exitcode < 0 else "")
        log.log(logging.INFO if job.state == "succeeded" else logging.ERROR, "job %s %s%s", job.id, job.state,
                f": {job.error}" if job.error else "")
        with self._lock:
            self._running.pop(job.project, None)
            self._history.appendleft(job)
            follow_up = self._follow_up.pop(job.project, None)
            if follow_up is not None:
                self._start(job.project, follow_up)
        if job.state == "succeeded" and (job.summary or {}).get("activated") and self.on_activated is not None:
            try:
                self.on_activated(int(job.project), job.summary["version"])
            except Exception:  # a watcher thread has nobody to report to but the log
                log.exception("project %s: what follows an activation could not start", job.project)

    def status(self) -> dict:
        with self._lock:
            running = [job.to_dict() for job in self._running.values()]
            history = [job.to_dict() for job in self._history]
        return {"is_training": bool(running), "running": running, "recent": history,
                "follow_ups": sorted(self._follow_up)}

    def wait_idle(self, timeout: float) -> bool:
        """Block until no job runs (tests, graceful shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running and not self._follow_up:
                    return True
            time.sleep(0.2)
        return False


def run_job(request, settings: Settings, job_dir: Path) -> None:
    """The body of the spawned training process; its exit code says whether the run succeeded."""
    try:
        execute(request, settings, job_dir)
    except Exception:  # already logged to train.log and written to result.json
        raise SystemExit(1) from None


def execute(request, settings: Settings, job_dir: Path) -> dict:
    """Run one training job, leaving ``result.json``, ``progress.json`` and ``train.log`` in ``job_dir``.

    Shared by both ways jobs run (here, and on a Redis queue's worker: redis_jobs.py). The exception of a
    failed run is re-raised after it is logged and recorded, so the caller sees the failure too.
    """
    from . import training  # imported here: the server process never loads the training stack for this

    job_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(job_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s job={job_dir.name} %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    last_write = 0.0

    def on_progress(progress) -> None:
        nonlocal last_write
        if time.monotonic() - last_write > 1 or progress.step == progress.total_steps:
            last_write = time.monotonic()
            write_json(job_dir / "progress.json", asdict(progress))

    try:
        summary = training.run(request, settings, job_dir, on_progress)
        write_json(job_dir / "result.json", {"state": "succeeded", "summary": summary})
        return summary
    except Exception as exc:  # the job's whole purpose is to report this, not to crash silently
        logging.getLogger(__name__).exception("training job failed")
        write_json(job_dir / "result.json", {"state": "failed", "error": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        root.removeHandler(handler)
        handler.close()
