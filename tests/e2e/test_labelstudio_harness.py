"""The e2e harness itself, against a real Label Studio 1.23.2: if these fail, the backend's e2e tests
cannot be trusted. They also pin the Label Studio behaviours the backend relies on (task list shape,
code-point offsets, PAT auth, what "Retrieve Predictions" sends, how a dead backend is refused)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from .labelstudio import LabelStudio, LabelStudioError, is_jwt
from .processes import free_port

pytestmark = pytest.mark.e2e

LABEL_CONFIG = """<View>
  <Labels name="label" toName="text">
  <Label value="地名" background="#FFA39E"/>
  <Label value="人名" background="#D4380D"/>
  <Label value="组织" background="#FFC069"/>
  <Label value="时间" background="#AD8B00"/>
  <Label value="产品" background="#D3F261"/>
  <Label value="价格" background="#389E0D"/>
  <Label value="天气" background="#5CDBD3"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""

# The emoji is one code point but two UTF-16 units: offsets after it differ between Python and JS.
EMOJI_TEXT = "😀今天张三在北京买了华为手机。"
TEXTS = [EMOJI_TEXT, "2024年3月5日，李四在上海的小米之家花了3999元。", "明天杭州有雨，气温十五度。"]


def span(text: str, entity: str, label: str, region_id: str = "r0") -> dict:
    """A Labels region for `entity` in `text`, with code-point (Python index) offsets."""
    start = text.index(entity)
    value = {"start": start, "end": start + len(entity), "text": entity, "labels": [label]}
    return {"id": region_id, "from_name": "label", "to_name": "text", "type": "labels", "value": value}


@pytest.fixture
def project(label_studio: LabelStudio, request: pytest.FixtureRequest) -> dict:
    """A fresh project per test, so tests share the server but not state."""
    return label_studio.create_project(f"e2e {request.node.name}"[:50], LABEL_CONFIG)


@pytest.fixture
def task_ids(label_studio: LabelStudio, project: dict) -> list[int]:
    return label_studio.import_tasks(project["id"], [{"data": {"text": text}} for text in TEXTS])


# ---- a stub ML backend, to see what Label Studio really sends ------------------------------------


class StubBackend:
    """A tiny ML backend on 127.0.0.1 that records every request and predicts "北京" as 地名.

    Why: it shows exactly which calls, bodies and headers Label Studio sends, without the real model.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict, dict[str, str]]] = []  # (path, json body, headers)
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.calls]

    def bodies(self, path: str) -> list[dict]:
        return [body for p, body, _ in self.calls if p == path]

    def answer(self, path: str, body: dict) -> dict:
        if path == "/setup":
            return {"model_version": "stub-1"}
        if path == "/predict":
            return {"results": [self.predict(task) for task in body["tasks"]]}
        return {"status": "UP"}

    @staticmethod
    def predict(task: dict) -> dict:
        text = task["data"]["text"]
        result = [span(text, "北京", "地名")] if "北京" in text else []
        return {"result": result, "score": 0.5, "model_version": "stub-1"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._reply({})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self._reply(json.loads(self.rfile.read(length) or b"{}"))

            def _reply(self, body: dict) -> None:
                stub.calls.append((self.path, body, dict(self.headers)))
                payload = json.dumps(stub.answer(self.path, body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub_backend() -> Iterator[StubBackend]:
    stub = StubBackend()
    yield stub
    stub.close()


# ---- tests -----------------------------------------------------------------------------------------


def test_imported_tasks_are_listed_with_their_text(label_studio: LabelStudio, project: dict, task_ids: list[int]):
    assert len(task_ids) == 3
    tasks = label_studio.list_tasks(project["id"])
    assert [t["id"] for t in tasks] == task_ids
    assert [t["data"]["text"] for t in tasks] == TEXTS


def test_annotation_is_exported_with_code_point_offsets(
    label_studio: LabelStudio, project: dict, task_ids: list[int]
):
    region = span(EMOJI_TEXT, "张三", "人名")
    assert (region["value"]["start"], region["value"]["end"]) == (3, 5)  # UTF-16 would say (4, 6)
    label_studio.create_annotation(task_ids[0], [region])

    exported = label_studio.export_tasks(project["id"])
    assert [t["id"] for t in exported] == [task_ids[0]]  # only annotated tasks are exported
    task = exported[0]
    assert task["data"]["text"] == EMOJI_TEXT
    value = task["annotations"][0]["result"][0]["value"]
    assert value == region["value"]
    assert task["data"]["text"][value["start"] : value["end"]] == "张三"


def test_personal_access_token_refreshes_into_a_working_bearer_token(label_studio: LabelStudio):
    pat = label_studio.create_personal_access_token()
    assert is_jwt(pat) and pat != label_studio.token
    assert label_studio.create_personal_access_token() == pat  # one PAT per user: kept, not re-made

    access = label_studio.refresh_access_token(pat)
    assert is_jwt(access) and access != pat
    whoami = label_studio.api("GET", "/api/current-user/whoami", headers={"Authorization": f"Bearer {access}"})
    assert whoami.json()["email"] == "e2e@example.com"


def test_unreachable_ml_backend_is_refused_with_a_clear_error(label_studio: LabelStudio, project: dict):
    """LS 1.23 calls GET /health synchronously and answers 400 "Validation error" with
    non_field_errors: "Can't connect to ML backend <url>, health check failed. ... Connection refused";
    no ML backend row is left behind."""
    dead_url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(LabelStudioError) as refused:
        label_studio.connect_ml_backend(project["id"], dead_url)
    message = str(refused.value)
    assert "-> 400" in message
    assert f"Can't connect to ML backend {dead_url}, health check failed" in message
    assert label_studio.list_ml_backends(project["id"]) == []


def test_retrieve_predictions_sends_all_selected_tasks_in_one_predict_call(
    label_studio: LabelStudio, project: dict, task_ids: list[int], stub_backend: StubBackend
):
    ml = label_studio.connect_ml_backend(project["id"], stub_backend.url)
    assert stub_backend.paths()[:2] == ["/health", "/setup"]
    assert label_studio.get_ml_backend(ml["id"])["state"] == "CO"

    answer = label_studio.retrieve_predictions(project["id"], task_ids)
    assert answer["processed_items"] == 3

    predict_calls = stub_backend.bodies("/predict")
    assert len(predict_calls) == 1
    assert [t["id"] for t in predict_calls[0]["tasks"]] == task_ids
    predictions = label_studio.list_predictions(project_id=project["id"])
    assert sorted(p["task"] for p in predictions) == task_ids
    assert {p["model_version"] for p in predictions} == {"stub-1"}
    beijing = label_studio.list_predictions(task_id=task_ids[0])
    assert [r["value"]["text"] for r in beijing[0]["result"]] == ["北京"]


def test_start_training_posts_start_training_to_the_webhook(
    label_studio: LabelStudio, project: dict, stub_backend: StubBackend
):
    ml = label_studio.connect_ml_backend(project["id"], stub_backend.url)
    label_studio.start_training(ml["id"])
    actions = [body.get("action") for body in stub_backend.bodies("/webhook")]
    assert "START_TRAINING" in actions


def test_basic_auth_is_sent_to_the_backend(label_studio: LabelStudio, project: dict, stub_backend: StubBackend):
    label_studio.connect_ml_backend(project["id"], stub_backend.url, auth=("ls", "s3cret"))
    expected = "Basic " + base64.b64encode(b"ls:s3cret").decode()
    assert all(headers.get("Authorization") == expected for _, _, headers in stub_backend.calls)
