"""Per-project lineages: memory per loaded version, and what the first request to a version not loaded costs.

Every project that trained has a version of its own; a server process keeps at most ``UIE_MAX_LOADED_MODELS``
loaded (projects on the same version share one) and unloads the least recently used. This measures, on the
backend started as `make serve` starts it:

- the worker's resident memory as the base and then each project's version is loaded, and once the bound
  makes it unload one;
- the first request of a project whose version is not loaded (loading it is part of that request) against
  a request to a loaded one (medians, interleaved);
- projects that share the base: one load for all of them.

Versions are copies of one randomly initialised model of the size asked for (default ``base``, uie-base's
shape), each with its static-graph export already written, as a training run leaves it.

    .venv/bin/python bench/lineages.py [--quick] [--size base]
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from common import (LABEL_CONFIG, Server, arguments, build_model, machine, median, progress, quiet_logs, size_name,
                    table, tasks, temp_home)

PROJECTS = 4           # projects with a version of their own
MAX_LOADED = 3         # UIE_MAX_LOADED_MODELS for the run
TEXT = "李四明天要去上海参加阿里巴巴的发布会。"


def add_project_versions(checkpoint_dir: Path, base: Path, count: int) -> list[str]:
    """``count`` projects, each with one version: copies of ``base`` (static export included) under new ids."""
    from uie_backend import checkpoint, lineages, registry
    from uie_backend.config import Settings

    settings = Settings.from_env({"UIE_CHECKPOINT_DIR": str(checkpoint_dir)})
    versions = []
    for project in range(1, count + 1):
        staging = checkpoint_dir.parent / f"copy-{project}"
        shutil.copytree(base, staging)
        meta = {**checkpoint.read_meta(staging), "version": f"project-{project}-v1", "project": project}
        (staging / checkpoint.META_FILE).write_text(json.dumps(meta), encoding="utf-8")
        lineage = lineages.project_dir(settings, project)
        versions.append(registry.add(staging, lineage).id)
        registry.activate(versions[-1], lineage)
        shutil.rmtree(staging)
    return versions


def export_static_graph(model_dir: Path) -> None:
    """What a training run does before it registers a version (training._load_once)."""
    from uie_backend import checkpoint
    from uie_backend.config import Settings
    from uie_backend.predictor import ModelSource, Predictor

    Predictor(ModelSource(version=checkpoint.model_version(model_dir), path=model_dir),
              Settings.from_env({"UIE_DEVICE": "cpu"}))


def worker_rss_mb(server: Server) -> float:
    """Resident memory (VmRSS, not the peak) of the gunicorn worker, MiB."""
    worker = server.pids()[-1]
    line = next(line for line in Path(f"/proc/{worker}/status").read_text().splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def timed_predict(server: Server, project: int | None) -> tuple[float, str]:
    started = time.perf_counter()
    answer = server.session.post(f"{server.url}/predict", json={"tasks": tasks([TEXT]), "label_config": LABEL_CONFIG,
                                                               "project": project}, timeout=600)
    answer.raise_for_status()
    return time.perf_counter() - started, answer.json()["model_version"]


def main() -> None:
    args = arguments(__doc__, default_sizes=("base",))
    quiet_logs()
    print(f"\n## Lineages\n\n{machine()}")
    repeats = 3 if args.quick else 7
    for size in args.size:
        with temp_home() as home:
            progress(f"{size}: building the base and {PROJECTS} project versions")
            base = build_model(size, home / "checkpoint")
            export_static_graph(base)
            add_project_versions(home / "checkpoint", base.resolve(), PROJECTS)
            with Server(home, {"UIE_MAX_LOADED_MODELS": str(MAX_LOADED)}) as server:
                server.wait_first_prediction()  # the base, loaded by the first request
                loads = [["base (projects without versions)", 1, f"{worker_rss_mb(server):.0f}", "", ""]]
                for project in range(1, PROJECTS + 1):
                    progress(f"{size}: first request of project {project}")
                    cold, version = timed_predict(server, project)
                    warm = median([timed_predict(server, project)[0] for _ in range(repeats)])
                    loads.append([f"+ project {project} ({version})", min(project + 1, MAX_LOADED),
                                  f"{worker_rss_mb(server):.0f}", f"{cold:.2f}", f"{warm * 1000:.0f}"])
                table(f"{size_name(size)}: loading one version after another (UIE_MAX_LOADED_MODELS={MAX_LOADED})",
                      ["served", "versions loaded", "worker RSS MiB", "first request s", "next requests ms (median)"],
                      loads)

                progress(f"{size}: projects sharing the base")
                shared = [timed_predict(server, project)[0] for project in range(100, 100 + repeats)]
                progress(f"{size}: alternating between loaded and evicted versions")
                cold_times, warm_times = [], []
                for _ in range(repeats):
                    # projects 1..PROJECTS cycle through MAX_LOADED slots: each first request is a load;
                    # asking the same project again right after is a loaded one
                    for project in range(1, PROJECTS + 1):
                        cold_times.append(timed_predict(server, project)[0])
                        warm_times.append(timed_predict(server, project)[0])
                table(f"{size_name(size)}: request cost, loaded against not loaded (medians of {len(warm_times)})",
                      ["request", "seconds"],
                      [["to a loaded version", f"{median(warm_times):.3f}"],
                       ["to a version not loaded (load + predict)", f"{median(cold_times):.3f}"],
                       [f"{repeats} new projects on the base (loaded once)", f"{median(shared):.3f}"],
                       ["worker RSS at the end, MiB", f"{worker_rss_mb(server):.0f}"]])


if __name__ == "__main__":
    main()
