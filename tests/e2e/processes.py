"""Servers the end-to-end tests start (Label Studio, the backend, Redis, RQ workers): how each is started,
waited for, diagnosed from its log, and stopped with every process it forked."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A port nobody listens on right now (bind to 0, read it, close).

    Label Studio itself silently moves to the next port when the one asked for is taken, so
    `LabelStudio.start` verifies readiness on the port asked for rather than trusting the process.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_log(path: Path, offset: int = 0) -> str:
    """The server log from `offset` on: the log is appended across restarts of one data dir,
    and only this start's part says why this start failed."""
    if not path.exists():
        return ""
    with path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def spawn_logged(command: list[str], log_path: Path, **popen: Any) -> subprocess.Popen:
    """Start a server with its output appended to ``log_path``, in a process group of its own, so that
    :func:`stop_process_group` reaches every process it forks."""
    with log_path.open("ab") as log:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, **popen)


def stop_process_group(process: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM to the process's whole group (servers fork workers), then SIGKILL; reap it."""
    if process.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout_s)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(text: str, lines: int = 40) -> str:
    """Last lines of a log, to make a failed start diagnosable from the test output."""
    return "\n".join(text.splitlines()[-lines:]) or "(nothing logged)"


class ServerProcess:
    """A started server: its process, its URL and its log. Subclasses say how to probe readiness
    (:meth:`_probe`) and which error to raise (``error``), and name themselves (``name``)."""

    error: type[Exception] = RuntimeError
    name = "server"
    poll_s = 0.3

    def __init__(self, process: subprocess.Popen, url: str, log_path: Path, log_offset: int = 0):
        self.process = process
        self.url = url
        self.log_path = log_path
        self.log_offset = log_offset
        self.startup_s: float | None = None

    def _started(self, started: float, timeout_s: float):
        """Wait until ready (stopping it if that fails), note how long the start took, and return self."""
        try:
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        return self

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._fail(f"exited with code {self.process.returncode}")
            last = self._probe()
            if last == "ready":
                return
            time.sleep(self.poll_s)
        self._fail(f"not ready after {timeout_s:.0f} s ({last})")

    def _probe(self) -> str:
        """One readiness check: 'ready', or why not."""
        raise NotImplementedError

    def _fail(self, why: str) -> None:
        raise self.error(f"{self.name} at {self.url} {why}; last lines of {self.log_path}:\n{tail(self.log())}")

    def log(self) -> str:
        """What the server logged since this start."""
        return read_log(self.log_path, self.log_offset)

    def stop(self, timeout_s: float = 20.0) -> None:
        stop_process_group(self.process, timeout_s)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
