"""Fine-tuning speed: steps/s and examples/s of ``trainer.train`` at batch 16, max_seq_len 128, on CPU.

    .venv/bin/python bench/training.py [--quick] [--size tiny|small|base ...]   (default: tiny and small)

Examples are UIE prompt examples made from tests/corpus.py's annotated tasks, as a Start Training run makes
them from Label Studio's: from its short sentences (~15 characters), from the same sentences joined into
~120-character texts, which fill the 128 tokens, and from texts of 1 to 10 sentences, mixed. Batches are
padded to their own longest example, so the lengths in a batch decide its cost: the mixed texts are trained
twice, in plainly shuffled batches and in batches drawn from a length pool (``TrainConfig.length_pool``,
the default). No dev set, so no evaluation runs between steps; the first steps (kernel selection, allocator
warm-up) are left out, and a step's time is the mean over the rest (what an epoch costs; with mixed
lengths single steps vary).
"""

from __future__ import annotations

import random
import statistics
import time

from common import arguments, build_model, corpus, machine, progress, quiet_logs, size_name, table, temp_home

BATCH_SIZE = 16
MAX_SEQ_LEN = 128
SKIP_STEPS = 5
LABELS = ["人名", "地名", "组织"]


def joined_tasks(count: int, sentences: int | range, seed: int = 0) -> list[dict]:
    """Annotated tasks of ``sentences`` corpus sentences each (a range: a random number in it), spans
    shifted to their place in the text."""
    rng = random.Random(seed)
    out = []
    for task_id in range(1, count + 1):
        text, spans = "", []
        for n in range(sentences if isinstance(sentences, int) else rng.choice(sentences)):
            sentence, sentence_spans = corpus.sentence(corpus.TRAIN_TEMPLATES[n % 5], rng)
            spans += [(label, s + len(text), e + len(text)) for label, s, e in sentence_spans]
            text += sentence
        out.append(corpus.task(task_id, text, spans))
    return out


def examples(task_list: list[dict]) -> list[dict]:
    from uie_backend.data import doccano_to_examples, tasks_to_doccano

    return doccano_to_examples(tasks_to_doccano(task_list), LABELS, negative_ratio=2)


def step_seconds(size: str, train_examples: list[dict], steps: int, length_pool: int) -> list[float]:
    """Seconds of each training step after the first SKIP_STEPS, on a fresh random model of ``size``."""
    from uie_backend import trainer

    stamps = []
    with temp_home() as home:
        model = build_model(size, home / "checkpoint")
        config = trainer.TrainConfig(init_from=model, save_dir=home / "run", batch_size=BATCH_SIZE,
                                     max_seq_len=MAX_SEQ_LEN, max_steps=steps, device="cpu",
                                     length_pool=length_pool)
        trainer.train(config, train_examples, [], on_progress=lambda _: stamps.append(time.perf_counter()))
    return [b - a for a, b in zip(stamps[SKIP_STEPS:], stamps[SKIP_STEPS + 1:])]


def main() -> None:
    args = arguments(__doc__)
    quiet_logs()
    machine()
    print("Absolute numbers are noisy (shared 2-core machine); ratios are measured side by side in one run.")
    steps = 25 if args.quick else 50
    from uie_backend.trainer import TrainConfig

    pooled = TrainConfig.length_pool
    runs = [("corpus sentences", examples(corpus.annotated_tasks(200, seed=2)), pooled),
            ("10 sentences joined", examples(joined_tasks(60, 10)), pooled)]
    mixed = examples(joined_tasks(600, range(1, 11)))
    runs += [("1–10 sentences joined", mixed, 1), ("1–10 sentences joined", mixed, pooled)]
    rows = []
    for size in args.size:
        for name, train_examples, length_pool in runs:
            batches = "shuffled" if length_pool == 1 else f"length pool {length_pool}"
            progress(f"{size}: {steps} steps on {name}, {batches}")
            step = statistics.mean(step_seconds(size, train_examples, steps, length_pool))
            chars = sum(len(e["content"]) for e in train_examples) / len(train_examples)
            rows.append([size_name(size), name, f"{chars:.0f}", batches, steps - SKIP_STEPS - 1,
                         f"{step * 1000:.0f}", f"{1 / step:.2f}", f"{BATCH_SIZE / step:.0f}"])
    table(f"Training on CPU, batch {BATCH_SIZE}, max_seq_len {MAX_SEQ_LEN} (mean step after the first {SKIP_STEPS})",
          ["model", "examples", "mean text chars", "batches", "steps timed", "ms/step", "steps/s", "examples/s"], rows)


if __name__ == "__main__":
    main()
