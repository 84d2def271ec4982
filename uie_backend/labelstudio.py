"""The Label Studio API client: pulling a project's annotated tasks for training, and writing predictions.

"Start Training" in Label Studio 1.23 sends no annotations, only the project, so the training job fetches
them itself, from the URL and token Label Studio sent to ``/setup`` (or ``LABEL_STUDIO_URL`` and
``LABEL_STUDIO_API_KEY``, which win). Two kinds of token exist: legacy tokens (``Authorization: Token …``)
and personal access tokens, which are JWT refresh tokens exchanged for 5-minute access tokens
(``Authorization: Bearer …``).

The pre-annotation job (preannotation.py) lists the tasks lacking a prediction of a version and stores
predictions in bulk; docs/preannotation.md has what Label Studio 1.23 does with each call.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

import requests

log = logging.getLogger(__name__)

TIMEOUT = (5, 300)  # connect, read: an export of a big project takes a while
PAGE_TIMEOUT = (5, 60)  # a page of tasks or of predictions: a POST recounts the whole project (docs/preannotation.md)
# Worth retrying: Label Studio restarting or overloaded, or refusing a token that a restart or an access
# token refresh can make good again; any other answer (400, 404) will not change by asking again.
RETRYABLE_STATUS = frozenset({401, 403, 408, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 30.0

T = TypeVar("T")


class LabelStudioError(RuntimeError):
    """Label Studio could not be reached or refused us; the message says what to change."""


class TransientLabelStudioError(LabelStudioError):
    """A failure that asking again later may cure (no answer, a timeout, 5xx, 429, 401/403): see :func:`retrying`."""


@dataclass
class Connection:
    url: str
    token: str
    _access: str | None = None
    _access_expires: float = 0.0

    def __repr__(self) -> str:  # never print the token
        return f"Connection(url={self.url!r})"

    @property
    def is_personal_access_token(self) -> bool:
        return self.token.count(".") == 2

    def auth_header(self) -> dict[str, str]:
        if not self.is_personal_access_token:
            return {"Authorization": f"Token {self.token}"}
        if self._access is None or time.time() > self._access_expires - 30:
            self._refresh()
        return {"Authorization": f"Bearer {self._access}"}

    def _refresh(self) -> None:
        response = self._send("POST", "/api/token/refresh/", json={"refresh": self.token}, auth=False)
        self._access = response.json()["access"]
        self._access_expires = _jwt_expiry(self._access)

    def _send(self, method: str, path: str, auth: bool = True, timeout=TIMEOUT, **kwargs) -> requests.Response:
        """One call; :class:`TransientLabelStudioError` for what may pass, :class:`LabelStudioError` otherwise."""
        headers = self.auth_header() if auth else {}
        try:
            response = requests.request(method, self.url.rstrip("/") + path, headers=headers, timeout=timeout,
                                        **kwargs)
        except requests.RequestException as exc:
            raise TransientLabelStudioError(
                f"cannot reach Label Studio at {self.url} ({exc.__class__.__name__}); set LABEL_STUDIO_URL to "
                f"an address this backend can reach (Label Studio sends its own LABEL_STUDIO_HOST)") from None
        if response.status_code in (401, 403):
            self._access = None  # a personal access token's next call refreshes its access token first
            raise TransientLabelStudioError(
                f"Label Studio at {self.url} refused the API token ({response.status_code}); set "
                f"LABEL_STUDIO_API_KEY to a valid legacy token or personal access token")
        if not response.ok:
            error = TransientLabelStudioError if response.status_code in RETRYABLE_STATUS else LabelStudioError
            raise error(f"Label Studio answered {response.status_code} to {method} {path}: {response.text[:300]}")
        return response

    def annotated_tasks(self, project_id: int) -> list[dict]:
        """Every task of the project that has annotations, with their full results (the JSON export)."""
        response = self._send("GET", f"/api/projects/{int(project_id)}/export", params={"exportType": "JSON"})
        tasks = response.json()
        if not isinstance(tasks, list):
            raise LabelStudioError(f"unexpected export format from {self.url}: {type(tasks).__name__}")
        return tasks

    def project(self, project_id: int) -> dict:
        """The project as Label Studio has it now: its ``label_config``, its selected ``model_version``…"""
        return self._send("GET", f"/api/projects/{int(project_id)}", timeout=PAGE_TIMEOUT).json()

    def ml_backend_titles(self, project_id: int) -> list[str]:
        """The titles of the project's connected ML backends (Connect Model selects one as the project's version)."""
        answer = self._send("GET", "/api/ml", params={"project": int(project_id)}, timeout=PAGE_TIMEOUT).json()
        return [backend.get("title") for backend in answer if isinstance(backend, dict)] if isinstance(answer, list) else []

    def tasks_lacking(self, project_id: int, version: str, after_id: int = 0, limit: int = 100,
                      among: list[int] | None = None) -> tuple[list[dict], int]:
        """Up to ``limit`` tasks with no prediction of ``version`` and an id above ``after_id``, in id order, and
        how many such tasks there are in all; ``among`` narrows them to those ids.

        One data-manager query: paging by id, never by page number, since storing predictions shrinks the set.
        """
        items = [{"filter": "filter:tasks:predictions_model_versions", "operator": "not_contains", "type": "List",
                  "value": [version]},  # a list: a string is matched character by character
                 {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": int(after_id)}]
        query = {"filters": {"conjunction": "and", "items": items}, "ordering": ["tasks:id"]}
        if among is not None:
            query["selectedItems"] = {"all": False, "included": [int(task_id) for task_id in among]}
        answer = self._send("GET", "/api/tasks", timeout=PAGE_TIMEOUT, params={
            "project": int(project_id), "page": 1, "page_size": int(limit), "query": json.dumps(query)}).json()
        if not isinstance(answer, dict) or not isinstance(answer.get("tasks"), list):
            raise LabelStudioError(f"unexpected answer to the task list from {self.url}: {str(answer)[:200]}")
        return answer["tasks"], int(answer.get("total") or 0)

    def import_predictions(self, project_id: int, predictions: list[dict]) -> int:
        """Store predictions (``{task, result, score, model_version}``) in one call; how many Label Studio stored.

        Label Studio skips an invalid one without an error and never deduplicates: a caller compares the count
        and must not repeat a call whose outcome it does not know (docs/preannotation.md).
        """
        answer = self._send("POST", f"/api/projects/{int(project_id)}/import/predictions", json=predictions,
                            timeout=PAGE_TIMEOUT).json()
        return int(answer.get("created", 0)) if isinstance(answer, dict) else 0

    def select_version(self, project_id: int, version: str) -> None:
        """Make ``version`` the project's selected version: the data manager's prediction scores and the labeling
        page then use its predictions (Label Studio refuses a version it holds no prediction of)."""
        self._send("PATCH", f"/api/projects/{int(project_id)}", json={"model_version": version}, timeout=PAGE_TIMEOUT)


def retrying(call: Callable[[], T], budget_s: float, wait: Callable[[float], bool] = lambda s: time.sleep(s) or False,
             ) -> T:
    """``call()``, asked again after each :class:`TransientLabelStudioError` with a doubling pause (1 s, 2 s, …
    30 s, the last one cut to the budget) until ``budget_s`` seconds have passed; then its error, saying how
    long it was retried.

    ``wait(seconds)`` pauses and answers True to give up early (a job asked to stop). Label Studio restarts in
    a few seconds and a personal access token is refreshed on the next call, so most failures pass.
    """
    delay, deadline = 1.0, time.monotonic() + budget_s
    while True:
        try:
            return call()
        except TransientLabelStudioError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransientLabelStudioError(
                    f"{exc} (retried for {budget_s:g} s, UIE_LABEL_STUDIO_RETRY_S)" if budget_s > 0 else str(exc)
                ) from None
            log.warning("%s; trying again in %.0f s", exc, min(delay, left))
            if wait(min(delay, left)):
                raise
            delay = min(delay * 2, MAX_BACKOFF_S)


def _jwt_expiry(token: str) -> float:
    """The ``exp`` claim of a JWT (no signature check: we only need to know when to refresh)."""
    try:
        payload = token.split(".")[1]
        return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])
    except (IndexError, ValueError, KeyError):
        return time.time() + 60
