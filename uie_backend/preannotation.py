"""Pre-annotating a whole Label Studio project in the background, and keeping it current after every new version.

Label Studio asks for predictions only when someone opens a task that has none, or selects tasks for
"Retrieve Predictions" (one request, 100 s at most), and after a new version every stored prediction is the
old model's: the data manager's prediction-score ordering then sorts by a model that is no longer served.
This job writes a prediction of the project's served version for every task that lacks one, through Label
Studio's API (docs/preannotation.md has what each call does in Label Studio 1.23):

* it lists the tasks lacking the version a page at a time (keyset paging by task id), predicts a page with
  the same code as ``/predict`` (``regions.predict_tasks`` on the project's loaded model), and stores the
  page's predictions in one bulk call; listing the next page and storing the last run while the model
  predicts, so the model is seldom idle, and at most three pages are held;
* it keeps no state of its own but a status file: what is missing is asked of Label Studio, so a job
  resumes after a crash or a restart by doing what is left, and never stores a prediction twice (a call
  whose outcome is unknown is followed by a look at what is still missing, never repeated blindly);
* it runs in the server process, on the model the project's requests use, at background priority
  (``predictor.background_priority``): an interactive ``/predict`` waits for one small slice of it at most;
* one job per project: a lock file per project (``fcntl``, released by the kernel when the process dies)
  keeps two processes of a host apart, and a thread per project in a process. A new version supersedes a
  running job: the job sees it at its next page and starts again for the new version;
* Label Studio's errors (no answer, timeouts, 5xx, 401/403) are retried with growing pauses for
  ``UIE_LABEL_STUDIO_RETRY_S``, then end the job with the message; a task that cannot be predicted (no
  text, text too long, refused by Label Studio) is reported by id and skipped;
* when every task it could predict holds the version, it selects that version in the project (the score
  ordering needs it), unless a person selected another model's version.

It only ever adds predictions: no annotation, draft or earlier prediction is changed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import limits, lineages, predictor, regions, registry
from .config import Settings
from .jsonio import read_json, write_json
from .labelconfig import LabelConfigError
from .labelstudio import Connection, LabelStudioError, retrying
from .regions import TaskError

log = logging.getLogger(__name__)

STATUS_DIR = "preannotation"  # under UIE_DATA_DIR: <project>.json (the last job's status) and <project>.lock
TASK_ERRORS_KEPT = 20         # the first task errors a status shows (their count is `skipped`)
STATUS_EVERY_S = 1.0          # the status file is rewritten at most this often while a job runs
LOG_EVERY_S = 10.0
ACTIVE_STATES = ("starting", "running")


class NotConnected(ValueError):
    """No Label Studio address and token for the project: the message says how to give them."""


class _Superseded(Exception):
    def __init__(self, version: str):
        super().__init__(version)
        self.version = version


class _Stopped(Exception):
    pass


@dataclass
class JobStatus:
    """What ``GET /preannotation`` shows of a project's job, and what its status file holds."""
    job: str
    project: int
    version: str | None = None
    # starting | running | succeeded | failed | stopped | superseded | paused (gave way to training, queued
    # again: redis_preannotation.py) (| interrupted, read)
    state: str = "starting"
    reason: str = ""
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    total: int | None = None  # tasks lacking the version when the job started
    done: int = 0             # predictions stored
    skipped: int = 0          # tasks that could not be predicted or stored (see task_errors)
    tasks_per_s: float | None = None
    eta_s: float | None = None
    # where the job's time went: the model, and waiting for Label Studio (listing or storing while the model idles)
    predicting_s: float = 0.0
    waiting_for_label_studio_s: float = 0.0
    error: str | None = None
    task_errors: list[dict] = field(default_factory=list)
    selected_version: str | None = None  # what became of the project's selected version, in words
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)


class ProjectLock:
    """One pre-annotation job per project on this host: an exclusive ``flock`` on ``<project>.lock``.

    The kernel releases it when the process ends, however it ends, so a crashed job never blocks the project;
    and two ``open`` file descriptions conflict even within one process, so ``is_free`` is true only when no
    process, this one included, runs the project's job.
    """

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def is_free(self) -> bool:
        if not self.acquire():
            return False
        self.release()
        return True


class PreannotationJob:
    """One run for one project and one version; :meth:`run` answers its final state."""

    def __init__(self, settings: Settings, project_id: int, connection: Connection, stop: threading.Event,
                 status_path: Path, reason: str):
        self.settings = settings
        self.project_id = project_id
        self.connection = connection
        self.stop = stop
        self.status_path = status_path
        self.status = JobStatus(job=time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6], project=project_id,
                                reason=reason)
        self._saved_at = self._logged_at = 0.0
        self._first_page_at: float | None = None
        self._lock = threading.Lock()  # counters are updated by the storing thread and read by the job's
        self._failing = threading.Event()  # the job is ending with an error: its other calls stop retrying

    # ---- the run ---------------------------------------------------------------------------------------

    def run(self) -> str:
        status = self.status
        try:
            status.version = lineages.source_for(self.settings, self.project_id).version
            self.save()
            project = self._call(lambda: self.connection.project(self.project_id))
            schema = self._schema(project.get("label_config"))
            model = self._model()
            status.state = "running"
            tasks, status.total = self._call(lambda: self._lacking(after_id=0))
            self._first_page_at = time.monotonic()
            log.info("project %s: pre-annotating %d tasks with version %s (%s)", self.project_id, status.total,
                     status.version, status.reason)
            self._pages(tasks, schema, model)
            status.selected_version = self._select_version()
            status.state = "succeeded"
        except _Superseded as superseded:
            status.state, status.error = "superseded", f"version {superseded.version} was activated meanwhile"
        except _Stopped:
            status.state = "stopped"
        except (LabelStudioError, lineages.ModelUnavailable, LabelConfigError, limits.LimitExceeded) as exc:
            status.state, status.error = ("stopped", None) if self.stop.is_set() else ("failed", str(exc))
        except Exception as exc:  # the status file is the job's only way to say what went wrong
            log.exception("project %s: pre-annotation failed", self.project_id)
            status.state, status.error = "failed", f"{type(exc).__name__}: {exc}"
        status.finished_at = time.time()
        self._measure()
        status.eta_s = None
        self.save()
        log.log(logging.ERROR if status.state == "failed" else logging.INFO,
                "project %s: pre-annotation with version %s %s: %d stored, %d skipped of %s%s", self.project_id,
                status.version, status.state, status.done, status.skipped, status.total,
                f": {status.error}" if status.error else "")
        return status.state

    def _pages(self, tasks: list[dict], schema, model) -> None:
        """Predict page after page; the next page is listed and the last one stored while the model works."""
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"preannotate-{self.project_id}-io") as io:
            storing: Future | None = None
            try:
                while tasks:
                    after_id = tasks[-1]["id"]
                    listing = io.submit(self._call, lambda: self._lacking(after_id)[0])
                    began = time.monotonic()
                    predictions, errors = self._predict(tasks, schema, model)
                    predicted = time.monotonic()
                    if storing is not None:
                        storing.result()
                    storing = io.submit(self._store, tasks, predictions, errors)
                    tasks = listing.result()
                    self.status.predicting_s += predicted - began
                    self.status.waiting_for_label_studio_s += time.monotonic() - predicted
                    model = self._model()  # a new version, or a stop, is seen here: between pages, and at the end
                if storing is not None:
                    waiting = time.monotonic()
                    storing.result()
                    self.status.waiting_for_label_studio_s += time.monotonic() - waiting
            except BaseException:
                self._failing.set()  # the other thread's retries end at once
                raise

    def _lacking(self, after_id: int) -> tuple[list[dict], int]:
        return self.connection.tasks_lacking(self.project_id, self.status.version, after_id,
                                             self.settings.preannotate_page)

    def _schema(self, label_config: Any):
        if not isinstance(label_config, str):
            raise LabelConfigError("Label Studio gave no labeling config for the project")
        return limits.label_config(label_config, self.settings, self.project_id)

    def _model(self) -> predictor.Predictor:
        """The loaded model of the job's version; a new version of the project (or a stop) ends the job."""
        while True:
            if self.stop.is_set():
                raise _Stopped()
            served = lineages.source_for(self.settings, self.project_id).version
            if served != self.status.version:
                raise _Superseded(served)
            model = predictor.for_project(self.settings, self.project_id)
            if model.version == served:
                return model
            self.stop.wait(0.5)  # another thread is loading it; the project's previous model answers meanwhile

    def _predict(self, tasks: list[dict], schema, model) -> tuple[list[dict | None], list[TaskError]]:
        """The page's predictions, as ``/predict`` makes them; a task that breaks the model call is found by
        predicting the page's tasks one by one, and reported, so that it costs only itself its prediction."""
        with predictor.background_priority():
            try:
                return self._predict_tasks(tasks, schema, model)
            except lineages.ModelUnavailable:
                raise
            except Exception as exc:
                if len(tasks) == 1:
                    raise
                log.warning("project %s: a page failed (%s: %s); predicting its tasks one by one", self.project_id,
                            type(exc).__name__, exc)
            predictions: list[dict | None] = []
            errors: list[TaskError] = []
            for task in tasks:
                try:
                    [prediction], task_errors = self._predict_tasks([task], schema, model)
                except Exception as exc:
                    prediction, task_errors = None, [TaskError(task.get("id"), "data", f"{type(exc).__name__}: {exc}")]
                predictions.append(prediction)
                errors += task_errors
            if all(p is None for p in predictions):
                raise RuntimeError(f"no task of the page could be predicted; the first: {errors[0].message}")
            return predictions, errors

    def _predict_tasks(self, tasks: list[dict], schema, model) -> tuple[list[dict], list[TaskError]]:
        """``regions.predict_tasks``, given the tasks shortest text first and answering in their order.

        Background work reaches the model in small slices (predictor.BACKGROUND_CHUNK_BATCHES), and each slice's
        batches are padded to their longest text: in text-length order the texts of a slice are alike, which
        gives back what the small slices cost (tiny model: 167 -> 173 tasks/s; interactive order: 177).
        """
        order = sorted(range(len(tasks)), key=lambda i: _text_length(tasks[i]))
        predictions, errors = regions.predict_tasks([tasks[i] for i in order], schema, model,
                                                    max_text_chars=self.settings.max_text_chars,
                                                    ask_all_predicates=self.settings.ask_all_predicates)
        in_order: list[dict] = [{}] * len(tasks)
        for position, prediction in zip(order, predictions):
            in_order[position] = prediction
        return in_order, errors

    def _store(self, tasks: list[dict], predictions: list[dict | None], errors: list[TaskError]) -> None:
        """Store a page's predictions in one call, never twice: when the outcome of a call is unknown (a timeout,
        a 5xx) the next attempt first asks which of the page's tasks still lack the version."""
        failed = {error.task for error in errors}
        records = [{"task": task["id"], **prediction} for task, prediction in zip(tasks, predictions)
                   if prediction is not None and task["id"] not in failed]
        todo, posted = records, False

        def attempt() -> None:
            nonlocal todo, posted
            if posted:  # whatever became of an earlier call, only what is still missing is sent again
                todo = self._still_lacking(todo)
            if todo:
                posted = True
                created = self.connection.import_predictions(self.project_id, todo)
                if created < len(todo):  # Label Studio skips an invalid prediction and says only the count
                    refused = self._still_lacking(todo)
                    errors.extend(TaskError(r["task"], "prediction", "Label Studio did not store it: its labeling "
                                            "config does not allow a region of it (Label Studio's log says which)")
                                  for r in refused)
                    failed.update(r["task"] for r in refused)
                todo = []

        self._call(attempt)
        self._count(stored=sum(1 for r in records if r["task"] not in failed), errors=errors)

    def _still_lacking(self, records: list[dict]) -> list[dict]:
        tasks, _ = self.connection.tasks_lacking(self.project_id, self.status.version, 0, len(records),
                                                 among=[r["task"] for r in records])
        lacking = {task["id"] for task in tasks}
        return [r for r in records if r["task"] in lacking]

    def _select_version(self) -> str:
        """Select the job's version in the project once it holds it, unless a person chose another model's."""
        version = self.status.version
        current = self._call(lambda: self.connection.project(self.project_id)).get("model_version") or ""
        if current == version:
            return f"{version} (already selected)"
        ours = {v.id for v in registry.list_versions(lineages.project_dir(self.settings, self.project_id))}
        ours.add(lineages.source_for(self.settings, None).version)
        titles = self._call(lambda: self.connection.ml_backend_titles(self.project_id))
        if current and current not in ours and current not in titles:
            return f"left at {current!r}: a version this backend did not make, chosen in Label Studio"
        try:
            self._call(lambda: self.connection.select_version(self.project_id, version))
        except LabelStudioError as exc:  # e.g. a project without tasks holds no prediction of it
            return f"not selected: {exc}"
        return f"{version} (was {current!r})"

    # ---- bookkeeping -----------------------------------------------------------------------------------

    def _call(self, call: Callable[[], Any]) -> Any:
        """A Label Studio call, retried for UIE_LABEL_STUDIO_RETRY_S; a stop or the job's failure cuts it short."""
        return retrying(call, self.settings.label_studio_retry_s, self._pause)

    def _pause(self, seconds: float) -> bool:
        """Wait before trying again; True: give up now (the job is stopping, or failing for another reason)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.stop.wait(min(left, 0.5)) or self._failing.is_set():
                return True
        return False

    def _count(self, stored: int, errors: list[TaskError]) -> None:
        with self._lock:
            status = self.status
            status.done += stored
            status.skipped += len(errors)
            room = TASK_ERRORS_KEPT - len(status.task_errors)
            status.task_errors += [e.to_dict() for e in errors[:max(room, 0)]]
            for error in errors:
                log.warning("project %s: task %s skipped: %s %s", self.project_id, error.task, error.field, error.message)
            self._measure()
            self.save(force=False)
            if time.monotonic() - self._logged_at > LOG_EVERY_S:
                self._logged_at = time.monotonic()
                log.info("project %s: %d/%s tasks pre-annotated with version %s (%.1f tasks/s, ETA %s s)",
                         self.project_id, status.done + status.skipped, status.total, status.version,
                         status.tasks_per_s or 0, status.eta_s)

    def _measure(self) -> None:
        status = self.status
        if self._first_page_at is None or status.total is None:
            return
        elapsed = time.monotonic() - self._first_page_at
        handled = status.done + status.skipped
        status.tasks_per_s = round(handled / elapsed, 2) if elapsed > 0 else None
        status.predicting_s = round(status.predicting_s, 2)
        status.waiting_for_label_studio_s = round(status.waiting_for_label_studio_s, 2)
        left = max(status.total - handled, 0)
        status.eta_s = round(left / status.tasks_per_s, 1) if status.tasks_per_s else None

    def save(self, force: bool = True) -> None:
        """Write the status file (at most every STATUS_EVERY_S unless ``force``)."""
        if force or time.monotonic() - self._saved_at >= STATUS_EVERY_S:
            self._saved_at = time.monotonic()
            write_json(self.status_path, asdict(self.status))


def _text_length(task: Any) -> int:
    data = task.get("data") if isinstance(task, dict) else None
    return sum(len(value) for value in data.values() if isinstance(value, str)) if isinstance(data, dict) else 0


class Preannotator:
    """The pre-annotation jobs of this process: at most one per project, each in a thread of its own.

    ``connection_for(project_id)`` gives the Label Studio connection to write through (the ``/setup`` address
    and token, or ``LABEL_STUDIO_URL``/``LABEL_STUDIO_API_KEY``), or None when none is known.
    """

    def __init__(self, settings: Settings, connection_for: Callable[[int], Connection | None],
                 project_lock: Callable[[int], ProjectLock] | None = None):
        self.settings = settings
        self._connection_for = connection_for
        self._lock_of = project_lock or (lambda project_id: ProjectLock(self.folder / f"{int(project_id)}.lock"))
        self._lock = threading.Lock()
        self._threads: dict[int, threading.Thread] = {}
        self._again: set[int] = set()  # projects asked for while their job ran: it runs once more after
        self._stop = threading.Event()

    @property
    def folder(self) -> Path:
        return self.settings.data_dir / STATUS_DIR

    def status_path(self, project_id: int) -> Path:
        return self.folder / f"{int(project_id)}.json"

    def _project_lock(self, project_id: int) -> ProjectLock:
        return self._lock_of(project_id)

    def start(self, project_id: int, reason: str) -> dict:
        """Pre-annotate the project with the version it is served now; a job already running for it takes the
        request on (it follows a new version at its next page, and runs once more when it ends)."""
        connection = self.connection_of(project_id)
        with self._lock:
            if project_id in self._threads:
                self._again.add(project_id)
                return {**self.status_of(project_id), "detail": "a job is running for this project: it follows a "
                        "new version at its next page, and looks again for tasks lacking a prediction when it ends"}
            lock = self._project_lock(project_id)
            if not lock.acquire():
                return {**self.status_of(project_id), "detail": "another process runs the project's job"}
            job = self._job(project_id, connection, reason)
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                job.save()  # "starting" from now on: GET /preannotation shows the job before its thread gets going
            except OSError:  # a full or read-only disk: the project is not left locked by a job that never ran
                lock.release()
                raise
            thread = threading.Thread(target=self._run, args=(job, lock), daemon=True,
                                      name=f"preannotate-{project_id}")
            self._threads[project_id] = thread
            thread.start()
        log.info("project %s: pre-annotation started (%s)", project_id, reason)
        return {"project": project_id, "state": "started", "reason": reason}

    def connection_of(self, project_id: int) -> Connection:
        connection = self._connection_for(project_id)
        if connection is None:
            raise NotConnected(
                f"no Label Studio address and token for project {project_id}: connect this backend to the project "
                f"in Label Studio (its /setup gives them), or set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY")
        return connection

    def _job(self, project_id: int, connection: Connection, reason: str) -> PreannotationJob:
        return PreannotationJob(self.settings, project_id, connection, self._stop, self.status_path(project_id),
                                reason)

    def _run(self, job: PreannotationJob, lock: ProjectLock) -> None:
        project_id = job.project_id
        try:
            while True:
                state = job.run()
                with self._lock:
                    again = project_id in self._again
                    self._again.discard(project_id)
                    if self._stop.is_set() or (state != "superseded" and not again):
                        del self._threads[project_id]
                        lock.release()
                        return
                reason = "a newer version" if state == "superseded" else "asked again while it ran"
                job = self._job(project_id, job.connection, reason)
        except BaseException:
            with self._lock:
                self._threads.pop(project_id, None)
                lock.release()
            raise

    def after_activation(self, project_id: int, version: str) -> None:
        """A new version of the project was activated: pre-annotate with it, when ``UIE_PREANNOTATE`` says so."""
        if not self.settings.preannotate_on_activation:
            return
        try:
            self.start(project_id, f"version {version} activated")
        except NotConnected as exc:
            log.warning("project %s: not pre-annotated: %s", project_id, exc)

    def resume_interrupted(self, project_id: int | None = None) -> list[int]:
        """Start again the jobs a crash or a restart cut short (all, or the project's); the projects resumed.

        Called at start-up and by each ``/setup`` (which brings the project's connection when none is set)."""
        resumed = []
        for status in self.statuses(project_id):
            if status["state"] == "interrupted" and self._connection_for(status["project"]) is not None:
                self.start(status["project"], f"resumed: the job of {status['job']} was cut short")
                resumed.append(status["project"])
        return resumed

    def statuses(self, project_id: int | None = None) -> list[dict]:
        """Each project's last job, newest first; a job whose process is gone shows as ``interrupted``."""
        if project_id is not None:
            paths = [self.status_path(project_id)]
        else:
            paths = sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []
        found = []
        for path in paths:
            status = read_json(path)
            if not isinstance(status, dict) or not path.stem.isdigit():
                continue
            if status.get("state") in ACTIVE_STATES and int(path.stem) not in self._threads \
                    and self._project_lock(int(path.stem)).is_free():
                status["state"] = "interrupted"
            found.append(status)
        return sorted(found, key=lambda s: s.get("started_at") or 0, reverse=True)

    def status_of(self, project_id: int) -> dict:
        found = self.statuses(project_id)
        return found[0] if found else {"project": project_id, "state": "none"}

    def is_running(self, project_id: int) -> bool:
        with self._lock:
            return project_id in self._threads

    def wait_idle(self, timeout: float) -> bool:
        """Block until no job of this process runs (tests, the CLI); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._threads:
                    return True
            time.sleep(0.1)
        return False

    def stop_all(self, timeout: float = 30.0) -> bool:
        """Ask every job to stop at its next page (or Label Studio call) and wait for them."""
        self._stop.set()
        return self.wait_idle(timeout)
