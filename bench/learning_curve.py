"""What "Start Training" buys: dev F1 on a domain the model never saw, after fine-tuning on N annotated tasks.

    .venv/bin/python bench/learning_curve.py --corpora ../shared/data/ner [--model DIR (default: the embedded model)]
        [--domain resume] [--sizes 10 50 200] [--labels 人名 组织 职位 学历] [--no-random] [--out FILE]

Each point is a real Start Training run (``training.run``: the backend's own split, epochs, learning rate and
evaluation gate, settings at their defaults) on the first N tasks of the domain's training file in a fixed
shuffled order, then the domain's whole dev file is scored. The same runs from a randomly initialised model of
the same shape (same learning rate) show how much of the result the shipped model's training is worth.
Quality, not speed: one run per point (training is seeded), printed as a markdown table.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING

from common import EMBEDDED_MODEL, REPO, machine, quiet_logs, temp_home
from corpus import keep_labels, label_config

if TYPE_CHECKING:
    from uie_backend.config import Settings

DEFAULT_LABELS = ["人名", "组织", "职位", "学历"]  # resume: two labels the shipped model knows, two it does not


def fine_tune_learning_rate(start: Path) -> float:
    """The learning rate Start Training uses from ``start``: its own recommendation, else PaddleNLP's 1e-5
    (``training.learning_rate`` without ``UIE_TRAIN_LR``); a random model of its shape gets the same."""
    from uie_backend import checkpoint, training

    return float(checkpoint.read_meta(start).get("fine_tune_learning_rate") or training.DEFAULT_LEARNING_RATE)


def bench_settings(start: Path, learning_rate: float, home: Path) -> Settings:
    """The backend's settings for a project whose base is ``start``, every folder in ``home``, on CPU; the
    defaults otherwise (what Start Training and /predict use)."""
    from uie_backend.config import Settings

    return Settings.from_env({
        "UIE_CHECKPOINT_DIR": str(home / "checkpoint"), "UIE_DATA_DIR": str(home / "data"),
        "PPNLP_HOME": str(home / "ppnlp"), "UIE_DEVICE": "cpu", "UIE_MODEL": "", "UIE_TRAIN_FROM": str(start),
        "UIE_TRAIN_LR": str(learning_rate), "UIE_ACTIVATION_POLICY": "always"})


def fine_tune(start: Path, tasks: list[dict], config: str, learning_rate: float, home: Path) -> tuple[Path, dict]:
    """One Start Training run from ``start`` on ``tasks`` labelled with the labeling ``config``; the model it
    produced and its summary."""
    from uie_backend import lineages, registry, training

    settings = bench_settings(start, learning_rate, home)
    request = training.TrainingRequest(label_config=config, project_id=1, tasks=tasks)
    summary = training.run(request, settings, home / "data" / "runs" / f"n{len(tasks)}")
    return registry.versions_dir(lineages.project_dir(settings, 1)) / summary["version"], summary


def dev_f1(model: Path, dev_examples: list[dict]) -> tuple[float, dict[str, float]]:
    from uie_backend import trainer

    report = trainer.evaluate_checkpoint(model, dev_examples, max_seq_len=256, device="cpu")
    return report.overall.f1, {label: scores.f1 for label, scores in report.per_label.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpora", type=Path, required=True, help="folder of the public corpora (../shared/data/ner)")
    p.add_argument("--model", type=Path, default=EMBEDDED_MODEL)
    p.add_argument("--domain", default="resume", help="a folder of --corpora with train.json and dev.json")
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 200])
    p.add_argument("--labels", nargs="+", default=DEFAULT_LABELS)
    p.add_argument("--no-random", action="store_true", help="skip the runs from a random model")
    p.add_argument("--out", type=Path, help="also write the report (markdown) here")
    args = p.parse_args()
    quiet_logs()
    measured_on = machine()
    from uie_backend import checkpoint
    from uie_backend.data import doccano_to_examples, load_tasks, tasks_to_doccano

    train_tasks = keep_labels(load_tasks(args.corpora / args.domain / "train.json"), args.labels)
    random.Random(0).shuffle(train_tasks)
    dev_tasks = keep_labels(load_tasks(args.corpora / args.domain / "dev.json"), args.labels)
    dev_examples = doccano_to_examples(tasks_to_doccano(dev_tasks), args.labels, negative_ratio=len(args.labels))
    learning_rate = fine_tune_learning_rate(args.model)
    config = json.loads((args.model / "config.json").read_text(encoding="utf-8"))

    rows = []
    with temp_home() as home:
        starts = {"shipped": args.model}
        if not args.no_random:
            checkpoint.build_random(home / "random", hidden_size=config["hidden_size"],
                                    num_layers=config["num_hidden_layers"], num_heads=config["num_attention_heads"])
            starts["random init"] = home / "random"
        for name, start in starts.items():
            f1, per_label = dev_f1(start, dev_examples)
            rows.append((name, 0, f1, per_label, 0.0))
            for size in args.sizes:
                began = time.perf_counter()
                model, _ = fine_tune(start, train_tasks[:size], label_config(args.labels), learning_rate,
                                     home / f"{name}-{size}")
                f1, per_label = dev_f1(model, dev_examples)
                rows.append((name, size, f1, per_label, time.perf_counter() - began))
                print(f"{name} + {size} tasks: dev F1 {f1:.4f} ({rows[-1][4]:.0f} s)", flush=True)

    start = args.model.relative_to(REPO) if args.model.is_relative_to(REPO) else args.model
    report = [f"## Learning curve: {args.domain} dev ({len(dev_tasks)} tasks), labels {', '.join(args.labels)}", "",
              f"Each row is one Start Training run on the first N tasks of `{args.domain}/train.json` (fixed shuffle), "
              f"from `{start}` or from a random model of its shape, fine-tuned as Start Training does (lr "
              f"{learning_rate:g}, other settings at their defaults), then scored on the whole dev file "
              f"(`bench/learning_curve.py`). {measured_on}", "",
              "| start | tasks | dev F1 | " + " | ".join(args.labels) + " | fine-tune s |",
              "|---|---:|---:|" + "---:|" * len(args.labels) + "---:|"]
    for name, size, f1, per_label, seconds in rows:
        cells = " | ".join(f"{per_label.get(label, 0.0):.2f}" for label in args.labels)
        report.append(f"| {name} | {size} | {f1:.3f} | {cells} | {seconds:.0f} |")
    print("\n" + "\n".join(report))
    if args.out:
        args.out.write_text("\n".join(report) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
