"""paddle 2.6.2 against 3.x with the project's own code paths (the numbers behind docs/decisions.md,
"paddlepaddle 2.6.2, not 3.x"). Run it in each candidate's venv, alternating, then compare:

    PYTHONPATH=. .venv/bin/python    bench/paddle_versions.py --json runs/p2-1.json   # paddle 2.6.2
    PYTHONPATH=. .venv-p3/bin/python bench/paddle_versions.py --json runs/p3-1.json   # paddle 3.x
    ...                                                                             # again, alternating
    python bench/paddle_versions.py --compare runs/*.json        # medians over runs per version, and the ratio

What one run measures, on random models of each ``--size`` (``bench/common.py:build_model``; default tiny,
small and the shipped model's shape):

* the ``fast`` engine (``Predictor`` with ``engine=fast``: ``inference.StaticForward``, the static graph
  run by Paddle Inference): first load (export + predictor), load with the export already on disk, one
  20–60-char text × 7 labels (median of 20) and 64 such texts × 7 labels (median of 5);
* training: ``trainer.train`` at batch 16, max_seq_len 128, on tests/corpus.py's sentences and on texts of
  10 of them joined (``bench/training.py``'s data); median seconds per step after the first 5.

paddle 3.x breaks ``inference.py`` as it stands: ``paddle.jit.save`` writes ``static/inference.json`` (the new
PIR program) instead of ``inference.pdmodel``, so ``paddle.inference.Config(".../inference.pdmodel")`` raises
NotFound, and ``export_static`` (which checks for the ``.pdmodel``) would re-export on every load. On 3.x this
script therefore applies :func:`paddle3_shim` (``--no-shim`` shows the failure). ``FLAGS_enable_pir_api=0``
(keep writing ``.pdmodel``) does not work on 3.3.1: ``jit.to_static`` of UIE fails in ``matmul`` ("must be
Value, but got Variable").

``--taskflow`` adds the earlier Taskflow measurement (tiny model, 2 labels, padded to 512).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

DEFAULT_SIZES = ("tiny", "shipped", "small")
SHIPPED = (3, 128, 2)  # models/uie-zh-small/config.json (the embedded model when measured): layers, hidden, heads
TRAIN_STEPS, SKIP_STEPS = 30, 5
TRAIN_BATCH, TRAIN_SEQ = 16, 128


def paddle3_shim(paddle, inference) -> list[str]:
    """What it takes for uie_backend/inference.py to run on paddle 3.x; returns the list of changes made."""
    original_config = paddle.inference.Config

    def config(model_file: str, params_file: str):
        json_file = model_file[: -len(".pdmodel")] + ".json"
        if model_file.endswith(".pdmodel") and not os.path.exists(model_file) and os.path.exists(json_file):
            c = original_config(json_file, params_file)
            # both are needed: with neither, or the IR alone, create_predictor fails
            # ("Not find predictor_id 0 and pass_name memory_optimize_pass")
            c.enable_new_ir(True)
            c.enable_new_executor(True)
            return c
        return original_config(model_file, params_file)

    original_export = inference.export_static

    def export_static(model_dir: Path) -> Path:
        prefix = Path(model_dir) / inference.STATIC_PREFIX
        program, exported = prefix.with_suffix(".json"), prefix.with_suffix(".pdiparams")
        weights = Path(model_dir) / "model_state.pdparams"
        if program.exists() and exported.exists() and exported.stat().st_mtime >= weights.stat().st_mtime:
            return prefix  # the 3.x export is there and fresh: reuse it, as 2.6.2's .pdmodel is reused
        return original_export(model_dir)

    paddle.inference.Config = config
    inference.export_static = export_static
    return ["paddle.inference.Config: inference.json instead of the missing inference.pdmodel, with "
            "enable_new_ir(True) and enable_new_executor(True)",
            "export_static: an existing, fresh inference.json counts as the export (else re-export every load)"]


def timed(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def fast_engine(size: str, quick: bool) -> dict:
    from common import LABELS, build_model, short_texts, temp_home
    from uie_backend.config import Settings
    from uie_backend.predictor import ModelSource, Predictor

    with temp_home() as home:
        model_dir = build_model(size, home / "checkpoint")
        source, settings = ModelSource(version="bench", path=model_dir), Settings(engine="fast", device="cpu")
        start = time.perf_counter()
        Predictor(source, settings)
        first_load = time.perf_counter() - start
        start = time.perf_counter()
        predictor = Predictor(source, settings)
        load = time.perf_counter() - start
        one, many = short_texts(1, seed=3), short_texts(64, seed=64)
        predictor.extract(one, LABELS)
        predictor.extract(many, LABELS)  # kernel caches of the shapes measured
        single = timed(lambda: predictor.extract(one, LABELS), 5 if quick else 20)
        batch = timed(lambda: predictor.extract(many, LABELS), 2 if quick else 5)
        found = sum(map(len, predictor.extract(many, LABELS)))
    return {"first_load_s": first_load, "load_s": load, "one_text_ms": single * 1000, "64_texts_s": batch,
            "texts_per_s": 64 / batch, "regions_64": found}


def training(size: str, quick: bool) -> dict:
    import corpus
    from common import build_model, temp_home
    from training import examples, joined_tasks
    from uie_backend import trainer

    data = {"sentences": examples(corpus.annotated_tasks(200, seed=2)), "joined10": examples(joined_tasks(60, 10))}
    out = {}
    for name, train_examples in data.items():
        stamps = []
        with temp_home() as home:
            model = build_model(size, home / "checkpoint")
            config = trainer.TrainConfig(init_from=model, save_dir=home / "run", batch_size=TRAIN_BATCH,
                                         max_seq_len=TRAIN_SEQ, max_steps=15 if quick else TRAIN_STEPS,
                                         device="cpu", learning_rate=1e-3)
            trainer.train(config, train_examples, [], on_progress=lambda _: stamps.append(time.perf_counter()))
        steps = [b - a for a, b in zip(stamps[SKIP_STEPS:], stamps[SKIP_STEPS + 1:])]
        out[f"train_{name}_ms"] = statistics.median(steps) * 1000
    return out


def taskflow_tiny() -> dict:
    """The earlier measurement: Taskflow on a tiny random UIE, 2 labels (Taskflow pads to 512)."""
    import shutil
    import tempfile

    from uie_backend import checkpoint
    from paddlenlp import Taskflow

    model_dir = Path(tempfile.mkdtemp())
    try:
        checkpoint.build_random(model_dir / "m")
        start = time.perf_counter()
        flow = Taskflow("information_extraction", schema=["人名", "地名"], task_path=str(model_dir / "m"))
        load = time.perf_counter() - start
        text = "李四明天要去上海参加阿里巴巴的发布会，听说上海明天有小雨。"
        flow([text])
        single = timed(lambda: flow([text]), 20)
        batch = timed(lambda: flow([text] * 64), 5)
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)
    return {"taskflow_load_s": load, "taskflow_one_text_ms": single * 1000, "taskflow_64_texts_s": batch}


def measure(args) -> dict:
    start = time.perf_counter()
    from common import SIZES, progress, quiet_logs  # imports nothing of paddle

    SIZES.setdefault("shipped", SHIPPED)
    quiet_logs()  # the first paddle_env.load()
    import_s = time.perf_counter() - start
    from uie_backend import inference, paddle_env

    paddle = paddle_env.load().paddle
    shim = paddle3_shim(paddle, inference) if paddle.__version__.startswith("3.") and not args.no_shim else []
    run = {"paddle": paddle.__version__, "python": platform.python_version(), "started": time.strftime("%F %T"),
           "load_avg_start": os.getloadavg()[0], "import_s": import_s, "shim": shim, "sizes": {}}
    for size in args.size:
        progress(f"paddle {paddle.__version__}, {size}: fast engine")
        row = fast_engine(size, args.quick)
        progress(f"paddle {paddle.__version__}, {size}: training")
        row.update(training(size, args.quick))
        run["sizes"][size] = row
    if args.taskflow:
        progress(f"paddle {paddle.__version__}: taskflow")
        run["taskflow"] = taskflow_tiny()
    run["load_avg_end"] = os.getloadavg()[0]
    return run


# ---- comparing runs ------------------------------------------------------------------------------

METRICS = [("first_load_s", "fast: first load (export + predictor), s", "{:.2f}"),
           ("load_s", "fast: load, export on disk, s", "{:.2f}"),
           ("one_text_ms", "fast: 1 text × 7 labels, ms", "{:.1f}"),
           ("64_texts_s", "fast: 64 texts × 7 labels, s", "{:.3f}"),
           ("texts_per_s", "fast: texts/s (64 × 7 labels)", "{:.0f}"),
           ("train_sentences_ms", "train: ms/step, corpus sentences (11 chars)", "{:.0f}"),
           ("train_joined10_ms", "train: ms/step, 10 sentences joined (105 chars)", "{:.0f}")]


def compare(paths: list[str]) -> None:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    versions = sorted({r["paddle"] for r in runs}, key=lambda v: [int(x) for x in v.split(".")[:3]])
    by_version = {v: [r for r in runs if r["paddle"] == v] for v in versions}
    base, other = versions[0], versions[-1]
    print(f"Runs: " + ", ".join(f"paddle {v} × {len(rs)}" for v, rs in by_version.items())
          + f"; load average at start {min(r['load_avg_start'] for r in runs):.1f}–"
            f"{max(r['load_avg_start'] for r in runs):.1f}")
    print(f"\nImport (`paddle_env.load()`), s: " + ", ".join(
        f"{v} {statistics.median(r['import_s'] for r in rs):.2f}" for v, rs in by_version.items()))
    sizes = [s for s in runs[0]["sizes"] if all(s in r["sizes"] for r in runs)]
    for size in sizes:
        shape = {"tiny": "2×64", "small": "4×256", "shipped": "3×128", "base": "12×768"}.get(size, "")
        print(f"\n### {size} ({shape})\n")
        print(f"| measure | {base} | {other} | {other} / {base} | {base} runs | {other} runs |")
        print("|---|---:|---:|---:|---|---|")
        for key, label, fmt in METRICS:
            values = {v: [r["sizes"][size][key] for r in rs] for v, rs in by_version.items()}
            med = {v: statistics.median(vals) for v, vals in values.items()}
            print(f"| {label} | {fmt.format(med[base])} | {fmt.format(med[other])} | {med[other] / med[base]:.2f} | "
                  + " | ".join(", ".join(fmt.format(x) for x in values[v]) for v in (base, other)) + " |")
    if all("taskflow" in r for r in runs):
        print("\n### Taskflow, tiny, 2 labels\n")
        print(f"| measure | {base} | {other} | {other} / {base} |\n|---|---:|---:|---:|")
        for key in runs[0]["taskflow"]:
            med = {v: statistics.median(r["taskflow"][key] for r in rs) for v, rs in by_version.items()}
            print(f"| {key} | {med[base]:.3f} | {med[other]:.3f} | {med[other] / med[base]:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and steps")
    parser.add_argument("--size", action="append", choices=["tiny", "shipped", "small", "base"],
                        help=f"model size, repeatable (default: {' '.join(DEFAULT_SIZES)})")
    parser.add_argument("--json", help="write this run's numbers here (for --compare)")
    parser.add_argument("--no-shim", action="store_true", help="on paddle 3.x, run inference.py unpatched (fails)")
    parser.add_argument("--taskflow", action="store_true", help="also the earlier Taskflow measurement")
    parser.add_argument("--compare", nargs="+", metavar="JSON", help="print medians and ratios of saved runs")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare)
        return
    args.size = args.size or list(DEFAULT_SIZES)
    run = measure(args)
    text = json.dumps(run, indent=1, ensure_ascii=False)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
