"""Every endpoint fuzzed with thousands of malformed requests (hypothesis, through Flask's test client).

A tiny, randomly initialised UIE is served: this is about robustness, not accuracy. What must hold for every
request: no 5xx; every non-2xx answer is a 4xx whose body is a JSON object with "error" and "detail"; a 200
from /predict holds exactly one result per task. Training endpoints start real jobs, so they are only fuzzed
with payloads that must be rejected before a job starts (checked: no job ran), plus a few valid-shaped ones.
The module prints one summary line, e.g. "fuzz: 3012 requests, 2871 rejected with 4xx, 0 5xx".
"""

from __future__ import annotations

import base64
import json
import os
import random
from collections import Counter
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import install_model
from corpus import LABEL_CONFIG
from my_ml_backend import UIEBackend
from uie_backend.server import create_app

MAX_BODY_MB = 1
STATS: Counter = Counter()
FUZZ = settings(deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])

POST_PATHS = ["/predict", "/setup", "/webhook", "/train", "/versions", "/versions/v1/activate", "/preannotate"]
GET_PATHS = ["/", "/health", "/training", "/is_training", "/versions", "/preannotation"]
CONTENT_TYPES = [None, "application/json", "text/plain", "application/x-www-form-urlencoded",
                 "multipart/form-data", "multipart/form-data; boundary=x", "application/json; charset=utf-16",
                 "application/xml", "*/*", "\u00e9/\u00e9"]

# --- label configs -------------------------------------------------------------------------------------

LABELS = '<Labels name="label" toName="text"><Label value="人名"/><Label value="地名"/></Labels>'
TEXT = '<Text name="text" value="$text"/>'


def billion_laughs(levels: int = 9) -> str:
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol%d;" % (i - 1)) * 10}">' for i in range(1, levels + 1))
    return (f'<?xml version="1.0"?><!DOCTYPE View [{entities}]><View>{TEXT}'
            f'<Labels name="label" toName="text"><Label value="&lol{levels};"/></Labels></View>')


INVALID_CONFIGS = [
    "", "   ", "<View", "<View></Labels>", "not xml at all", "<View/>", f"<View>{TEXT}</View>",
    "<View><Labels name='l' toName='text'><Label value='a'/></Labels></View>",          # Labels without Text
    f"<View>{TEXT}<Labels toName='text'><Label value='a'/></Labels></View>",             # Labels without name
    f"<View>{TEXT}<Labels name='l'><Label value='a'/></Labels></View>",                  # without toName
    f"<View>{TEXT}<Labels name='l' toName='text'><Label/></Labels></View>",              # Label without value
    f"<View>{TEXT}<Labels name='l' toName='text'></Labels></View>",                       # no Label at all
    f"<View><Text name='text' value='text'/>{LABELS}</View>",                             # value not $field
    billion_laughs(),
    '<?xml version="1.0"?><!DOCTYPE v [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    f'<View>{TEXT}<Labels name="label" toName="text"><Label value="&x;"/></Labels></View>',
    '<!DOCTYPE v [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]><View/>',
    ('<?xml version="1.0" encoding="UTF-16LE"?>' + billion_laughs().split("?>", 1)[1]).encode("utf-16-le").decode(),
    "<View>" * 5000 + "</View>" * 5000,                                                 # deeper than libxml2 allows
    f"<View>{TEXT}{LABELS}" + "<View>" * 300 + "</View>" * 300 + "</View>",
    "<View>\x00</View>", "<View>\ud800</View>",
    f"<View>{TEXT}<Relations><Relation value='父亲'/></Relations>"                         # Relations, no Labels
    "<Choices name='c' toName='text'><Choice value='a'/></Choices></View>",
    "<View><Image name='img' value='$i'/><Choices name='c' toName='img'><Choice value='a'/></Choices></View>",
    f"<View>{TEXT}{LABELS}<Image name='img' value='$i'/>"                                  # Choices on non-text
    "<Choices name='c' toName='img'><Choice value='a'/></Choices></View>",
    f"<View>{TEXT}<Choices name='c' toName='text'><Choice value='a,b'/></Choices></View>",  # breaks prefix[a,b]
    f"<View>{TEXT}<Choices name='c' toName='text' perRegion='true'><Choice value='a'/></Choices></View>",
    f"<View>{TEXT}<Labels name='l' toName='text'><Label value='PER' predicted_values='人名'/>"       # two labels,
    "<Label value='Person' predicted_values='人名'/></Labels></View>",                               # one prompt
    f"<View>{TEXT}<Labels name='l' toName='text'><Label value='PER' predicted_values=' '/></Labels></View>",
    f"<View>{TEXT}<Labels name='l' toName='text'><Label value=' '/></Labels></View>",              # empty prompt
]
# Parsed fine (so /setup and training take them), but /predict cannot serve them: a 400 there, never a 500.
PREDICT_REFUSED_CONFIGS = [
    f"<View>{TEXT}<Labels name='l' toName='text'><Label value='{'人' * 600}'/></Labels></View>",  # no room for text
    f"<?xml version='1.0' encoding='UTF-8'?><View>{TEXT}{LABELS}</View>",  # label-studio-ml's parser refuses these
    f"  <?xml version='1.0'?><View>{TEXT}{LABELS}</View>",
]
VALID_CONFIGS = [
    LABEL_CONFIG,
    f"<View>{TEXT}{LABELS}</View>",
    f"<view><text name='text' value='$text'/><labels name='label' toName='text'><label value='x'/></labels></view>",
    f"<View><!-- {'x' * 200_000} -->{TEXT}{LABELS}</View>",                            # huge but fine
    f"<View>{TEXT}<Text name='t2' value='$other'/>"
    "<Labels name='l2' toName='text,t2,img'><Label value='组织'/></Labels><Image name='img' value='$i'/></View>",
    f"<?xml version='1.0'?><View>{TEXT}{LABELS}<Choices name='c' toName='text'/></View>",
    f"<View>{TEXT}<Choices name='sentiment' toName='text'><Choice value='正向'/><Choice value='负向'/></Choices></View>",
    f"<View>{TEXT}<Labels name='label' toName='text'><Label value='PER' predicted_values='人名'/></Labels>"
    "<Relations><Relation value='dad' predicted_values='父亲'/></Relations><Choices name='s' toName='text'>"
    "<Choice value='pos' predicted_values='正向'/><Choice value='a,b' predicted_values='负向'/></Choices></View>",
    f"<View>{TEXT}{LABELS}<Relations><Relation value='父亲'/></Relations>"
    "<Choices name='r' toName='text' perRegion='true' choice='multiple'><Choice value='好'/></Choices></View>",
]


@st.composite
def generated_configs(draw) -> str:
    """Configs assembled from random parts: names, fields, label values and the prompts they name (any unicode,
    any length; two labels on one prompt, empty ones, lists)."""
    name = draw(st.sampled_from(["text", "t", ""]) | st.text(max_size=6))
    value = draw(st.sampled_from(["$text", "$content", "text", "$", ""]) | st.text(max_size=6).map("${}".format))
    to_name = draw(st.sampled_from([name, "", f"x,{name}", "nope"]))
    labels = draw(st.lists(st.sampled_from(["人名", "地名", " ", "<&>"]) | st.text(max_size=12), max_size=4))
    prompts = draw(st.lists(st.none() | st.sampled_from(["人名", "", " ", "人名,地名"]) | st.text(max_size=12),
                            min_size=len(labels), max_size=len(labels)))
    label_xml = "".join(f"<Label value={quoteattr(label)}"
                        + ("" if prompt is None else f" predicted_values={quoteattr(prompt)}") + "/>"
                        for label, prompt in zip(labels, prompts))
    return (f"<View><Text name={quoteattr(name)} value={quoteattr(value)}/>"
            f"<Labels name='label' toName={quoteattr(to_name)}>{label_xml}</Labels></View>")


def json_values(max_leaves: int = 12):
    keys = st.sampled_from(["tasks", "label_config", "params", "context", "project", "schema", "hostname",
                            "access_token", "action", "annotations", "data", "text", "id", "result", "value",
                            "start", "end", "to_name", "drafts", "was_cancelled"]) | st.text(max_size=8)
    scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
               | st.sampled_from(["", "START_TRAINING", "1.1", "²", "9" * 5000, "../..", "<View/>"]))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
                        max_leaves=max_leaves)


ANY_CONFIG = (st.sampled_from(VALID_CONFIGS) | st.sampled_from(INVALID_CONFIGS) | st.sampled_from(PREDICT_REFUSED_CONFIGS)
              | generated_configs() | json_values(4))
INVALID_CONFIG = st.sampled_from(INVALID_CONFIGS) | json_values(4).filter(lambda v: not isinstance(v, str))

TEXTS = st.sampled_from(["王五昨天去了深圳出差。", "", " ", "😀🀄𠀀\r\n", "李四在腾讯工作了三年。" * 30]) | st.text(max_size=200)
REGION = st.fixed_dictionaries({}, optional={
    "to_name": st.sampled_from(["text", "t2"]) | json_values(3),
    "value": st.fixed_dictionaries({}, optional={"start": st.integers(-2, 20) | json_values(2),
                                                 "end": st.integers(-2, 20) | json_values(2)}) | json_values(3),
})
ANNOTATIONS = json_values(6) | st.lists(st.fixed_dictionaries({}, optional={
    "result": st.lists(REGION, max_size=3) | json_values(3), "was_cancelled": json_values(1)}) | json_values(3),
    max_size=3)
TASK = st.fixed_dictionaries({}, optional={
    "id": st.integers() | json_values(2),
    "data": st.fixed_dictionaries({}, optional={"text": TEXTS | json_values(3), "other": TEXTS}) | json_values(4),
    "annotations": ANNOTATIONS, "drafts": ANNOTATIONS, "predictions": json_values(3),
})
TASKS = st.lists(TASK, min_size=1, max_size=6) | st.lists(json_values(4), max_size=4) | json_values(6)
PARAMS = json_values(6) | st.fixed_dictionaries({"context": st.fixed_dictionaries(
    {}, optional={"result": st.lists(REGION, max_size=4) | json_values(3)}) | json_values(4)})
PROJECT_IDS = st.sampled_from(["1.1", "2.1795936584", "١.1", "²", "9" * 5000, "-1.5", ".", ""]) | json_values(2)

# --- the checks ----------------------------------------------------------------------------------------


def check(response, path: str, sent=None) -> None:
    """The invariants, counted for the summary line."""
    STATS["requests"] += 1
    status = response.status_code
    if status >= 500:
        STATS["5xx"] += 1
    assert status < 500, (path, status, response.get_data()[:2000], repr(sent)[:2000])
    if status >= 400:
        STATS["rejected"] += 1
        body = response.get_json(silent=True)
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and isinstance(body.get("detail"), str), \
            (path, status, response.get_data()[:500])
    elif path == "/predict" and status == 200:
        if isinstance(sent, (bytes, str)):
            sent = json.loads(sent)
        assert isinstance(sent, dict) and isinstance(sent.get("tasks"), list)
        results = response.get_json()["results"]
        assert len(results) == len(sent["tasks"]), (len(results), len(sent["tasks"]))
        assert all(isinstance(r["result"], list) and "model_version" in r for r in results)
        STATS["predicted"] += bool(results)
        STATS["tasks"] += len(results)


def post_json(client, path: str, payload, **kwargs):
    response = client.post(path, data=json.dumps(payload), content_type="application/json", **kwargs)
    check(response, path, payload)
    return response


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    yield
    line = (f"fuzz: {STATS['requests']} requests, {STATS['rejected']} rejected with 4xx, {STATS['5xx']} 5xx "
            f"({STATS['predicted']} /predict answers 200 with results for {STATS['tasks']} tasks)")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown even without -s
            reporter.write_line("")
            reporter.write_line(line)
    else:
        print(line)


@pytest.fixture(autouse=True)
def fuzz_env(backend_env, monkeypatch):
    monkeypatch.setenv("UIE_MAX_BODY_MB", str(MAX_BODY_MB))
    monkeypatch.setenv("UIE_TRAIN_EPOCHS", "1")
    monkeypatch.setenv("UIE_TRAIN_MIN_STEPS", "0")


@pytest.fixture
def app(backend_env, random_checkpoint):
    install_model(random_checkpoint, backend_env)
    app = create_app(UIEBackend)
    yield app
    assert app.extensions["uie_jobs"].wait_idle(300)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def auto_train_app(backend_env, random_checkpoint, monkeypatch):
    """Auto-training on, with an N never reached: every annotation event is counted, none starts a run."""
    monkeypatch.setenv("UIE_AUTO_TRAIN_EVERY", str(10**9))
    install_model(random_checkpoint, backend_env)
    app = create_app(UIEBackend)
    yield app
    assert app.extensions["uie_jobs"].wait_idle(300)


@pytest.fixture
def auth_app(backend_env, random_checkpoint, monkeypatch):
    monkeypatch.setenv("BASIC_AUTH_USER", "ml")
    monkeypatch.setenv("BASIC_AUTH_PASS", "s3cret")
    install_model(random_checkpoint, backend_env)
    app = create_app(UIEBackend)
    yield app
    assert app.extensions["uie_jobs"].wait_idle(300)


def no_job_started(app) -> bool:
    status = app.extensions["uie_jobs"].status()
    return not status["running"] and not status["recent"] and not status["follow_ups"]


# --- fuzzers -------------------------------------------------------------------------------------------

MUTATED_JSON = json_values(10).map(json.dumps).map(str.encode)


@st.composite
def raw_bodies(draw) -> bytes:
    """Bytes: random, truncated JSON, JSON with flipped bytes, invalid UTF-8."""
    kind = draw(st.sampled_from(["binary", "truncated", "flipped", "json"]))
    if kind == "binary":
        return draw(st.binary(max_size=500))
    data = draw(MUTATED_JSON)
    if kind == "truncated":
        return data[:draw(st.integers(0, len(data)))]
    if kind == "flipped" and data:
        data = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    return data


@settings(FUZZ, max_examples=450)
@given(path=st.sampled_from(POST_PATHS), body=raw_bodies(), content_type=st.sampled_from(CONTENT_TYPES))
def test_raw_bodies_of_any_bytes_and_content_type(app, client, path, body, content_type):
    response = client.post(path, data=body, content_type=content_type)
    check(response, path, body)
    assert no_job_started(app)  # no random bytes make a valid training request


@settings(FUZZ, max_examples=350)
@given(path=st.sampled_from(POST_PATHS), payload=json_values(20))
def test_any_json_value_at_the_top_level(app, client, path, payload):
    post_json(client, path, payload)
    assert no_job_started(app)


@settings(FUZZ, max_examples=1000)
@given(tasks=TASKS, label_config=ANY_CONFIG, params=PARAMS, project=PROJECT_IDS,
       extra=st.dictionaries(st.text(max_size=5), json_values(3), max_size=2))
def test_predict_payloads_with_wrong_types_at_every_level(client, tasks, label_config, params, project, extra):
    payload = {**extra, "tasks": tasks, "label_config": label_config, "params": params, "project": project}
    post_json(client, "/predict", payload)


@settings(FUZZ, max_examples=250)
@given(schema=ANY_CONFIG, project=PROJECT_IDS, hostname=json_values(2), token=json_values(2),
       drop=st.sets(st.sampled_from(["schema", "project", "hostname", "access_token"])))
def test_setup_payloads(client, schema, project, hostname, token, drop):
    payload = {"schema": schema, "project": project, "hostname": hostname, "access_token": token}
    post_json(client, "/setup", {k: v for k, v in payload.items() if k not in drop})


ACTIONS = st.sampled_from(["START_TRAINING", "ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED",
                           "ANNOTATIONS_DELETED", "PROJECT_UPDATED", "start_training", "", "ÿ" * 300]) | json_values(3)


@settings(FUZZ, max_examples=350)
@given(action=ACTIONS, project=json_values(4) | st.fixed_dictionaries({}, optional={
    "id": PROJECT_IDS | st.integers(), "label_config": INVALID_CONFIG}), extra=json_values(4))
def test_webhook_payloads_never_start_training_unless_valid(app, client, action, project, extra):
    post_json(client, "/webhook", {"action": action, "project": project, "annotation": extra, "task": extra})
    assert no_job_started(app)


@settings(FUZZ, max_examples=150)
@given(action=ACTIONS, project=st.fixed_dictionaries({"id": PROJECT_IDS | st.integers(),
                                                      "label_config": st.sampled_from(VALID_CONFIGS) | INVALID_CONFIG}))
def test_webhook_annotation_events_with_auto_training_counting(auto_train_app, action, project):
    """Auto-training on: every annotation event is counted per project, whatever its id."""
    app = auto_train_app
    if action == "START_TRAINING" and project["label_config"] in VALID_CONFIGS:
        action = "ANNOTATION_CREATED"  # a valid Start Training would start a job: not what this fuzzes
    post_json(app.test_client(), "/webhook", {"action": action, "project": project})
    assert no_job_started(app)


@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_train_payloads_that_must_be_rejected_before_a_job_starts(app, client, data):
    annotations = data.draw(st.lists(TASK | json_values(3), min_size=1, max_size=4) | json_values(4), "annotations")
    valid_list = isinstance(annotations, list) and bool(annotations)
    # a non-empty list with a usable config would start a job: then the config must be unusable
    config = data.draw(INVALID_CONFIG if valid_list else ANY_CONFIG, "label_config")
    post_json(client, "/train", {"annotations": annotations, "label_config": config,
                                 "project": data.draw(PROJECT_IDS, "project")})
    assert no_job_started(app)


@settings(FUZZ, max_examples=300)
@given(name=st.text(min_size=1, max_size=40) | st.sampled_from(
    ["..", ".", "...", "%2e%2e", "..%2f..%2fetc", "/etc/passwd", "a/b", "a\\b", ".incoming-x", "model_best", "~",
     "%00", "versions", "v" * 200]), encode=st.booleans(), method=st.sampled_from(["POST", "GET", "PUT", "DELETE"]))
def test_activate_with_any_version_name(backend_env, client, name, encode, method):
    before = sorted(os.listdir(backend_env.checkpoint_dir))
    path = f"/versions/{quote(name, safe='') if encode else name}/activate"
    try:
        response = client.open(path, method=method)
    except (ValueError, UnicodeError):  # the test client itself refuses some raw paths: nothing was sent
        return
    check(response, path)
    assert response.status_code != 200
    after = sorted(os.listdir(backend_env.checkpoint_dir))
    assert set(after) <= set(before) | {"versions", ".model_best.lock"}, after  # nothing written but the registry


@settings(FUZZ, max_examples=120)
@given(path=st.sampled_from(GET_PATHS + POST_PATHS + ["/nope", "/predict/x", "//predict", "/%00"]),
       method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
       body=st.binary(max_size=50), auth=st.sampled_from([None, "Basic !!!", "Basic " + base64.b64encode(b"x").decode(),
                                                         "Bearer x", "Basic " + base64.b64encode(b"a:b:c").decode()]))
def test_any_method_on_any_path_with_odd_auth_headers(client, path, method, body, auth):
    response = client.open(path, method=method, data=body, headers={"Authorization": auth} if auth else {})
    if method in ("HEAD", "OPTIONS"):  # answered by Flask itself, with no body
        assert response.status_code < 500
        STATS["requests"] += 1
        STATS["rejected"] += response.status_code >= 400
        return
    check(response, path)


@settings(FUZZ, max_examples=150)
@given(path=st.sampled_from(POST_PATHS + GET_PATHS), body=raw_bodies() | MUTATED_JSON,
       credentials=st.sampled_from([None, b"ml:s3cret", b"ml:wrong", b"ml:", b":s3cret", b"\xff:\xfe"]))
def test_basic_auth_on_any_request(auth_app, path, body, credentials):
    app = auth_app
    headers = {"Authorization": "Basic " + base64.b64encode(credentials).decode()} if credentials else {}
    response = app.test_client().open(path, method="POST" if path in POST_PATHS else "GET", data=body,
                                      headers=headers, content_type="application/json")
    check(response, path, body)
    assert b"s3cret" not in response.get_data()
    if credentials != b"ml:s3cret" and path != "/webhook":
        assert response.status_code == 401
    assert no_job_started(app)


# --- the explicit edge cases: huge, deep, many ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/predict", "/setup", "/webhook", "/train"])
@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
@pytest.mark.parametrize("auth", [False, True])
def test_bodies_over_the_limit_are_413(request, path, content_type, auth):
    """UIE_MAX_BODY_MB (1 here): one byte more is a 413 with a JSON reason, with basic auth on or off
    (with auth on, /webhook reads the body before authenticating, to let plain project webhooks in)."""
    too_big = b'{"tasks": [' + b'"x",' * (MAX_BODY_MB * 1024 * 1024 // 4) + b'"x"]}'
    assert len(too_big) > MAX_BODY_MB * 1024 * 1024
    target = request.getfixturevalue("auth_app").test_client() if auth else request.getfixturevalue("client")
    response = target.post(path, data=too_big, content_type=content_type)
    check(response, path)
    assert response.status_code == (401 if auth and path != "/webhook" else 413)


def test_a_chunked_body_over_the_limit_is_413_and_drained_in_small_pieces(client):
    """No Content-Length (chunked, as gunicorn passes it): werkzeug keeps at most the limit in memory; the rest is
    read in pieces of 64 KiB and discarded (uie_backend/bodies.py), so the client gets the 413 and no reset."""
    import io

    class Counted(io.BytesIO):
        served = largest = 0

        def read(self, size=-1):
            data = super().read(size)
            Counted.served += len(data)
            Counted.largest = max(Counted.largest, len(data))
            return data

    sent = b'{"tasks": ["' + b"x" * (8 * MAX_BODY_MB * 1024 * 1024) + b'"]}'
    response = client.post("/predict", input_stream=Counted(sent), content_type="application/json",
                           headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})
    check(response, "/predict")
    assert response.status_code == 413
    assert Counted.served == len(sent) and Counted.largest <= MAX_BODY_MB * 1024 * 1024


@pytest.mark.parametrize("path", POST_PATHS)
@pytest.mark.parametrize("opener, closer", [(b"[", b"]"), (b'{"a":', b"}")])
def test_json_nested_100k_levels_deep_is_400(client, path, opener, closer):
    deep = b'{"tasks": ' + opener * 100_000 + b"1" * (opener == b'{"a":') + closer * 100_000 + b"}"
    response = client.post(path, data=deep, content_type="application/json")
    check(response, path)
    assert response.status_code == 400


@pytest.mark.parametrize("depth", [500, 900, 960, 980, 990, 995, 999, 1000, 1200])
def test_json_nested_just_under_the_parser_limit_is_still_answered(client, depth):
    """Deep enough to parse, then echoed back (webhook's "action") or walked (predict's tasks): no RecursionError."""
    nested = "[" * depth + "]" * depth
    for path, body in [("/webhook", '{"action": %s}' % nested),
                       ("/predict", '{"tasks": [{"data": {"text": %s}}], "label_config": %s}'
                        % (nested, json.dumps(LABEL_CONFIG))),
                       ("/predict", '{"tasks": [{"data": {"text": "x"}, "annotations": %s}], "label_config": %s,'
                        ' "params": {"context": {"result": [%s]}}}' % (nested, json.dumps(LABEL_CONFIG), nested))]:
        response = client.post(path, data=body, content_type="application/json")
        check(response, path, {"tasks": [None]})  # (not json.loads(body): this test's own stack is deeper)


@pytest.mark.parametrize("config", INVALID_CONFIGS, ids=range(len(INVALID_CONFIGS)))
def test_every_invalid_config_is_a_400_on_every_endpoint_that_takes_one(app, client, config):
    task = {"id": 1, "data": {"text": "王五去了深圳。"}}
    for path, payload in [("/predict", {"tasks": [task], "label_config": config}),
                          ("/setup", {"schema": config, "project": "1.1"}),
                          ("/webhook", {"action": "START_TRAINING", "project": {"id": 1, "label_config": config}}),
                          ("/train", {"annotations": [task], "label_config": config, "project": 1})]:
        assert post_json(client, path, payload).status_code == 400, (path, config[:100])
    assert no_job_started(app)


@pytest.mark.parametrize("config, reason", zip(PREDICT_REFUSED_CONFIGS, ["UIE_MAX_SEQ_LEN", "encoding", "declaration"]))
def test_configs_the_predictor_cannot_serve_are_a_400_not_a_500(client, config, reason):
    answer = post_json(client, "/predict", {"tasks": [{"data": {"text": "王五"}}], "label_config": config})
    assert answer.status_code == 400 and reason in answer.get_json()["detail"]


@pytest.mark.parametrize("config", VALID_CONFIGS, ids=range(len(VALID_CONFIGS)))
def test_every_valid_config_predicts_and_sets_up(client, config):
    tasks = [{"id": 1, "data": {"text": "王五去了深圳。", "other": "李四"}}, {"id": 2, "data": {}}]
    assert post_json(client, "/predict", {"tasks": tasks, "label_config": config}).status_code == 200
    assert post_json(client, "/setup", {"schema": config, "project": "1.1"}).status_code == 200


def test_many_labels_many_tasks_and_long_texts_in_one_request(client):
    labels = "".join(f"<Label value='标签{i}'/>" for i in range(200))
    config = f"<View>{TEXT}<Labels name='label' toName='text'>{labels}</Labels></View>"
    rng = random.Random(7)
    tasks = [{"id": i, "data": {"text": "".join(rng.choice("王五李四深圳腾讯。，ab 😀") for _ in range(rng.randint(0, 60)))}}
             for i in range(64)]
    tasks.append({"id": "long", "data": {"text": "李四在腾讯工作了三年。" * 2000}})  # 22k characters: ~50 windows
    response = post_json(client, "/predict", {"tasks": tasks[:20], "label_config": config})
    assert response.status_code == 200
    response = post_json(client, "/predict", {"tasks": tasks, "label_config": LABEL_CONFIG})
    assert response.status_code == 200


def test_valid_shaped_training_requests_with_garbage_annotations_fail_the_job_not_the_server(app, client):
    """Tasks that are not objects: 400. Objects with garbage inside: accepted (the config is fine), then the job
    rejects them with a DataError naming the problem (not an AttributeError); presses during a run collapse."""
    assert post_json(client, "/train", {"annotations": [1, "x", None, {"a": []}], "label_config": LABEL_CONFIG,
                                        "project": 901}).status_code == 400
    garbage = [[{"data": 5, "annotations": 7}], [{"id": 1, "annotations": [{"result": 5}]}], [{"id": 1}]]
    answers = [post_json(client, "/train", {"annotations": a, "label_config": LABEL_CONFIG, "project": 901})
               for a in garbage]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert answers[1].get_json()["follow_up_queued"] and answers[2].get_json()["follow_up_queued"]
    assert app.extensions["uie_jobs"].wait_idle(300)
    recent = client.get("/training").get_json()["recent"]
    assert [job["state"] for job in recent] == ["failed", "failed"]  # the first run and one follow-up
    assert [job["error"].split(":")[0] for job in recent] == ["DataError", "DataError"], recent
    assert post_json(client, "/predict", {"tasks": [{"data": {"text": "王五"}}], "label_config": LABEL_CONFIG}
                     ).status_code == 200


@pytest.mark.parametrize("project", [-1, -3253811])
def test_a_negative_project_id_names_no_project(app, client, project):
    """-1 reached lineages' ValueError: a 500 on /predict. It names no project, like any other id that is none."""
    task = {"id": 1, "data": {"text": "王五去了深圳。"}}
    assert post_json(client, "/predict", {"tasks": [task], "label_config": LABEL_CONFIG, "project": project}
                     ).status_code == 200
    assert post_json(client, "/setup", {"schema": LABEL_CONFIG, "project": project}).status_code == 200
    assert post_json(client, "/train", {"annotations": [task], "label_config": LABEL_CONFIG, "project": project}
                     ).status_code == 400
    assert post_json(client, "/versions", {"project": project}).status_code == 400
    assert no_job_started(app)
