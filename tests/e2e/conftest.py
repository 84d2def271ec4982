"""Fixtures for end-to-end tests against a real Label Studio (see tests/e2e/labelstudio.py)."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import TINY_TRAINING  # tests/conftest.py (tests/ is on sys.path, see there)

from .backend_process import BackendProcess
from .labelstudio import PASSWORD, REPO_ROOT, REQUEST_TIMEOUT_S, USERNAME, LabelStudio, ensure_installed
from .processes import read_log, tail


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker here too, so `-m e2e` works without warnings whatever pytest.ini says."""
    config.addinivalue_line("markers", "e2e: starts a real Label Studio server (slow, needs .venv-ls)")


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    """One Label Studio per test session: the first start migrates a fresh SQLite (~20-30 s).

    Tests isolate themselves by creating their own projects, not their own servers.
    """
    install_s = ensure_installed()
    if install_s is not None:
        print(f"\nInstalled Label Studio into .venv-ls in {install_s:.1f} s")
    server = LabelStudio.start(tmp_path_factory.mktemp("label-studio"))
    print(f"\nLabel Studio started at {server.url} in {server.startup_s:.1f} s (log: {server.log_path})")
    yield server
    server.stop()


# ---- the backend, served as `make serve` serves it -----------------------------------------------


@pytest.fixture(scope="module")
def uie_backend(tmp_path_factory: pytest.TempPathFactory, random_checkpoint: Path) -> Iterator[BackendProcess]:
    """The backend under gunicorn (tests/e2e/backend_process.py), serving an *untrained* tiny UIE.

    An untrained model makes learning visible: whatever it predicts after Start Training was learnt from
    the annotations Label Studio holds. TINY_TRAINING makes that fine-tune take about a minute on CPU.
    """
    # Pre-annotation after activation is off here: these tests check what Retrieve Predictions stores, one
    # prediction per task they ask for; the background job (on by default) is tested in test_preannotation*.py.
    server = BackendProcess.start(tmp_path_factory.mktemp("backend"), model=random_checkpoint,
                                  env={**TINY_TRAINING, "UIE_PREANNOTATE": "false"})
    print(f"\nbackend started at {server.url} in {server.startup_s:.1f} s (log: {server.log_path})")
    yield server
    server.stop()


# ---- headless Chromium, for screenshots of Label Studio's pages ----------------------------------

INSTALL_PACKAGES = REPO_ROOT / "scripts" / "install_debian_packages.sh"


def debian_binary(binary: str, *packages: str) -> str:
    """The path of `binary`, installing Debian's `packages` first when missing (scripts/install_debian_packages.sh).

    Fails rather than skips when it cannot be had: the tests that need it deliver part of an issue.
    """
    try:
        done = subprocess.run([str(INSTALL_PACKAGES), *packages], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{INSTALL_PACKAGES} {' '.join(packages)} did not finish in 15 minutes")
    if done.returncode != 0:
        pytest.fail(f"{INSTALL_PACKAGES} failed with exit code {done.returncode}; this test needs Debian's "
                    f"{', '.join(packages)}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{' '.join(packages)} installed, but there is no `{binary}` on PATH")
    return path


@pytest.fixture(scope="session")
def chromium() -> str:
    """The `chromium` binary, with a CJK font for the Chinese labels in screenshots."""
    return debian_binary("chromium", "chromium", "fonts-wqy-zenhei")


@pytest.fixture(scope="session")
def screenshot(label_studio: LabelStudio, chromium: str, tmp_path_factory: pytest.TempPathFactory
               ) -> Callable[..., dict]:
    """`screenshot(url, path, ready_js=..., timeout_s=...)`: a PNG of a Label Studio page as the admin sees it.

    Logs in once like a browser would (session cookie), gives each capture a fresh headless Chromium with
    that cookie, and captures once the JavaScript expression `ready_js` is truthy in the page (or, when it
    evaluates to an object, once its `ready` is). Returns that last value, e.g. an object describing the page.
    """
    cookies = session_cookies(label_studio)

    def take(url: str, path: Path, ready_js: str = "true", timeout_s: float = 60.0) -> Any:
        workdir = tmp_path_factory.mktemp("chromium")
        return capture_screenshot(chromium, url, Path(path), cookies, ready_js, workdir, timeout_s=timeout_s)

    return take


def session_cookies(label_studio: LabelStudio) -> dict[str, str]:
    """Log in through Label Studio's login form (GET for the CSRF cookie, POST email and password):
    the `sessionid` and `csrftoken` cookies a browser would hold afterwards."""
    with requests.Session() as browser:
        login = f"{label_studio.url}/user/login/"
        browser.get(login, timeout=REQUEST_TIMEOUT_S).raise_for_status()
        form = {"email": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": browser.cookies["csrftoken"]}
        browser.post(login, data=form, headers={"Referer": login}, timeout=REQUEST_TIMEOUT_S).raise_for_status()
        if "sessionid" not in browser.cookies:
            raise RuntimeError(f"session login to {label_studio.url} as {USERNAME} failed (no sessionid cookie)")
        return {name: browser.cookies[name] for name in ("sessionid", "csrftoken")}


# ---- a minimal DevTools-protocol client ------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--hide-scrollbars", "--mute-audio", "--lang=en-US",
)


class BrowserError(RuntimeError):
    """Chromium exited, refused a DevTools command, or the page never became ready."""


class DevToolsPipe:
    """Chromium driven over `--remote-debugging-pipe`: the DevTools protocol with the Python stdlib only.

    Chromium reads commands from its fd 3 and writes answers and events to its fd 4, each message one JSON
    text followed by a NUL byte. No websocket client, no port, no driver package to install.
    """

    def __init__(self, binary: str, args: list[str], log_path: Path):
        to_browser, self._writer = os.pipe()
        self._reader, from_browser = os.pipe()
        # Copies numbered >= 10, so that moving them onto 3 and 4 in the child cannot overwrite one another.
        child_in = fcntl.fcntl(to_browser, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_browser, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_browser)
        os.close(from_browser)

        def wire_pipes() -> None:  # in the child, before exec: dup2 leaves 3 and 4 inheritable
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self.log_path = log_path
        with log_path.open("ab") as log:
            # close_fds=False: fds 3 and 4 must survive; Python's own fds are non-inheritable anyway (PEP 446)
            self.process = subprocess.Popen(
                [binary, *args, "--remote-debugging-pipe"], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, close_fds=False, preexec_fn=wire_pipes, start_new_session=True)
        os.close(child_in)
        os.close(child_out)
        self._buffer = b""
        self._last_id = 0
        self._events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout_s: float = 30.0) -> dict:
        """One command; its result, or BrowserError with Chromium's error."""
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._writer, data):]
        deadline = time.monotonic() + timeout_s
        while True:
            answer = self._receive(deadline, f"the answer to {method}")
            if answer.get("id") == self._last_id:
                if "error" in answer:
                    raise BrowserError(f"{method} failed: {answer['error']}")
                return answer.get("result", {})
            self._events.append(answer)

    def wait_event(self, method: str, session: str | None, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            for event in self._events:
                if event.get("method") == method and event.get("sessionId") == session:
                    self._events.remove(event)
                    return event.get("params", {})
            self._events.append(self._receive(deadline, f"the event {method}"))

    def _receive(self, deadline: float, what: str) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._reader], [], [], left)[0]:
                raise BrowserError(f"no {what} from Chromium in time; its log:\n{tail(read_log(self.log_path))}")
            chunk = os.read(self._reader, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium exited (code {self.process.poll()}) while waiting for {what}; "
                                   f"its log:\n{tail(read_log(self.log_path))}")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout_s=5)
        except (BrowserError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        os.close(self._writer)
        os.close(self._reader)


class BrowserPage:
    """One tab of a headless Chromium opened by :func:`browser_page`: evaluate JavaScript, wait, screenshot."""

    def __init__(self, browser: DevToolsPipe, session: str, workdir: Path):
        self.browser, self.session, self.workdir = browser, session, workdir

    def evaluate(self, expression: str) -> Any:
        evaluated = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                      self.session)
        return evaluated.get("result", {}).get("value")

    def wait_until(self, ready_js: str, timeout_s: float) -> Any:
        """The value of `ready_js` once truthy (or, for an object, once its `ready` is); BrowserError after
        `timeout_s`, with the page as it was saved next to `workdir` for diagnosis."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(ready_js)
            if value.get("ready") if isinstance(value, dict) else value:
                return value
            if time.monotonic() > deadline:
                failed = self.workdir / "not-ready.png"
                self.screenshot(failed)
                raise BrowserError(f"page not ready after {timeout_s:.0f} s: `{ready_js}` gave {value!r}; "
                                   f"the page as it was: {failed}")
            time.sleep(0.25)

    def wait_loaded(self, timeout_s: float = 30.0) -> None:
        """Until the page that a navigation, a link or a form started has loaded."""
        self.browser.wait_event("Page.loadEventFired", self.session, timeout_s)

    def screenshot(self, path: Path) -> None:
        shot = self.browser.send("Page.captureScreenshot", {"format": "png"}, self.session)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))


@contextmanager
def browser_page(binary: str, url: str, cookies: dict[str, str], workdir: Path,
                 size: tuple[int, int] = (1400, 900), timeout_s: float = 60.0) -> Iterator[BrowserPage]:
    """`url` opened with `cookies` in a fresh headless Chromium, loaded; Chromium is closed afterwards."""
    width, height = size
    args = [*CHROMIUM_FLAGS, f"--user-data-dir={workdir / 'profile'}", f"--window-size={width},{height}",
            "about:blank"]
    browser = DevToolsPipe(binary, args, workdir / "chromium.log")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
        for name, value in cookies.items():
            browser.send("Network.setCookie", {"name": name, "value": value, "url": url}, session)
        browser.send("Page.enable", session=session)
        navigated = browser.send("Page.navigate", {"url": url}, session)
        if navigated.get("errorText"):
            raise BrowserError(f"Chromium could not open {url}: {navigated['errorText']}")
        page = BrowserPage(browser, session, workdir)
        page.wait_loaded(timeout_s)
        yield page
    finally:
        browser.close()


def capture_screenshot(binary: str, url: str, path: Path, cookies: dict[str, str], ready_js: str, workdir: Path,
                       size: tuple[int, int] = (1400, 900), timeout_s: float = 60.0) -> Any:
    """Open `url` with `cookies` in a fresh headless Chromium, wait until `ready_js` is truthy, save a PNG.

    When the page never gets ready, the page as it was is saved next to `workdir` for diagnosis and
    BrowserError says what `ready_js` last returned.
    """
    with browser_page(binary, url, cookies, workdir, size, timeout_s) as page:
        value = page.wait_until(ready_js, timeout_s)
        time.sleep(0.5)  # let the last layout and fonts settle
        page.screenshot(path)
        return value
