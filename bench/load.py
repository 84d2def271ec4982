"""A bounded load test on loopback: gunicorn as `make serve` starts it (production settings), a tiny model,
concurrent single-task and 16-task predictions while a training job runs and another version is activated
mid-test.

    .venv/bin/python bench/load.py [--duration 60] [--clients 4] [--train-epochs 20]

Checks: zero errors; every answer consistent with one model version (all its results carry the answer's
version) and that version was active at some point of the test; one result per task. Reports p50/p95
latency and throughput per request kind, and the server worker's memory (RSS) at start, peak and end: it
must stay flat (no growth per request). Exits 1 when a check fails. Everything goes to a temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import corpus  # noqa: E402
from uie_backend import checkpoint, registry  # noqa: E402

TEXTS = ["王五昨天去了深圳出差。", "李四在腾讯工作了三年。", "听说张三住在北京附近。", "今天天气不错。"]
# conftest.TINY_TRAINING, with fewer epochs: the job must finish within the test
TRAINING = {"UIE_TRAIN_LR": "1e-3", "UIE_TRAIN_BATCH_SIZE": "8", "UIE_TRAIN_MAX_SEQ_LEN": "64"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


class Load:
    def __init__(self, url: str, deadline: float):
        self.url, self.deadline = url, deadline
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.tasks_done: dict[str, int] = defaultdict(int)
        self.errors: list[str] = []
        self.versions_answered: dict[str, int] = defaultdict(int)

    def client(self, kind: str, batch: int, seed: int) -> None:
        session = requests.Session()
        n = seed
        while time.monotonic() < self.deadline:
            tasks = [{"id": n + i, "data": {"text": TEXTS[(n + i) % len(TEXTS)] * (1 + (n + i) % 3)}}
                     for i in range(batch)]
            n += batch
            started = time.perf_counter()
            try:
                answer = session.post(f"{self.url}/predict", json={"tasks": tasks, "label_config": corpus.LABEL_CONFIG},
                                      timeout=100)
                elapsed = time.perf_counter() - started
                problem = self.check(answer, tasks)
            except requests.RequestException as exc:
                elapsed, problem, answer = time.perf_counter() - started, f"{type(exc).__name__}: {exc}", None
            with self.lock:
                if problem:
                    self.errors.append(f"{kind}: {problem}")
                else:
                    self.latencies[kind].append(elapsed)
                    self.tasks_done[kind] += batch
                    self.versions_answered[answer.json()["model_version"]] += 1

    @staticmethod
    def check(answer, tasks) -> str | None:
        if answer.status_code != 200:
            return f"HTTP {answer.status_code}: {answer.text[:200]}"
        body = answer.json()
        if len(body["results"]) != len(tasks):
            return f"{len(body['results'])} results for {len(tasks)} tasks"
        if {r["model_version"] for r in body["results"]} != {body["model_version"]}:
            return f"mixed versions in one answer: {body}"
        return None


def worker_pids(master: psutil.Process) -> list[psutil.Process]:
    """gunicorn's worker processes (not the training job spawned by a worker, nor its helpers)."""
    return [p for p in master.children() if "gunicorn" in " ".join(p.cmdline())]


def rss_mb(master: psutil.Process) -> float:
    return sum(p.memory_info().rss for p in worker_pids(master)) / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--clients", type=int, default=4, help="half single-task, half 16-task")
    parser.add_argument("--train-epochs", type=int, default=20)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="uie-load-"))
    ckpt = home / "checkpoint"
    first = registry.add(_model(home / "m1", 0), ckpt).id
    second = registry.add(_model(home / "m2", 1), ckpt).id
    registry.activate(first, ckpt)
    port = free_port()
    env = {**os.environ, **TRAINING, "HOST": "127.0.0.1", "PORT": str(port), "UIE_CHECKPOINT_DIR": str(ckpt),
           "UIE_DATA_DIR": str(home / "data"), "PPNLP_HOME": str(home / "ppnlp"), "UIE_MODEL": "",
           "UIE_DEVICE": "cpu", "UIE_TRAIN_EPOCHS": str(args.train_epochs), "LOG_LEVEL": "WARNING"}
    log = open(home / "gunicorn.log", "w")
    server = subprocess.Popen([str(REPO / ".venv" / "bin" / "gunicorn"), "--config", "gunicorn.conf.py", "_wsgi:app"],
                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    seen_active: set[str] = {first}
    try:
        _wait_up(url)
        for batch in (1, 16):  # warm up: the model loads on the first request
            assert Load.check(requests.post(f"{url}/predict", json={"tasks": [{"data": {"text": TEXTS[0]}}] * batch,
                                                                   "label_config": corpus.LABEL_CONFIG}, timeout=120),
                              [None] * batch) is None
        master = psutil.Process(server.pid)
        rss_start, rss_samples = rss_mb(master), []
        load = Load(url, time.monotonic() + args.duration)
        threads = [threading.Thread(target=load.client, args=(kind, batch, 1000 * i), daemon=True)
                   for i, (kind, batch) in enumerate([("1 task", 1), ("16 tasks", 16)] * (args.clients // 2))]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        training = requests.post(f"{url}/train", json={"annotations": corpus.annotated_tasks(20, seed=5),
                                                       "label_config": corpus.LABEL_CONFIG, "project": "1"}, timeout=30)
        assert training.status_code == 201, training.text
        activated_at, last_switch, active = None, 0.0, first
        while any(t.is_alive() for t in threads):
            listed = requests.get(f"{url}/versions", timeout=30).json()
            now_active = next((v["version"] for v in listed["details"] if v["active"]), active)
            if now_active != active:
                active, last_switch = now_active, time.monotonic() - started
            seen_active.add(active)
            with load.lock:
                answered = sum(len(v) for v in load.latencies.values())
            rss_samples.append((time.monotonic() - started, answered, rss_mb(master)))
            if activated_at is None and time.monotonic() - started > args.duration / 2:
                assert requests.post(f"{url}/versions/{second}/activate", timeout=30).status_code == 200
                seen_active.add(second)
                activated_at = round(time.monotonic() - started, 1)
            time.sleep(1)
        elapsed = time.monotonic() - started
        rss_end = rss_mb(master)
        job = _finished_job(url)
        if job.get("summary", {}).get("activated"):
            seen_active.add(job["summary"]["version"])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()

    strangers = set(load.versions_answered) - seen_active
    requests_total = sum(len(v) for v in load.latencies.values())
    rows = [("kind", "requests", "p50 ms", "p95 ms", "requests/s", "tasks/s")]
    for kind, values in load.latencies.items():
        rows.append((kind, len(values), f"{statistics.median(values) * 1000:.0f}", f"{percentile(values, 95) * 1000:.0f}",
                     f"{len(values) / elapsed:.1f}", f"{load.tasks_done[kind] / elapsed:.1f}"))
    print(f"\n{args.clients} clients for {elapsed:.0f} s on {os.cpu_count()} CPUs (load average "
          f"{os.getloadavg()[0]:.1f}); training job: {job.get('state')} "
          f"({(job.get('summary') or {}).get('reason') or job.get('error')}); {second} activated at {activated_at} s\n")
    print(_table(rows))
    print()
    print(_table([("errors", "answers by version", "versions active at some point", "answers from other versions"),
                  (len(load.errors), json.dumps(dict(load.versions_answered)), ", ".join(sorted(seen_active)),
                   len(strangers))]))
    print()
    # Each version switch loads a model (a Paddle Inference predictor): that step is expected; what must be flat
    # is the memory per request, measured in the stretch after the last switch (5 s settling time).
    steady = [(t, n, mb) for t, n, mb in rss_samples if t > last_switch + 5]
    per_1000 = ((steady[-1][2] - steady[0][2]) / max(steady[-1][1] - steady[0][1], 1) * 1000
                if len(steady) > 1 else float("nan"))
    print(_table([("worker RSS MB at start", "peak", "end", "last version switch at", "after it: MB per 1000 requests",
                   "over requests"),
                  (f"{rss_start:.0f}", f"{max([mb for _, _, mb in rss_samples] + [rss_end]):.0f}", f"{rss_end:.0f}",
                   f"{last_switch:.0f} s", f"{per_1000:+.2f}",
                   steady[-1][1] - steady[0][1] if len(steady) > 1 else 0)]))
    for error in load.errors[:10]:
        print("error:", error)
    shutil.rmtree(home, ignore_errors=True)
    return 1 if load.errors or strangers or not requests_total else 0


def _model(path: Path, seed: int) -> Path:
    checkpoint.build_random(path, seed=seed)
    return path


def _wait_up(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise RuntimeError("gunicorn did not come up")


def _finished_job(url: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = requests.get(f"{url}/training", timeout=30).json()
        if not status["is_training"] and status["recent"]:
            return status["recent"][0]
        time.sleep(1)
    return {"state": "still running"}


def _table(rows) -> str:
    lines = ["| " + " | ".join(str(c) for c in rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows[1:]])


if __name__ == "__main__":
    sys.exit(main())
