"""Where training runs: a project's annotated tasks -> doccano -> UIE examples -> fine-tune -> gate -> activate.

One function, :func:`run`, used by the background job of the server, by ``UIEBackend.fit`` (label-studio-ml's
own job runner) and, piece by piece, by the CLIs. A run belongs to one Label Studio project: it trains on that
project's annotations and can change only what that project is served (lineages.py).

Every annotated task is learnt, and the numbers stay honest (docs/decisions.md, "Every annotation counts"):

1. *selection*: the base model is fine-tuned on the train split, scored on the dev split after each epoch;
   the epoch count (the latest within noise of the best) and the dev scores of a model that never saw the
   dev tasks come from here; this "held-out twin" is kept in the run directory;
2. *gate*: the twin against what the project is served now, on the same dev tasks, never on tasks either
   model trained on (the active version is represented by its own held-out twin);
3. *refit*: the base model is fine-tuned again on every task for the chosen number of epochs: that model
   becomes the version, and is activated when the gate says so.

A project with fewer than ``MIN_HELD_OUT_TASKS`` annotated tasks has no dev split worth the name: it trains
once on all of them, and its report says that its scores are on the training tasks. Each run keeps, in its
own directory, the exact data it used (the Label Studio tasks, the doccano file, the UIE train/dev files, and
``prompts.json``: which prompt each Label Studio value was taught as, for the files speak prompts), the models
it produced and its report, so any served model can be traced back and reproduced.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from . import checkpoint, lineages, registry, relation_schema, trainer
from .config import Settings
from .data import DataError, doccano_to_examples, split_records, tasks_to_doccano, write_jsonl
from .jsonio import write_json
from .labelconfig import Schema, parse_label_config
from .labelstudio import Connection
from .lineages import ModelSource
from .metrics import SpanReport, f1_standard_error, regroup
from .predictor import Predictor

log = logging.getLogger(__name__)

DEV_FRACTION = 0.2
SPLIT_SEED = 1000  # fixed: the same task lands in the same split in every run, so dev F1s compare
DEFAULT_LEARNING_RATE = 1e-5  # PaddleNLP's recipe for uie-base
# Below this many annotated tasks the dev split would hold one or two tasks: too few to choose epochs or to
# gate on, and the annotator wants the few tasks learnt. Such a run trains once, on everything.
MIN_HELD_OUT_TASKS = 10
HELD_OUT_DIR = "held-out"  # the selection run's model inside a run directory
# The refit's epochs come from the latest evaluation within one standard error of the best dev F1: on a dev
# split of a few tasks the best is often one lucky span early on, and a refit that short did not learn the tasks
# the annotator labelled (docs/decisions.md, "Epochs from a dev split of a few tasks")
SELECTION_SLACK_SE = 1.0


class ProjectRequired(DataError):
    """A training request that names no Label Studio project: it may change nobody's model."""


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


def learning_rate(settings: Settings, init_from: Path) -> float:
    """``UIE_TRAIN_LR``, else the starting model's recommendation, else PaddleNLP's 1e-5 for uie-base.

    A small model trained from scratch (the embedded one) needs a larger step than pretrained uie-base
    to move at all within a Start Training run.
    """
    recommended = checkpoint.read_meta(init_from).get("fine_tune_learning_rate")
    return settings.train_learning_rate or float(recommended or DEFAULT_LEARNING_RATE)


def split_train_dev(records: list[dict]) -> tuple[list[dict], list[dict], bool]:
    """Train and dev records by task id (a task stays in its split as the project grows), and whether dev
    is held out. With fewer than MIN_HELD_OUT_TASKS tasks, or a split left empty, both are every record."""
    train_records, dev_records = split_records(records, (1 - DEV_FRACTION, DEV_FRACTION), seed=SPLIT_SEED)
    if len(records) < MIN_HELD_OUT_TASKS or not train_records or not dev_records:
        log.warning("%d annotated tasks (%d would be dev): training on all of them and scoring on the same tasks",
                    len(records), len(dev_records))
        return records, records, False
    return train_records, dev_records, True


def uie_examples(records: list[dict], schema: Schema, negative_ratio: int | None = None) -> list[dict]:
    """Training examples with ``negative_ratio``; without one, evaluation examples: every label and every
    predicate of every subject asked, so that dev scores count what the model would wrongly answer."""
    return doccano_to_examples(records, schema.prompts, len(schema.prompts) if negative_ratio is None else negative_ratio,
                               predicates=schema.predicate_prompts, choices=schema.choices,
                               is_train=negative_ratio is not None)


PROMPTS_NOTE = ("doccano.jsonl, train.txt, dev.txt and all.txt name every label, relation and option by the prompt "
                "the model is taught (labelconfig.py: predicted_values, else UIE_LABEL_PROMPTS, else the value); "
                "tasks.json and Label Studio use the values. Here each value -> its prompt.")


def write_prompts(path: Path, schema: Schema) -> None:
    """The value -> prompt mapping of a run's data, beside the files that speak prompts."""
    write_json(path, {"about": PROMPTS_NOTE, **schema.prompt_mapping()})


def run(request: TrainingRequest, settings: Settings, run_dir: Path,
        on_progress: Callable[[trainer.Progress], None] | None = None) -> dict:
    """Train on the project's annotations, keep everything in ``run_dir``, activate the result if it is better."""
    if request.project_id is None:
        raise ProjectRequired("a training request must name its Label Studio project (\"project\"): a run "
                              "changes what that project is served, and no other")
    lineage = lineages.project_dir(settings, request.project_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    schema = parse_label_config(request.label_config, settings.prompts(request.project_id))
    tasks = collect_tasks(request)
    write_json(run_dir / "tasks.json", tasks)
    write_prompts(run_dir / "prompts.json", schema)

    records = tasks_to_doccano(tasks, schema)
    if not records:
        raise DataError("no annotated tasks to train on (skipped and cancelled tasks do not count)")
    write_jsonl(run_dir / "doccano.jsonl", records)
    train_records, dev_records, held_out = split_train_dev(records)
    train_examples = uie_examples(train_records, schema, settings.negative_ratio)
    dev_examples = uie_examples(dev_records, schema)
    write_jsonl(run_dir / "train.txt", train_examples)
    write_jsonl(run_dir / "dev.txt", dev_examples)

    init_from = lineages.base_checkpoint(settings)
    config = trainer.TrainConfig(
        init_from=init_from, save_dir=run_dir / HELD_OUT_DIR if held_out else run_dir,
        learning_rate=learning_rate(settings, init_from), batch_size=settings.train_batch_size,
        max_seq_len=settings.train_max_seq_len, num_epochs=settings.train_epochs, min_steps=settings.train_min_steps,
        device=settings.device, selection_slack_se=SELECTION_SLACK_SE)
    meta = {"project": request.project_id, "run": run_dir.name, "labels": schema.prompts,
            "label_values": schema.labels, "tasks": len(records),
            "train_tasks": len(train_records), "dev_tasks": len(dev_records), "held_out": held_out,
            "relation_schema": relation_schema.learn(records).to_dict() if schema.predicates else None}
    phases = 2 if held_out else 1
    selection = trainer.train(config, train_examples, dev_examples, _phase(on_progress, "select", 1, phases), meta)
    if selection.version is None:
        raise RuntimeError("training saved no checkpoint")
    active_report, compared_with = _served_model_report(settings, lineage, selection, dev_examples)
    activate, reason = should_activate(settings.activation_policy, selection.best_report, active_report)

    refit = selection
    if held_out:
        # the same recipe on every task, for as many passes as the dev split chose
        all_examples = uie_examples(records, schema, settings.negative_ratio)
        write_jsonl(run_dir / "all.txt", all_examples)
        refit = trainer.train(
            replace(config, save_dir=run_dir, num_epochs=selection.best_epochs, min_steps=0), all_examples, [],
            _phase(on_progress, "refit", 2, phases),
            {**meta, "dev": selection.best_report.to_dict() if selection.best_report else None,
             "held_out_model": str(run_dir / HELD_OUT_DIR / "model_best")})
        if refit.version is None:
            raise RuntimeError("the refit saved no checkpoint")
    new_model = run_dir / "model_best"
    _load_once(new_model, settings)
    version = registry.add(new_model, lineage)
    if activate:
        registry.activate(version.id, lineage)
    log.log(logging.INFO if activate else logging.WARNING, "project %s, version %s: %s", request.project_id,
            version.id, reason)
    summary = {
        "run": run_dir.name, "project": request.project_id, "tasks": len(records),
        "train_tasks": len(train_records), "dev_tasks": len(dev_records), "held_out": held_out,
        "steps": selection.steps + (refit.steps if held_out else 0),
        "selection_steps": selection.steps, "refit_steps": refit.steps if held_out else 0,
        "epochs": round(selection.best_epochs, 2),
        "seconds": round(selection.seconds + (refit.seconds if held_out else 0), 1),
        "version": version.id, "activated": activate, "reason": reason,
        "policy": settings.activation_policy, "init_from": str(init_from), "compared_with": compared_with,
        "dev_base": schema_scores(selection.initial_report, schema),
        "dev_active": schema_scores(active_report, schema),
        "dev_new": schema_scores(selection.best_report, schema),
        "history": selection.history,  # loss and dev F1 per evaluation of the selection run (the page's chart)
    }
    write_json(run_dir / "report.json", summary)
    write_json(version.path / "report.json", summary)
    report = _report_markdown(summary, schema, active_report, selection.best_report)
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
        return True, f"activated: dev F1 {new.overall.f1:.4f} >= served model's {active.overall.f1:.4f}"
    # One span fewer of a few tasks' dozen is noise, not a worse model, and refusing on it would leave the
    # annotator's new tasks unlearnt; a model worse beyond the noise of the served model's score is kept out.
    noise = f1_standard_error(active.overall)
    if new.overall.f1 >= active.overall.f1 - noise:
        return True, (f"activated: dev F1 {new.overall.f1:.4f} is within one standard error ({noise:.4f}) of the "
                      f"served model's {active.overall.f1:.4f} on {active.overall.support} dev spans")
    return False, (f"not activated: dev F1 {new.overall.f1:.4f} is below the served model's "
                   f"{active.overall.f1:.4f} by more than one standard error ({noise:.4f}) on the same dev tasks "
                   f"(UIE_ACTIVATION_POLICY=if-not-worse)")


def _phase(on_progress, name: str, number: int, phases: int):
    """Progress of one of a run's trainings, named so that /training says which (``refit 2/2``)."""
    if on_progress is None:
        return None
    return lambda progress: on_progress(replace(progress, phase=f"{name} {number}/{phases}"))


def _served_model_report(settings: Settings, lineage: Path, selection: trainer.TrainResult,
                         dev_examples: list[dict]) -> tuple[SpanReport | None, str]:
    """Dev scores of what the project is served now, from a model that did not train on the dev tasks.

    A project that never trained is served the base, which the selection run started from (its initial
    scores). An active version trained on every task, dev ones included, so its held-out twin stands for
    it; without one (its run directory was removed), the version itself, which flatters it.
    """
    active = registry.active_path(lineage)
    if active is None:
        return selection.initial_report, "base model"
    twin = Path(checkpoint.read_meta(active).get("held_out_model") or "")
    held_out = twin.name and checkpoint.is_complete(twin)
    report = trainer.evaluate_checkpoint(twin if held_out else active, dev_examples, settings.train_max_seq_len,
                                         device=settings.device)
    if held_out:
        return report, f"active version {active.name} (its held-out twin)"
    return report, f"active version {active.name} (itself: it may have trained on these dev tasks)"


def _load_once(model_dir: Path, settings: Settings) -> None:
    """Load the new model here, in the training process, before any server sees it.

    That writes the static-graph export next to the weights (servers then switch to a ready model), and a
    model that cannot be loaded never becomes a version.
    """
    Predictor(ModelSource(version=checkpoint.model_version(model_dir), path=model_dir), settings)


def schema_scores(report: SpanReport | None, schema: Schema) -> dict | None:
    """A dev report as stored in ``report.json``: the scores per prompt and overall, and, for a config with
    relations or choices or a label asked under another name, the entity scores per label value, the relation scores per predicate (an object span
    found for its subject and predicate: a triple) and, per ``<Choices>``, the scores per option and the
    accuracy (the share of examples whose chosen option is the model's best one: evaluation scores every
    classification prompt as a single choice, trainer._best_option)."""
    if report is None:
        return None
    scores = report.to_dict()
    for name, group in schema_groups(report, schema):
        if name == "entities" or name == "relations":
            scores[name] = group.to_dict()
        else:
            scores.setdefault("choices", {})[name] = {**group.to_dict(), "accuracy": group.overall.recall}
    return scores


def schema_groups(report: SpanReport, schema: Schema) -> list[tuple[str, SpanReport]]:
    """("entities" | "relations" | a <Choices> name, its report), named by Label Studio's values, for a config
    with relations or choices or a value asked under another name (then the per-prompt rows would not say
    which label the team sees)."""
    if not schema.predicates and not schema.choices and not schema.renames:
        return []
    kind = schema.prompt_kind

    def group_of(wanted: str, name: str | None = None):
        def group(label: str) -> str | None:
            found = kind(label)
            if found is None or found[0] != wanted or (name is not None and found[1] != name):
                return None
            return found[2] if wanted == "choice" else found[1]
        return group

    groups = [("entities", regroup(report, group_of("entity")))]
    if schema.predicates:
        groups.append(("relations", regroup(report, group_of("relation"))))
    for name in dict.fromkeys(c.from_name for c in schema.choices):
        groups.append((name, regroup(report, group_of("choice", name))))
    return groups


def scores_markdown(title: str, report: SpanReport, schema: Schema) -> list[str]:
    """A report's Markdown section: one table per label, or, for a config with relations or choices, one for
    entities, one for relations (per predicate) and one per ``<Choices>`` (per option, with its accuracy)."""
    groups = schema_groups(report, schema)
    if not groups:
        return [f"## {title}", "", report.to_markdown(), ""]
    lines = [f"## {title}", ""]
    if schema.renames:
        asked = [f"{label} as {prompt}" for label, prompt in zip(schema.labels, schema.prompts) if label != prompt]
        asked += [f"{p} as {q}" for p, q in zip(schema.predicates, schema.predicate_prompts) if p != q]
        asked += [f"{o} as {q}" for c in schema.choices for o, q in zip(c.options, c.option_prompts) if o != q]
        lines += [f"Asked under other names: {', '.join(dict.fromkeys(asked))}.", ""]
    for name, group in groups:
        heading = {"entities": "Entities (span)", "relations": "Relations (triple: subject, predicate, object)"}
        lines += [f"### {heading.get(name, f'Choices {name!r}: accuracy {group.overall.recall:.4f}')}", "",
                  group.to_markdown(), ""]
    return lines


def _report_markdown(summary: dict, schema: Schema, active: SpanReport | None, new: SpanReport | None) -> str:
    held_out = summary["held_out"]
    lines = [f"# Training run {summary['run']} (project {summary['project']})", "",
             f"- tasks: {summary['tasks']} ({summary['train_tasks']} train, {summary['dev_tasks']} dev)"
             + ("" if held_out else ": too few for a held-out dev split, so the scores below are on the "
                                    "training tasks"),
             f"- started from: {summary['init_from']}",
             f"- selection: {summary['selection_steps']} steps; kept after {summary['epochs']} epochs (the latest "
             f"within one standard error of the best dev F1)",
             (f"- refit on all {summary['tasks']} tasks for {summary['epochs']} epochs: {summary['refit_steps']} steps"
              if held_out else "- no refit: the selection run trained on every task"),
             f"- {summary['seconds']} s in all",
             f"- version: {summary['version']}: {summary['reason']}", ""]
    if active:
        lines += scores_markdown(f"Dev set, {summary['compared_with']}", active, schema)
    if new:
        lines += scores_markdown("Dev set, new model" + (" (its held-out twin: trained on the train split only)"
                                                           if held_out else ""), new, schema)
    return "\n".join(lines)
