"""Run the backend as a real server for end-to-end tests, started the way the README says (`make serve`).

`make serve` is `.venv/bin/gunicorn --config gunicorn.conf.py _wsgi:app` in the repository root; this starts
exactly that (gunicorn from the venv of the running Python), on 127.0.0.1 and a free port, with every
folder of the backend (checkpoints, training runs, PaddleNLP's cache) in a temporary directory and no
fallback model, so nothing is downloaded and nothing of the checkout is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from .labelstudio import REPO_ROOT
from .processes import ServerProcess, free_port, read_log, spawn_logged, tail

GUNICORN = Path(sys.executable).parent / "gunicorn"  # not resolved: .venv/bin/python is a symlink
START_TIMEOUT_S = 90.0
REQUEST_TIMEOUT_S = 30.0

# Variables of the calling shell that would change what the backend does: its own settings (every UIE_*,
# plus these) and gunicorn's (gunicorn.conf.py reads them).
LEAKY_ENV = ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "BASIC_AUTH_USER", "BASIC_AUTH_PASS", "WORKERS", "THREADS",
             "TIMEOUT", "LOG_LEVEL", "XDG_RUNTIME_DIR")


class BackendError(RuntimeError):
    """The backend did not start, or answered with a non-2xx status."""


class BackendProcess(ServerProcess):
    """A gunicorn-served backend: its URL, its folders, its log, and a few API helpers."""

    error = BackendError
    name = "backend"

    def __init__(self, process: subprocess.Popen, url: str, home: Path, log_path: Path):
        super().__init__(process, url, log_path)  # the whole log: a home holds one backend's story
        self.home = home

    @property
    def checkpoint_dir(self) -> Path:
        return self.home / "checkpoint"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    # ---- lifecycle -------------------------------------------------------------------------------

    @staticmethod
    def environment(home: Path, port: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in LEAKY_ENV and not k.startswith("UIE_")}
        env.update(
            # nothing in the real home folder; this also gives gunicorn (>= 25.1) a control socket of its own
            # ($HOME/.gunicorn/gunicorn.ctl) instead of taking over the one of a `make serve` running meanwhile
            HOME=str(home / "home"),
            PORT=str(port),
            HOST="127.0.0.1",
            UIE_CHECKPOINT_DIR=str(home / "checkpoint"),
            UIE_DATA_DIR=str(home / "data"),
            PPNLP_HOME=str(home / "ppnlp"),
            UIE_DEVICE="cpu",
            UIE_MODEL="",  # no named model: it would be downloaded
            UIE_DEFAULT_MODEL=str(home / "no-default-model"),  # nor the embedded one: the test installs its own
            PYTHONUNBUFFERED="1",
        )
        env.update(extra or {})
        return env

    @classmethod
    def start(
        cls,
        home: Path,
        model: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout_s: float = START_TIMEOUT_S,
    ) -> BackendProcess:
        """Copy `model` in as `<home>/checkpoint/model_best`, start gunicorn and wait for GET /health.

        `env` adds/overrides variables (e.g. the tiny training settings). Raises BackendError with the tail
        of the log when the server exits or does not answer in time.
        """
        if not GUNICORN.exists():
            raise BackendError(f"{GUNICORN} missing: run `make install`")
        home = Path(home).resolve()
        (home / "home").mkdir(parents=True, exist_ok=True)
        if model is not None:
            shutil.copytree(model, home / "checkpoint" / "model_best")
        port = free_port()
        log_path = home / "backend.log"
        started = time.monotonic()
        # its own process group: stop() reaches gunicorn's workers and the training jobs
        process = spawn_logged([str(GUNICORN), "--config", "gunicorn.conf.py", "_wsgi:app"], log_path,
                               cwd=REPO_ROOT, env=cls.environment(home, port, env))
        return cls(process, f"http://127.0.0.1:{port}", home, log_path)._started(started, timeout_s)

    def _probe(self) -> str:
        try:
            answer = requests.get(f"{self.url}/health", timeout=2)
            if answer.status_code == 200 and answer.json().get("status") == "UP":
                return "ready"
            return f"/health answered {answer.status_code}: {answer.text[:200]}"
        except (requests.RequestException, ValueError) as exc:
            return type(exc).__name__

    def stop(self, timeout_s: float = 35.0) -> None:
        """SIGTERM to the whole process group (gunicorn's graceful timeout is 30 s), then SIGKILL."""
        super().stop(timeout_s)

    # ---- API -------------------------------------------------------------------------------------

    def api(self, method: str, path: str, **kw: Any) -> dict:
        """One call; BackendError with the body (and the log's tail) on non-2xx."""
        kw.setdefault("timeout", REQUEST_TIMEOUT_S)
        answer = requests.request(method, f"{self.url}{path}", **kw)
        if not answer.ok:
            raise BackendError(f"{method} {path} -> {answer.status_code}: {answer.text[:2000]}\n"
                               f"last lines of {self.log_path}:\n{tail(self.log())}")
        return answer.json()

    def health(self) -> dict:
        return self.api("GET", "/health")

    def setup(self, label_config: str, project: int | None = None) -> dict:
        """What /setup answers for ``project`` (Label Studio sends ``"id.timestamp"``): its served version."""
        return self.api("POST", "/setup", json={"schema": label_config,
                                                 **({"project": f"{project}.1795936584"} if project else {})})

    def training(self) -> dict:
        return self.api("GET", "/training")

    def wait_for_training(self, job_id: str, timeout_s: float, poll_s: float = 1.0) -> dict:
        """Poll GET /training until the job `job_id` is finished; its entry of `recent`.

        Raises BackendError with the job's progress and train.log's tail on timeout.
        """
        deadline = time.monotonic() + timeout_s
        status: dict = {}
        while time.monotonic() < deadline:
            status = self.training()
            for job in status["recent"]:
                if job["id"] == job_id:
                    return job
            time.sleep(poll_s)
        running = [job for job in status.get("running", []) if job["id"] == job_id]
        train_log = self.data_dir / "runs" / job_id / "train.log"
        raise BackendError(f"training job {job_id} not finished after {timeout_s:.0f} s: "
                           f"{running[0].get('progress') if running else status}\n"
                           f"last lines of {train_log}:\n{tail(read_log(train_log))}")
