"""UIE's whole schema through the backend: Start Training on relations, events and choices teaches a tiny
random model each of them, and /predict answers them in the shapes Label Studio shows."""

from __future__ import annotations

import pytest

import schema_corpus
from conftest import install_model
from my_ml_backend import UIEBackend
from uie_backend import checkpoint
from uie_backend.server import create_app

PROJECT = "9.1795936584"
TASKS = 8  # fewer than training.MIN_HELD_OUT_TASKS: one run on all of them, as a new project's first tasks are


def trained_client(settings, model, tasks, config):
    install_model(model, settings)
    app = create_app(UIEBackend)
    client = app.test_client()
    answer = client.post("/train", json={"annotations": tasks, "label_config": config, "project": PROJECT})
    assert answer.status_code == 201, answer.json
    assert app.extensions["uie_jobs"].wait_idle(600)
    job = client.get("/training").json["recent"][0]
    assert job["state"] == "succeeded", job
    return client, job


def predict(client, tasks, config) -> list[list[dict]]:
    bare = [{"id": t["id"], "data": t["data"], "project": 9} for t in tasks]
    answer = client.post("/predict", json={"tasks": bare, "label_config": config, "project": PROJECT})
    assert answer.status_code == 200, answer.json
    return [prediction["result"] for prediction in answer.json["results"]]


def triples(result: list[dict]) -> set[tuple]:
    """(predicate, subject span, object span) of every relation, checked to join regions of the same result."""
    spans = {r["id"]: (r["value"]["labels"][0], r["value"]["start"], r["value"]["end"])
             for r in result if r["type"] == "labels"}
    found = set()
    for r in result:
        if r["type"] == "relation":
            assert r["from_id"] in spans and r["to_id"] in spans, r  # Label Studio draws only such arrows
            assert r["direction"] == "right" and len(r["labels"]) == 1
            found.add((r["labels"][0], spans[r["from_id"]], spans[r["to_id"]]))
    return found


def recall(gold: list[set], predicted: list[set]) -> float:
    total = sum(len(g) for g in gold)
    return sum(len(g & p) for g, p in zip(gold, predicted)) / total


@pytest.mark.slow
def test_start_training_on_relations_learns_them(backend_env, random_checkpoint):
    tasks = schema_corpus.relation_tasks(TASKS, seed=3)
    config = schema_corpus.RELATION_CONFIG
    client, job = trained_client(backend_env, random_checkpoint, tasks, config)
    gold = [triples(t["annotations"][0]["result"]) for t in tasks]
    assert recall(gold, [triples(r) for r in predict(client, tasks, config)]) >= 0.8
    # the schema tree the run learnt is kept with the model: which predicates each subject label takes
    tree = checkpoint.read_meta(backend_env.checkpoint_dir / "projects" / "9" / "model_best")["relation_schema"]
    assert tree["predicates"] == {"人物": {"父亲": ["人物"], "出生地": ["地点"]}}
    assert "父亲" in job["summary"]["dev_new"]["relations"]["per_label"]


@pytest.mark.slow
def test_start_training_on_events_learns_triggers_and_their_roles(backend_env, random_checkpoint):
    tasks = schema_corpus.event_tasks(TASKS, seed=4)
    config = schema_corpus.EVENT_CONFIG
    client, _ = trained_client(backend_env, random_checkpoint, tasks, config)
    gold = [triples(t["annotations"][0]["result"]) for t in tasks]
    results = predict(client, tasks, config)
    assert recall(gold, [triples(r) for r in results]) >= 0.8
    # roles are found through their triggers: both conventions, 地震触发词 and the plain 组织关系-裁员
    assert {t[0] for g in gold for t in g} == {"裁员方", "裁员人数", "震中"}
    assert {t[1][0] for r in results for t in triples(r)} == {"组织关系-裁员", "地震触发词"}


@pytest.mark.slow
def test_start_training_on_choices_learns_text_and_region_choices(backend_env, random_checkpoint):
    tasks = schema_corpus.choice_tasks(TASKS, seed=5)
    config = schema_corpus.CHOICES_CONFIG
    client, job = trained_client(backend_env, random_checkpoint, tasks, config)

    def choices(result, per_region):
        return {(r["value"].get("start"), r["value"]["choices"][0]) for r in result
                if r["type"] == "choices" and ("start" in r["value"]) == per_region}

    results = predict(client, tasks, config)
    gold = [t["annotations"][0]["result"] for t in tasks]
    for per_region in (False, True):
        assert recall([choices(g, per_region) for g in gold], [choices(r, per_region) for r in results]) >= 0.8
    for result in results:
        spans = {r["id"] for r in result if r["type"] == "labels"}
        for r in result:
            if r["type"] == "choices":
                assert 0 < r["score"] <= 1 and len(r["value"]["choices"]) == 1  # choice="single"
                if r["from_name"] == "评价":
                    assert r["id"] in spans  # a per-region choice shares its region's id, as Label Studio's do
    assert job["summary"]["dev_new"]["choices"]["sentiment"]["accuracy"] >= 0.8
