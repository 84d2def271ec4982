"""Start a real Label Studio 1.23 for end-to-end tests, and talk to its REST API.

Why a real server: the backend's contract is whatever Label Studio actually sends and accepts
(see ../shared/docs/label-studio-protocol.md); mocks would only test our reading of the docs.
Label Studio runs from its own venv (`.venv-ls`, created by scripts/install_label_studio.sh) so its
Django/SDK pins never meet the backend's. The tests only need `requests` from the backend's venv.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from .processes import ServerProcess, free_port, spawn_logged

REPO_ROOT = Path(__file__).resolve().parents[2]
LS_VENV = REPO_ROOT / ".venv-ls"
LS_BIN = LS_VENV / "bin" / "label-studio"
INSTALL_SCRIPT = REPO_ROOT / "scripts" / "install_label_studio.sh"

USERNAME = "e2e@example.com"
PASSWORD = "e2e-password-1234"
START_TIMEOUT_S = 120.0  # the first start runs all migrations (about 30 s here, more on slow disks)
REQUEST_TIMEOUT_S = 30.0
PAGE_SIZE = 100
TOKEN_FILE = "e2e-user-token"

# Label Studio reads many settings as LABEL_STUDIO_X, HEARTEX_X *or plain X* (core/utils/params.get_env),
# so generic variables of the calling shell would leak into it. These are the ones that matter here.
LEAKY_PLAIN_ENV = ("HOST", "PORT", "USERNAME", "PASSWORD", "USER_TOKEN", "DEBUG", "DATABASE_NAME")


DATA_DIR_TOKEN_HINT = "data dir created with another token, or without LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN?"


class LabelStudioError(RuntimeError):
    """Label Studio did not start, or answered an API call with a non-2xx status."""


def ensure_installed() -> float | None:
    """Run scripts/install_label_studio.sh unless its stamp exists; return the seconds it took.

    The install (about 1 GB) happens at most once per checkout, so a plain `pytest` run works
    on a fresh machine without a separate setup step.
    """
    if (LS_VENV / ".installed").exists():
        return None
    started = time.monotonic()
    subprocess.run([str(INSTALL_SCRIPT)], check=True)
    return time.monotonic() - started


def checked(response: requests.Response) -> requests.Response:
    """The response, or LabelStudioError carrying the body: LS explains refusals only there."""
    if not response.ok:
        request = response.request
        raise LabelStudioError(f"{request.method} {request.path_url} -> {response.status_code}: {response.text[:2000]}")
    return response


def legacy_token(data_dir: Path) -> str:
    """The admin's legacy API token for this data dir: made once, then reused.

    Label Studio only applies `--user-token` when it creates the user (first start), so a
    restart on the same data dir must present the same token.
    """
    path = data_dir / TOKEN_FILE
    if not path.exists():
        path.write_text(secrets.token_hex(20))
    return path.read_text().strip()


def server_env(data_dir: Path, url: str) -> dict[str, str]:
    """Environment for an offline, non-interactive Label Studio that may call back to 127.0.0.1.

    - LABEL_STUDIO_BASE_DATA_DIR and HOME: nothing is written to the real home folder.
    - ML_BLOCK_LOCAL_IP / SSRF_PROTECTION_ENABLED: otherwise connecting a backend on 127.0.0.1 is 403.
    - no version check, analytics or Sentry: the test machine has no internet.
    - LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN: copied into the organization on first start; without it
      `Authorization: Token ...` is 401.
    - LABEL_STUDIO_HOST: the `hostname` Label Studio hands the ML backend in /setup, so the backend
      can fetch annotations from this server (it defaults to http://localhost:8080).
    """
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_PLAIN_ENV}
    env.update(
        HOME=str(data_dir / "home"),
        LABEL_STUDIO_BASE_DATA_DIR=str(data_dir),
        LABEL_STUDIO_HOST=url,
        ML_BLOCK_LOCAL_IP="false",
        SSRF_PROTECTION_ENABLED="false",
        LATEST_VERSION_CHECK="false",
        COLLECT_ANALYTICS="false",
        SENTRY_DSN="",
        FRONTEND_SENTRY_DSN="",
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
    )
    return env


class LabelStudio(ServerProcess):
    """A running Label Studio process plus an authenticated API session (legacy token)."""

    error = LabelStudioError
    name = "Label Studio"
    poll_s = 0.5

    def __init__(
        self, process: subprocess.Popen, url: str, token: str, data_dir: Path, log_path: Path, log_offset: int = 0
    ):
        super().__init__(process, url, log_path, log_offset)
        self.token = token
        self.data_dir = data_dir
        self._personal_access_token: str | None = None
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    # ---- lifecycle -------------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        data_dir: Path,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        timeout_s: float = START_TIMEOUT_S,
    ) -> LabelStudio:
        """Start `label-studio start` on 127.0.0.1 and return once the API accepts the token.

        `env` adds/overrides variables (e.g. feature flags) on top of `server_env`.
        Raises LabelStudioError with the tail of the server log when it does not come up.
        """
        if not LS_BIN.exists():
            raise LabelStudioError(f"{LS_BIN} missing: run {INSTALL_SCRIPT}")
        data_dir = Path(data_dir).resolve()
        (data_dir / "home").mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        token = legacy_token(data_dir)
        log_path = data_dir / "label-studio.log"
        command = [
            str(LS_BIN), "start", "--no-browser",
            "--internal-host", "127.0.0.1", "--port", str(port),
            "--data-dir", str(data_dir), "--database", str(data_dir / "ls.sqlite3"),
            "--username", USERNAME, "--password", PASSWORD, "--user-token", token,
        ]  # fmt: skip
        started = time.monotonic()
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        process = spawn_logged(command, log_path, cwd=data_dir, env={**server_env(data_dir, url), **(env or {})})
        return cls(process, url, token, data_dir, log_path, log_offset)._started(started, timeout_s)

    def _probe(self) -> str:
        """/health, then whoami with the token, on *our* port: Label Studio moves to another port when its
        own is taken, and says so only in its log."""
        if "is in use" in self.log():
            self._fail("found its port taken and moved to another one")
        try:
            health = requests.get(f"{self.url}/health", timeout=2)
            if health.status_code != 200:
                return f"/health answered {health.status_code}"
            whoami = self.session.get(f"{self.url}/api/current-user/whoami", timeout=5)
            if whoami.status_code == 401:  # the user is made before the server listens: final
                self._fail(f"rejects the token ({DATA_DIR_TOKEN_HINT})")
            if whoami.status_code != 200:
                return f"whoami answered {whoami.status_code}: {whoami.text[:200]}"
            return "ready"
        except requests.RequestException as exc:
            return f"{type(exc).__name__}"

    def stop(self, timeout_s: float = 20.0) -> None:
        """Terminate the whole process group (SIGTERM, then SIGKILL) and reap it."""
        self.session.close()
        super().stop(timeout_s)

    # ---- raw API ---------------------------------------------------------------------------------

    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        """One API call with the legacy token; raises LabelStudioError with the body on non-2xx.

        Pass `headers={"Authorization": "Bearer ..."}` to call with another credential.
        """
        kw.setdefault("timeout", REQUEST_TIMEOUT_S)
        return checked(self.session.request(method, f"{self.url}{path}", **kw))

    # ---- projects and tasks ----------------------------------------------------------------------

    def create_project(self, title: str, label_config: str) -> dict:
        """A new project; its dict carries `id`."""
        return self.api("POST", "/api/projects/", json={"title": title, "label_config": label_config}).json()

    def import_tasks(self, project_id: int, tasks: list[dict]) -> list[int]:
        """Import tasks (each `{"data": {...}}` or a bare data dict) and return their ids, in order.

        `return_task_ids=true` makes 1.23 answer with the ids of exactly this import, which is
        safer than diffing the task list.
        """
        answer = self.api(
            "POST", f"/api/projects/{project_id}/import", params={"return_task_ids": "true"}, json=tasks
        ).json()
        return answer["task_ids"]

    def list_tasks(self, project_id: int) -> list[dict]:
        """Every task of the project with annotations and predictions (`fields=all`).

        In 1.23 `GET /api/tasks` answers `{"tasks": [...], "total": N, ...}` (not a bare list,
        not DRF's `results`), and a page past the end answers 404, so stop on `total`.
        """
        tasks: list[dict] = []
        page = 1
        while True:
            params = {"project": project_id, "page": page, "page_size": PAGE_SIZE, "fields": "all"}
            answer = self.api("GET", "/api/tasks", params=params).json()
            tasks.extend(answer["tasks"])
            if not answer["tasks"] or len(tasks) >= answer["total"]:
                return tasks
            page += 1

    def get_task(self, task_id: int) -> dict:
        """One task with its annotations and predictions."""
        return self.api("GET", f"/api/tasks/{task_id}/").json()

    def create_annotation(self, task_id: int, result: list[dict]) -> dict:
        """A submitted annotation by the admin (this fires ANNOTATION_CREATED webhooks)."""
        return self.api("POST", f"/api/tasks/{task_id}/annotations/", json={"result": result}).json()

    def export_tasks(self, project_id: int) -> list[dict]:
        """The JSON export the backend trains from (annotated tasks; predictions come as ids only)."""
        return self.api("GET", f"/api/projects/{project_id}/export", params={"exportType": "JSON"}).json()

    # ---- ML backend ------------------------------------------------------------------------------

    def connect_ml_backend(
        self,
        project_id: int,
        url: str,
        title: str = "uie",
        is_interactive: bool = True,
        auth: tuple[str, str] | None = None,
    ) -> dict:
        """Connect a model like the "Connect Model" dialog; Label Studio calls /health and /setup
        synchronously and refuses (400) when they fail."""
        body: dict[str, Any] = {"project": project_id, "url": url, "title": title, "is_interactive": is_interactive}
        if auth is not None:
            body.update(auth_method="BASIC_AUTH", basic_auth_user=auth[0], basic_auth_pass=auth[1])
        return self.api("POST", "/api/ml/", json=body).json()

    def list_ml_backends(self, project_id: int) -> list[dict]:
        """The project's connected ML backends (a refused connect must leave none behind)."""
        return self.api("GET", "/api/ml/", params={"project": project_id}).json()

    def get_ml_backend(self, ml_backend_id: int) -> dict:
        """The backend's row, e.g. its `state` (CO connected, ER error, TR training, PR predicting)."""
        return self.api("GET", f"/api/ml/{ml_backend_id}").json()

    def start_training(self, ml_backend_id: int) -> requests.Response:
        """The "Start Training" button: Label Studio posts START_TRAINING to the backend's /webhook."""
        return self.api("POST", f"/api/ml/{ml_backend_id}/train")

    def retrieve_predictions(self, project_id: int, task_ids: list[int]) -> dict:
        """Data-manager action "Retrieve Predictions" on the given tasks.

        Label Studio sends all selected tasks to the backend's /predict in one synchronous call
        and answers `{"processed_items": n, "detail": "Retrieved n predictions"}` even when
        nothing was stored.
        """
        return self.api(
            "POST",
            "/api/dm/actions",
            params={"id": "retrieve_tasks_predictions", "project": project_id},
            json={"selectedItems": {"all": False, "included": task_ids}},
            timeout=150,  # Label Studio itself waits up to ML_TIMEOUT_PREDICT (100 s)
        ).json()

    def list_predictions(self, task_id: int | None = None, project_id: int | None = None) -> list[dict]:
        """Stored predictions, filtered by task and/or project (a bare list in 1.23)."""
        params = {k: v for k, v in {"task": task_id, "project": project_id}.items() if v is not None}
        return self.api("GET", "/api/predictions/", params=params).json()

    # ---- personal access tokens ------------------------------------------------------------------

    def create_personal_access_token(self) -> str:
        """The admin's personal access token (a JWT refresh token, the default auth in 1.23).

        Label Studio allows one PAT per user (a second `POST /api/token/` is 409) and never shows it
        again, so it is made once per server object and then returned from memory.
        """
        if self._personal_access_token is None:
            self._personal_access_token = self._login_and_create_pat()
        return self._personal_access_token

    def _login_and_create_pat(self) -> str:
        """Browser-like session login, then `POST /api/token/` with the CSRF token.

        A session rather than the legacy token, so the PAT path does not depend on legacy tokens.
        """
        with requests.Session() as browser:
            login = f"{self.url}/user/login/"
            browser.get(login, timeout=REQUEST_TIMEOUT_S).raise_for_status()
            csrf = browser.cookies["csrftoken"]
            form = {"email": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": csrf}
            browser.post(login, data=form, headers={"Referer": login}, timeout=REQUEST_TIMEOUT_S).raise_for_status()
            if "sessionid" not in browser.cookies:
                raise LabelStudioError(f"session login as {USERNAME} failed")
            headers = {"X-CSRFToken": browser.cookies["csrftoken"], "Referer": self.url}
            response = browser.post(f"{self.url}/api/token/", headers=headers, timeout=REQUEST_TIMEOUT_S)
            return checked(response).json()["token"]

    def refresh_access_token(self, personal_access_token: str) -> str:
        """A short-lived (5 min) access token for `Authorization: Bearer`, from a PAT."""
        answer = requests.post(
            f"{self.url}/api/token/refresh/", json={"refresh": personal_access_token}, timeout=REQUEST_TIMEOUT_S
        )
        return checked(answer).json()["access"]


def is_jwt(token: str) -> bool:
    """PATs and access tokens are JWTs (three base64url parts), unlike the 40-hex legacy token."""
    return re.fullmatch(r"[\w-]+\.[\w-]+\.[\w-]+", token) is not None
