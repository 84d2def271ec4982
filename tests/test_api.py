"""The HTTP API through Flask's test client, with a real (tiny, trained) UIE behind it."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from conftest import SHARED, install_model
from corpus import LABEL_CONFIG
from my_ml_backend import UIEBackend
from uie_backend import lineages, registry
from uie_backend.server import create_app

PAYLOADS = SHARED / "docs" / "label-studio-payloads"


@pytest.fixture
def app(backend_env, trained_checkpoint):
    install_model(trained_checkpoint, backend_env)
    app = create_app(UIEBackend)
    yield app
    app.extensions["uie_jobs"].wait_idle(120)


@pytest.fixture
def client(app):
    return app.test_client()


def predict(client, tasks, label_config=LABEL_CONFIG, **extra):
    return client.post("/predict", json={"tasks": tasks, "label_config": label_config, "project": "1.1", **extra})


def test_health_and_setup_answer_without_loading_the_model(client, backend_env):
    health = client.get("/health")
    assert health.status_code == 200 and health.json["status"] == "UP"
    setup = client.post("/setup", json={"project": "3.1795936584", "schema": LABEL_CONFIG,
                                         "hostname": "http://localhost:8080", "access_token": "x" * 40})
    assert setup.status_code == 200
    assert setup.json["model_version"] == json.loads((backend_env.model_best / "uie_meta.json").read_text())["version"]


def test_setup_rejects_a_config_without_labels(client):
    answer = client.post("/setup", json={"project": "1.1", "schema": "<View><Text name='t' value='$t'/></View>"})
    assert answer.status_code == 400
    assert "Labels" in answer.json["detail"]


def test_predict_returns_one_prediction_per_task_in_order_with_exact_offsets(client):
    texts = ["王五昨天去了深圳出差。", "今天天气不错。", "李四在腾讯工作了三年。"]
    answer = predict(client, [{"id": i, "data": {"text": t}} for i, t in enumerate(texts)])
    assert answer.status_code == 200
    results = answer.json["results"]
    assert len(results) == len(texts)
    found = [{(r["value"]["labels"][0], r["value"]["text"]) for r in res["result"]} for res in results]
    assert ("人名", "王五") in found[0] and ("地名", "深圳") in found[0]
    assert ("组织", "腾讯") in found[2]
    for text, res in zip(texts, results):
        assert res["model_version"] == answer.json["model_version"]
        assert 0.0 <= res["score"] <= 1.0
        for region in res["result"]:
            assert region["from_name"] == "label" and region["to_name"] == "text" and region["type"] == "labels"
            assert text[region["value"]["start"]:region["value"]["end"]] == region["value"]["text"]
            assert 0.0 < region["score"] <= 1.0


def test_predict_parses_the_label_config_once(client, monkeypatch):
    """The limits check's schema is the model's: a request parses its config once, not twice."""
    import my_ml_backend
    from uie_backend import labelconfig, limits
    parsed = []

    def counting_parse(*args, **kwargs):
        parsed.append(args[0])
        return labelconfig.parse_label_config(*args, **kwargs)

    monkeypatch.setattr(limits, "parse_label_config", counting_parse)
    monkeypatch.setattr(my_ml_backend, "parse_label_config", counting_parse)
    answer = predict(client, [{"id": 1, "data": {"text": "王五昨天去了深圳出差。"}}])
    assert answer.status_code == 200 and answer.json["results"][0]["result"]
    assert parsed == [LABEL_CONFIG]


def test_a_config_with_other_names_and_field_is_served(client):
    config = ('<View><Text name="doc" value="$content"/>'
              '<Labels name="ner" toName="doc"><Label value="人名"/><Label value="地名"/></Labels></View>')
    answer = predict(client, [{"id": 1, "data": {"content": "王五昨天去了深圳出差。"}}], label_config=config)
    regions = answer.json["results"][0]["result"]
    assert regions and all(r["from_name"] == "ner" and r["to_name"] == "doc" for r in regions)
    assert {r["value"]["labels"][0] for r in regions} <= {"人名", "地名"}


def test_a_bad_task_gets_an_empty_prediction_and_a_named_error_while_the_others_are_predicted(client):
    tasks = [{"id": 1, "data": {"text": "王五昨天去了深圳出差。"}}, {"id": 2, "data": {"body": "x"}},
             {"id": 3, "data": {"text": 42}}, {"id": 4, "data": {"text": ""}}, {"id": 5, "data": {"text": "😀🀄𠀀\r\n"}}]
    answer = predict(client, tasks)
    assert answer.status_code == 200
    results = answer.json["results"]
    assert len(results) == 5 and results[0]["result"]
    assert results[1]["result"] == [] and results[2]["result"] == [] and results[3]["result"] == []
    errors = {e["task"]: e for e in answer.json["errors"]}
    assert errors[2]["field"] == "data.text" and "missing" in errors[2]["error"]
    assert errors[3]["field"] == "data.text" and "string" in errors[3]["error"]
    assert set(errors) == {2, 3}


@pytest.mark.parametrize("body, expected", [
    (b"{not json", "JSON object"),
    (b"[1, 2]", "JSON object"),
    (json.dumps({"tasks": "nope", "label_config": LABEL_CONFIG}).encode(), "tasks"),
    (json.dumps({"tasks": [{"id": 1, "data": {"text": "x"}}]}).encode(), "label_config"),
    (json.dumps({"tasks": [{"id": 1, "data": {"text": "x"}}], "label_config": "<View"}).encode(), "XML"),
])
def test_malformed_predict_requests_get_a_400_with_a_json_reason(client, body, expected):
    answer = client.post("/predict", data=body, content_type="application/json")
    assert answer.status_code == 400
    assert expected in answer.json["detail"]


def test_empty_task_list_is_an_empty_answer(client):
    answer = predict(client, [])
    assert answer.status_code == 200 and answer.json["results"] == []


def test_predictions_are_complete_and_only_interactive_ones_leave_out_what_the_annotator_has(client):
    text = "王五昨天去了深圳出差。"
    region = lambda start, end, label: {"from_name": "label", "to_name": "text", "type": "labels",  # noqa: E731
                                        "value": {"start": start, "end": end, "text": text[start:end], "labels": [label]}}
    annotated = {"id": 1, "data": {"text": text}, "annotations": [{"result": [region(0, 2, "人名")]}],
                 "drafts": [{"result": [region(6, 8, "地名")]}]}
    spans = lambda answer: {(r["value"]["start"], r["value"]["end"]) for r in answer.json["results"][0]["result"]}  # noqa: E731
    plain = spans(predict(client, [{"id": 1, "data": {"text": text}}]))
    assert plain >= {(0, 2), (6, 8)}
    # an annotated task's prediction is the model's whole opinion: what Label Studio stores and compares
    assert spans(predict(client, [annotated])) == plain
    # Auto-Annotation (params.context) never proposes a span the annotator already has, whatever its label;
    # Label Studio 1.23 may send the context's regions without a to_name
    context = {"result": [region(0, 2, "组织"), {"type": "labels", "value": {"start": 6, "end": 8}}]}
    assert spans(predict(client, [annotated], params={"context": context})) == plain - {(0, 2), (6, 8)}


def test_the_recorded_label_studio_requests_are_answered(client):
    """Shapes recorded from a real Label Studio 1.23.2 (../shared/docs/label-studio-payloads)."""
    if not PAYLOADS.is_dir():
        pytest.fail(f"recorded payloads not found at {PAYLOADS}")
    for name in ("setup_request.json", "predict_request.json", "interactive_predict_request.json"):
        recorded = json.loads((PAYLOADS / name).read_text(encoding="utf-8"))
        answer = client.post(recorded.get("path", "/predict"), json=recorded["json"])
        assert answer.status_code == 200, (name, answer.json)
        if "tasks" in recorded["json"]:
            assert len(answer.json["results"]) == len(recorded["json"]["tasks"])
    event = json.loads((PAYLOADS / "webhook_annotation_created.json").read_text(encoding="utf-8"))
    started = time.perf_counter()
    answer = client.post("/webhook", json=event["json"])
    assert answer.status_code == 200 and answer.json["status"] == "ignored"
    assert time.perf_counter() - started < 0.5


def test_start_training_without_a_reachable_label_studio_fails_the_job_with_an_actionable_message(app, client):
    recorded = json.loads((PAYLOADS / "training_request.json").read_text(encoding="utf-8"))["json"]
    client.post("/setup", json={"project": f"{recorded['project']['id']}.1", "schema": LABEL_CONFIG,
                                "hostname": "http://127.0.0.1:9", "access_token": "secret-token-123"})
    # a later /setup without an address and token (a probe) keeps the ones Label Studio sent
    assert client.post("/setup", json={"project": f"{recorded['project']['id']}.2", "schema": LABEL_CONFIG}).status_code == 200
    started = time.perf_counter()
    answer = client.post("/webhook", json=recorded)
    assert answer.status_code == 201 and time.perf_counter() - started < 1.0
    assert app.extensions["uie_jobs"].wait_idle(120)
    job = client.get("/training").json["recent"][0]
    assert job["state"] == "failed"
    assert "cannot reach Label Studio at http://127.0.0.1:9" in job["error"] and "LABEL_STUDIO_URL" in job["error"]
    assert "secret-token-123" not in json.dumps(job) + Path(job["dir"], "train.log").read_text()
    assert client.post("/predict", json={"tasks": [{"id": 1, "data": {"text": "王五去了深圳。"}}],
                                         "label_config": LABEL_CONFIG}).status_code == 200


def test_versions_lists_a_projects_versions_and_asks_for_the_project_when_none_is_named(client, backend_env,
                                                                                       trained_checkpoint):
    lineage = lineages.project_dir(backend_env, 1)
    version = registry.add(trained_checkpoint, lineage).id
    registry.activate(version, lineage)
    for method in (client.get, client.post):  # Label Studio sends the project in a JSON body, even on GET
        answer = method("/versions", json={"project": "1.1795936584"})
        assert answer.status_code == 200 and answer.json["versions"] == [version] == [answer.json["model_version"]]
    assert client.get("/versions?project=2").json["versions"] == []
    unnamed = client.get("/versions").json
    assert unnamed["versions"] == [] and unnamed["projects"] == [1] and "project" in unnamed["detail"]
    assert client.post(f"/versions/{version}/activate").status_code == 400  # which project's?


def test_without_any_model_predict_says_where_to_put_one(backend_env):
    client = create_app(UIEBackend).test_client()
    assert client.get("/health").status_code == 200
    answer = predict(client, [{"id": 1, "data": {"text": "王五去了深圳。"}}])
    assert answer.status_code == 503
    assert "model_best" in answer.json["detail"] and "UIE_MODEL" in answer.json["detail"]


def test_basic_auth_guards_everything_but_label_studios_plain_project_webhooks(backend_env, trained_checkpoint,
                                                                                monkeypatch):
    install_model(trained_checkpoint, backend_env)
    monkeypatch.setenv("BASIC_AUTH_USER", "ml")
    monkeypatch.setenv("BASIC_AUTH_PASS", "s3cret")
    client = create_app(UIEBackend).test_client()
    good = {"Authorization": "Basic " + base64.b64encode(b"ml:s3cret").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"ml:wrong").decode()}
    assert client.get("/health").status_code == 401
    assert client.get("/health", headers=bad).status_code == 401
    assert client.get("/health", headers=good).status_code == 200
    assert client.post("/webhook", json={"action": "ANNOTATION_CREATED"}).status_code == 200
    assert client.post("/webhook", json={"action": "START_TRAINING", "project": {}}).status_code == 401


def test_auto_training_starts_one_run_after_every_n_annotations_outside_the_webhook(backend_env, trained_checkpoint,
                                                                                    monkeypatch):
    install_model(trained_checkpoint, backend_env)
    monkeypatch.setenv("UIE_AUTO_TRAIN_EVERY", "3")
    monkeypatch.setenv("UIE_AUTO_TRAIN_DELAY", "0.5")
    app = create_app(UIEBackend)
    client = app.test_client()
    client.post("/setup", json={"project": "4.1", "schema": LABEL_CONFIG, "hostname": "http://127.0.0.1:9",
                                "access_token": "t" * 40})
    event = {"action": "ANNOTATION_CREATED", "project": {"id": 4, "label_config": LABEL_CONFIG},
             "annotation": {"id": 1, "result": []}, "task": {"id": 1}}
    statuses = []
    for _ in range(4):
        started = time.perf_counter()
        statuses.append(client.post("/webhook", json=event).json["status"])
        assert time.perf_counter() - started < 0.5
    # the 3rd event schedules the run, the 4th (inside the delay) only pushes it back: one run for the burst
    assert statuses == ["counted", "counted", "auto-training scheduled", "auto-training scheduled"]
    assert client.get("/training").json["recent"] == [] and not client.get("/training").json["running"]
    time.sleep(1.0)
    assert app.extensions["uie_jobs"].wait_idle(120)
    jobs = client.get("/training").json["recent"]
    assert len(jobs) == 1 and jobs[0]["project"] == "4"
    assert "cannot reach Label Studio" in jobs[0]["error"]  # it ran: pulling from the (dead) Label Studio


def test_per_label_thresholds_and_the_region_cap_shape_the_pre_annotations(backend_env, trained_checkpoint,
                                                                           monkeypatch):
    install_model(trained_checkpoint, backend_env)
    task = [{"id": 1, "data": {"text": "李四在腾讯工作了三年。"}}]
    everything = predict(create_app(UIEBackend).test_client(), task).json["results"][0]["result"]
    labels = {r["value"]["labels"][0] for r in everything}
    assert labels == {"人名", "组织"}

    monkeypatch.setenv("UIE_LABEL_THRESHOLDS", "人名=0.9999999, 组织=0.2")
    no_people = predict(create_app(UIEBackend).test_client(), task).json["results"][0]["result"]
    assert {r["value"]["labels"][0] for r in no_people} == {"组织"}

    monkeypatch.setenv("UIE_LABEL_THRESHOLDS", "")
    monkeypatch.setenv("UIE_MAX_REGIONS", "1")
    capped = predict(create_app(UIEBackend).test_client(), task).json["results"][0]
    best = max(r["score"] for r in everything)
    assert [r["score"] for r in capped["result"]] == [best]
    assert capped["score"] == best  # a task's score is its least confident region's


def test_a_malformed_threshold_setting_fails_at_start_up_with_its_name(backend_env, monkeypatch):
    monkeypatch.setenv("UIE_LABEL_THRESHOLDS", "人名:0.5")
    with pytest.raises(ValueError, match="UIE_LABEL_THRESHOLDS"):
        create_app(UIEBackend)


def test_a_prediction_past_the_time_limit_stops_with_a_503_that_names_the_setting(backend_env, trained_checkpoint,
                                                                                  monkeypatch):
    install_model(trained_checkpoint, backend_env)
    monkeypatch.setenv("UIE_PREDICT_TIMEOUT", "0.001")  # over after the first slice of any batch
    client = create_app(UIEBackend).test_client()
    many = [{"id": i, "data": {"text": f"李四第{i}次在腾讯工作。"}} for i in range(400)]
    answer = predict(client, many)
    assert answer.status_code == 503 and answer.json["error"] == "prediction time limit", answer.json
    assert "UIE_PREDICT_TIMEOUT=0.001" in answer.json["detail"] and "fewer tasks" in answer.json["detail"]
    one = predict(client, many[:1])  # a single slice always runs: one task is never refused
    assert one.status_code == 200 and len(one.json["results"]) == 1

    monkeypatch.setenv("UIE_PREDICT_TIMEOUT", "0")  # no limit
    assert len(predict(create_app(UIEBackend).test_client(), many).json["results"]) == len(many)
