"""The status page's render time with many versions and runs (issue 15): is it still fast at 200 versions?

Builds, in a temp dir, what training leaves on disk (tests/page_data.py: registry entries with their
uie_meta.json and report.json, run directories with their report and kept data), without training:

- *one busy project*: project 1 with 200 versions (200 runs), and 800 more runs in ``UIE_DATA_DIR/runs``
  (failed runs, or runs of projects removed since), 1,000 runs in all;
- *five busy projects*: five projects with 200 versions each, all on the index page.

Then times, in process through Flask's test client (no network), the median of N renders of each page:
the index (``GET /`` as a browser asks), a project's page, a run's page, and ``GET /`` as Label Studio
asks (JSON), for comparison. Also the size of each answer.

    .venv/bin/python bench/page.py [--quick]
"""

from __future__ import annotations

import random
import time

from common import arguments, machine, median, progress, table, temp_home, use_in_process
import page_data  # tests/page_data.py (bench/common.py puts tests/ on the path)

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
VERSIONS = 200
RUNS = 1000
DAY = 86400.0


def build(settings, projects: int, extra_runs: int) -> dict[int, list[str]]:
    """``projects`` projects of VERSIONS versions each, and ``extra_runs`` failed runs without a version."""
    rng = random.Random(0)
    start = time.time() - VERSIONS * DAY
    versions = {project: [page_data.add_run(settings, project, n, start + n * DAY + project, rng=rng)
                          for n in range(1, VERSIONS + 1)] for project in range(1, projects + 1)}
    for n in range(extra_runs):
        run_dir = settings.data_dir / "runs" / f"failed-{n:04d}"
        run_dir.mkdir(parents=True)
        (run_dir / "result.json").write_text('{"state": "failed", "error": "DataError: no annotated tasks"}')
        (run_dir / "train.log").write_text("…\n")
    return versions


def timed(client, path: str, repeats: int, headers: dict | None = None) -> tuple[float, int]:
    """Median milliseconds of ``repeats`` GETs (after one warm-up) and the answer's size in bytes."""
    answer = client.get(path, headers=headers or {})
    assert answer.status_code == 200, (path, answer.status_code, answer.data[:500])
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        client.get(path, headers=headers or {})
        samples.append((time.perf_counter() - started) * 1000)
    return median(samples), len(answer.data)


def measure(name: str, projects: int, extra_runs: int, repeats: int) -> list[list[object]]:
    from my_ml_backend import UIEBackend
    from uie_backend.config import Settings
    from uie_backend.server import create_app

    with temp_home("uie-bench-page-") as home:
        use_in_process(home)
        settings = Settings.from_env()
        progress(f"{name}: writing {projects} × {VERSIONS} versions and {extra_runs} more runs")
        versions = build(settings, projects, extra_runs)
        runs = sum(len(v) for v in versions.values()) + extra_runs
        client = create_app(UIEBackend, settings).test_client()
        run_id = client.get("/versions?project=1").json["details"][0]["run"]
        pages = [("`GET /`, a browser (the index)", "/", BROWSER), ("`GET /projects/1`", "/projects/1", None),
                 ("`GET /runs/<id>`", f"/runs/{run_id}", None), ("`GET /`, Label Studio (JSON)", "/", None)]
        rows = []
        for label, path, headers in pages:
            ms, size = timed(client, path, repeats, headers)
            rows.append([f"{name}: {label}", f"{projects} × {VERSIONS}", runs, f"{ms:.1f}", f"{size / 1024:.0f}"])
            progress(f"{label}: {ms:.1f} ms")
        return rows


def main() -> None:
    args = arguments(__doc__, default_sizes=["tiny"])
    repeats = 5 if args.quick else 20
    machine()
    rows = measure("one busy project", 1, RUNS - VERSIONS, repeats) + measure("five busy projects", 5, 0, repeats)
    table(f"Status page render time (median of {repeats}, Flask test client, in process)",
          ["page", "projects × versions", "runs", "ms", "KB"], rows)


if __name__ == "__main__":
    main()
