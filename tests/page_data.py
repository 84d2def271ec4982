"""Versions and runs on disk as training leaves them, without training: for the status page's fast tests and
its benchmark (bench/page.py), which need hundreds of them or hostile names in them.

The page reads only metadata (uie_meta.json, report.json, report.md), so a version here is a registry entry
whose five checkpoint files are empty: complete enough to list and activate, never loaded.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from uie_backend import checkpoint, lineages, registry
from uie_backend.config import Settings
from uie_backend.jsonio import write_json

LABELS = ["人名", "地名", "组织"]


def scores(rng: random.Random, labels: list[str], level: float) -> dict:
    """A dev report (metrics.SpanReport.to_dict) whose F1s are around ``level``."""
    per_label = {}
    for label in labels:
        p, r = min(1.0, max(0.0, level + rng.uniform(-0.1, 0.1))), min(1.0, max(0.0, level + rng.uniform(-0.1, 0.1)))
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        per_label[label] = {"precision": p, "recall": r, "f1": f1, "support": 20, "predicted": 20, "correct": 10}
    f1 = sum(s["f1"] for s in per_label.values()) / len(per_label)
    overall = {"precision": f1, "recall": f1, "f1": f1, "support": 20 * len(labels), "predicted": 0, "correct": 0}
    return {"per_label": per_label, "overall": overall}


def add_run(settings: Settings, project: int, number: int, created: float, labels: list[str] = LABELS,
            rng: random.Random | None = None, epochs: int = 20, activate: bool = True) -> str:
    """Run ``number`` of ``project`` (its report, its kept data) and the version it made; returns the version."""
    rng = rng or random.Random(number)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(created))
    run_id, version = f"{stamp}-p{project}r{number}", f"{stamp}-{project:03d}{number:05d}"
    tasks = 20 + 5 * number
    level = min(0.95, 0.3 + 0.05 * number ** 0.5)
    before, after = scores(rng, labels, level - 0.03), scores(rng, labels, level)
    history = [{"step": 10 * e, "epoch": float(e), "loss": 1.0 / e, "dev_f1": min(1.0, level * e / epochs + 0.01)}
               for e in range(1, epochs + 1)]
    report = {"run": run_id, "project": project, "tasks": tasks, "train_tasks": tasks - tasks // 5,
              "dev_tasks": tasks // 5, "held_out": True, "version": version, "activated": activate,
              "reason": "activated", "compared_with": "base model", "dev_active": before, "dev_new": after,
              "history": history}
    run_dir = settings.data_dir / "runs" / run_id
    run_dir.mkdir(parents=True)
    write_json(run_dir / "report.json", report)
    (run_dir / "report.md").write_text(f"# Training run {run_id} (project {project})\n\n- tasks: {tasks}\n",
                                       encoding="utf-8")
    write_json(run_dir / "tasks.json", [])
    lineage = lineages.project_dir(settings, project)
    target = registry.versions_dir(lineage) / version
    target.mkdir(parents=True)
    for name in checkpoint.REQUIRED_FILES:
        (target / name).write_text("{}" if name.endswith(".json") else "", encoding="utf-8")
    meta = {"version": version, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(created)),
            "project": project, "run": run_id, "tasks": tasks, "labels": labels, "init_from": "/models/base-v1",
            "dev": after}
    (target / checkpoint.META_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    write_json(target / "report.json", report)
    if activate:
        registry.activate(version, lineage)
    return version
