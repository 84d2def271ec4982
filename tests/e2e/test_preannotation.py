"""The background pre-annotation job (uie_backend/preannotation.py) against a real Label Studio 1.23.2.

The backend runs in this process (its Flask app served over real HTTP by werkzeug, so that Label Studio can
connect it and send /setup), with a tiny UIE; Label Studio is the session's real server. Each test makes a
project of its own.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

import corpus
from conftest import install_model
from my_ml_backend import UIEBackend
from uie_backend import checkpoint, lineages, registry
from uie_backend.config import Settings
from uie_backend.jsonio import write_json
from uie_backend.preannotation import ProjectLock
from uie_backend.server import create_app

from .labelstudio import REPO_ROOT, LabelStudio
from .processes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

JOB_TIMEOUT_S = 180.0


class ServedApp:
    """The backend's Flask app in this process, over real HTTP (werkzeug, threaded), and its test client."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.app = create_app(UIEBackend, settings)
        self.client = self.app.test_client()
        self.server = make_server("127.0.0.1", free_port(), self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def jobs(self):
        return self.app.extensions["uie_preannotation"]

    def wait_for_job(self, project_id: int, timeout_s: float = JOB_TIMEOUT_S) -> dict:
        """The project's job once this process runs none for it any more."""
        deadline = time.monotonic() + timeout_s
        while self.jobs.is_running(project_id):
            assert time.monotonic() < deadline, self.jobs.status_of(project_id)
            time.sleep(0.2)
        return self.client.get(f"/preannotation?project={project_id}").json["jobs"][0]

    def close(self) -> None:
        self.jobs.stop_all()
        self.server.shutdown()


@contextmanager
def serving(monkeypatch: pytest.MonkeyPatch, model: Path, **env: str) -> Iterator[ServedApp]:
    """The backend with ``env`` on top of backend_env's, serving ``model`` as the base."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env()
    install_model(model, settings)
    served = ServedApp(settings)
    try:
        yield served
    finally:
        served.close()


@pytest.fixture
def served(backend_env: Settings, trained_checkpoint: Path, monkeypatch) -> Iterator[ServedApp]:
    with serving(monkeypatch, trained_checkpoint) as app:
        yield app


def make_project(label_studio: LabelStudio, served: ServedApp, count: int, seed: int = 0, connect: bool = True,
                 extra: list[dict] | None = None) -> tuple[int, list[int]]:
    """A project of ``count`` corpus sentences (plus ``extra`` task data), connected to the backend as "uie"."""
    project_id = label_studio.create_project(f"preannotate {seed}", corpus.LABEL_CONFIG)["id"]
    rng = random.Random(seed)
    data = [{"text": corpus.sentence(rng.choice(corpus.TRAIN_TEMPLATES + corpus.NEW_TEMPLATES), rng)[0]}
            for _ in range(count)]
    task_ids = label_studio.import_tasks(project_id, data + (extra or []))
    if connect:
        label_studio.connect_ml_backend(project_id, served.url, title="uie")
    return project_id, task_ids


def stored(label_studio: LabelStudio, project_id: int) -> list[dict]:
    return label_studio.list_predictions(project_id=project_id)


def annotations(label_studio: LabelStudio, project_id: int, task_ids: list[int]) -> list[dict]:
    """The tasks' annotations, from the task list: opening a task (GET /api/tasks/<id>) that has no prediction
    makes Label Studio ask the backend for one."""
    by_id = {task["id"]: [{k: v for k, v in a.items() if k != "created_ago"} for a in task["annotations"]]
             for task in label_studio.list_tasks(project_id)}
    return [by_id[task_id] for task_id in task_ids]


def served_version(served: ServedApp, project_id: int) -> str:
    return lineages.source_for(served.settings, project_id).version


def test_a_project_of_300_tasks_gets_the_predictions_of_predict_and_nothing_a_person_made_changes(
        label_studio: LabelStudio, served: ServedApp):
    project_id, task_ids = make_project(label_studio, served, 300)
    annotated = corpus.annotated_tasks(5, seed=4)
    for task_id, task in zip(task_ids[:5], annotated):  # annotated tasks are predicted too: the model's whole opinion
        label_studio.api("PATCH", f"/api/tasks/{task_id}", json={"data": task["data"]})
        label_studio.create_annotation(task_id, task["annotations"][0]["result"])
    people_made = annotations(label_studio, project_id, task_ids[:5])
    assert label_studio.api("GET", f"/api/projects/{project_id}").json()["model_version"] == "uie"
    version = served_version(served, project_id)

    answer = served.client.post("/preannotate", json={"project": project_id})
    assert answer.status_code == 202 and answer.json["state"] == "started", answer.json
    listed = served.client.get(f"/preannotation?project={project_id}").json["jobs"]  # at once, not once it runs
    assert len(listed) == 1 and listed[0]["reason"] == "requested", listed
    assert listed[0]["state"] in ("starting", "running", "succeeded"), listed
    job = served.wait_for_job(project_id)

    assert job["state"] == "succeeded", job
    assert (job["version"], job["total"], job["done"], job["skipped"]) == (version, 300, 300, 0)
    assert job["tasks_per_s"] > 0 and job["eta_s"] is None
    predictions = stored(label_studio, project_id)
    assert Counter(p["task"] for p in predictions) == Counter(task_ids)  # one each, none twice
    assert {p["model_version"] for p in predictions} == {version}
    # the same code path as /predict: the same regions and scores for the same tasks
    tasks = [label_studio.get_task(task_id) for task_id in task_ids[:60]]
    direct = served.client.post("/predict", json={"tasks": tasks, "label_config": corpus.LABEL_CONFIG,
                                                  "project": f"{project_id}.1795936584"}).json["results"]
    by_task = {p["task"]: p for p in predictions}
    assert [(by_task[t["id"]]["result"], by_task[t["id"]]["score"]) for t in tasks] == \
           [(d["result"], d["score"]) for d in direct]
    assert sum(len(d["result"]) for d in direct) > 60  # a model that finds things, else the comparison is empty
    assert annotations(label_studio, project_id, task_ids[:5]) == people_made
    # the project now selects the version (the score ordering needs it), in place of the backend's title
    assert label_studio.api("GET", f"/api/projects/{project_id}").json()["model_version"] == version
    assert job["selected_version"] == f"{version} (was 'uie')"

    again = served.client.post("/preannotate", json={"project": project_id})
    assert again.status_code == 202
    job = served.wait_for_job(project_id)
    assert (job["state"], job["total"], job["done"]) == ("succeeded", 0, 0)  # only what is missing
    assert len(stored(label_studio, project_id)) == 300


def two_versions(served: ServedApp, project_id: int, random_checkpoint: Path, trained_checkpoint: Path,
                 tmp_path: Path) -> tuple[str, str]:
    """Two versions in the project's registry (none active): the random model and the trained one."""
    ids = []
    for name, model in (("first", random_checkpoint), ("second", trained_checkpoint)):
        copy = tmp_path / name
        shutil.copytree(model, copy)
        write_json(copy / checkpoint.META_FILE, {**checkpoint.read_meta(copy), "version": f"20261130-00000{len(ids)}-{name}"})
        ids.append(registry.add(copy, lineages.project_dir(served.settings, project_id)).id)
    return ids[0], ids[1]


def test_a_new_version_supersedes_a_running_job_and_every_task_ends_with_the_new_one(
        label_studio: LabelStudio, backend_env: Settings, random_checkpoint: Path, trained_checkpoint: Path,
        tmp_path: Path, monkeypatch):
    with serving(monkeypatch, random_checkpoint, UIE_PREANNOTATE_PAGE="20") as served:
        project_id, task_ids = make_project(label_studio, served, 300, seed=1)
        first, second = two_versions(served, project_id, random_checkpoint, trained_checkpoint, tmp_path)
        assert served.client.post(f"/versions/{first}/activate?project={project_id}").status_code == 200
        deadline = time.monotonic() + 60
        while not any(p["model_version"] == first for p in stored(label_studio, project_id)):
            assert time.monotonic() < deadline, served.jobs.status_of(project_id)
            time.sleep(0.05)
        assert served.client.post(f"/versions/{second}/activate?project={project_id}").status_code == 200
        job = served.wait_for_job(project_id)
        assert (job["state"], job["version"]) == ("succeeded", second), job
        by_version = Counter(p["model_version"] for p in stored(label_studio, project_id))
        assert by_version[second] == 300 and 0 < by_version[first] < 300, by_version  # the first job stopped early
        assert Counter(p["task"] for p in stored(label_studio, project_id) if p["model_version"] == second) \
            == Counter(task_ids)
        assert label_studio.api("GET", f"/api/projects/{project_id}").json()["model_version"] == second


def test_with_uie_preannotate_false_an_activation_starts_nothing(
        label_studio: LabelStudio, backend_env: Settings, random_checkpoint: Path, trained_checkpoint: Path,
        tmp_path: Path, monkeypatch):
    with serving(monkeypatch, random_checkpoint, UIE_PREANNOTATE="false") as served:
        project_id, _ = make_project(label_studio, served, 5, seed=2)
        first, _ = two_versions(served, project_id, random_checkpoint, trained_checkpoint, tmp_path)
        assert served.client.post(f"/versions/{first}/activate?project={project_id}").status_code == 200
        time.sleep(1)
        assert not served.jobs.is_running(project_id) and stored(label_studio, project_id) == []
        assert served.client.get(f"/preannotation?project={project_id}").json == {"jobs": []}


def test_a_task_that_cannot_be_predicted_is_reported_by_id_and_the_others_are_stored(
        label_studio: LabelStudio, served: ServedApp, monkeypatch):
    long_text = "长" * (served.settings.max_text_chars + 1)
    project_id, task_ids = make_project(label_studio, served, 30, seed=3,
                                        extra=[{"text": 12345}, {"text": long_text}])
    served.client.post("/preannotate", json={"project": project_id})
    job = served.wait_for_job(project_id)
    assert (job["state"], job["done"], job["skipped"]) == ("succeeded", 30, 2), job
    assert [(e["task"], e["field"]) for e in job["task_errors"]] == [(task_ids[30], "data.text"), (task_ids[31], "data.text")]
    assert "must be a string, not int" in job["task_errors"][0]["error"]
    assert "UIE_MAX_TEXT_CHARS" in job["task_errors"][1]["error"]
    assert sorted(p["task"] for p in stored(label_studio, project_id)) == task_ids[:30]


class FlakyProxy:
    """Label Studio behind a proxy that, for the first ``fail`` bulk imports, passes the request on and then
    answers 502: the predictions are stored, but the job cannot know it. Other calls pass unchanged."""

    def __init__(self, target: str, fail: int):
        self.target, self.fail, self.imports = target, fail, 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = requests.request(self.command, proxy.target + self.path, headers=headers, data=body, timeout=60)
                status, payload = answer.status_code, answer.content
                if self.command == "POST" and "/import/predictions" in self.path:
                    proxy.imports += 1
                    if proxy.imports <= proxy.fail:
                        status, payload = 502, b'{"detail": "bad gateway"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = _forward

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_label_studio_errors_are_retried_without_storing_twice_then_end_the_job_with_a_message(
        label_studio: LabelStudio, backend_env: Settings, trained_checkpoint: Path, monkeypatch):
    proxy = FlakyProxy(label_studio.url, fail=2)
    try:
        with serving(monkeypatch, trained_checkpoint, LABEL_STUDIO_URL=proxy.url, UIE_PREANNOTATE_PAGE="25",
                     LABEL_STUDIO_API_KEY=label_studio.token, UIE_LABEL_STUDIO_RETRY_S="20") as served:
            project_id, task_ids = make_project(label_studio, served, 60, seed=5, connect=False)
            served.client.post("/preannotate", json={"project": project_id})
            job = served.wait_for_job(project_id)
        assert (job["state"], job["done"]) == ("succeeded", 60), job
        # three pages, each posted once: the first two were answered 502 (stored all the same), and the retry
        # found them stored rather than posting them again
        assert proxy.imports == 3
        assert Counter(p["task"] for p in stored(label_studio, project_id)) == Counter(task_ids)  # none twice
    finally:
        proxy.close()

    # a rejected token: retried (1 + 2 s), then the job ends saying what to change
    shutil.rmtree(backend_env.checkpoint_dir)
    with serving(monkeypatch, trained_checkpoint, LABEL_STUDIO_URL=label_studio.url, LABEL_STUDIO_API_KEY="0" * 40,
                 UIE_LABEL_STUDIO_RETRY_S="3") as served:
        started = time.monotonic()
        served.client.post("/preannotate", json={"project": project_id})
        job = served.wait_for_job(project_id)
    assert job["state"] == "failed" and "refused the API token" in job["error"], job
    assert "LABEL_STUDIO_API_KEY" in job["error"] and "retried for 3 s" in job["error"]
    assert 3 <= time.monotonic() - started < 20 and "0" * 40 not in json.dumps(job)


def test_preannotate_refuses_clearly_what_it_cannot_do(backend_env: Settings, random_checkpoint: Path):
    install_model(random_checkpoint, backend_env)
    client = create_app(UIEBackend, backend_env).test_client()
    for body in ({}, {"project": "x"}, {"project": -1}):
        answer = client.post("/preannotate", json=body)
        assert answer.status_code == 400 and "name the Label Studio project" in answer.json["detail"], answer.json
    answer = client.post("/preannotate?project=7")
    assert answer.status_code == 400 and "no Label Studio address and token for project 7" in answer.json["detail"]
    assert client.get("/preannotation").json == {"jobs": []}


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "versions.py", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_versions_py_preannotate_runs_the_job_in_the_foreground(label_studio: LabelStudio, served: ServedApp):
    project_id, task_ids = make_project(label_studio, served, 40, seed=6, connect=False)
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": label_studio.token}
    lock = ProjectLock(served.settings.data_dir / "preannotation" / f"{project_id}.lock")
    assert lock.acquire()  # as if the server were pre-annotating the project
    try:
        busy = run_cli("preannotate", "--project", str(project_id), env=env)
    finally:
        lock.release()
    assert busy.returncode == 2 and "another process" in busy.stderr, busy.stderr
    done = run_cli("preannotate", "--project", str(project_id), env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    status = json.loads(done.stdout)
    assert (status["state"], status["done"], status["version"]) == ("succeeded", 40, served_version(served, project_id))
    assert Counter(p["task"] for p in stored(label_studio, project_id)) == Counter(task_ids)
    missing = run_cli("preannotate", "--project", str(project_id),
                      env={k: v for k, v in env.items() if k != "LABEL_STUDIO_API_KEY"})
    assert missing.returncode == 2 and "LABEL_STUDIO_API_KEY" in missing.stderr
