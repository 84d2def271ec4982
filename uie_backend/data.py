"""Turn Label Studio annotations into training data for UIE.

The pipeline has two hops, and the middle format is the one saved to disk and reused by
training and evaluation:

Label Studio task  ->  doccano record  ->  UIE prompt examples

A doccano record (one JSON object per line, doccano's "entities" form, which PaddleNLP's
``doccano.py`` reads) is::

    {"id": 6, "text": "张三的父亲是张一",
     "entities": [{"id": 0, "start_offset": 0, "end_offset": 2, "label": "人物"},
                  {"id": 1, "start_offset": 6, "end_offset": 8, "label": "人物##正向"}],
     "relations": [{"id": 0, "from_id": 0, "to_id": 1, "type": "父亲"}],
     "label": ["正向"]}

Offsets are Python string indices (Unicode code points, end exclusive), exactly as Label Studio
stores them, so ``text[start_offset:end_offset]`` is the entity. ``id`` is the Label Studio task
id; it keeps a task in the same train/dev/test split however the data set grows. A record with
no entities is a real negative: the annotator looked and found nothing.

The rest follows PaddleNLP's doccano conventions: a relation goes from its subject to its object
(Label Studio's ``direction`` is applied), a per-region choice is written into its entity's label
after ``##``, and text-level choices are doccano's classification ``label`` list (present only when
the annotation made a choice). UIE examples are built from records as PaddleNLP's ``doccano.py``
builds them: entity prompts, ``"{subject}的{predicate}"`` relation prompts, ``prefix[options]``
classification prompts whose answers lie in the prompt itself, and their negatives.

Records, and the examples made of them, name labels, predicates and options by their *prompts*, what the model
is taught: a ``<Label value="PER" predicted_values="人名">`` region becomes an entity ``"人名"``
(labelconfig.py). A training run writes the value <-> prompt mapping beside them (``prompts.json``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .labelconfig import ChoicesControl, Schema, SpanControl

SEPARATOR = "##"  # PaddleNLP's: "人名##正向" is an entity 人名 whose region was classified 正向


class DataError(ValueError):
    """Input data cannot be used: the message names the task (or line) and the field."""


# -- reading and writing files ----------------------------------------------------------------------


def _parse_jsonl(text: str, source: object) -> list[Any]:
    rows = []
    # Split on "\n" only: str.splitlines() would also split on U+2028 and friends, which
    # json.dumps(ensure_ascii=False) leaves unescaped inside strings.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"{source}: line {number} is not valid JSON: {exc.msg}") from None
    return rows


def _read_text(path: str | os.PathLike) -> str:
    # utf-8-sig: files saved by Windows editors start with a BOM that json.loads refuses.
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _require_objects(rows: list[Any], source: object) -> list[dict]:
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(f"{source}: item {index} is a {type(row).__name__}, not a JSON object")
    return rows


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read one JSON object per line; blank lines are allowed."""
    return _require_objects(_parse_jsonl(_read_text(path), path), path)


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    """Write one JSON object per line, atomically, so a crash never leaves half a data set."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp_name, path)
    except BaseException:
        os.unlink(tmp_name)
        raise


def _unwrap_payload(payload: Any, source: object) -> list[Any]:
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict):
        if "data" in payload:  # a single task
            return [payload]
        for key in ("tasks", "annotations"):  # "annotations": the legacy /train payload
            if isinstance(payload.get(key), list):
                return payload[key]
    raise DataError(f"{source}: expected a list of tasks, or an object with 'tasks' or 'annotations'")


def load_tasks(path: str | os.PathLike) -> list[dict]:
    """Read Label Studio tasks from any of the shapes they arrive in.

    Accepted: a JSON export (array of tasks), the legacy ``/train`` payload
    (``{"annotations": [tasks], ...}``), ``{"tasks": [...]}``, or JSONL with one task per line.
    """
    text = _read_text(path)
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        if text.lstrip().startswith("["):
            raise DataError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
        return _require_objects(_parse_jsonl(text, path), path)
    return _require_objects(_unwrap_payload(payload, path), path)


# -- Label Studio tasks -> doccano records ----------------------------------------------------------


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _recency(annotation: dict) -> tuple[bool, float, float]:
    moment = _timestamp(annotation.get("updated_at"))
    if moment is None:
        moment = _timestamp(annotation.get("created_at"))
    annotation_id = annotation.get("id")
    numeric_id = annotation_id if isinstance(annotation_id, (int, float)) else float("-inf")
    return (moment is not None, moment or 0.0, numeric_id)


def choose_annotation(task: dict) -> dict | None:
    """Pick the one annotation to learn from, or None when the task has none that counts.

    Skipped annotations (``was_cancelled``) say nothing about the text. Among the rest a reviewer's
    ``ground_truth`` wins, then the most recently edited one, since it reflects the latest guidelines.
    """
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        raise DataError(f"task {task.get('id')!r}: field 'annotations' is not a list")
    usable = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    if not usable:
        return None
    ground_truth = [a for a in usable if a.get("ground_truth")]
    return max(ground_truth or usable, key=_recency)


def _check_span(text: str, start: Any, end: Any, where: str, names: tuple[str, str]) -> None:
    for name, offset in zip(names, (start, end)):
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise DataError(f"{where}: field '{name}' is {offset!r}, not an integer")
    if not 0 <= start < end <= len(text):
        raise DataError(
            f"{where}: fields '{names[0]}'={start}, '{names[1]}'={end} are not a span of the text"
            f" (need 0 <= start < end <= {len(text)})")


def _only_string_field(data: dict) -> str | None:
    strings = [key for key, value in data.items() if isinstance(value, str)]
    return strings[0] if len(strings) == 1 else None


def _field_for_target(data: dict, to_name: str | None) -> str | None:
    # Without a config, the Text's name is usually also its data key ("text"/"$text").
    if to_name in data:
        return to_name
    if "text" in data:
        return "text"
    return _only_string_field(data)


def _results(annotation: dict, task_id: Any) -> list[dict]:
    result = annotation.get("result") or []
    if not isinstance(result, list):
        raise DataError(f"task {task_id!r}: field 'annotations[].result' is not a list")
    return [item for item in result if isinstance(item, dict)]


def _text_field(task: dict, regions: list[dict], schema: Schema | None) -> tuple[str | None, list[dict]]:
    """Find the data field holding the text, and the regions (spans and choices) that label it."""
    data = task.get("data")
    if not isinstance(data, dict):
        raise DataError(f"task {task.get('id')!r}: field 'data' is missing or not an object")
    if schema is None:
        fields_by_region = [(_field_for_target(data, region.get("to_name")), region) for region in regions]
        default_field = _field_for_target(data, None)
    else:
        controls = [*schema.spans, *schema.choices]
        by_names = {(c.from_name, c.to_name): c.data_field for c in controls}
        fields_by_region = [
            (by_names[key], region) for region in regions
            if (key := (region.get("from_name"), region.get("to_name"))) in by_names
        ]
        default_field = next((c.data_field for c in controls if c.data_field in data), controls[0].data_field)
    fields = list(dict.fromkeys(field for field, _ in fields_by_region))
    if len(fields) > 1:
        raise DataError(
            f"task {task.get('id')!r}: spans label several text fields {fields}; a record holds one text")
    return (fields[0] if fields else default_field), [region for _, region in fields_by_region]


def _string_list(value: Any, where: str, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DataError(f"{where}: field '{name}' is not a list of strings")
    return value


def _entities(text: str, regions: list[dict], task_id: Any,
              prompt_of: Callable[[str], str]) -> tuple[list[dict], dict[Any, int]]:
    """Doccano entities of the span regions, labelled by their prompts, and each region id's first entity
    (what relations point at)."""
    entities: list[dict] = []
    by_region: dict[Any, int] = {}
    seen: dict[tuple[str, int, int], int] = {}
    for region in regions:
        where = f"task {task_id!r}, region {region.get('id')!r}"
        value = region.get("value")
        if not isinstance(value, dict):
            raise DataError(f"{where}: field 'value' is missing or not an object")
        start, end = value.get("start"), value.get("end")
        _check_span(text, start, end, where, ("value.start", "value.end"))
        if "text" in value and text[start:end] != value["text"]:
            raise DataError(f"{where}: field 'value.text' is {value['text']!r}"
                            f" but the text at {start}:{end} is {text[start:end]!r}")
        for label in map(prompt_of, _string_list(value.get("labels"), where, "value.labels")):
            if (label, start, end) not in seen:
                seen[(label, start, end)] = len(entities)
                entities.append({"id": len(entities), "start_offset": start, "end_offset": end, "label": label})
            by_region.setdefault(region.get("id"), seen[(label, start, end)])
    return entities, by_region


def _relations(results: list[dict], by_region: dict[Any, int], schema: Schema | None) -> list[dict]:
    """Doccano relations (subject -> object) of Label Studio's relation results between known regions, each
    named by its predicate's prompt.

    A relation without a label has no predicate to learn; one whose ends are not regions of this record
    (another text's, or a control the config no longer has) has nothing to point at; a predicate the config
    no longer has (when there is a config) is not asked any more: all are left out.
    """
    relations: list[dict] = []
    seen: set[tuple[int, int, str]] = set()
    for result in results:
        if result.get("type") != "relation":
            continue
        ends = by_region.get(result.get("from_id")), by_region.get(result.get("to_id"))
        labels = result.get("labels")
        if None in ends or not isinstance(labels, list):
            continue
        direction = result.get("direction", "right")
        pairs = {"left": [ends[::-1]], "bi": [ends, ends[::-1]]}.get(direction, [ends])
        for subject, obj in pairs:
            for predicate in labels:
                if schema is not None and (predicate := schema.predicate_prompt(predicate)) is None:
                    continue
                if isinstance(predicate, str) and (subject, obj, predicate) not in seen:
                    seen.add((subject, obj, predicate))
                    relations.append({"id": len(relations), "from_id": subject, "to_id": obj, "type": predicate})
    return relations


def _is_region_choice(result: dict, schema: Schema | None) -> bool:
    if schema is not None:
        return any(c.per_region and c.from_name == result.get("from_name") for c in schema.choices)
    value = result.get("value")
    return isinstance(value, dict) and "start" in value  # Label Studio writes the region's span into it


def _choices(results: list[dict], task_id: Any, schema: Schema | None) -> list[tuple[dict, list[str]]]:
    """Each choices result and its options as the prompt names them (a value no control has stays as it is)."""
    found = []
    for result in results:
        if result.get("type") == "choices":
            where = f"task {task_id!r}, region {result.get('id')!r}"
            value = result.get("value")
            if not isinstance(value, dict):
                raise DataError(f"{where}: field 'value' is missing or not an object")
            options = _string_list(value.get("choices"), where, "value.choices")
            control = next((c for c in schema.choices if c.from_name == result.get("from_name")), None) \
                if schema is not None else None
            found.append((result, [control.option_prompt(o) or o for o in options] if control else options))
    return found


def task_to_doccano(task: dict, schema: Schema | None = None) -> dict | None:
    """Convert one Label Studio task to a doccano record, or None when it has no usable annotation.

    With ``schema`` (from the labeling config) only regions of its controls count and the text is read
    from the bound ``$field``; without, the field is guessed from the regions' ``to_name``, then
    ``data["text"]``, then the only string in ``data``.
    """
    annotation = choose_annotation(task)
    if annotation is None:
        return None
    task_id = task.get("id")
    results = _results(annotation, task_id)
    labelled = [r for r in results if r.get("type") in ("labels", "choices")]
    field, labelled = _text_field(task, labelled, schema)
    if field is None:
        raise DataError(f"task {task_id!r}: field 'data.text' is missing and data has no single string to use")
    text = task["data"].get(field)
    if not isinstance(text, str):
        raise DataError(f"task {task_id!r}: field 'data.{field}' is missing or not a string")

    entities, by_region = _entities(text, [r for r in labelled if r.get("type") == "labels"], task_id,
                                    schema.prompt_of if schema else str)
    record = {"id": task_id, "text": text, "entities": entities, "relations": _relations(results, by_region, schema)}
    chosen: list[str] = []
    for result, options in _choices([r for r in labelled if r.get("type") == "choices"], task_id, schema):
        if not _is_region_choice(result, schema):
            chosen += [option for option in options if option not in chosen]
        elif result.get("id") in by_region and options:
            entity = entities[by_region[result["id"]]]
            entity["label"] = SEPARATOR.join([entity["label"], *options])
    if chosen:
        record["label"] = chosen
    return record


def tasks_to_doccano(tasks: Iterable[dict], schema: Schema | None = None) -> list[dict]:
    """Convert tasks, dropping those without a usable annotation (skipped or never annotated)."""
    records = (task_to_doccano(task, schema) for task in tasks)
    return [record for record in records if record is not None]


def split_label(label: str) -> tuple[str, list[str]]:
    """``"人名##正向"`` -> ``("人名", ["正向"])``: the entity label and its region's choices (PaddleNLP's ``##``)."""
    entity_label, *choices = label.split(SEPARATOR)
    return entity_label, choices


def label_counts(records: Iterable[dict]) -> Counter[str]:
    """How many entities each label has across ``records``."""
    return Counter(split_label(entity["label"])[0] for record in records for entity in record["entities"])


# -- doccano records -> UIE examples ----------------------------------------------------------------


def record_key(record: dict) -> str:
    """What seeds a record's random draws (split, sampled negatives): its task id, else its text, so a
    task keeps its draws as the data set grows."""
    if record.get("id") is not None:
        return f"id:{record['id']}"
    return f"text:{record.get('text')}"


def _record_spans(record: dict) -> dict[str, list[tuple[int, int]]]:
    """Validate a doccano record and group its spans by label, in order of first appearance."""
    where = f"record {record.get('id')!r}"
    text = record.get("text")
    if not isinstance(text, str):
        raise DataError(f"{where}: field 'text' is missing or not a string")
    entities = record.get("entities")
    if not isinstance(entities, list):
        raise DataError(f"{where}: field 'entities' is missing or not a list (doccano 'entities' form expected)")
    spans: dict[str, list[tuple[int, int]]] = {}
    for entity in entities:
        if not isinstance(entity, dict) or not isinstance(entity.get("label"), str):
            raise DataError(f"{where}: field 'entities[].label' is missing or not a string")
        start, end = entity.get("start_offset"), entity.get("end_offset")
        _check_span(text, start, end, f"{where}, entity {entity.get('id')!r}", ("start_offset", "end_offset"))
        label_spans = spans.setdefault(split_label(entity["label"])[0], [])
        if (start, end) not in label_spans:
            label_spans.append((start, end))
    return spans


def _sorted_labels(grouped_spans: Iterable[dict[str, list]]) -> list[str]:
    # Sorted, not first-seen order: negative candidates must not depend on record order.
    return sorted({label for spans in grouped_spans for label in spans})


def record_labels(records: Iterable[dict]) -> list[str]:
    """Every label used in ``records``, sorted; raises DataError on a malformed record."""
    return _sorted_labels(_record_spans(record) for record in records)


def doccano_to_examples(
    records: Iterable[dict],
    labels: Sequence[str] | None = None,
    negative_ratio: int = 5,
    seed: int = 1000,
    *,
    predicates: Sequence[str] | None = None,
    choices: Sequence[ChoicesControl] = (),
    is_train: bool = True,
) -> list[dict]:
    """Build UIE examples: ``{"content", "result_list", "prompt"}``, as PaddleNLP's ``doccano.py`` does.

    *Entities*: each label present in a record gives one positive example holding all its spans. Negatives
    (``result_list: []``) teach the model to answer nothing: per record, up to ``negative_ratio`` per positive
    prompt (at least one batch for a record with no entities), drawn from ``labels`` (default: every label
    seen) absent from that record.

    *Relations*: ``"{subject}的{predicate}"`` answered by the objects. Training negatives are PaddleNLP's three
    kinds, ``negative_ratio // 3`` per positive of each, topped up to ``negative_ratio`` from the rest: the
    inverse prompt (``"{object}的{predicate}"``), entities that are no subject asked a predicate of the record,
    and a subject asked an entity label the record does not use. (PaddleNLP draws the second kind from every
    record's entities; here only from the record's own, so that a record's examples never depend on the others
    and the cost stays linear.) Evaluation (``is_train=False``) asks every subject every predicate.

    *Choices*: ``"{prefix}[{options}]"``, answered by spans inside the prompt: negative offsets, ``start =
    index in prompt - len(prompt) - 1``. A per-region choice (``人名##正向``) asks ``"{entity text}的{prefix}[...]"``.
    ``choices`` gives each option's prefix and siblings; an option no control has is left out. Serving asks the
    options in config order, so that order is always trained (and evaluated); training also gets PaddleNLP's
    augmentation, the options shuffled, when that order differs: a copy with the options elsewhere teaches
    the model to read them rather than their places (a tiny model trained on shuffled orders only, 7 of 8
    alike, answered by place).

    Random draws are seeded by (seed, record id), so a record's examples do not depend on the other records.
    """
    if negative_ratio < 0:
        raise DataError(f"negative_ratio must be >= 0, got {negative_ratio}")
    grouped = [(record, _record_spans(record)) for record in records]
    labels = list(dict.fromkeys(labels)) if labels is not None else _sorted_labels(spans for _, spans in grouped)
    if predicates is None:
        predicates = sorted({r["type"] for record, _ in grouped for r in _record_relations(record)})
    examples: list[dict] = []
    for record, spans in grouped:
        rng = random.Random(f"{seed}:{record_key(record)}")
        examples += _entity_examples(record, spans, labels, negative_ratio, rng)
        examples += _relation_examples(record, labels, list(predicates), negative_ratio, rng, is_train)
        examples += _choice_examples(record, choices, rng if is_train else None)
    return examples


def _entity_examples(record: dict, spans: dict[str, list[tuple[int, int]]], labels: list[str],
                     negative_ratio: int, rng: random.Random) -> list[dict]:
    text = record["text"]
    examples = []
    for label, label_spans in spans.items():
        result_list = [{"text": text[s:e], "start": s, "end": e} for s, e in sorted(label_spans)]
        examples.append({"content": text, "result_list": result_list, "prompt": label})
    absent = [label for label in labels if label not in spans]
    wanted = negative_ratio * max(1, len(spans))
    for label in rng.sample(absent, min(wanted, len(absent))):
        examples.append({"content": text, "result_list": [], "prompt": label})
    return examples


def _record_relations(record: dict) -> list[dict]:
    """A record's relations, checked against its entities."""
    relations = record.get("relations") or []
    where = f"record {record.get('id')!r}"
    if not isinstance(relations, list):
        raise DataError(f"{where}: field 'relations' is not a list")
    ids = {entity.get("id") for entity in record["entities"] if isinstance(entity, dict)}
    for relation in relations:
        if not isinstance(relation, dict) or not isinstance(relation.get("type"), str):
            raise DataError(f"{where}: field 'relations[].type' is missing or not a string")
        for end in ("from_id", "to_id"):
            if relation.get(end) not in ids:
                raise DataError(f"{where}, relation {relation.get('id')!r}: field '{end}' is "
                                f"{relation.get(end)!r}, which is no entity of the record")
    return relations


def _relation_examples(record: dict, labels: list[str], predicates: list[str], negative_ratio: int,
                       rng: random.Random, is_train: bool) -> list[dict]:
    relations = _record_relations(record)
    if not relations:  # no subject to ask anything of (and entities need no ids: silver data has none)
        return []
    text = record["text"]
    entities = {entity.get("id"): entity for entity in record["entities"]}
    name = {key: text[e["start_offset"]:e["end_offset"]] for key, e in entities.items()}
    positives: dict[str, list[dict]] = {}
    inverse, subjects, used = [], [], []
    for relation in relations:
        subject, obj, predicate = relation["from_id"], relation["to_id"], relation["type"]
        answer = {"text": name[obj], "start": entities[obj]["start_offset"], "end": entities[obj]["end_offset"]}
        answers = positives.setdefault(f"{name[subject]}的{predicate}", [])
        if answer not in answers:
            answers.append(answer)
        inverse.append(f"{name[obj]}的{predicate}")
        subjects += [name[subject]] if name[subject] not in subjects else []
        used.append(predicate)
    examples = [{"content": text, "result_list": sorted(answers, key=lambda a: (a["start"], a["end"])),
                 "prompt": prompt} for prompt, answers in positives.items()]
    if not is_train:
        negatives = [f"{s}的{p}" for s in subjects for p in predicates]
    elif positives:
        labels_here = {split_label(e["label"])[0] for e in entities.values()}
        kinds = (inverse,
                 [f"{n}的{rng.choice(used)}" for n in sorted(set(name.values()) - set(subjects))],
                 [f"{rng.choice(subjects)}的{label}" for label in labels if label not in labels_here])
        negatives, rest = _sampled_negatives(kinds, positives, len(positives), negative_ratio, rng)
        missing = len(positives) * negative_ratio - len(negatives)
        negatives += rng.sample(rest, min(max(0, missing), len(rest)))
    else:
        negatives = []
    negatives = [p for p in dict.fromkeys(negatives) if p not in positives]
    return examples + [{"content": text, "result_list": [], "prompt": p} for p in negatives]


def _sampled_negatives(kinds, positives, num_positive: int, negative_ratio: int,
                       rng: random.Random) -> tuple[list[str], list[str]]:
    """PaddleNLP's ``add_relation_negative_example`` for each kind: all of it when it is small, else
    ``negative_ratio // 3`` per positive; what was not drawn is the rest to top up from."""
    per_kind = negative_ratio // 3
    added, rest = [], []
    for kind in kinds:
        candidates = [p for p in dict.fromkeys(kind) if p not in positives]
        if math.ceil(len(candidates) / num_positive) <= per_kind:
            added += candidates
        else:
            drawn = rng.sample(candidates, per_kind * num_positive)
            added += drawn
            rest += [p for p in candidates if p not in set(drawn)]
    return added, rest


def choice_examples(content: str, control: ChoicesControl, chosen: Sequence[str], rng: random.Random | None,
                    subject: str | None = None) -> list[dict]:
    """Classification examples: the options in config order and, with ``rng``, shuffled when that differs.
    The chosen options are spans of the prompt (negative offsets)."""
    orders = [list(control.option_prompts)]
    if rng is not None:
        shuffled = list(control.option_prompts)
        rng.shuffle(shuffled)
        orders += [shuffled] if shuffled != orders[0] else []
    examples = []
    for order in orders:
        prompt = control.prompt(order, subject)
        begin = len(prompt) - 1 - len(",".join(order))
        result_list = []
        for option in order:
            if option in chosen:
                start = begin - len(prompt) - 1
                result_list.append({"text": option, "start": start, "end": start + len(option)})
            begin += len(option) + 1
        examples.append({"content": content, "result_list": result_list, "prompt": prompt})
    return examples


def _choice_examples(record: dict, choices: Sequence[ChoicesControl], rng: random.Random | None) -> list[dict]:
    text = record["text"]
    chosen = record.get("label") or []
    if not isinstance(chosen, list) or not all(isinstance(c, str) for c in chosen):
        raise DataError(f"record {record.get('id')!r}: field 'label' is not a list of strings")
    examples = []
    for control in (c for c in choices if not c.per_region):
        picked = [option for option in chosen if option in control.option_prompts]
        if picked:
            examples += choice_examples(text, control, picked, rng)
    for entity in record["entities"]:
        _, options = split_label(entity["label"])
        control = next((c for c in choices if c.per_region and set(options) & set(c.option_prompts)), None)
        if control is not None:
            subject = text[entity["start_offset"]:entity["end_offset"]]
            examples += choice_examples(text, control, options, rng, subject)
    return examples


# -- splits ----------------------------------------------------------------------------------------


def _check_splits(splits: Sequence[float]) -> list[float]:
    splits = list(splits)
    if len(splits) not in (2, 3):
        raise DataError(f"splits must have 2 or 3 parts (train, dev[, test]), got {splits}")
    if any(not isinstance(part, (int, float)) or not 0 <= part <= 1 for part in splits):
        raise DataError(f"splits must be numbers between 0 and 1, got {splits}")
    if abs(sum(splits) - 1) > 1e-6:
        raise DataError(f"splits must sum to 1, got {splits} (sum {sum(splits)})")
    return splits


def _unit_hash(seed: int, key: str) -> float:
    # hashlib, not hash(): Python salts str hashes per process, which would reshuffle splits each run.
    digest = hashlib.sha256(f"{seed}\0{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_records(
    records: Iterable[dict], splits: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 1000
) -> tuple[list[dict], ...]:
    """Split records into train/dev[/test] by task, one bucket per entry of ``splits``.

    Each record's bucket depends only on its own id (and ``seed``), so adding tasks never moves an
    existing one into another split; evaluation never sees a task the model trained on. The sizes
    only approach ``splits`` on average, and a small data set can leave a bucket empty.
    """
    splits = _check_splits(splits)
    records = list(records)
    if not records:
        raise DataError("no annotated tasks to split: annotate some tasks (skipped ones do not count)")
    bounds = [sum(splits[: i + 1]) for i in range(len(splits))]
    # Splits may sum to 1 - 1e-6; the sliver above the last bound belongs to the last non-empty split.
    fallback = max(i for i, part in enumerate(splits) if part > 0)
    buckets: tuple[list[dict], ...] = tuple([] for _ in splits)
    for record in records:
        point = _unit_hash(seed, record_key(record))
        index = next((i for i, bound in enumerate(bounds) if point < bound), fallback)
        buckets[index].append(record)
    return buckets
