"""The Label Studio API client: pulling a project's annotated tasks for training.

"Start Training" in Label Studio 1.23 sends no annotations, only the project, so the training job fetches
them itself, from the URL and token Label Studio sent to ``/setup`` (or ``LABEL_STUDIO_URL`` and
``LABEL_STUDIO_API_KEY``, which win). Two kinds of token exist: legacy tokens (``Authorization: Token …``)
and personal access tokens, which are JWT refresh tokens exchanged for 5-minute access tokens
(``Authorization: Bearer …``).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass

import requests

TIMEOUT = (5, 300)  # connect, read: an export of a big project takes a while


class LabelStudioError(RuntimeError):
    """Label Studio could not be reached or refused us; the message says what to change."""


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

    def _send(self, method: str, path: str, auth: bool = True, **kwargs) -> requests.Response:
        headers = self.auth_header() if auth else {}
        try:
            response = requests.request(method, self.url.rstrip("/") + path, headers=headers, timeout=TIMEOUT,
                                        **kwargs)
        except requests.RequestException as exc:
            raise LabelStudioError(
                f"cannot reach Label Studio at {self.url} ({exc.__class__.__name__}); set LABEL_STUDIO_URL to "
                f"an address this backend can reach (Label Studio sends its own LABEL_STUDIO_HOST)") from None
        if response.status_code in (401, 403):
            raise LabelStudioError(
                f"Label Studio at {self.url} refused the API token ({response.status_code}); set "
                f"LABEL_STUDIO_API_KEY to a valid legacy token or personal access token")
        if not response.ok:
            raise LabelStudioError(f"Label Studio answered {response.status_code} to {method} {path}: "
                                   f"{response.text[:300]}")
        return response

    def annotated_tasks(self, project_id: int) -> list[dict]:
        """Every task of the project that has annotations, with their full results (the JSON export)."""
        response = self._send("GET", f"/api/projects/{int(project_id)}/export", params={"exportType": "JSON"})
        tasks = response.json()
        if not isinstance(tasks, list):
            raise LabelStudioError(f"unexpected export format from {self.url}: {type(tasks).__name__}")
        return tasks


def _jwt_expiry(token: str) -> float:
    """The ``exp`` claim of a JWT (no signature check: we only need to know when to refresh)."""
    try:
        payload = token.split(".")[1]
        return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])
    except (IndexError, ValueError, KeyError):
        return time.time() + 60
