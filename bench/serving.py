"""The backend's speed as Label Studio sees it: over real HTTP (gunicorn, started as `make serve` starts it)
and, in the same run, the model called directly, so the cost of HTTP and of the conversion to Label Studio
regions is a ratio measured side by side.

    .venv/bin/python bench/serving.py [--quick] [--size tiny|small|base ...]   (default: tiny and small)

Per model size: single-task latency; tasks/s for batches of short tasks; chars/s for long texts; cold start;
peak memory of the server; and the largest "Retrieve Predictions" batch that fits Label Studio's 100 s.
Three ways of predicting are timed, interleaved:

* ``extract``: ``Predictor.extract`` (the model: windows, tokenising, forward passes, decoding);
* ``predict``: ``UIEBackend(label_config=...).predict(tasks)`` (plus tasks -> texts -> Label Studio regions);
* ``HTTP``: ``POST /predict`` to gunicorn (plus JSON both ways, Flask, the socket).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from common import (LABEL_CONFIG, LABELS, Server, arguments, build_model, long_text, machine, median, percentile,
                    progress, quiet_logs, short_texts, side_by_side, size_name, table, tasks, temp_home,
                    use_in_process)

PREDICT_TIMEOUT_S = 100  # Label Studio waits this long for one /predict (Retrieve Predictions: all selected tasks)


@dataclass
class Plan:
    """How much to measure for one model size: big batches and long texts take minutes on the larger models."""
    latency_requests: int
    batches: dict[int, int]         # tasks per request -> repeats
    long_texts: dict[int, int]      # characters -> repeats


def plan(size: str, quick: bool) -> Plan:
    if size == "base":  # ~25× the small model's work per token: a single task and a batch of 16 only
        return Plan(10 if quick else 30, {1: 3, 16: 1} if quick else {1: 5, 16: 3}, {})
    if quick:
        return Plan(20, {1: 5, 16: 3, 256: 1, 1000: 1}, {2000: 1, 20000: 1})
    return Plan(50, {1: 30, 16: 10, 256: 5, 1000: 3}, {2000: 3, 20000: 2, 100000: 1})


@dataclass
class Tables:
    latency: list = field(default_factory=list)
    batches: list = field(default_factory=list)
    long: list = field(default_factory=list)
    breakdown: list = field(default_factory=list)
    server: list = field(default_factory=list)


def main() -> None:
    args = arguments(__doc__)
    quiet_logs()
    machine()
    print("Absolute numbers are noisy (shared 2-core machine); ratios are measured side by side in one run.")
    results = Tables()
    for size in args.size:
        bench_size(size, plan(size, args.quick), results)
    print_tables(results)


def bench_size(size: str, plan: Plan, results: Tables) -> None:
    """Every measurement for one model size, with the server and the in-process model side by side."""
    from my_ml_backend import UIEBackend
    from uie_backend import predictor

    name = size_name(size)
    with temp_home() as home:
        progress(f"{size}: building the model")
        build_model(size, home / "checkpoint")
        use_in_process(home)
        with Server(home) as first:  # a fresh checkpoint: the first load exports the static graph
            first_start = first.wait_first_prediction()
        with Server(home) as server:
            restart = server.wait_first_prediction()
            progress(f"{size}: cold start {first_start:.1f} s, restart {restart:.1f} s")
            backend = UIEBackend(label_config=LABEL_CONFIG)
            model = predictor.for_project(backend.settings, None)
            peaks = {}

            progress(f"{size}: single-task latency, {plan.latency_requests} requests")
            results.latency.append([name, *latency(server, backend, plan.latency_requests)])
            peaks["single tasks"] = worker_peak(server)
            rate_http = {}
            for count, repeats in plan.batches.items():
                progress(f"{size}: batch of {count}, {repeats} repeats")
                row, rate_http[count] = batch(server, backend, model, count, repeats)
                results.batches.append([name, count, *row])
            peaks["+ batches"] = worker_peak(server)
            for chars, repeats in plan.long_texts.items():
                progress(f"{size}: one text of {chars} characters, {repeats} repeats")
                results.long.append([name, f"{chars:,}", *long_text_row(server, model, chars, repeats)])
            if plan.long_texts:
                peaks["+ long texts"] = worker_peak(server)
            if 256 in plan.batches:
                results.breakdown.append([name, *breakdown(model, short_texts(256, seed=256))])

            largest = max(rate_http)
            limit = math.floor(PREDICT_TIMEOUT_S * rate_http[largest])
            results.server.append([name, f"{first_start:.1f}", f"{restart:.1f}",
                                   f"{server.peak_rss_mb()[server.process.pid]:.0f}",
                                   " → ".join(f"{mb:.0f} ({phase})" for phase, mb in peaks.items()),
                                   f"≈{limit:,} (from {largest})"])


def latency(server: Server, backend, requests: int) -> list[str]:
    """p50/p95 of one-task requests, over HTTP and calling the backend class, interleaved."""
    one = tasks(short_texts(1, seed=7))
    samples = side_by_side({"HTTP": lambda: server.predict(one), "predict": lambda: backend.predict(one)},
                           requests, warmup=3)
    return [len(samples["HTTP"]), *(f"{percentile(samples[k], q) * 1000:.0f}" for k in ("HTTP", "predict")
                                    for q in (50, 95))]


def batch(server: Server, backend, model, count: int, repeats: int) -> tuple[list[str], float]:
    """tasks/s of ``count`` short tasks three ways, interleaved; the row, and the HTTP rate."""
    texts = short_texts(count, seed=count)
    task_list = tasks(texts)
    found = model.extract(texts, LABELS)
    secs = {k: median(v) for k, v in side_by_side(
        {"extract": lambda: model.extract(texts, LABELS), "predict": lambda: backend.predict(task_list),
         "HTTP": lambda: server.predict(task_list)}, repeats, warmup=1 if count <= 16 else 0).items()}
    row = [*(f"{count / secs[k]:.1f}" for k in ("extract", "predict", "HTTP")), f"{secs['HTTP']:.2f}",
           percent(secs["predict"], secs["extract"]), percent(secs["HTTP"], secs["extract"]),
           f"{sum(map(len, found)) / count:.1f}"]
    return row, count / secs["HTTP"]


def long_text_row(server: Server, model, chars: int, repeats: int) -> list[str]:
    text = long_text(chars)
    secs = {k: median(v) for k, v in side_by_side(
        {"extract": lambda: model.extract([text], LABELS), "HTTP": lambda: server.predict(tasks([text]))},
        repeats, warmup=0).items()}
    return [f"{chars / secs['extract']:,.0f}", f"{chars / secs['HTTP']:,.0f}", f"{secs['HTTP']:.1f}",
            percent(secs["HTTP"], secs["extract"])]


def breakdown(model, texts: list[str]) -> list[str]:
    """How much of ``Predictor.extract`` is tokenising: the fast engine encodes every (text, label) pair on
    its own, with offsets (trainer.encode); tokenising each text once, with offsets, is what that could cost."""
    from uie_backend import trainer

    tokenizer = model._engine.tokenizer
    secs = {k: median(v) for k, v in side_by_side({
        "extract": lambda: model.extract(texts, LABELS),
        "encode pairs": lambda: [trainer.encode({"content": t, "prompt": label, "result_list": []}, tokenizer, 512)
                                 for t in texts for label in LABELS],
        "tokenise texts once": lambda: [tokenizer(t, return_offsets_mapping=True) for t in texts]},
        3, warmup=0).items()}
    share = secs["encode pairs"] / secs["extract"]
    return [len(texts), f"{secs['extract']:.2f}", f"{secs['encode pairs']:.2f} ({share:.0%})",
            f"{secs['tokenise texts once']:.2f}"]


def worker_peak(server: Server) -> float:
    """Peak RSS of the worker(s) so far, MiB."""
    return sum(mb for pid, mb in server.peak_rss_mb().items() if pid != server.process.pid)


def percent(slow: float, fast: float) -> str:
    """How much longer ``slow`` took than ``fast``, as +N%."""
    return f"{(slow / fast - 1) * 100:+.0f}%"


def print_tables(results: Tables) -> None:
    table("Single-task latency (one /predict with one 20–60-char task, 7 labels), ms",
          ["model", "requests", "HTTP p50", "HTTP p95", "direct predict p50", "direct predict p95"], results.latency)
    table("Batches of short tasks (20–60 chars, 7 labels): tasks/s, median over repeats",
          ["model", "tasks", "extract", "predict", "HTTP", "HTTP s/request", "conversion vs extract",
           "HTTP+conversion vs extract", "regions/task"], results.batches)
    if results.long:
        table("Long texts (one task, 7 labels): chars/s",
              ["model", "chars", "extract", "HTTP", "HTTP s", "HTTP+conversion vs extract"], results.long)
    if results.breakdown:
        table("Where extract's time goes (short tasks, 7 labels), s: encoding every (text, label) pair vs "
              "tokenising each text once",
              ["model", "texts", "extract", "encode pairs (share)", "tokenise texts once"], results.breakdown)
    table(f"Server: cold start (process start -> first /predict answered), peak RSS (VmHWM), and the largest "
          f"Retrieve Predictions batch within Label Studio's {PREDICT_TIMEOUT_S} s (extrapolated linearly from "
          f"the HTTP rate of the largest batch measured)",
          ["model", "first start s (exports static graph)", "restart s", "master peak MiB",
           "worker peak MiB after each phase", "tasks in 100 s"], results.server)


if __name__ == "__main__":
    main()
