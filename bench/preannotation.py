"""The background pre-annotation job against `/predict` on the same tasks, in one run, and what the job does to
an annotator's `/predict` while it runs.

    .venv/bin/python bench/preannotation.py [--quick] [--size tiny|small ...]   (default: tiny and small)

Per model size, a real Label Studio 1.23.2 (`.venv-ls`, on this same machine) holds a project of short tasks
(7 labels), and the backend runs under gunicorn as `make serve` runs it, with LABEL_STUDIO_URL and
LABEL_STUDIO_API_KEY set. Interleaved, the same tasks:

* ``/predict``: the project's tasks (as Label Studio lists them) posted to `/predict` a page at a time
  (UIE_PREANNOTATE_PAGE tasks), stored nowhere: the model's speed through the HTTP API;
* ``job``: `POST /preannotate`, until `GET /preannotation` says it succeeded: listing the tasks lacking
  the version in Label Studio, predicting, storing each page in Label Studio. Between runs the version's
  predictions are deleted in Label Studio, so each run does every task.

Then single-task `/predict` latency (p50/p95): idle, while the job runs, and while another client's
`/predict` of a page runs (what a big "Retrieve Predictions" does to an annotator, for comparison).
"""

from __future__ import annotations

import threading
import time

import requests
from common import (LABEL_CONFIG, Server, arguments, build_model, machine, median, percentile, progress, quiet_logs,
                    short_texts, size_name, table, tasks, temp_home)

PAGE = 200


def main() -> None:
    args = arguments(__doc__)
    quiet_logs()
    machine()
    print("Label Studio runs on the same 2 cores: its work for the job (listing, storing) competes with the model.")
    from e2e.labelstudio import LabelStudio

    rates, latencies = [], []
    with temp_home("uie-bench-ls-") as ls_home:
        progress("starting Label Studio")
        label_studio = LabelStudio.start(ls_home)
        try:
            for size in args.size:
                count = {"tiny": 2000, "small": 600, "base": 100}[size] // (2 if args.quick else 1)
                repeats = 1 if args.quick else 2
                rate_row, latency_rows = bench_size(label_studio, size, count, repeats, 20 if args.quick else 50)
                rates.append(rate_row)
                latencies += latency_rows
        finally:
            label_studio.stop()
    table("Pre-annotation job against /predict on the same tasks: tasks/s (median of the runs)",
          ["model", "tasks", "/predict (pages of 200)", "job, POST to done", "job's own rate", "job / /predict",
           "runs"], rates)
    table("Single-task /predict latency, ms", ["model", "while", "requests", "p50", "p95"], latencies)


def bench_size(label_studio, size: str, count: int, repeats: int, probes: int) -> tuple[list, list]:
    name = size_name(size)
    with temp_home() as home:
        progress(f"{size}: building the model")
        build_model(size, home / "checkpoint")
        project_id = label_studio.create_project(f"bench {size}", LABEL_CONFIG)["id"]
        label_studio.import_tasks(project_id, [{"text": text} for text in short_texts(count, seed=count)])
        listed = [{"id": t["id"], "data": t["data"]} for t in label_studio.list_tasks(project_id)]
        settings = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token,
                    "UIE_PREANNOTATE_PAGE": str(PAGE)}
        with Server(home, settings) as server:
            server.wait_first_prediction()
            predict_s, job_s, own = [], [], []
            for round_ in range(repeats):
                progress(f"{size}: round {round_ + 1}/{repeats}, {count} tasks")
                for step in (["predict", "job"] if round_ % 2 == 0 else ["job", "predict"]):
                    if step == "predict":
                        predict_s.append(predict_all(server, listed))
                        progress(f"{size}: /predict {predict_s[-1]:.1f} s")
                    else:
                        seconds, status = run_job(server, project_id)
                        job_s.append(seconds)
                        own.append(status["tasks_per_s"])
                        progress(f"{size}: job {seconds:.1f} s: predicting {status['predicting_s']} s, waiting for "
                                 f"Label Studio {status['waiting_for_label_studio_s']} s")
                        forget(label_studio, project_id, status["version"])
            progress(f"{size}: latency, {probes} requests each way")
            one = tasks(short_texts(1, seed=7))
            idle = probe(server, one, probes)
            during_job = probe_while(server, one, probes, lambda stop: job_until(server, label_studio, project_id, stop))
            during_predict = probe_while(server, one, probes, lambda stop: predict_until(server, listed, stop))
    rate_predict, rate_job = count / median(predict_s), count / median(job_s)
    rate_row = [name, count, f"{rate_predict:.1f}", f"{rate_job:.1f}", f"{median(own):.1f}",
                f"{rate_job / rate_predict:.2f}", repeats]
    latency_rows = [[name, what, len(samples), f"{percentile(samples, 50) * 1000:.0f}",
                     f"{percentile(samples, 95) * 1000:.0f}"]
                    for what, samples in (("idle", idle), ("the job runs", during_job),
                                          (f"a /predict of {PAGE} tasks runs", during_predict))]
    return rate_row, latency_rows


def predict_all(server: Server, listed: list[dict]) -> float:
    started = time.perf_counter()
    for begin in range(0, len(listed), PAGE):
        server.predict(listed[begin:begin + PAGE])
    return time.perf_counter() - started


def run_job(server: Server, project_id: int) -> tuple[float, dict]:
    """Seconds from POST /preannotate to its status saying succeeded, and that status."""
    with requests.Session() as session:  # its own connection: this may run beside the latency probes
        previous = job_status(session, server, project_id).get("job")
        started = time.perf_counter()
        session.post(f"{server.url}/preannotate", json={"project": project_id}, timeout=30).raise_for_status()
        while True:
            status = job_status(session, server, project_id)
            if status.get("job") != previous and status.get("state") == "succeeded":
                return time.perf_counter() - started, status
            if status.get("state") == "failed":
                raise RuntimeError(f"the job failed: {status}")
            time.sleep(0.05)


def job_status(session: requests.Session, server: Server, project_id: int) -> dict:
    jobs = session.get(f"{server.url}/preannotation", params={"project": project_id}, timeout=30).json()["jobs"]
    return jobs[0] if jobs else {}


def forget(label_studio, project_id: int, version: str) -> None:
    """Delete the version's predictions in Label Studio, so that the next job does every task again."""
    label_studio.api("DELETE", f"/api/projects/{project_id}/model-versions/", json={"model_version": version})
    left = label_studio.api("GET", f"/api/projects/{project_id}/model-versions/").json()
    assert version not in left, left


def job_until(server: Server, label_studio, project_id: int, stop: threading.Event) -> None:
    while not stop.is_set():
        _, status = run_job(server, project_id)
        forget(label_studio, project_id, status["version"])


def predict_until(server: Server, listed: list[dict], stop: threading.Event) -> None:
    with requests.Session() as session:  # another client than the probes'
        while not stop.is_set():
            session.post(f"{server.url}/predict", json={"tasks": listed[:PAGE], "label_config": LABEL_CONFIG},
                         timeout=600).raise_for_status()


def probe(server: Server, one: list[dict], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        server.predict(one)
        samples.append(time.perf_counter() - started)
        time.sleep(0.05)  # an annotator's pace, roughly: requests are not back to back
    return samples


def probe_while(server: Server, one: list[dict], count: int, background) -> list[float]:
    """Single-task latencies while ``background(stop)`` keeps the backend busy (from a second connection)."""
    stop = threading.Event()
    worker = threading.Thread(target=background, args=(stop,), daemon=True)
    worker.start()
    time.sleep(1.0)  # the background work is under way
    try:
        return probe(server, one, count)
    finally:
        stop.set()
        worker.join(600)


if __name__ == "__main__":
    main()
