"""Safe to expose: no secret in logs or answers, no XML entity or external resource, no caller-chosen paths
or URLs, no default credentials."""

from __future__ import annotations

import ast
import base64
import json
import logging
import os
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import install_model
from corpus import LABEL_CONFIG
from my_ml_backend import UIEBackend
from uie_backend import lineages, registry
from uie_backend.config import Settings
from uie_backend.server import create_app

REPO = Path(__file__).resolve().parent.parent
LEGACY_TOKEN = "f00dfeed" * 5                      # 40 hex characters, like Label Studio's legacy tokens
PERSONAL_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2VjcmV0LXNpZ25hdHVyZS14eXo"  # a JWT's shape
PASSWORD = "pa55-Unique-7f3a9c"
TEXT = '<Text name="text" value="$text"/>'


class FakeLabelStudio:
    """A stdlib HTTP server on 127.0.0.1 that records every request and answers ``status`` with ``body``."""

    def __init__(self, status: int = 200, body=None):
        self.status, self.body, self.requests = status, body if body is not None else [], []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                outer.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                       "body": self.rfile.read(length) if length else b""})
                data = json.dumps(outer.body).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def secret_forms(*secrets: str) -> list[str]:
    """Each secret, plus what would betray it: its base64 (in an Authorization header) and its first half."""
    forms = []
    for secret in secrets:
        forms += [secret, secret[: len(secret) // 2 + 1], base64.b64encode(f"ml:{secret}".encode()).decode()]
    return forms


def assert_nowhere(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret ({secret[:6]}…) appears in {where}"


# --- secrets ---------------------------------------------------------------------------------------------


def test_the_setup_token_and_the_basic_auth_password_never_reach_logs_answers_or_job_files(
        backend_env, random_checkpoint, monkeypatch, caplog):
    """Including when the training job fails while pulling (Label Studio unreachable)."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("BASIC_AUTH_USER", "ml")
    monkeypatch.setenv("BASIC_AUTH_PASS", PASSWORD)
    install_model(random_checkpoint, backend_env)
    app = create_app(UIEBackend)
    client, auth = app.test_client(), basic("ml", PASSWORD)
    dead = f"http://127.0.0.1:{closed_port()}"
    answers = []  # (answer, whether the request itself carried a secret, which an error may quote back)

    def call(method, path, quotes=False, **kwargs):
        answer = client.open(path, method=method, **kwargs)
        answers.append((answer, quotes))
        return answer

    for project, token in ((7, LEGACY_TOKEN), (8, PERSONAL_TOKEN)):
        assert call("POST", "/setup", headers=auth, json={"project": f"{project}.1", "schema": LABEL_CONFIG,
                                                          "hostname": dead, "access_token": token}).status_code == 200
        assert call("POST", "/webhook", headers=auth, json={"action": "START_TRAINING", "project": {
            "id": project, "label_config": LABEL_CONFIG}}).status_code == 201
    # wrong credentials, in every arrangement: refused, and never echoed
    for headers in (basic("ml", PASSWORD + "x"), basic(PASSWORD, "ml"), basic("ml", PASSWORD[:-1]), {}):
        assert call("GET", "/health", headers=headers).status_code == 401
        assert call("POST", "/webhook", headers=headers, json={"action": "START_TRAINING", "project": {
            "id": 7, "label_config": LABEL_CONFIG}}).status_code == 401
    # errors of every kind, with the secrets in the request itself
    call("POST", "/predict", True, headers=auth, json={"tasks": [{"data": {"text": LEGACY_TOKEN}}],
                                                        "label_config": "<View"})
    call("POST", "/setup", True, headers=auth, json={"schema": f"<View><{PASSWORD}/>", "access_token": LEGACY_TOKEN})
    call("POST", f"/versions/{PASSWORD}/activate", True, headers=auth)
    call("POST", "/setup", True, headers=auth, json={"schema": LABEL_CONFIG, "project": "9.1", "access_token": [
        LEGACY_TOKEN], "hostname": f"http://ml:{PASSWORD}@127.0.0.1:9"})
    assert app.extensions["uie_jobs"].wait_idle(180)
    status = call("GET", "/training", headers=auth).json
    jobs = status["recent"]
    assert len(jobs) == 2 and all(job["state"] == "failed" for job in jobs)
    assert all(f"cannot reach Label Studio at {dead}" in job["error"] for job in jobs), jobs

    secrets = secret_forms(LEGACY_TOKEN, PERSONAL_TOKEN, PASSWORD)
    for answer, quotes in answers:
        if quotes:
            continue
        assert_nowhere(answer.get_data(as_text=True) + str(answer.headers), secrets,
                       f"the answer to {answer.request.method} {answer.request.path}")
    assert_nowhere(caplog.text, secrets, "the server log")
    for job in jobs:
        files = [p for p in Path(job["dir"]).rglob("*") if p.is_file()]
        assert {"train.log", "result.json"} <= {p.name for p in files}
        for path in files:
            assert_nowhere(path.read_text(errors="replace"), secrets, f"the job's {path.name}")


def test_error_answers_quote_the_request_but_never_the_stored_token(backend_env, random_checkpoint):
    install_model(random_checkpoint, backend_env)
    client = create_app(UIEBackend).test_client()
    client.post("/setup", json={"project": "3.1", "schema": LABEL_CONFIG, "hostname": "http://x",
                                "access_token": LEGACY_TOKEN})
    for answer in (client.post("/predict", json={"tasks": [{"id": 1}], "label_config": LABEL_CONFIG}),
                   client.post("/predict", json={"tasks": "x"}), client.post("/webhook", json={"action": "x"}),
                   client.post("/train", json={"annotations": [{"id": 1}], "label_config": "<View/>"}),
                   client.get("/training"), client.get("/versions"), client.get("/health")):
        assert LEGACY_TOKEN not in answer.get_data(as_text=True)


# --- XML ---------------------------------------------------------------------------------------------------


def hostile_configs(url: str) -> dict[str, str]:
    labels = '<Labels name="label" toName="text"><Label value="{}"/></Labels>'
    return {
        "external entity": '<?xml version="1.0"?><!DOCTYPE View [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                           f'<View>{TEXT}{labels.format("&x;")}</View>',
        "external entity over http": f'<!DOCTYPE View [<!ENTITY x SYSTEM "{url}/entity">]>'
                                     f'<View>{TEXT}{labels.format("&x;")}</View>',
        "parameter entity": f'<!DOCTYPE View [<!ENTITY % p SYSTEM "{url}/evil.dtd"> %p;]><View>{TEXT}</View>',
        "external DTD": f'<!DOCTYPE View SYSTEM "{url}/view.dtd"><View>{TEXT}{labels.format("a")}</View>',
        "billion laughs": '<!DOCTYPE View [<!ENTITY a "aaaaaaaaaa">' + "".join(
            f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
            + f']><View>{TEXT}{labels.format("&i;")}</View>',
        "doctype hidden in UTF-16": ('<?xml version="1.0" encoding="UTF-16LE"?><!DOCTYPE View [<!ENTITY x SYSTEM '
                                     f'"file:///etc/passwd">]><View>{TEXT}{labels.format("&x;")}</View>'
                                     ).encode("utf-16-le").decode(),
        "lower-case doctype": f'<!doctype View [<!ENTITY x SYSTEM "file:///etc/passwd">]><View>{TEXT}</View>',
    }


@pytest.mark.parametrize("name", list(hostile_configs("http://h")))
def test_xml_with_a_doctype_or_entities_is_refused_with_400_everywhere_and_nothing_is_fetched(
        backend_env, random_checkpoint, name):
    install_model(random_checkpoint, backend_env)
    app = create_app(UIEBackend)
    client = app.test_client()
    with FakeLabelStudio() as listener:
        config = hostile_configs(listener.url)[name]
        task = {"id": 1, "data": {"text": "王五去了深圳。"}}
        for path, payload in [("/predict", {"tasks": [task], "label_config": config}),
                              ("/setup", {"schema": config, "project": "1.1"}),
                              ("/webhook", {"action": "START_TRAINING", "project": {"id": 1, "label_config": config}}),
                              ("/train", {"annotations": [task], "label_config": config})]:
            answer = client.post(path, json=payload)
            assert answer.status_code == 400, (path, answer.json)
            assert "root:" not in answer.get_data(as_text=True)
    assert listener.requests == []  # no DTD, entity or include was ever fetched
    assert not app.extensions["uie_jobs"].status()["recent"]


def test_xinclude_is_never_processed(backend_env, random_checkpoint):
    install_model(random_checkpoint, backend_env)
    client = create_app(UIEBackend).test_client()
    with FakeLabelStudio() as listener:
        config = (f'<View xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="file:///etc/passwd" '
                  f'parse="text"/><xi:include href="{listener.url}/x.xml"/>{TEXT}'
                  '<Labels name="label" toName="text"><Label value="人名"/></Labels></View>')
        answer = client.post("/predict", json={"tasks": [{"data": {"text": "王五"}}], "label_config": config})
        assert answer.status_code == 200 and "root:" not in answer.get_data(as_text=True)
    assert listener.requests == []


# --- paths and URLs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", "%2e%2e", "%2E%2E", ".", "..%2f..%2fetc", "a%2fb", "..%5c..", "%2fetc",
                                  "~", "model_best", "versions", ".incoming-v.abc", ".model_best.1.2", " ", "%00"])
def test_activate_takes_a_version_name_never_a_path(backend_env, random_checkpoint, name, tmp_path):
    lineage = lineages.project_dir(backend_env, 3)
    version = registry.add(random_checkpoint, lineage).id
    registry.activate(version, lineage)
    # complete checkpoints where a path-like name could lead: a hidden staging dir, a sibling of the registry,
    # the base lineage, another project's lineage
    staged = registry.versions_dir(lineage) / ".incoming-v.abc"
    for decoy in (staged, lineage / "elsewhere", tmp_path / "etc", backend_env.checkpoint_dir / "versions" / "base",
                  lineages.project_dir(backend_env, 4) / "versions" / "other"):
        if not decoy.exists():
            shutil.copytree(random_checkpoint, decoy)
    before = os.readlink(lineage / "model_best")
    listing = sorted(os.listdir(lineage))
    client = create_app(UIEBackend).test_client()
    answer = client.post(f"/versions/{name}/activate?project=3", follow_redirects=True)  # "//" is merged by a 308 first
    assert answer.status_code in (404, 405), (name, answer.status_code, answer.json)
    assert answer.json["error"] and answer.json["detail"]
    assert os.readlink(lineage / "model_best") == before
    assert sorted(os.listdir(lineage)) == listing
    assert [v["version"] for v in client.get("/versions?project=3").json["details"]] == [version]


def test_a_configured_label_studio_url_wins_over_the_setup_hostname(backend_env, random_checkpoint, monkeypatch):
    """With LABEL_STUDIO_URL set, the address a caller gives /setup is never contacted."""
    dead = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("LABEL_STUDIO_URL", dead)
    install_model(random_checkpoint, backend_env)
    app = create_app(UIEBackend)
    client = app.test_client()
    with FakeLabelStudio() as elsewhere:
        client.post("/setup", json={"project": "4.1", "schema": LABEL_CONFIG, "hostname": elsewhere.url,
                                    "access_token": LEGACY_TOKEN})
        assert client.post("/webhook", json={"action": "START_TRAINING", "project": {
            "id": 4, "label_config": LABEL_CONFIG}}).status_code == 201
        assert app.extensions["uie_jobs"].wait_idle(180)
    assert elsewhere.requests == []
    assert dead in client.get("/training").json["recent"][0]["error"]


@pytest.mark.parametrize("hostname", ["http://h/any/path?x=", "http://h/#", "http://ml:pw@h", "file:///etc/passwd",
                                      "gopher://h:70/x", "//h", "h:8080", "http://[::1", ["http://h"], {"u": 1}, 5])
def test_a_setup_hostname_cannot_pick_the_url_the_job_fetches(backend_env, hostname):
    """A query or fragment would swallow the /api/projects/N/export suffix (any URL fetched, the start of its
    answer quoted in the job's error); credentials, other schemes and non-strings are no Label Studio address."""
    client = create_app(UIEBackend).test_client()
    answer = client.post("/setup", json={"project": "1.1", "schema": LABEL_CONFIG, "hostname": hostname,
                                         "access_token": LEGACY_TOKEN})
    assert answer.status_code == 400 and "hostname" in answer.json["detail"]
    assert client.post("/setup", json={"project": "1.1", "schema": LABEL_CONFIG, "hostname": "http://h",
                                       "access_token": {"t": LEGACY_TOKEN}}).status_code == 400


def test_without_label_studio_url_only_the_export_of_an_integer_project_is_fetched(backend_env, random_checkpoint):
    """The /setup hostname is used (that is how Label Studio tells the backend where it is): the caller picks the
    host and a path prefix, never the rest. Set LABEL_STUDIO_URL to pin the host (see the test above)."""
    install_model(random_checkpoint, backend_env)
    app = create_app(UIEBackend)
    client = app.test_client()
    with FakeLabelStudio(status=200, body=[]) as label_studio:
        assert client.post("/setup", json={"project": "12.1795936584", "schema": LABEL_CONFIG,
                                           "hostname": label_studio.url + "/prefix/", "access_token": LEGACY_TOKEN}
                           ).status_code == 200
        client.post("/webhook", json={"action": "START_TRAINING", "project": {
            "id": "12/../../admin", "label_config": LABEL_CONFIG}})  # not an int: no project, nothing to pull
        client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 12, "label_config": LABEL_CONFIG}})
        assert app.extensions["uie_jobs"].wait_idle(180)
    assert [r["path"].split("?")[0] for r in label_studio.requests] == ["/prefix/api/projects/12/export"]
    assert label_studio.requests[0]["headers"]["Authorization"] == f"Token {LEGACY_TOKEN}"


def test_the_package_runs_no_shell_commands_and_evaluates_no_code():
    """No subprocess, os.system, eval or exec anywhere a request could reach."""
    sources = list((REPO / "uie_backend").glob("*.py")) + [REPO / "my_ml_backend.py", REPO / "_wsgi.py"]
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                assert not {"subprocess", "pty", "commands"} & set(names), f"{path.name} imports {names}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):  # (model.eval() is paddle's)
                assert node.func.id not in {"eval", "exec", "__import__"}, f"{path.name}:{node.lineno}"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
                assert not node.attr.startswith(("system", "popen", "exec", "spawn", "posix_spawn")), \
                    f"{path.name}:{node.lineno} uses os.{node.attr}"


# --- credentials -----------------------------------------------------------------------------------------


def test_there_are_no_default_credentials():
    defaults = Settings()
    assert defaults.basic_auth_user == "" and defaults.basic_auth_pass == ""
    assert defaults.label_studio_api_key == ""


def test_auth_is_off_unless_both_user_and_password_are_set(backend_env, random_checkpoint, monkeypatch):
    install_model(random_checkpoint, backend_env)
    assert create_app(UIEBackend).test_client().get("/health").status_code == 200
    for set_one, other in (("BASIC_AUTH_USER", "BASIC_AUTH_PASS"), ("BASIC_AUTH_PASS", "BASIC_AUTH_USER")):
        monkeypatch.setenv(set_one, "x")
        monkeypatch.delenv(other, raising=False)
        with pytest.raises(ValueError, match="BASIC_AUTH_USER and BASIC_AUTH_PASS"):
            create_app(UIEBackend)  # start-up fails: half a credential never means "no auth"
        monkeypatch.delenv(set_one)
    monkeypatch.setenv("BASIC_AUTH_USER", "ml")
    monkeypatch.setenv("BASIC_AUTH_PASS", PASSWORD)
    client = create_app(UIEBackend).test_client()
    assert client.get("/health").status_code == 401
    assert client.get("/health", headers=basic("ml", PASSWORD)).status_code == 200


def test_start_up_refuses_half_a_credential_under_gunicorns_entry_point(backend_env, monkeypatch):
    """The same through _wsgi.py, as `make serve` and the container start it."""
    import importlib
    import sys

    monkeypatch.setenv("BASIC_AUTH_USER", "ml")
    monkeypatch.delenv("BASIC_AUTH_PASS", raising=False)
    monkeypatch.delitem(sys.modules, "_wsgi", raising=False)
    with pytest.raises(ValueError, match="BASIC_AUTH_PASS"):
        importlib.import_module("_wsgi")
    monkeypatch.delitem(sys.modules, "_wsgi", raising=False)
