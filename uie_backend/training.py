"""Where training runs: annotated tasks -> doccano -> UIE examples -> fine-tune -> evaluate -> activate.

One function, :func:`run`, used by the background job of the server, by ``UIEBackend.fit`` (label-studio-ml's
own job runner) and, piece by piece, by the CLIs. Each run keeps, in its own directory, the exact data it
used (the Label Studio tasks, the doccano file, the UIE train/dev files), the model it produced and its
report, so any served model can be traced back and reproduced.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import checkpoint, trainer
from .config import Settings
from .data import DataError, doccano_to_examples, split_records, tasks_to_doccano, write_jsonl
from .jsonio import write_json
from .labelconfig import parse_label_config, schema_labels
from .labelstudio import Connection
from .predictor import ModelSource, ModelUnavailable, Predictor

log = logging.getLogger(__name__)

DEV_FRACTION = 0.2
SPLIT_SEED = 1000  # fixed: the same task lands in the same split in every run, so dev F1s compare


@dataclass
class TrainingRequest:
    label_config: str
    project_id: int | None = None
    tasks: list[dict] | None = None          # given (legacy /train, fit(tasks)) or pulled from Label Studio
    label_studio_url: str | None = None
    label_studio_token: str | None = field(default=None, repr=False)


def collect_tasks(request: TrainingRequest) -> list[dict]:
    if request.tasks is not None:
        return request.tasks
    if request.project_id is None or not request.label_studio_url or not request.label_studio_token:
        raise DataError("no annotations in the request and no Label Studio URL/token to fetch them: connect "
                        "the backend to the project in Label Studio, or set LABEL_STUDIO_URL and "
                        "LABEL_STUDIO_API_KEY")
    connection = Connection(request.label_studio_url, request.label_studio_token)
    tasks = connection.annotated_tasks(request.project_id)
    log.info("fetched %d tasks of project %s from %s", len(tasks), request.project_id, request.label_studio_url)
    return tasks


def base_model(settings: Settings) -> Path:
    """The checkpoint a fine-tune continues from: the active model, else the configured named model."""
    if checkpoint.is_complete(settings.model_best):
        return settings.model_best
    named = settings.ppnlp_home / "taskflow" / "information_extraction" / settings.fallback_model
    if checkpoint.is_complete(named):
        return named
    raise ModelUnavailable(f"nothing to fine-tune from: no checkpoint in {settings.model_best} and "
                           f"{settings.fallback_model!r} was never downloaded to {named.parent}")


def split_train_dev(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """Train and dev records, by task id: a task stays in its split as the project grows."""
    train_records, dev_records = split_records(records, (1 - DEV_FRACTION, DEV_FRACTION), seed=SPLIT_SEED)
    if not train_records:  # a handful of tasks can all hash into dev: learn from them rather than from none
        train_records = dev_records
    if not dev_records:
        log.warning("no task fell into the dev split (%d tasks): selecting the model on the training tasks",
                    len(records))
        dev_records = train_records
    return train_records, dev_records


def run(request: TrainingRequest, settings: Settings, run_dir: Path,
        on_progress: Callable[[trainer.Progress], None] | None = None) -> dict:
    """Train on the request's annotations, keep everything in ``run_dir``, activate the result if it is better."""
    run_dir.mkdir(parents=True, exist_ok=True)
    controls = parse_label_config(request.label_config)
    labels = schema_labels(controls)
    tasks = collect_tasks(request)
    write_json(run_dir / "tasks.json", tasks)

    records = tasks_to_doccano(tasks, controls)
    if not records:
        raise DataError("no annotated tasks to train on (skipped and cancelled tasks do not count)")
    write_jsonl(run_dir / "doccano.jsonl", records)
    train_records, dev_records = split_train_dev(records)
    train_examples = doccano_to_examples(train_records, labels, negative_ratio=settings.negative_ratio)
    dev_examples = doccano_to_examples(dev_records, labels, negative_ratio=len(labels))  # every label asked
    write_jsonl(run_dir / "train.txt", train_examples)
    write_jsonl(run_dir / "dev.txt", dev_examples)

    config = trainer.TrainConfig(
        init_from=base_model(settings), save_dir=run_dir, learning_rate=settings.train_learning_rate,
        batch_size=settings.train_batch_size, max_seq_len=settings.train_max_seq_len,
        num_epochs=settings.train_epochs, device=settings.device)
    result = trainer.train(config, train_examples, dev_examples, on_progress,
                           meta={"project": request.project_id, "run": run_dir.name, "labels": labels,
                                 "tasks": len(records), "train_tasks": len(train_records),
                                 "dev_tasks": len(dev_records)})
    summary = {
        "run": run_dir.name, "project": request.project_id, "tasks": len(records),
        "train_tasks": len(train_records), "dev_tasks": len(dev_records), "steps": result.steps,
        "seconds": round(result.seconds, 1), "version": result.version, "activated": False,
        "dev_before": result.initial_report.to_dict() if result.initial_report else None,
        "dev_after": result.best_report.to_dict() if result.best_report else None,
    }
    if result.version:
        activate(run_dir / "model_best", settings)
        summary["activated"] = True
        log.info("activated %s (dev F1 %.4f, was %.4f)", result.version,
                 result.best_report.overall.f1 if result.best_report else float("nan"),
                 result.initial_report.overall.f1 if result.initial_report else float("nan"))
    else:
        log.warning("no evaluation beat the current model: it stays active")
    write_json(run_dir / "report.json", summary)
    (run_dir / "report.md").write_text(_report_markdown(summary, result), encoding="utf-8")
    return summary


def activate(model_dir: Path, settings: Settings) -> None:
    """Make a finished checkpoint the served ``model_best``, atomically.

    Taskflow is loaded on it once first, here in the training process: that writes its static-graph export
    next to the weights, so servers switch to a ready model, and a model that cannot load is never activated.
    """
    Predictor(ModelSource(version=checkpoint.model_version(model_dir), path=model_dir), settings)
    target = settings.model_best
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".model_best.incoming.", dir=target.parent))
    shutil.copytree(model_dir, staging, dirs_exist_ok=True)
    with checkpoint.locked(target):
        checkpoint.replace_dir(staging, target)


def _report_markdown(summary: dict, result: trainer.TrainResult) -> str:
    lines = [f"# Training run {summary['run']}", "",
             f"- tasks: {summary['tasks']} ({summary['train_tasks']} train, {summary['dev_tasks']} dev)",
             f"- steps: {summary['steps']} in {summary['seconds']} s",
             f"- new version: {summary['version'] or 'none (did not beat the active model)'}",
             f"- activated: {summary['activated']}", ""]
    if result.initial_report:
        lines += ["## Dev set, model before this run", "", result.initial_report.to_markdown(), ""]
    if result.best_report:
        lines += ["## Dev set, new model", "", result.best_report.to_markdown(), ""]
    return "\n".join(lines)
