"""Label Studio tasks in, Label Studio predictions out: the predict path between HTTP and the model.

Label Studio drops a whole ``/predict`` answer, silently, when it does not hold exactly one prediction per
task in order, so a task that cannot be predicted (its text field is missing, say) still gets an empty
prediction, and the reason goes into a separate list of errors naming the task and the field.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from .labelconfig import SpanControl


class EntityExtractor(Protocol):
    version: str

    def extract(self, texts: Sequence[str], labels: Sequence[str],
                deadline: float | None = None) -> list[list[Any]]: ...


@dataclass(frozen=True)
class TaskError:
    task: Any
    field: str
    message: str

    def to_dict(self) -> dict:
        return {"task": self.task, "field": self.field, "error": self.message}


def region_id(control: SpanControl, label: str, start: int, end: int) -> str:
    """Stable per span: the same pre-annotation gets the same id in every prediction round."""
    key = f"{control.from_name}|{control.to_name}|{label}|{start}|{end}"
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]


def region(control: SpanControl, entity) -> dict:
    return {
        "id": region_id(control, entity.label, entity.start, entity.end),
        "from_name": control.from_name,
        "to_name": control.to_name,
        "type": "labels",
        "value": {"start": entity.start, "end": entity.end, "text": entity.text, "labels": [entity.label]},
        "score": round(entity.score, 6),
    }


def annotator_spans(context: Any) -> set[tuple[str | None, int, int]]:
    """The spans an annotator already has in an interactive request (``params.context``): Auto-Annotation
    must not hand those back, whatever label it would give them.

    Only an interactive request leaves anything out. Every other prediction is the model's complete opinion,
    annotated task or not: Label Studio stores it, compares it with the annotations and exports it, and a
    prediction missing exactly what people annotated would misreport the model. A region without a
    ``to_name`` (Label Studio 1.23 sends such) stands for that span in every text of the task.
    """
    results = context.get("result") if isinstance(context, dict) else None
    spans = set()
    for r in results if isinstance(results, list) else ():
        value = r.get("value") if isinstance(r, dict) else None
        if isinstance(value, dict) and isinstance(value.get("start"), int) and isinstance(value.get("end"), int):
            # a to_name that is not a string names no control; a list or dict there was unhashable, a 500 (test_fuzz)
            to_name = r.get("to_name") if isinstance(r.get("to_name"), str) else None
            spans.add((to_name, value["start"], value["end"]))
    return spans


def task_text(task: Any, control: SpanControl, max_chars: int | None = None) -> str:
    """The text a control labels, or :class:`TaskError` naming the task and field (also for a text over
    ``max_chars``: one such task of a "Retrieve Predictions" must not cost the others theirs)."""
    task_id = task.get("id") if isinstance(task, dict) else None
    data = task.get("data") if isinstance(task, dict) else None
    if not isinstance(data, dict):
        raise _error(task_id, "data", "task has no 'data' object")
    if control.data_field not in data:
        raise _error(task_id, f"data.{control.data_field}", "missing (the labeling config reads this field)")
    text = data[control.data_field]
    if not isinstance(text, str):
        raise _error(task_id, f"data.{control.data_field}", f"must be a string, not {type(text).__name__}")
    if max_chars is not None and len(text) > max_chars:
        raise _error(task_id, f"data.{control.data_field}", f"{len(text):,} characters, over UIE_MAX_TEXT_CHARS="
                                                            f"{max_chars:,}: split it into shorter tasks or raise the limit")
    return text


class _TaskFailure(Exception):
    def __init__(self, error: TaskError):
        super().__init__(error.message)
        self.error = error


def _error(task_id, field, message) -> _TaskFailure:
    return _TaskFailure(TaskError(task_id, field, message))


def task_score(regions: Sequence[dict]) -> float:
    """Confidence of a task's pre-annotation: its least confident region (0.0 when nothing was found).

    Sorting by prediction score ascending in Label Studio therefore puts first the tasks the model is
    least sure about (or found nothing in): the ones where an annotator's label teaches it most.
    """
    return min((r["score"] for r in regions), default=0.0)


def predict_tasks(tasks: Sequence[Any], controls: Sequence[SpanControl], model: EntityExtractor,
                  context: Any = None, deadline: float | None = None,
                  max_text_chars: int | None = None) -> tuple[list[dict], list[TaskError]]:
    """One prediction per task, in order, with one model call per control for the whole batch."""
    regions: list[list[dict]] = [[] for _ in tasks]
    errors: list[TaskError] = []
    known = annotator_spans(context)
    for control in controls:
        texts, positions = [], []
        for position, task in enumerate(tasks):
            try:
                texts.append(task_text(task, control, max_text_chars))
                positions.append(position)
            except _TaskFailure as failure:
                errors.append(failure.error)
        found = model.extract(texts, control.labels, deadline)
        for position, entities in zip(positions, found):
            regions[position] += [region(control, e) for e in entities
                                  if not {(control.to_name, e.start, e.end), (None, e.start, e.end)} & known]
    results = [{"result": r, "score": task_score(r), "model_version": model.version} for r in regions]
    return results, errors
