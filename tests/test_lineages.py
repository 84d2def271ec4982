"""Each Label Studio project trains and is served its own model lineage, over one shared base.

Two projects with different label sets train, roll back and are served side by side: nothing one does
changes what the other is served. Models are loaded once per version and a bounded number stay loaded. A
run trains on every annotated task (a 3-task project learns its 3 tasks) while its dev scores come from a
model that never saw the dev tasks.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import corpus
from conftest import install_model
from my_ml_backend import UIEBackend
from uie_backend import checkpoint, lineages, registry, training
from uie_backend.config import Settings
from uie_backend.metrics import score_spans
from uie_backend.server import create_app
from uie_backend.training import TrainingRequest

REPO = Path(__file__).resolve().parent.parent
# The second project names its labels differently and has one fewer.
OTHER_CONFIG = """<View>
  <Labels name="entity" toName="doc"><Label value="人物"/><Label value="城市"/></Labels>
  <Text name="doc" value="$content"/>
</View>"""
RENAMED = {"人名": "人物", "地名": "城市"}
TEXTS = ["王五昨天去了深圳出差。", "李四在腾讯工作了三年。", "杭州的张三很开心。"]


def other_project_tasks(count: int, seed: int) -> list[dict]:
    """Corpus tasks as the second project holds them: other field, control names and labels."""
    tasks = []
    for task in corpus.annotated_tasks(count, seed=seed):
        task = copy.deepcopy(task)
        task["data"] = {"content": task["data"]["text"]}
        for annotation in task["annotations"]:
            annotation["result"] = [dict(r, from_name="entity", to_name="doc",
                                         value=dict(r["value"], labels=[RENAMED[r["value"]["labels"][0]]]))
                                    for r in annotation["result"] if r["value"]["labels"][0] in RENAMED]
        tasks.append(task)
    return tasks


def predict(client, project: int, config: str = corpus.LABEL_CONFIG, field: str = "text") -> dict:
    tasks = [{"id": i, "data": {field: text}} for i, text in enumerate(TEXTS)]
    answer = client.post("/predict", json={"tasks": tasks, "label_config": config, "project": f"{project}.1795936584"})
    assert answer.status_code == 200, answer.json
    return answer.json


def train(app, client, project: int, tasks: list[dict], config: str = corpus.LABEL_CONFIG) -> dict:
    answer = client.post("/train", json={"annotations": tasks, "label_config": config, "project": project})
    assert answer.status_code == 201, answer.json
    assert app.extensions["uie_jobs"].wait_idle(300)
    job = client.get("/training").json["recent"][0]
    assert job["state"] == "succeeded", job
    return job["summary"]


@pytest.mark.slow
def test_two_projects_with_different_labels_train_and_roll_back_without_touching_each_other(
        backend_env, random_checkpoint, monkeypatch):
    # a single-lineage checkpoint/ from before projects had lineages: it is the base every project is served
    legacy = registry.add(random_checkpoint, backend_env.checkpoint_dir).id
    registry.activate(legacy, backend_env.checkpoint_dir)
    monkeypatch.setenv("UIE_TRAIN_EPOCHS", "3")  # isolation needs versions, not good ones
    monkeypatch.setenv("UIE_TRAIN_MIN_STEPS", "0")
    monkeypatch.setenv("UIE_MAX_LOADED_MODELS", "2")
    app = create_app(UIEBackend)
    client = app.test_client()
    first_before = predict(client, 1)
    second_before = predict(client, 2, OTHER_CONFIG, "content")
    assert first_before["model_version"] == second_before["model_version"] == legacy
    assert client.get("/health").json["models_loaded"] == [legacy]  # projects on the same version share one

    first_v1 = train(app, client, 1, corpus.annotated_tasks(20, seed=5))
    assert first_v1["project"] == 1 and first_v1["activated"] and first_v1["held_out"]
    assert predict(client, 1)["model_version"] == first_v1["version"]
    assert predict(client, 2, OTHER_CONFIG, "content") == second_before  # the same regions, scores, version
    assert client.post("/setup", json={"project": "2.1", "schema": OTHER_CONFIG}).json["model_version"] == legacy

    second_v1 = train(app, client, 2, other_project_tasks(20, seed=6), OTHER_CONFIG)
    assert second_v1["activated"] and set(second_v1["dev_new"]["per_label"]) == {"人物", "城市"}
    first_v2 = train(app, client, 1, corpus.annotated_tasks(24, seed=5))
    # the second run's gate compared with the active version's held-out twin, not with a model that saw dev
    assert "held-out twin" in first_v2["compared_with"], first_v2
    first_after = predict(client, 1)
    second_after = predict(client, 2, OTHER_CONFIG, "content")
    assert first_after["model_version"] == (first_v2["version"] if first_v2["activated"] else first_v1["version"])
    assert second_after["model_version"] == second_v1["version"]
    # at most UIE_MAX_LOADED_MODELS versions stay loaded, the most recently used
    assert client.get("/health").json["models_loaded"] == [second_v1["version"], first_after["model_version"]]

    # rolling project 1 back leaves project 2 as it was
    assert client.post(f"/versions/{first_v1['version']}/activate?project=1").status_code == 200
    assert predict(client, 1)["model_version"] == first_v1["version"]
    assert predict(client, 2, OTHER_CONFIG, "content") == second_after
    listed = client.get("/versions?project=1").json
    assert sorted(listed["versions"]) == sorted({first_v1["version"], first_v2["version"]})
    assert client.get("/versions?project=2").json["versions"] == [second_v1["version"]]
    # a version of another project is not one of this project's
    assert client.post(f"/versions/{second_v1['version']}/activate?project=1").status_code == 404
    # a project that never trained is served the base, as is a request that names no project
    assert predict(client, 3)["model_version"] == predict(client, None)["model_version"] == legacy

    listing = subprocess.run([sys.executable, "versions.py", "list"], cwd=REPO, capture_output=True, text=True,
                             check=True, timeout=60).stdout
    assert f"base (every project without versions of its own): {legacy}" in listing
    assert f"| 1 | {first_v1['version']} | 2 |" in listing and f"| 2 | {second_v1['version']} | 1 |" in listing

    # and back to the base, keeping the project's versions
    assert client.post("/versions/base/activate?project=1").json["model_version"] == legacy
    assert predict(client, 1)["model_version"] == legacy
    assert predict(client, 2, OTHER_CONFIG, "content") == second_after
    assert len(client.get("/versions?project=1").json["versions"]) == 2


def test_a_training_request_that_names_no_project_changes_nothing(backend_env, random_checkpoint):
    install_model(random_checkpoint, backend_env)
    app = create_app(UIEBackend)
    client = app.test_client()
    for project in (None, "", "abc", True, {"id": 1}):
        body = {"annotations": corpus.annotated_tasks(3), "label_config": corpus.LABEL_CONFIG}
        answer = client.post("/train", json=body if project is None else {**body, "project": project})
        assert answer.status_code == 400 and "project" in answer.json["detail"], (project, answer.json)
    answer = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": "x", "label_config":
                                                                                    corpus.LABEL_CONFIG}})
    assert answer.status_code == 400
    assert client.get("/training").json == {"is_training": False, "running": [], "recent": [], "follow_ups": []}
    with pytest.raises(training.ProjectRequired):
        training.run(TrainingRequest(corpus.LABEL_CONFIG, tasks=corpus.annotated_tasks(3)), backend_env,
                     backend_env.data_dir / "runs" / "x")
    assert not (backend_env.checkpoint_dir / lineages.PROJECTS).exists()


@pytest.mark.slow
def test_a_three_task_project_gets_a_model_that_has_learnt_its_three_tasks(backend_env, random_checkpoint):
    install_model(random_checkpoint, backend_env)
    tasks = corpus.annotated_tasks(3, seed=8)
    summary = training.run(TrainingRequest(corpus.LABEL_CONFIG, project_id=9, tasks=tasks), backend_env,
                           backend_env.data_dir / "runs" / "three")
    assert summary["tasks"] == 3 and not summary["held_out"] and summary["activated"], summary
    report = (backend_env.data_dir / "runs" / "three" / "report.md").read_text(encoding="utf-8")
    assert "scores below are on the training tasks" in report
    client = create_app(UIEBackend).test_client()
    answer = client.post("/predict", json={"tasks": tasks, "label_config": corpus.LABEL_CONFIG, "project": 9}).json
    assert answer["model_version"] == summary["version"]
    gold = [{(r["value"]["labels"][0], r["value"]["start"], r["value"]["end"]) for r in t["annotations"][0]["result"]}
            for t in tasks]
    predicted = [{(r["value"]["labels"][0], r["value"]["start"], r["value"]["end"]) for r in res["result"]}
                 for res in answer["results"]]
    assert score_spans(gold, predicted).overall.recall >= 0.8, (gold, predicted)


@pytest.mark.slow
def test_the_served_model_trained_on_every_task_while_its_dev_scores_come_from_its_held_out_twin(
        backend_env, random_checkpoint):
    install_model(random_checkpoint, backend_env)
    settings = dataclasses.replace(backend_env, train_epochs=4, train_min_steps=0)
    tasks = corpus.annotated_tasks(20, seed=5)
    run_dir = settings.data_dir / "runs" / "refit"
    summary = training.run(TrainingRequest(corpus.LABEL_CONFIG, project_id=4, tasks=tasks), settings, run_dir)
    assert summary["held_out"] and summary["dev_tasks"] > 0 and summary["refit_steps"] > 0, summary
    twin = run_dir / training.HELD_OUT_DIR / "model_best"
    served = registry.active_path(lineages.project_dir(settings, 4))
    meta = checkpoint.read_meta(served)
    assert Path(meta["held_out_model"]) == twin and checkpoint.is_complete(twin)
    assert meta["dev"] == summary["dev_new"] == checkpoint.read_meta(twin)["dev"]  # the twin's honest scores
    # the twin trained on the train split; the served model on every task
    twin_tasks, served_tasks = _task_ids(run_dir / "train.txt", tasks), _task_ids(run_dir / "all.txt", tasks)
    assert served_tasks == {t["id"] for t in tasks} and twin_tasks < served_tasks
    assert summary["steps"] == summary["selection_steps"] + summary["refit_steps"]
    assert "refit on all 20 tasks" in (run_dir / "report.md").read_text(encoding="utf-8")


def _task_ids(examples_file: Path, tasks: list[dict]) -> set[int]:
    """The tasks whose text appears among a UIE examples file's contents."""
    contents = examples_file.read_text(encoding="utf-8")
    return {t["id"] for t in tasks if t["data"]["text"] in contents}


def test_the_base_is_train_from_then_model_best_then_the_named_then_the_embedded_model(
        backend_env, random_checkpoint, tmp_path):
    embedded = tmp_path / "embedded"
    shutil.copytree(random_checkpoint, embedded)
    settings = dataclasses.replace(backend_env, named_model="", default_model=embedded)
    assert lineages.base_source(settings).path == embedded
    assert lineages.base_source(dataclasses.replace(settings, named_model="uie-base")).name == "uie-base"
    install_model(random_checkpoint, settings)
    assert lineages.base_source(settings).path == settings.model_best.resolve()
    assert lineages.base_source(dataclasses.replace(settings, train_from=str(embedded))).path == embedded
    assert lineages.source_for(settings, 12) == lineages.base_source(settings)  # a project that never trained
    assert Settings.from_env({"UIE_TRAIN_FROM": "active"}).train_from == ""  # the old default's name
    with pytest.raises(ValueError, match="UIE_MAX_LOADED_MODELS"):
        Settings.from_env({"UIE_MAX_LOADED_MODELS": "0"})
