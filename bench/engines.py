"""The two prediction engines side by side on the same model, and whether they find the same spans.

    .venv/bin/python bench/engines.py [--quick] [--size tiny|small|base ...]   (default: tiny and small)

``fast`` (the default: our static graph run by Paddle Inference, batches padded to their own longest input,
overlapping windows) against ``taskflow`` (PaddleNLP's Taskflow, the reference: every input padded to
``max_seq_len``, non-overlapping cuts). Speed is measured on random models of each size (speed depends on
the shape, not on the weights); agreement needs a model that finds something, so a tiny one is trained on
tests/corpus.py first (the recipe of tests/conftest.py's ``trained_checkpoint``).
"""

from __future__ import annotations

import random
from pathlib import Path

from common import (LABELS, arguments, build_model, corpus, long_text, machine, median, progress, quiet_logs,
                    short_texts, side_by_side, size_name, table, temp_home)

ENGINES = ("fast", "taskflow")
TRAINED_LABELS = ["人名", "地名", "组织"]


def engines(model_dir: Path) -> dict:
    """One Predictor per engine on the same checkpoint (the same static graph file serves both)."""
    from uie_backend.config import Settings
    from uie_backend.predictor import ModelSource, Predictor

    source = ModelSource(version="bench", path=model_dir)
    return {name: Predictor(source, Settings(engine=name, device="cpu")) for name in ENGINES}


def speed_rows(size: str, quick: bool) -> list[list]:
    """Seconds per call of each engine on three workloads, interleaved, and Taskflow's time over ours."""
    workloads = {"1 short text": (short_texts(1, seed=3), 5 if quick else 20),
                 "64 short texts": (short_texts(64, seed=64), 2 if quick else 5),
                 "one 3,000-char text": ([long_text(3000)], 2 if quick else 3)}
    rows = []
    with temp_home() as home:
        progress(f"{size}: building the model")
        by_engine = engines(build_model(size, home / "checkpoint"))
        for workload, (texts, repeats) in workloads.items():
            progress(f"{size}: {workload}, {repeats} repeats")
            secs = {name: median(samples) for name, samples in side_by_side(
                {name: (lambda p=p: p.extract(texts, LABELS)) for name, p in by_engine.items()}, repeats).items()}
            rows.append([size_name(size), workload, f"{secs['fast'] * 1000:.0f}", f"{secs['taskflow'] * 1000:.0f}",
                         f"{secs['taskflow'] / secs['fast']:.1f}×"])
    return rows


def train_tiny(out_dir: Path) -> Path:
    """tests/conftest.py's trained_checkpoint: a tiny UIE that has learnt the corpus's people, places, orgs."""
    from uie_backend import checkpoint, trainer
    from uie_backend.data import doccano_to_examples, tasks_to_doccano

    checkpoint.build_random(out_dir / "random", seed=0)
    examples = doccano_to_examples(tasks_to_doccano(corpus.annotated_tasks(40, seed=1)), TRAINED_LABELS,
                                   negative_ratio=2)
    config = trainer.TrainConfig(init_from=out_dir / "random", save_dir=out_dir / "trained", learning_rate=1e-3,
                                 batch_size=8, max_seq_len=64, max_steps=1500, eval_every=250, device="cpu")
    result = trainer.train(config, examples, examples)
    progress(f"trained tiny model: dev F1 {result.best_report.overall.f1:.3f} in {result.seconds:.0f} s")
    return out_dir / "trained" / "model_best"


def corpus_texts(count: int, templates: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    return [corpus.sentence(templates[i % len(templates)], rng)[0] for i in range(count)]


def agreement_rows() -> list[list]:
    """Spans found by both engines over spans found by either (label, start, end), on a trained tiny model."""
    inputs = {
        "200 short corpus sentences (seen + unseen templates)":
            corpus_texts(200, corpus.TRAIN_TEMPLATES + corpus.NEW_TEMPLATES, seed=5),
        "one 3,000-char text of corpus sentences (7 windows)":
            ["".join(corpus_texts(400, corpus.TRAIN_TEMPLATES, seed=6))[:3000]],
    }
    rows = []
    with temp_home() as home:
        progress("training a tiny model for the agreement check (1500 steps)")
        by_engine = engines(train_tiny(home))
        for name, texts in inputs.items():
            found = {engine: p.extract(texts, TRAINED_LABELS) for engine, p in by_engine.items()}
            spans = {engine: [{(e.label, e.start, e.end): e.score for e in per_text} for per_text in result]
                     for engine, result in found.items()}
            fast, flow = spans["fast"], spans["taskflow"]
            equal = sum(len(a.keys() & b.keys()) for a, b in zip(fast, flow))
            union = sum(len(a.keys() | b.keys()) for a, b in zip(fast, flow))
            same_texts = sum(a.keys() == b.keys() for a, b in zip(fast, flow))
            score_diff = max((abs(a[k] - b[k]) for a, b in zip(fast, flow) for k in a.keys() & b.keys()), default=0)
            rows.append([name, sum(map(len, fast)), sum(map(len, flow)), f"{equal} / {union}",
                         f"{same_texts} / {len(texts)}", f"{score_diff:.1e}"])
    return rows


def main() -> None:
    args = arguments(__doc__)
    quiet_logs()
    machine()
    print("Absolute numbers are noisy (shared 2-core machine); ratios are measured side by side in one run.")
    speed = [row for size in args.size for row in speed_rows(size, args.quick)]
    agreement = agreement_rows()
    table("Engines on the same random model, 7 labels: ms per call (median), and taskflow's time over fast's",
          ["model", "input", "fast ms", "taskflow ms", "taskflow / fast"], speed)
    table("Agreement on a trained tiny model (3 labels): spans (label, start, end) found by both / by either "
          "(Predictor cuts long texts into the same windows for both engines)",
          ["texts", "spans fast", "spans taskflow", "equal / union", "texts with identical spans",
           "max score difference on equal spans"], agreement)


if __name__ == "__main__":
    main()
