"""Where training runs: annotated tasks -> doccano -> UIE examples -> fine-tune -> evaluate -> activate.

One function, :func:`run`, used by the background job of the server, by ``UIEBackend.fit`` (label-studio-ml's
own job runner) and, piece by piece, by the CLIs. Each run keeps, in its own directory, the exact data it
used (the Label Studio tasks, the doccano file, the UIE train/dev files), the model it produced and its
report, so any served model can be traced back and reproduced.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import checkpoint, registry, trainer
from .config import Settings
from .data import DataError, doccano_to_examples, split_records, tasks_to_doccano, write_jsonl
from .jsonio import write_json
from .labelconfig import parse_label_config, schema_labels
from .labelstudio import Connection
from .metrics import SpanReport
from .predictor import ModelSource, ModelUnavailable, Predictor, resolve_source

log = logging.getLogger(__name__)

DEV_FRACTION = 0.2
SPLIT_SEED = 1000
DEFAULT_LEARNING_RATE = 1e-5  # PaddleNLP's recipe for uie-base  # fixed: the same task lands in the same split in every run, so dev F1s compare


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


def starting_model(settings: Settings) -> Path:
    """The checkpoint a fine-tune continues from: ``UIE_TRAIN_FROM``, by default the model being served
    (the active one, else the ``UIE_MODEL`` PaddleNLP downloaded, else the embedded offline model)."""
    if settings.train_from != "active":
        checkpoint.check(Path(settings.train_from))
        return Path(settings.train_from)
    source = resolve_source(settings)
    if source.path is not None:
        return source.path
    downloaded = settings.ppnlp_home / "taskflow" / "information_extraction" / source.name
    if checkpoint.is_complete(downloaded):
        return downloaded
    raise ModelUnavailable(f"nothing to fine-tune from: {source.name!r} was never downloaded to {downloaded} "
                           f"(serve it once, online, to have PaddleNLP fetch it)")


def learning_rate(settings: Settings, init_from: Path) -> float:
    """``UIE_TRAIN_LR``, else the starting model's recommendation, else PaddleNLP's 1e-5 for uie-base.

    A small model trained from scratch (the embedded one) needs a larger step than pretrained uie-base
    to move at all within a Start Training run.
    """
    recommended = checkpoint.read_meta(init_from).get("fine_tune_learning_rate")
    return settings.train_learning_rate or float(recommended or DEFAULT_LEARNING_RATE)


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

    init_from = starting_model(settings)
    config = trainer.TrainConfig(
        init_from=init_from, save_dir=run_dir, learning_rate=learning_rate(settings, init_from),
        batch_size=settings.train_batch_size, max_seq_len=settings.train_max_seq_len,
        num_epochs=settings.train_epochs, device=settings.device)
    result = trainer.train(config, train_examples, dev_examples, on_progress,
                           meta={"project": request.project_id, "run": run_dir.name, "labels": labels,
                                 "tasks": len(records), "train_tasks": len(train_records),
                                 "dev_tasks": len(dev_records)})
    if result.version is None:
        raise RuntimeError("training saved no checkpoint")
    new_model = run_dir / "model_best"
    _load_once(new_model, settings)
    version = registry.add(new_model, settings.checkpoint_dir)
    active_report = _active_model_report(settings, init_from, result, dev_examples)
    activate, reason = should_activate(settings.activation_policy, result.best_report, active_report)
    if activate:
        registry.activate(version.id, settings.checkpoint_dir)
    log.log(logging.INFO if activate else logging.WARNING, "version %s: %s", version.id, reason)
    summary = {
        "run": run_dir.name, "project": request.project_id, "tasks": len(records),
        "train_tasks": len(train_records), "dev_tasks": len(dev_records), "steps": result.steps,
        "seconds": round(result.seconds, 1), "version": version.id, "activated": activate, "reason": reason,
        "policy": settings.activation_policy, "init_from": str(init_from),
        "dev_active": active_report.to_dict() if active_report else None,
        "dev_new": result.best_report.to_dict() if result.best_report else None,
    }
    write_json(run_dir / "report.json", summary)
    write_json(version.path / "report.json", summary)
    report = _report_markdown(summary, active_report, result.best_report)
    (run_dir / "report.md").write_text(report, encoding="utf-8")
    (version.path / "report.md").write_text(report, encoding="utf-8")
    return summary


def should_activate(policy: str, new: SpanReport | None, active: SpanReport | None) -> tuple[bool, str]:
    """The evaluation gate: whether a new model replaces the active one, and why (for logs and reports)."""
    if policy == "never-auto":
        return False, "kept inactive (UIE_ACTIVATION_POLICY=never-auto): activate it by hand"
    if policy == "always" or active is None or new is None:
        return True, "activated" + (" (UIE_ACTIVATION_POLICY=always)" if policy == "always" else "")
    if new.overall.f1 >= active.overall.f1:
        return True, f"activated: dev F1 {new.overall.f1:.4f} >= active model's {active.overall.f1:.4f}"
    return False, (f"not activated: dev F1 {new.overall.f1:.4f} < active model's {active.overall.f1:.4f} "
                   f"on the same dev tasks (UIE_ACTIVATION_POLICY=if-not-worse)")


def _active_model_report(settings: Settings, init_from: Path, result: trainer.TrainResult,
                         dev_examples: list[dict]) -> SpanReport | None:
    """The active model's dev scores: the run's starting point when it started from it, else evaluated."""
    active = registry.active_path(settings.checkpoint_dir)
    if active is None or active == Path(init_from).resolve():
        return result.initial_report
    return trainer.evaluate_checkpoint(active, dev_examples, settings.train_max_seq_len, device=settings.device)


def _load_once(model_dir: Path, settings: Settings) -> None:
    """Load the new model in Taskflow here, in the training process, before any server sees it.

    That writes Taskflow's static-graph export next to the weights (servers then switch to a ready model),
    and a model that cannot be loaded never becomes a version.
    """
    Predictor(ModelSource(version=checkpoint.model_version(model_dir), path=model_dir), settings)


def _report_markdown(summary: dict, active: SpanReport | None, new: SpanReport | None) -> str:
    lines = [f"# Training run {summary['run']}", "",
             f"- tasks: {summary['tasks']} ({summary['train_tasks']} train, {summary['dev_tasks']} dev)",
             f"- started from: {summary['init_from']}",
             f"- steps: {summary['steps']} in {summary['seconds']} s",
             f"- version: {summary['version']}: {summary['reason']}", ""]
    if active:
        lines += ["## Dev set, active model", "", active.to_markdown(), ""]
    if new:
        lines += ["## Dev set, new model", "", new.to_markdown(), ""]
    return "\n".join(lines)
