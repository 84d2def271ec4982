"""The status page (uie_backend/page/): HTML for browsers and JSON for Label Studio at the same ``/``,
everything from outside escaped, activation only confirmed and authenticated, clear 404s.

Versions and runs here are written as training leaves them (tests/page_data.py), without training; the
browser test in tests/e2e/test_page_browser.py opens the page of a backend that really trained.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import page_data
from my_ml_backend import UIEBackend
from uie_backend import lineages, registry
from uie_backend.server import create_app

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}  # Chromium's
PROJECT = 3
HOSTILE = "<script>alert(1)</script>"


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def two_runs(settings, labels=page_data.LABELS) -> tuple[str, str]:
    """Two versions of PROJECT, the newer one active: (older, newer)."""
    return (page_data.add_run(settings, PROJECT, 1, 1.8e9, labels=labels),
            page_data.add_run(settings, PROJECT, 2, 1.8e9 + 86400, labels=labels))


def active(client, project: int = PROJECT) -> list[str]:
    return [v["version"] for v in client.get(f"/versions?project={project}").json["details"] if v["active"]]


def test_a_browser_gets_the_page_and_label_studio_its_json(backend_env):
    two_runs(backend_env)
    client = create_app(UIEBackend).test_client()
    page = client.get("/", headers=HTML)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert f"Project {PROJECT}".encode() in page.data and b"<svg" in page.data and b"/static/page.js" in page.data
    health = client.get("/health").json
    assert health["status"] == "UP"
    for accept in (None, "*/*", "application/json", "application/json, text/html"):  # Label Studio, curl, clients
        answer = client.get("/", headers={"Accept": accept} if accept else {})
        assert answer.mimetype == "application/json" and answer.json == health, accept
    assert client.get("/health", headers=HTML).json == health  # /health never changes
    script = client.get("/static/page.js")
    assert script.status_code == 200 and b"innerHTML" not in script.data


def test_project_run_and_versions_show_the_runs_numbers(backend_env):
    older, newer = two_runs(backend_env)
    client = create_app(UIEBackend).test_client()
    page = client.get(f"/projects/{PROJECT}").get_data(as_text=True)
    report = registry.list_versions(lineages.project_dir(backend_env, PROJECT))[0].meta
    assert f'id="served">{newer}<' in page and older in page and 'class="rollback"' in page
    for label, scores in report["dev"]["per_label"].items():
        assert f"{scores['f1']:.4f}" in page, label
    assert page.count('data-series="loss"') == 1 and page.count("<circle") == 2 * 2 + 2 * 20  # versions, epochs
    run_id = report["run"]
    run_page = client.get(f"/runs/{run_id}").get_data(as_text=True)
    assert f"# Training run {run_id}" in run_page and f"/runs/{run_id}/files/tasks.json" in run_page
    kept = client.get(f"/runs/{run_id}/files/report.md")
    assert kept.status_code == 200 and kept.mimetype == "text/plain" and kept.headers["X-Content-Type-Options"] == "nosniff"


def test_label_names_and_reports_from_outside_are_escaped(backend_env):
    _, newer = two_runs(backend_env, labels=["人名", HOSTILE])
    run_id = registry.list_versions(lineages.project_dir(backend_env, PROJECT))[0].meta["run"]
    (backend_env.data_dir / "runs" / run_id / "report.md").write_text(f"# {HOSTILE}\n<img src=x onerror=alert(2)>",
                                                                        encoding="utf-8")
    client = create_app(UIEBackend).test_client()
    for path in ("/", f"/projects/{PROJECT}", f"/runs/{run_id}"):
        page = client.get(path, headers=HTML).get_data(as_text=True)
        assert "<script>alert" not in page and "<img src=x" not in page, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get(f"/projects/{PROJECT}").get_data(as_text=True)
    assert "&lt;img src=x onerror=alert(2)&gt;" in client.get(f"/runs/{run_id}").get_data(as_text=True)


def test_rollback_asks_for_confirmation_then_switches_through_the_same_activation(backend_env):
    older, newer = two_runs(backend_env)
    client = create_app(UIEBackend).test_client()
    rollback = f"/projects/{PROJECT}/versions/{older}/activate"
    asked = client.post(rollback)
    assert asked.status_code == 200 and b'name="confirm" value="yes"' in asked.data and active(client) == [newer]
    assert client.post(rollback, data={"confirm": "yes"}, headers={"Origin": "https://elsewhere.example"}
                       ).status_code == 403
    assert active(client) == [newer]
    done = client.post(rollback, data={"confirm": "yes"}, headers={"Origin": "http://localhost"})
    assert done.status_code == 303 and done.location.endswith(f"/projects/{PROJECT}")
    assert active(client) == [older]
    assert client.post(f"/projects/{PROJECT}/versions/base/activate", data={"confirm": "yes"}).status_code == 303
    assert active(client) == [] and registry.active_path(lineages.project_dir(backend_env, PROJECT)) is None
    for unknown in ("nope", "..", newer + "x"):
        answer = client.post(f"/projects/{PROJECT}/versions/{unknown}/activate", data={"confirm": "yes"})
        assert answer.status_code == 404 and answer.mimetype == "text/html", unknown
    assert active(client) == []


def test_with_basic_auth_on_the_page_and_its_buttons_need_it(backend_env, monkeypatch):
    monkeypatch.setenv("BASIC_AUTH_USER", "lead")
    monkeypatch.setenv("BASIC_AUTH_PASS", "s3cret")
    older, newer = two_runs(backend_env)
    client, auth = create_app(UIEBackend).test_client(), basic("lead", "s3cret")
    rollback = f"/projects/{PROJECT}/versions/{older}/activate"
    assert client.get("/", headers=HTML).status_code == 401
    assert client.get(f"/projects/{PROJECT}").status_code == 401
    refused = client.post(rollback, data={"confirm": "yes"}, headers=basic("lead", "wrong"))
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Basic")
    listed = client.get(f"/versions?project={PROJECT}", headers=auth).json
    assert [v["version"] for v in listed["details"] if v["active"]] == [newer]
    assert client.get("/", headers={**HTML, **auth}).status_code == 200
    assert client.post(rollback, data={"confirm": "yes"}, headers=auth).status_code == 303
    listed = client.get(f"/versions?project={PROJECT}", headers=auth).json
    assert [v["version"] for v in listed["details"] if v["active"]] == [older]


def test_unknown_runs_and_files_are_clear_404_pages(backend_env):
    two_runs(backend_env)
    run_id = registry.list_versions(lineages.project_dir(backend_env, PROJECT))[0].meta["run"]
    client = create_app(UIEBackend).test_client()
    for path in ("/runs/nope", "/runs/..", "/runs/.hidden", f"/runs/{run_id}/files/nope.txt",
                 f"/runs/{run_id}/files/..", f"/runs/{run_id}/files/%2e%2e%2fx"):
        answer = client.get(path)
        assert answer.status_code == 404, path
    answer = client.get("/runs/nope")
    assert answer.mimetype == "text/html" and b"no training run &#39;nope&#39;" in answer.data


@pytest.mark.parametrize("with_other_project", [False, True])
def test_a_backend_or_project_with_no_versions_at_all(backend_env, with_other_project):
    if with_other_project:
        page_data.add_run(backend_env, PROJECT + 1, 1, 1.8e9)
    client = create_app(UIEBackend).test_client()
    index = client.get("/", headers=HTML)
    assert index.status_code == 200
    assert (b"No project has trained yet" in index.data) != with_other_project
    page = client.get(f"/projects/{PROJECT}")
    assert page.status_code == 200 and b"has no versions yet" in page.data and b"<svg" not in page.data


def test_a_damaged_report_or_meta_gives_a_page_not_a_500(backend_env):
    two_runs(backend_env)
    newest = registry.list_versions(lineages.project_dir(backend_env, PROJECT))[0]
    (newest.path / "report.json").write_text(json.dumps({
        "run": newest.meta["run"], "project": "three", "history": [{"epoch": "1", "loss": None}, 7],
        "dev_active": {"per_label": {"人名": 3}}, "dev_new": {"per_label": {"人名": {"f1": "high"}}}}))
    meta = json.loads((newest.path / "uie_meta.json").read_text())
    (newest.path / "uie_meta.json").write_text(json.dumps({**meta, "dev": {"overall": {"f1": "n/a"}}, "tasks": "x"}))
    (backend_env.data_dir / "runs" / newest.meta["run"] / "report.json").write_text("[1, 2")
    client = create_app(UIEBackend).test_client()
    for path in ("/", f"/projects/{PROJECT}", f"/runs/{newest.meta['run']}"):
        assert client.get(path, headers=HTML).status_code == 200, path


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segment=st.text(max_size=40), accept=st.sampled_from(["text/html", "*/*", "application/json", "\u00e9"]))
def test_any_name_in_a_page_path_is_an_answer_below_500_and_switches_nothing(backend_env, segment, accept):
    if not lineages.trained_projects(backend_env):
        two_runs(backend_env)
    client = create_app(UIEBackend).test_client()
    before = active(client)
    name = quote(segment, safe="")
    for method, path in (("GET", f"/runs/{name}"), ("GET", f"/runs/{name}/files/{name}"),
                         ("GET", f"/projects/{name}"), ("POST", f"/projects/{PROJECT}/versions/{name}/activate"),
                         ("POST", f"/projects/{name}/versions/base/activate")):
        answer = client.open(path, method=method, headers={"Accept": accept})
        assert answer.status_code < 500, (method, path, answer.get_data()[:500])
    assert active(client) == before


def test_the_per_label_table_names_the_values_the_team_sees_when_the_prompts_differ():
    """A run whose labels were asked as other prompts (predicted_values) reports its entities by value too."""
    from uie_backend.page.dashboard import _per_label
    scores = {"precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 2}
    report = {"per_label": {"人名": scores}, "entities": {"per_label": {"PER": scores}}}
    assert list(_per_label(report)) == ["PER"]
    assert list(_per_label({"per_label": {"人名": scores}})) == ["人名"]
