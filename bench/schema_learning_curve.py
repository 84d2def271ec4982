"""What Start Training buys on relations and on classification: what /predict returns for dev tasks after the
model was fine-tuned on N annotated tasks.

    .venv/bin/python bench/schema_learning_curve.py [--data ../shared/data] [--kinds relations sentiment]
        [--sizes 50 200 1000] [--dev-tasks 300] [--model DIR (default: the embedded model)] [--out FILE]

Each point is a real Start Training run (``learning_curve.fine_tune``: ``training.run`` from the embedded model,
settings at their defaults) on the first N tasks of the training file in a fixed shuffled order. Then the first
``--dev-tasks`` dev tasks are predicted end to end as ``/predict`` predicts them (``regions.predict_tasks`` with the
trained model loaded by ``Predictor``: entities, then the relation prompts of the schema tree that run learnt,
then choices) and scored task by task (``task_scores.py``):

* ``relations`` (DuIE 2.0: 26 entity types, 48 predicates): triples (predicate, subject span, object span), exact;
  overall and for the 5 predicates most frequent among the dev tasks scored. DuIE marks only the entities of its
  triples, so entity spans are not scored on their own.
* ``sentiment`` (ChnSentiCorp, ``<Choices name="sentiment">`` 正向/负向): accuracy of the task's choice; a task
  left without an answer counts as wrong.

Row 0 is the embedded model as shipped: it has learnt no relations, so it asks none, and it never saw a choice
prompt. Beside the end-to-end scores, each row shows the score the training run itself reported on its held-out
dev split (prompt by prompt, 20% of the N tasks): where the two disagree, the run's report misleads. Quality,
not speed: one run per point (training is seeded), with the seconds each part took.
"""

from __future__ import annotations

import argparse
import gc
import random
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from common import EMBEDDED_MODEL, REPO, machine, progress, quiet_logs, temp_home
from learning_curve import bench_settings, fine_tune, fine_tune_learning_rate
from task_scores import choice_accuracy, gold_result, triple_report, triples

TOP_PREDICATES = 5


@dataclass(frozen=True)
class Kind:
    """One data set: where it is, and how a point is scored (header cells, and the row cells of one point)."""
    folder: str                 # under --data, with train.json, dev.json and labeling_config.xml
    title: str
    headers: Callable[[list[list[dict]]], list[str]]
    cells: Callable[[list[list[dict]], list[list[dict]]], list[str]]
    run_score: tuple[str, Callable[[dict], float]]  # a score of the run's own report (report.json's "dev_new")


def top_predicates(gold: Sequence[Sequence[dict]]) -> list[tuple[str, int]]:
    """The most frequent predicates of the gold triples, with their counts."""
    return Counter(t[0] for result in gold for t in triples(result)).most_common(TOP_PREDICATES)


def relation_headers(gold: list[list[dict]]) -> list[str]:
    return ["triple P", "triple R", "triple F1", *(f"{p} ({n})" for p, n in top_predicates(gold)), "relations/task"]


def relation_cells(gold: list[list[dict]], predicted: list[list[dict]]) -> list[str]:
    report = triple_report(gold, predicted)
    overall = report.overall
    per_predicate = [report.per_label[p].f1 if p in report.per_label else 0.0 for p, _ in top_predicates(gold)]
    relations = sum(1 for result in predicted for r in result if r.get("type") == "relation")
    return [f"{overall.precision:.3f}", f"{overall.recall:.3f}", f"{overall.f1:.3f}",
            *(f"{f1:.2f}" for f1 in per_predicate), f"{relations / len(predicted):.2f}"]


def sentiment_headers(gold: list[list[dict]]) -> list[str]:
    return ["accuracy", "tasks without an answer"]


def sentiment_cells(gold: list[list[dict]], predicted: list[list[dict]]) -> list[str]:
    accuracy, unanswered = choice_accuracy(gold, predicted, "sentiment")
    return [f"{accuracy:.3f}", str(unanswered)]


KINDS = {
    "relations": Kind("relations", "relations (DuIE 2.0)", relation_headers, relation_cells,
                      ("run's report: relation F1", lambda dev: dev["relations"]["overall"]["f1"])),
    "sentiment": Kind("classification/chnsenticorp", "sentiment (ChnSentiCorp)", sentiment_headers, sentiment_cells,
                      ("run's report: accuracy", lambda dev: dev["choices"]["sentiment"]["accuracy"])),
}


def predict_dev(model_dir: Path, settings: Any, schema: Any, dev_tasks: list[dict]) -> tuple[list[list[dict]], float]:
    """The results ``/predict`` would return for the dev tasks with this model, and the seconds it took."""
    from uie_backend import checkpoint, regions
    from uie_backend.lineages import ModelSource
    from uie_backend.predictor import Predictor

    predictor = Predictor(ModelSource(version=checkpoint.model_version(model_dir), path=model_dir), settings)
    began = time.perf_counter()
    predictions, errors = regions.predict_tasks(dev_tasks, schema, predictor)
    seconds = time.perf_counter() - began
    assert not errors, errors[:3]
    del predictor
    gc.collect()
    return [prediction["result"] for prediction in predictions], seconds


def curve(kind: Kind, args: argparse.Namespace, learning_rate: float) -> list[str]:
    """Every point of one data set; its markdown table (also printed row by row as points finish)."""
    from uie_backend.data import load_tasks
    from uie_backend.labelconfig import parse_label_config

    folder = args.data / kind.folder
    config = (folder / "labeling_config.xml").read_text(encoding="utf-8")
    schema = parse_label_config(config)
    train_tasks = load_tasks(folder / "train.json")
    random.Random(0).shuffle(train_tasks)
    dev_tasks = load_tasks(folder / "dev.json")[:args.dev_tasks]
    gold = [gold_result(task) for task in dev_tasks]
    run_score_name, run_score = kind.run_score
    header = ["tasks", *kind.headers(gold), run_score_name, "train steps", "epochs", "fine-tune s", "predict s"]
    lines = [f"| {' | '.join(header)} |", "|" + "---:|" * len(header)]
    print(f"\n{kind.title}: {len(dev_tasks)} dev tasks\n" + "\n".join(lines), flush=True)
    with temp_home() as home:
        shipped = home / "shipped"
        shutil.copytree(args.model, shipped)  # loading writes the static-graph export next to the weights
        for size in [0, *args.sizes]:
            began = time.perf_counter()
            if size == 0:
                model, summary = shipped, {"steps": 0, "epochs": 0, "dev_new": None}
            else:
                progress(f"{kind.title}: Start Training on {size} tasks")
                model, summary = fine_tune(args.model, train_tasks[:size], config, learning_rate, home / f"n{size}")
            trained = time.perf_counter() - began
            progress(f"{kind.title}, {size} tasks: predicting {len(dev_tasks)} dev tasks")
            predicted, predict_seconds = predict_dev(model, bench_settings(args.model, learning_rate, home / "predict"),
                                                     schema, dev_tasks)
            reported = f"{run_score(summary['dev_new']):.3f}" if summary["dev_new"] else "–"
            row = [str(size), *kind.cells(gold, predicted), reported, str(summary["steps"]), str(summary["epochs"]),
                   f"{trained:.0f}", f"{predict_seconds:.0f}"]
            lines.append(f"| {' | '.join(row)} |")
            print(lines[-1], flush=True)
    return [f"### {kind.title}: {len(dev_tasks)} dev tasks, after Start Training on N tasks", "", *lines, ""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                   help="folder of the public data sets (../shared/data)")
    p.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS))
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000], help="training tasks per point")
    p.add_argument("--dev-tasks", type=int, default=300, help="dev tasks scored (the first N of dev.json)")
    p.add_argument("--model", type=Path, default=EMBEDDED_MODEL)
    p.add_argument("--out", type=Path, help="also write the report (markdown) here")
    args = p.parse_args()
    quiet_logs()
    measured_on = machine()
    learning_rate = fine_tune_learning_rate(args.model)
    start = args.model.relative_to(REPO) if args.model.is_relative_to(REPO) else args.model
    report = [f"Each row is one Start Training run from `{start}` (lr {learning_rate:g}, other settings at their "
              f"defaults) on the first N training tasks (fixed shuffle), then the dev tasks predicted end to end "
              f"(`bench/schema_learning_curve.py`). {measured_on}", ""]
    for name in args.kinds:
        report += curve(KINDS[name], args, learning_rate)
    print("\n" + "\n".join(report))
    if args.out:
        args.out.write_text("\n".join(report) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
