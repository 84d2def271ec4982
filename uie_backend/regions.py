"""Label Studio tasks in, Label Studio predictions out: the predict path between HTTP and the model.

Label Studio drops a whole ``/predict`` answer, silently, when it does not hold exactly one prediction per
task in order, so a task that cannot be predicted (its text field is missing, say) still gets an empty
prediction, and the reason goes into a separate list of errors naming the task and the field.

Prediction follows UIE's schema tree, as Taskflow's multi-stage prediction does, so its cost grows with what
is found rather than with the schema: first every entity label (minus those found only through a relation,
relation_schema.py) of every text; then, only for the entities found, their relation prompts
(``"{entity}的{predicate}"``) and per-region choices; text-level choices once per text. Each stage is one
batched model call over all tasks of the request.

The model is asked prompts and answers in prompts; a label's prompt may differ from its value (``predicted_values``,
labelconfig.py), so every region, relation and choice is turned back into the value Label Studio knows here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, Protocol, Sequence

from .labelconfig import ChoicesControl, Schema, SpanControl
from .relation_schema import RelationSchema


class EntityExtractor(Protocol):
    version: str
    relation_schema: RelationSchema | None  # learnt with the model; None: the model has never seen relations

    def extract(self, texts: Sequence[str], labels: Sequence[str],
                deadline: float | None = None) -> list[list[Any]]: ...

    def ask(self, queries: Sequence[tuple[str, str]], deadline: float | None = None) -> list[list[Any]]: ...


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


def task_text(task: Any, control: SpanControl | ChoicesControl, max_chars: int | None = None) -> str:
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
    return min((r["score"] for r in regions if "score" in r), default=0.0)  # a relation has no score of its own


def predict_tasks(tasks: Sequence[Any], schema: Schema, model: EntityExtractor, context: Any = None,
                  deadline: float | None = None, max_text_chars: int | None = None,
                  ask_all_predicates: bool = False) -> tuple[list[dict], list[TaskError]]:
    """One prediction per task, in order: entities, then relations and per-region choices of the entities found,
    and text-level choices; each stage one model call for the whole batch."""
    results: list[list[dict]] = [[] for _ in tasks]
    errors: list[TaskError] = []
    texts: dict[tuple[int, str], str] = {}  # (task position, Text name) -> its text
    for control in (*schema.spans, *schema.choices):
        for position, task in enumerate(tasks):
            if (position, control.to_name) not in texts:
                try:
                    texts[(position, control.to_name)] = task_text(task, control, max_text_chars)
                except _TaskFailure as failure:
                    texts[(position, control.to_name)] = None
                    errors.append(failure.error)
    known = annotator_spans(context)
    trees = _relation_trees(schema, model.relation_schema, ask_all_predicates)
    found = _entities(schema, model, texts, known, trees, deadline)
    for position, entity_regions in found.items():
        results[position] += [r for r, _ in entity_regions]
    queries = _Queries()
    for position, entity_regions in found.items():
        for r, control in entity_regions:
            text = texts[(position, control.to_name)]
            subject, subject_label = r["value"]["text"], r["value"]["labels"][0]
            for predicate, objects in trees.get((control.from_name, subject_label), {}).items():
                queries.add(("relation", position, control, subject, subject_label, schema.predicate_of(predicate),
                             None if objects is None else tuple(objects)),
                            text,
                            f"{subject}的{predicate}")
            for choices in schema.region_choices:
                if choices.to_name == control.to_name:
                    queries.add(("region choice", position, choices, r["id"]), text, choices.prompt(subject=subject))
    for choices in schema.text_choices:
        for position in range(len(tasks)):
            if texts.get((position, choices.to_name)) is not None:
                queries.add(("choice", position, choices), texts[(position, choices.to_name)], choices.prompt())
    for key, answers in queries.answered(model, deadline):
        kind, position = key[0], key[1]
        if kind == "relation":
            results[position] += _relations(key, answers, found.get(position, []), known)
        elif kind == "region choice" and (chosen := _chosen(key[2], answers)):
            entity_region = next(r for r, _ in found[position] if r["id"] == key[3])
            results[position].append(_region_choice(entity_region, key[2], chosen))
        elif kind == "choice" and (chosen := _chosen(key[2], answers)):
            results[position].append(_text_choice(key[2], chosen))
    predictions = [{"result": r, "score": task_score(r), "model_version": model.version} for r in results]
    return predictions, errors


class _Queries:
    """Second-stage prompts, each (text, prompt) asked once however many regions need its answer."""

    def __init__(self):
        self._asked: dict[tuple[str, str], int] = {}
        self._keys: dict[Any, int] = {}  # a key added twice (a subject's second occurrence) is answered once

    def add(self, key: Any, text: str, prompt: str) -> None:
        self._keys.setdefault(key, self._asked.setdefault((text, prompt), len(self._asked)))

    def answered(self, model: EntityExtractor, deadline: float | None):
        answers = model.ask(list(self._asked), deadline) if self._asked else []
        return [(key, answers[index]) for key, index in self._keys.items()]


def _relation_trees(schema: Schema, learnt: RelationSchema | None,
                    ask_all: bool) -> dict[tuple[str, str], dict[str, list[str] | None]]:
    """(Labels control, subject label) -> {predicate prompt: the object labels learnt (within the config: a
    predicate none of whose object labels is left is not asked), or None when nothing was learnt
    (``UIE_ASK_ALL_PREDICATES``: any region found may be the object)}. The learnt tree speaks prompts, what
    the model was taught; the labels here are the values regions carry."""
    trees: dict[tuple[str, str], dict[str, list[str] | None]] = {}
    if not schema.predicates:
        return trees
    for control in schema.spans:
        for label, prompt in zip(control.labels, control.prompts):
            if learnt is not None:
                tree = {p: kept for p, objects in learnt.predicates.get(prompt, {}).items()
                        if p in schema.predicate_prompts
                        and (kept := [control.label_of(o) for o in objects if o in control.prompts])}
            else:
                tree = dict.fromkeys(schema.predicate_prompts) if ask_all else {}
            if tree:
                trees[(control.from_name, label)] = tree
    return trees


def _entities(schema: Schema, model: EntityExtractor, texts: dict, known: set, trees: dict,
              deadline: float | None) -> dict[int, list[tuple[dict, SpanControl]]]:
    """First stage: the entity regions of every task, per position, each with its control."""
    learnt = model.relation_schema if trees else None  # without relations to ask, every label is asked
    found: dict[int, list[tuple[dict, SpanControl]]] = {}
    for control in schema.spans:
        prompts = learnt.first_stage(control.prompts, schema.predicate_prompts) if learnt else control.prompts
        label_of = dict(zip(control.prompts, control.labels))
        positions = [p for (p, name), text in texts.items() if name == control.to_name and text is not None]
        for position, entities in zip(positions, model.extract([texts[(p, control.to_name)] for p in positions],
                                                               prompts, deadline)):
            found.setdefault(position, []).extend(
                (region(control, replace(e, label=label_of[e.label])), control) for e in entities
                if not {(control.to_name, e.start, e.end), (None, e.start, e.end)} & known)
    return found


def _relations(key: tuple, answers: Sequence, entity_regions: list[tuple[dict, SpanControl]],
               known: set) -> list[dict]:
    """Relation results for one relation prompt's answers: from the nearest region holding the subject's text
    (the prompt names the subject by its text, so every occurrence asks the same), to the region at the
    answer's span. That region must have one of the object labels learnt for the predicate (父亲 joins a 人物,
    never a 地点 at that span); where the first stage found none at the span, one is created with the most
    frequent object label. New regions come first in the returned list.

    On a long text the prompt is asked of every window, so a window holding the object answers it even when
    the subject's occurrences all lie in other windows; the relation then joins the nearest of them.

    Only regions of the subject label the predicate was asked for are subjects: a span found under two labels
    (围城 as 图书作品 and 影视作品) hangs a predicate only on the label that takes it."""
    _, _, control, subject, subject_label, predicate, object_labels = key
    subjects = [r for r, c in entity_regions if c is control and r["value"]["text"] == subject
                and r["value"]["labels"][0] == subject_label]
    out = []
    for answer in answers:
        if answer.start < 0:
            continue
        at_span = [r for r, c in entity_regions if c.to_name == control.to_name
                   and (r["value"]["start"], r["value"]["end"]) == (answer.start, answer.end)]
        target = next((r for r in at_span if object_labels is None or r["value"]["labels"][0] in object_labels), None)
        if target is None:
            if at_span or not object_labels or {(control.to_name, answer.start, answer.end),
                                                (None, answer.start, answer.end)} & known:
                continue
            target = region(control, replace(answer, label=object_labels[0]))
            entity_regions.append((target, control))
            out.insert(0, target)
        source = min(subjects, key=lambda r: abs(r["value"]["start"] - answer.start), default=None)
        if source is not None and source is not target:
            out.append({"from_id": source["id"], "to_id": target["id"], "type": "relation", "direction": "right",
                        "labels": [predicate]})
    return out


def _chosen(control: ChoicesControl, answers: Sequence) -> list[tuple[str, float]]:
    """The options a classification prompt's answers pick (as Label Studio names them): the best one, or every
    one for ``choice="multiple"``."""
    options = sorted(((control.option_of(a.text), a.score) for a in answers
                      if a.start < 0 and a.text in control.option_prompts), key=lambda option: -option[1])
    return options if control.multiple else options[:1]


def _text_choice(control: ChoicesControl, chosen: list[tuple[str, float]]) -> dict:
    return {"id": hashlib.sha1(f"{control.from_name}|{control.to_name}".encode("utf-8")).hexdigest()[:10],
            "from_name": control.from_name, "to_name": control.to_name, "type": "choices",
            "value": {"choices": [option for option, _ in chosen]}, "score": round(min(p for _, p in chosen), 6)}


def _region_choice(entity_region: dict, control: ChoicesControl, chosen: list[tuple[str, float]]) -> dict:
    """Label Studio's per-region choice: the region's own id, with its span in the value."""
    span = {k: entity_region["value"][k] for k in ("start", "end", "text")}
    return {"id": entity_region["id"], "from_name": control.from_name, "to_name": control.to_name,
            "type": "choices", "value": {**span, "choices": [option for option, _ in chosen]},
            "score": round(min(p for _, p in chosen), 6)}
