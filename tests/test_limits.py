"""Every request gets an HTTP answer, whatever its size, method or path, and each per-input limit answers a
413 at once (issue 13: a 5 MB POST to /versions reset the connection; a 1 MB text to /predict computed past
20 s; a 2 MB labeling config to /train got no answer in 30 s).

The connection reset only shows on a real socket, so the first test serves the app with gunicorn, as
`make serve` does; the others use Flask's test client.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SHARED, install_model
from corpus import LABEL_CONFIG
from my_ml_backend import UIEBackend
from uie_backend import limits
from uie_backend.config import Settings
from uie_backend.labelconfig import parse_label_config
from uie_backend.server import create_app

REPO = Path(__file__).resolve().parent.parent
PATHS = ["/", "/health", "/setup", "/predict", "/webhook", "/train", "/versions", "/versions/v1/activate",
         "/training", "/is_training", "/preannotate", "/preannotation", "/nope"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]
TEXT = '<Text name="text" value="$text"/>'


def labels_config(n: int, comment: int = 0) -> str:
    labels = "".join(f"<Label value='标签{i}'/>" for i in range(n))
    return f"<View><!-- {'x' * comment} -->{TEXT}<Labels name='label' toName='text'>{labels}</Labels></View>"


def http(port: int, method: str, path: str, body: bytes, chunked: bool = False) -> tuple[int, dict]:
    """Send the whole request, then read the whole answer: a reset shows as ConnectionError (and fails)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
        conn.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json"
                     f"\r\n{framing}\r\n\r\n".encode())
        step = 1 << 16
        for begin in range(0, len(body), step):
            piece = body[begin:begin + step]
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            conn.sendall(b"0\r\n\r\n")
        answer = b""
        while chunk := conn.recv(1 << 16):
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


def assert_answered(method: str, path: str, status: int, answer: dict) -> None:
    if status == 200:
        assert method == "GET" and path in ("/", "/health", "/training", "/is_training"), (method, path)
    else:
        assert status in (404, 405, 413), (method, path, status, answer)
        assert set(answer) == {"error", "detail"}, answer


@pytest.fixture(scope="module")
def gunicorn_port(tmp_path_factory):
    """The backend under gunicorn (`make serve`'s command), no model, a 1 MB body limit."""
    tmp = tmp_path_factory.mktemp("served")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "UIE_CHECKPOINT_DIR": str(tmp / "checkpoint"), "UIE_DATA_DIR": str(tmp / "data"),
           "UIE_MODEL": "", "UIE_DEFAULT_MODEL": str(tmp / "none"), "UIE_DEVICE": "cpu", "UIE_MAX_BODY_MB": "1",
           "HOST": "127.0.0.1", "PORT": str(port), "WORKERS": "1", "REDIS_URL": ""}
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", "_wsgi:app"],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, "gunicorn exited"
                time.sleep(0.3)
        yield port
    finally:
        server.terminate()
        server.wait(30)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_huge_bodies_get_an_answer_on_a_real_socket_on_every_route_and_method(gunicorn_port, chunked):
    """5 MB (five times the limit) to every path with every method: always a JSON answer, never a reset (a GET
    of a route that reads no body answers 200)."""
    huge = b'{"project": 1, "x": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    for path in PATHS:
        for method in METHODS:
            status, answer = http(gunicorn_port, method, path, huge, chunked)
            assert_answered(method, path, status, answer)
    assert http(gunicorn_port, "POST", "/versions", huge, chunked)[0] == 413  # the fuzzing run's request
    assert http(gunicorn_port, "GET", "/versions", b'{"project": 1}', chunked) == (
        200, {"base": "none", "details": [], "model_version": "none", "project": 1, "versions": []})


@pytest.fixture
def client(backend_env, random_checkpoint, monkeypatch):
    for name, value in {"UIE_MAX_BODY_MB": "1", "UIE_MAX_CONFIG_KB": "16", "UIE_MAX_LABELS": "20",
                        "UIE_MAX_TEXT_CHARS": "3000", "UIE_MAX_TASKS": "50"}.items():
        monkeypatch.setenv(name, value)
    install_model(random_checkpoint, backend_env)
    app = create_app(UIEBackend)
    yield app.test_client()
    assert app.extensions["uie_jobs"].wait_idle(60)
    status = app.extensions["uie_jobs"].status()
    assert not status["running"] and not status["recent"], status  # nothing over a limit started a job


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", METHODS)
def test_huge_bodies_on_every_route_and_method_are_json_4xx(client, path, method):
    response = client.open(path, method=method, data=b'{"x": "' + b"x" * (2 * 1024 * 1024) + b'"}',
                           content_type="application/json")
    assert_answered(method, path, response.status_code, response.get_json())


def config_requests(config: str) -> list[tuple[str, dict]]:
    task = {"id": 1, "data": {"text": "王五去了深圳。"}}
    return [("/predict", {"tasks": [task], "label_config": config}), ("/setup", {"schema": config, "project": "1.1"}),
            ("/webhook", {"action": "START_TRAINING", "project": {"id": 1, "label_config": config}}),
            ("/train", {"annotations": [task], "label_config": config, "project": 1})]


@pytest.mark.parametrize("config, setting", [(labels_config(2, comment=20_000), "UIE_MAX_CONFIG_KB=16"),
                                             (labels_config(21), "UIE_MAX_LABELS=20")], ids=["size", "labels"])
def test_labeling_configs_over_a_limit_are_413_on_every_route_that_takes_one(client, config, setting):
    for path, payload in config_requests(config):
        response = client.post(path, json=payload)
        assert response.status_code == 413, (path, response.get_json())
        assert response.get_json()["error"] == "too large" and setting in response.get_json()["detail"]


def test_configs_at_the_limits_are_served(client):
    config = labels_config(20, comment=14_000)
    assert len(config.encode()) < 16 * 1024
    for path, payload in config_requests(config)[:2]:
        assert client.post(path, json=payload).status_code == 200, path


def test_a_text_over_the_limit_costs_only_its_own_task_a_prediction_at_once_naming_the_setting(client):
    started = time.monotonic()
    tasks = [{"id": 1, "data": {"text": "王五"}}, {"id": 7, "data": {"text": "李四在腾讯工作。" * 400}}]
    response = client.post("/predict", json={"tasks": tasks, "label_config": LABEL_CONFIG})
    assert time.monotonic() - started < 5
    answer = response.get_json()
    assert response.status_code == 200 and len(answer["results"]) == 2  # Label Studio keeps the other task's
    assert answer["results"][1] == {"result": [], "score": 0.0, "model_version": answer["model_version"]}
    [error] = answer["errors"]
    assert error["task"] == 7 and error["field"] == "data.text" and "UIE_MAX_TEXT_CHARS=3,000" in error["error"]
    tasks[1]["data"]["text"] = "李四在腾讯工作。" * 375  # 3,000 characters: served
    assert "errors" not in client.post("/predict", json={"tasks": tasks, "label_config": LABEL_CONFIG}).get_json()


def test_too_many_tasks_are_refused_at_once(client):
    tasks = [{"id": i, "data": {"text": "王五"}} for i in range(51)]
    response = client.post("/predict", json={"tasks": tasks, "label_config": LABEL_CONFIG})
    assert response.status_code == 413 and "UIE_MAX_TASKS=50" in response.get_json()["detail"]
    assert client.post("/predict", json={"tasks": tasks[:50], "label_config": LABEL_CONFIG}).status_code == 200


def test_a_config_of_100k_labels_parses_in_about_a_second():
    """It took 50 s (de-duplicating labels in a list): the 2 MB config of the fuzzing run got no answer in 30 s."""
    started = time.monotonic()
    schema = parse_label_config(labels_config(100_000))
    assert len(schema.spans[0].labels) == 100_000 and time.monotonic() - started < 5


def test_an_annotation_webhook_with_a_config_over_the_limit_is_413(backend_env, monkeypatch):
    """With auto-training on, annotation webhooks keep the project's config until the run: its size is checked."""
    monkeypatch.setenv("UIE_AUTO_TRAIN_EVERY", str(10**9))
    monkeypatch.setenv("UIE_MAX_CONFIG_KB", "16")
    client = create_app(UIEBackend).test_client()
    event = {"action": "ANNOTATION_CREATED", "project": {"id": 3, "label_config": labels_config(2, comment=20_000)}}
    response = client.post("/webhook", json=event)
    assert response.status_code == 413 and "UIE_MAX_CONFIG_KB=16" in response.get_json()["detail"]
    event["project"]["label_config"] = LABEL_CONFIG
    assert client.post("/webhook", json=event).get_json()["status"] == "counted"


@pytest.mark.parametrize("name", ["UIE_MAX_BODY_MB", "UIE_MAX_CONFIG_KB", "UIE_MAX_LABELS", "UIE_MAX_TEXT_CHARS",
                                  "UIE_MAX_TASKS"])
def test_a_limit_of_zero_fails_at_start_up(name):
    from uie_backend.config import Settings

    with pytest.raises(ValueError, match=f"{name} must be at least 1"):
        Settings.from_env({name: "0"})


def test_the_duee_config_with_186_labels_and_121_predicates_is_within_the_label_limit():
    """Predicates are asked of the entities found, not of every text: they do not count against UIE_MAX_LABELS."""
    config = (SHARED / "data" / "events" / "labeling_config.xml").read_text(encoding="utf-8")
    schema = limits.label_config(config, Settings.from_env({}))
    assert (len(schema.labels), len(schema.predicates)) == (186, 121)
