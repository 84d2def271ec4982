"""Relations through a real Label Studio 1.23.2: annotated triples in, learnt, predicted triples back.

What a user of a `<Relations>` project does: annotate spans and draw relations between them, press Start
Training, Retrieve Predictions. Label Studio hands the backend no annotations with START_TRAINING, so the
relations it learns are the ones it pulled back from Label Studio's export; the predictions checked are the
ones Label Studio *stored*, as the labeling page shows them. Along the way: Label Studio keeps annotations and
predictions holding relation results exactly as they were sent, and a screenshot of the labeling page shows
one prediction's relations as arrows (docs/screenshots/relations.png, in the README).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import schema_corpus
from test_schema_learning import recall, triples

from .backend_process import BackendProcess
from .labelstudio import REPO_ROOT, LabelStudio
from .test_end_to_end import TRAINING_TIMEOUT_S, Steps, predictions_by_task, steps  # noqa: F401 (steps: fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TASKS = 8  # the size test_schema_learning.py shows the tiny model learns in one run (about a minute)
SEED = 3
MIN_TRIPLE_RECALL = 0.8  # of the annotated (predicate, subject span, object span), in the stored predictions
README_SCREENSHOT = REPO_ROOT / "docs" / "screenshots" / "relations.png"  # refreshed only with UPDATE_SCREENSHOTS=1


def without_scores(result: list[dict]) -> list[dict]:
    """A result minus its scores: the same model may score a span a rounding step apart in another batch."""
    return [{key: value for key, value in item.items() if key != "score"} for item in result]


def relation_page_ready_js(text: str, regions: int, relations: int) -> str:
    """JavaScript for the screenshot fixture: select the task's prediction in the labeling page (an annotated
    task opens on its annotation) and open the side panel's Relations tab, then wait until the text, its
    regions, every relation's arrow and its entry in the Relations list show.

    `window.Htx` is the labeling editor's store; `selectPrediction` is what clicking the prediction does. A
    side panel tab (`#<title>-draggable`) activates on mousedown, not on click: it can be dragged away.
    """
    return f"""(() => {{
        const store = window.Htx && window.Htx.annotationStore;
        if (!store || !store.selected) return {{ready: false, stage: "loading"}};
        const prediction = store.predictions[0];
        if (!prediction) return {{ready: false, stage: "no prediction in the page"}};
        if (store.selected !== prediction) {{
            store.selectPrediction(prediction.id);
            return {{ready: false, stage: "selecting the prediction"}};
        }}
        const listed = document.querySelectorAll('[class*="relations__item"]').length;
        const tab = document.getElementById("Relations-draggable");
        if (tab && listed < {relations}) {{
            tab.dispatchEvent(new MouseEvent("mousedown", {{bubbles: true, buttons: 1}}));
            document.dispatchEvent(new MouseEvent("mouseup", {{bubbles: true}}));
        }}
        const marks = document.querySelectorAll('.htx-highlight').length;
        const arrows = document.querySelectorAll('.relations-overlay g[id][visibility="visible"]').length;
        const shown = document.body.innerText.includes({json.dumps(text)});
        const inStore = prediction.relationStore.relations.length;
        return {{ready: shown && marks >= {regions} && arrows >= {relations} && listed >= {relations},
                marks, arrows, listed, inStore, shown}};
    }})()"""


def test_relations_annotated_in_label_studio_are_learnt_and_come_back_as_stored_relation_predictions(
        label_studio: LabelStudio, uie_backend: BackendProcess, screenshot, steps: Steps, tmp_path: Path):
    backend = uie_backend
    config = schema_corpus.RELATION_CONFIG
    tasks = schema_corpus.relation_tasks(TASKS, seed=SEED)
    gold = [triples(task["annotations"][0]["result"]) for task in tasks]

    with steps(f"create project, import {TASKS} tasks"):
        pid = label_studio.create_project("e2e relations", config)["id"]
        task_ids = label_studio.import_tasks(pid, [task["data"] for task in tasks])
        assert len(task_ids) == TASKS

    with steps("annotate spans and relations through the API"):
        for task_id, task in zip(task_ids, tasks):
            given = task["annotations"][0]["result"]
            assert label_studio.create_annotation(task_id, given)["result"] == given
        # what the backend will pull: the export holds the relation results as they were given
        exported = {task["id"]: task["annotations"][0]["result"] for task in label_studio.export_tasks(pid)}
        assert [exported[task_id] for task_id in task_ids] == [task["annotations"][0]["result"] for task in tasks]

    with steps("connect backend, press Start Training"):
        ml = label_studio.connect_ml_backend(pid, backend.url)
        # the base version from /health: a /setup of ours, without Label Studio's URL and token, would make
        # the backend forget those Label Studio's own /setup gave it, and training could not pull annotations
        base = backend.health()["model_version"]
        jobs_before = {job["id"] for job in backend.training()["recent"]}
        label_studio.start_training(ml["id"])
        status = backend.training()
        job = next(job for job in status["running"] + status["recent"]
                   if job["id"] not in jobs_before and job["project"] == str(pid))

    with steps("fine-tune (poll GET /training)"):
        job = backend.wait_for_training(job["id"], TRAINING_TIMEOUT_S)
        assert job["state"] == "succeeded", f"{job}\n{(Path(job['dir']) / 'train.log').read_text()[-3000:]}"
        summary = job["summary"]
        assert summary["tasks"] == TASKS and summary["activated"], summary
        trained = backend.setup(config, pid)["model_version"]
        assert trained == summary["version"] != base

    with steps(f"retrieve predictions, {TASKS} annotated tasks"):
        assert label_studio.retrieve_predictions(pid, task_ids)["processed_items"] == TASKS
        stored = predictions_by_task(label_studio, pid, trained)
        assert sorted(stored) == sorted(task_ids) and all(len(p) == 1 for p in stored.values()), stored
        results = [stored[task_id][0]["result"] for task_id in task_ids]
        task_scores = [stored[task_id][0]["score"] for task_id in task_ids]
        predicted = [triples(result) for result in results]  # asserts each relation joins regions of its result
        triple_recall = recall(gold, predicted)
        print(f"\n{sum(map(len, gold))} annotated triples in {TASKS} tasks; recall in the stored predictions "
              f"of {trained}: {triple_recall:.3f}")
        for task, found, expected in zip(tasks, predicted, gold):
            print(f"  {task['data']['text']}  missed {sorted(expected - found)}  extra {sorted(found - expected)}")
        assert triple_recall >= MIN_TRIPLE_RECALL

    with steps("compare with the backend's own answer"):
        # Label Studio stored the prediction as the backend gave it: relation results without ids, their
        # from_id/to_id, the regions' scores (rounding aside: a batch of other tasks may move the 6th decimal)
        answer = backend.api("POST", "/predict", json={
            "tasks": [label_studio.get_task(task_id) for task_id in task_ids], "label_config": config,
            "project": f"{pid}.1795936584"})
        assert answer["model_version"] == trained
        assert [without_scores(r["result"]) for r in answer["results"]] == [without_scores(r) for r in results]
        assert task_scores == pytest.approx([r["score"] for r in answer["results"]], abs=1e-4)
        for given, kept in zip(answer["results"], results):
            assert [item.get("score") for item in kept] == pytest.approx([item.get("score") for item in given["result"]],
                                                                         abs=1e-4)

    with steps("screenshot of the labeling page"):
        # the task whose prediction holds the most relations, all of them right
        shown = max(range(TASKS), key=lambda n: (predicted[n] == gold[n], len(predicted[n])))
        relations = sum(1 for item in results[shown] if item["type"] == "relation")
        regions = sum(1 for item in results[shown] if item["type"] == "labels")
        assert relations > 0
        shot = README_SCREENSHOT if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path / "relations.png"
        page = screenshot(f"{label_studio.url}/projects/{pid}/data?task={task_ids[shown]}", shot,
                          ready_js=relation_page_ready_js(tasks[shown]["data"]["text"], regions, relations))
        assert page["inStore"] == relations and page["arrows"] >= relations and page["listed"] >= relations, page
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"\nscreenshot of task {task_ids[shown]} ({regions} regions, {relations} relations): {shot}")
