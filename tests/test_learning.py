"""The loop that is the product: annotations in, a better model served, without a restart."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import corpus
from conftest import install_model
from my_ml_backend import UIEBackend
from uie_backend.metrics import score_spans
from uie_backend.data import tasks_to_doccano
from uie_backend.server import create_app
from uie_backend.training import split_train_dev


def span_f1(client, tasks_with_spans) -> float:
    tasks = [{"id": i, "data": {"text": text}} for i, (text, _) in enumerate(tasks_with_spans)]
    answer = client.post("/predict", json={"tasks": tasks, "label_config": corpus.LABEL_CONFIG, "project": 7})
    assert answer.status_code == 200
    predicted = [{(r["value"]["labels"][0], r["value"]["start"], r["value"]["end"]) for r in res["result"]}
                 for res in answer.json["results"]]
    return score_spans([set(spans) for _, spans in tasks_with_spans], predicted).overall.f1


@pytest.mark.slow
def test_training_on_twenty_annotated_tasks_teaches_an_untrained_model_and_serves_it(backend_env, random_checkpoint):
    install_model(random_checkpoint, backend_env)
    app = create_app(UIEBackend)
    client = app.test_client()
    version_of = lambda: client.post("/setup", json={"project": "7.1795936584",  # noqa: E731
                                                      "schema": corpus.LABEL_CONFIG}).json["model_version"]
    version_before = version_of()
    train_tasks = corpus.annotated_tasks(20, seed=5)
    # The run learns every task (its train split chooses the epochs and its dev split scores them), and new
    # sentences put the train split's entities in other contexts.
    records = tasks_to_doccano(train_tasks)
    learnt, _, held_out = split_train_dev(records)
    assert held_out
    seen = [(r["text"], [(e["label"], e["start_offset"], e["end_offset"]) for e in r["entities"]]) for r in records]
    pools = {}
    for record in learnt:
        for e in record["entities"]:
            pools.setdefault(e["label"], []).append(record["text"][e["start_offset"]:e["end_offset"]])
    rng = random.Random(11)
    new = [corpus.sentence(corpus.NEW_TEMPLATES[i % 2], rng, pools) for i in range(10)]
    assert span_f1(client, seen) < 0.2  # the starting model knows nothing

    answer = client.post("/train", json={"annotations": train_tasks, "label_config": corpus.LABEL_CONFIG,
                                          "project": "7.1795936584"})
    assert answer.status_code == 201
    assert app.extensions["uie_jobs"].wait_idle(300)
    job = client.get("/training").json["recent"][0]
    assert job["state"] == "succeeded", job
    assert job["summary"]["activated"] and job["summary"]["tasks"] == 20

    assert version_of() == job["summary"]["version"] != version_before
    assert client.get("/health").json["model_version"] == version_before  # the base, for other projects
    # Every run keeps the exact data it used next to the model it made.
    run = Path(job["dir"])
    for name in ("tasks.json", "doccano.jsonl", "train.txt", "dev.txt", "all.txt", "report.json", "report.md",
                 "model_best", "held-out/model_best"):
        assert (run / name).exists(), name
    # The 20 annotated sentences themselves: a model that learnt them gets nearly all (0.9 leaves room for a
    # boundary slip). New sentences put the same entities into contexts it never saw; from 13 sentences a
    # randomly initialised 2-layer model generalises only partly (0.68 measured, deterministic on CPU), so
    # 0.6 is the bar: far above the untrained model's 0, and missed by a loop that does not train or reload.
    assert span_f1(client, seen) >= 0.9
    assert span_f1(client, new) >= 0.6


@pytest.mark.slow
def test_start_training_on_twenty_resume_tasks_teaches_the_shipped_model_every_one_of_them(tmp_path):
    """A real project's case: 20 résumé tasks (two labels the shipped model knows, two it does not). Their dev
    split holds 6 spans, and an early epoch that found one more of them than the next (F1 0.5) chose 7 epochs
    for the refit, which then got 0.70 of the annotated tasks themselves; the tasks must all be learnt."""
    from conftest import SHARED
    from uie_backend import lineages, registry, trainer, training
    from uie_backend.config import EMBEDDED_MODEL, Settings
    from uie_backend.data import doccano_to_examples, load_tasks

    labels = ["人名", "组织", "职位", "学历"]
    tasks = load_tasks(SHARED / "data" / "ner" / "resume" / "train.json")
    random.Random(1).shuffle(tasks)
    tasks = corpus.keep_labels(tasks[:20], labels)
    settings = Settings.from_env({"UIE_CHECKPOINT_DIR": str(tmp_path / "checkpoint"), "UIE_DEVICE": "cpu",
                                  "UIE_DATA_DIR": str(tmp_path / "data"), "PPNLP_HOME": str(tmp_path / "ppnlp"),
                                  "UIE_MODEL": "", "UIE_TRAIN_FROM": str(EMBEDDED_MODEL)})
    request = training.TrainingRequest(label_config=corpus.label_config(labels), project_id=1, tasks=tasks)
    summary = training.run(request, settings, tmp_path / "run")
    assert summary["held_out"] and summary["dev_new"]["overall"]["support"] == 6

    model = registry.versions_dir(lineages.project_dir(settings, 1)) / summary["version"]
    own = doccano_to_examples(tasks_to_doccano(tasks), labels, negative_ratio=len(labels))
    assert trainer.evaluate_checkpoint(model, own, max_seq_len=256, device="cpu").overall.f1 >= 0.95
