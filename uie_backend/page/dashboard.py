"""What the status page (pages.py) shows, gathered from what is on disk: plain data, no Flask, no HTML.

Everything comes from the registry (one ``uie_meta.json`` per version) and from the ``report.json`` a run
leaves in its version directory, so a page costs one directory listing and a few small JSON reads per
version, however many runs ``UIE_DATA_DIR/runs`` holds (bench/page.py measures it). Strings here come from
Label Studio and its users (label names, reports): the templates escape them, never this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from markupsafe import Markup

from .. import checkpoint, lineages, registry
from . import svg
from ..config import Settings
from ..jsonio import read_json

RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # jobs.new_job_id(), or a CLI's run directory
F1_COLOR, TASKS_COLOR, LOSS_COLOR = "#1f77b4", "#999999", "#d62728"


class RunNotFound(LookupError):
    """No such run directory under ``UIE_DATA_DIR/runs``."""


@dataclass(frozen=True)
class LabelRow:
    """One label's dev scores before the run (what the project was served) and after (the new model)."""
    label: str
    before: dict | None
    after: dict | None

    @property
    def f1_change(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return self.after["f1"] - self.before["f1"]


@dataclass(frozen=True)
class ProjectView:
    id: int
    versions: list[registry.Version]     # newest first
    active: registry.Version | None
    base: str                            # what a project without an active version of its own is served
    latest_report: dict | None           # the newest version's run report (report.json)

    @property
    def served(self) -> str:
        return self.active.id if self.active else f"{self.base} (the base model)"

    @property
    def active_base(self) -> str:
        """The version the active one was fine-tuned from (its name, when that checkpoint is gone)."""
        init_from = Path((self.active.meta.get("init_from") if self.active else None) or "")
        if init_from.name and checkpoint.is_complete(init_from):
            return checkpoint.model_version(init_from)
        return init_from.name or self.base

    def versions_chart(self) -> Markup:
        """Dev F1 of each version over time, with its number of annotated tasks on a second axis."""
        f1s, tasks = [], []
        for version in reversed(self.versions):  # oldest first
            row, when = version.to_dict(), _timestamp(version.meta.get("created_at"))
            if when is None:  # a hand-placed model without a date has no place on a time axis
                continue
            day = (row["created_at"] or "")[:16].replace("T", " ")
            if _is_number(row["dev_f1"]):
                f1s.append(svg.Point(when, row["dev_f1"], f"{version.id}: dev F1 {row['dev_f1']:.4f}, "
                                                          f"{row['tasks']} tasks", day))
            if isinstance(row["tasks"], int):
                tasks.append(svg.Point(when, row["tasks"], f"{version.id}: {row['tasks']} tasks", day))
        return svg.line_chart([svg.Series("dev F1", F1_COLOR, f1s, y_range=(0.0, 1.0)),
                               svg.Series("tasks", TASKS_COLOR, tasks, right_axis=True)],
                              f"project {self.id}: dev F1 per version", "version, by creation time")

    def epochs_chart(self) -> Markup:
        """The latest run's training loss and dev F1 per evaluation (about one per epoch)."""
        history = (self.latest_report or {}).get("history")
        history = [h for h in history if isinstance(h, dict) and _is_number(h.get("epoch"))] \
            if isinstance(history, list) else []
        f1s = [svg.Point(h["epoch"], h["dev_f1"], f"epoch {h['epoch']}: dev F1 {h['dev_f1']:.4f}",
                         f"epoch {h['epoch']}") for h in history if _is_number(h.get("dev_f1"))]
        losses = [svg.Point(h["epoch"], h["loss"], f"epoch {h['epoch']}: loss {h['loss']:.4f}", f"epoch {h['epoch']}")
                  for h in history if _is_number(h.get("loss"))]
        return svg.line_chart([svg.Series("dev F1", F1_COLOR, f1s, y_range=(0.0, 1.0)),
                               svg.Series("loss", LOSS_COLOR, losses, right_axis=True)],
                              "latest run: loss and dev F1 per epoch", "epoch")

    def label_rows(self) -> list[LabelRow]:
        before, after = (_per_label((self.latest_report or {}).get(key)) for key in ("dev_active", "dev_new"))
        return [LabelRow(label, before.get(label), after.get(label)) for label in dict.fromkeys([*after, *before])]


@dataclass(frozen=True)
class RunView:
    id: str
    dir: Path
    report: dict | None          # report.json (None for a run that failed or is still going)
    report_md: str | None
    result: dict | None          # result.json of a job: its state, or its error
    files: list[tuple[str, int]]  # the data it kept: (name, bytes), plain files only


def projects(settings: Settings) -> list[ProjectView]:
    """Every project with a lineage of its own, in id order."""
    return [project(settings, project_id) for project_id in lineages.trained_projects(settings)]


def project(settings: Settings, project_id: int) -> ProjectView:
    """A project's versions and latest run; a project that never trained has none and is served the base."""
    versions = registry.list_versions(lineages.project_dir(settings, project_id))
    active = next((v for v in versions if v.active), None)
    latest = read_json(versions[0].path / "report.json") if versions else None
    return ProjectView(project_id, versions, active, base_version(settings),
                       latest if isinstance(latest, dict) else None)


def base_version(settings: Settings) -> str:
    try:
        return lineages.base_source(settings).version
    except Exception as exc:  # the page must show the projects even when the base cannot be loaded
        return f"none ({exc})"


def run(settings: Settings, run_id: str) -> RunView:
    """A training run's directory: its report and the data it kept (training.py's module docstring)."""
    run_dir = run_path(settings, run_id)
    report_md = run_dir / "report.md"
    files = sorted((p.name, p.stat().st_size) for p in run_dir.iterdir() if p.is_file() and not p.name.endswith(".tmp"))
    report, result = read_json(run_dir / "report.json"), read_json(run_dir / "result.json")
    return RunView(run_id, run_dir, report if isinstance(report, dict) else None,
                   report_md.read_text(encoding="utf-8", errors="replace") if report_md.is_file() else None,
                   result if isinstance(result, dict) else None, files)


def run_path(settings: Settings, run_id: str) -> Path:
    """``UIE_DATA_DIR/runs/<run_id>``; a name that is not a plain directory name there is not found."""
    run_dir = settings.data_dir / "runs" / run_id
    if not RUN_NAME.fullmatch(run_id) or not run_dir.is_dir():
        raise RunNotFound(f"no training run {run_id!r} in {settings.data_dir / 'runs'}")
    return run_dir


def run_file(settings: Settings, run_id: str, name: str) -> Path:
    """One file a run kept (tasks.json, train.txt, report.md…): only a plain file directly in its directory."""
    path = run_path(settings, run_id) / name
    if not RUN_NAME.fullmatch(name) or not path.is_file():
        raise RunNotFound(f"run {run_id!r} kept no file {name!r}")
    return path


def _timestamp(created_at) -> float | None:
    try:
        return datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except (TypeError, ValueError):
        return None


def _per_label(report) -> dict[str, dict]:
    """A report.json dev report's rows that have the scores the table shows (a hand-edited one may not).

    Its ``entities`` part when it has one (a config with relations, choices, or labels asked under other names,
    training.schema_scores): rows named by the label values the team sees, not by the prompts asked."""
    if isinstance(report, dict) and isinstance(report.get("entities"), dict):
        report = report["entities"]
    per_label = report.get("per_label") if isinstance(report, dict) else None
    return {str(label): scores for label, scores in per_label.items()
            if isinstance(scores, dict) and all(_is_number(scores.get(k)) for k in ("precision", "recall", "f1"))
            } if isinstance(per_label, dict) else {}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
