"""Start Training on a handful of tasks, against a real Label Studio 1.23.2: the project learns them, and a
second project, connected to the same backend, is served exactly what it was before.

What a new user does first: annotate 5 tasks, press Start Training, look at the predictions Label Studio
then stores for those very tasks. They are the new model's complete opinion (not the opinion minus what
was annotated), and the model trained on all 5 tasks, so they reproduce the annotations.
"""

from __future__ import annotations

import random
import time

import pytest

import corpus
from uie_backend.metrics import score_spans

from .backend_process import BackendProcess
from .labelstudio import LabelStudio
from .test_end_to_end import LABEL_CONFIG, OTHER_NAMES_CONFIG, TRAINING_TIMEOUT_S, predictions_by_task, spans_of

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ANNOTATED = 5
MIN_RECALL = 0.8  # of the annotated spans, in the predictions stored after training (the bar)


def stored_spans(prediction: dict) -> set[tuple[str, int, int]]:
    return {(r["value"]["labels"][0], r["value"]["start"], r["value"]["end"]) for r in prediction["result"]}


def scored_regions(result: list[dict]) -> list[tuple]:
    return [(r["from_name"], r["value"]["labels"][0], r["value"]["start"], r["value"]["end"], r["score"]) for r in result]


def test_start_training_on_five_annotated_tasks_learns_them_and_leaves_another_project_as_it_was(
        label_studio: LabelStudio, uie_backend: BackendProcess):
    backend = uie_backend
    first = label_studio.create_project("five tasks", LABEL_CONFIG)["id"]
    annotated = corpus.annotated_tasks(ANNOTATED, seed=21)
    first_ids = label_studio.import_tasks(first, [t["data"] for t in annotated])
    ml = label_studio.connect_ml_backend(first, backend.url)
    second = label_studio.create_project("another team", OTHER_NAMES_CONFIG)["id"]
    second_texts = [corpus.sentence(template, random.Random(n))[0] for n, template in enumerate(corpus.NEW_TEMPLATES * 2)]
    second_ids = label_studio.import_tasks(second, [{"content": text} for text in second_texts])
    label_studio.connect_ml_backend(second, backend.url, title="uie (ner/doc)")
    base = backend.setup(OTHER_NAMES_CONFIG, second)["model_version"]
    assert label_studio.retrieve_predictions(second, second_ids)["processed_items"] == len(second_ids)
    second_before = predictions_by_task(label_studio, second, base)
    assert sorted(second_before) == sorted(second_ids)

    for task_id, task in zip(first_ids, annotated):
        label_studio.create_annotation(task_id, task["annotations"][0]["result"])
    jobs_before = {job["id"] for job in backend.training()["recent"]}
    label_studio.start_training(ml["id"])
    job = next(job for job in backend.training()["running"] + backend.training()["recent"]
               if job["id"] not in jobs_before and job["project"] == str(first))
    job = backend.wait_for_training(job["id"], TRAINING_TIMEOUT_S)
    assert job["state"] == "succeeded", job
    summary = job["summary"]
    assert summary["tasks"] == ANNOTATED and summary["activated"], summary
    trained = backend.setup(LABEL_CONFIG, first)["model_version"]
    assert trained == summary["version"] != base

    # Retrieve Predictions on the annotated tasks: Label Studio stores the new version's opinion of each
    assert label_studio.retrieve_predictions(first, first_ids)["processed_items"] == ANNOTATED
    stored = predictions_by_task(label_studio, first, trained)
    assert sorted(stored) == sorted(first_ids) and all(len(p) == 1 for p in stored.values()), stored
    gold = [set(spans_of(task)) for task in annotated]
    report = score_spans(gold, [stored_spans(stored[task_id][0]) for task_id in first_ids])
    print(f"\n{ANNOTATED} annotated tasks, stored predictions after Start Training: "
          f"{report.overall.support} spans, recall {report.overall.recall:.3f}\n{report.to_markdown()}")
    assert report.overall.recall >= MIN_RECALL, report.to_markdown()

    # the other project: the same version, the same answer, nothing new stored
    assert backend.setup(OTHER_NAMES_CONFIG, second)["model_version"] == base
    assert label_studio.retrieve_predictions(second, second_ids)["processed_items"] == len(second_ids)
    assert predictions_by_task(label_studio, second, trained) == {}
    again = backend.api("POST", "/predict", json={
        "tasks": [label_studio.get_task(task_id) for task_id in second_ids], "label_config": OTHER_NAMES_CONFIG,
        "project": f"{second}.{int(time.time())}"})
    assert again["model_version"] == base
    assert ([scored_regions(r["result"]) for r in again["results"]]
            == [scored_regions(second_before[task_id][0]["result"]) for task_id in second_ids])
