"""Read a Label Studio labeling config and find the UIE schema in it.

UIE answers prompts about text, so what matters is the controls bound to a ``<Text>`` object:

* ``<Labels>``: entity prompts, one per label (events too: a trigger label, ``地震触发词`` in PaddleNLP's
  convention or the plain event type, is an entity label whose roles are relations);
* ``<Relations>``: relation predicates, asked as ``"{subject text}的{predicate}"`` of entities found in the text;
* ``<Choices>``: classification prompts, ``"{prefix}[{option},{option}...]"``; with ``perRegion="true"`` asked of
  each entity (``"{entity text}的{prefix}[...]"``, PaddleNLP's entity-level classification). The prefix is the
  ``<Choices>``'s ``prompt`` attribute, else its ``name``.

Layout tags and controls of other objects (images, audio) are ignored, so a project can mix these with other
work; a ``<Choices>`` that can only label something other than text, or ``<Relations>`` with no ``<Labels>``
to relate, is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from lxml import etree


class LabelConfigError(ValueError):
    """The labeling config cannot be used: the message says which tag is wrong."""


@dataclass(frozen=True)
class SpanControl:
    """One ``<Labels>`` control bound to one ``<Text>`` object."""

    from_name: str
    to_name: str
    data_field: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class ChoicesControl:
    """One ``<Choices>`` control bound to one ``<Text>`` object."""

    from_name: str
    to_name: str
    data_field: str
    options: tuple[str, ...]
    prefix: str                 # what the options are a choice of: the prompt is prefix[options]
    per_region: bool            # a choice per entity region, not per text
    multiple: bool              # choice="multiple": every option above the threshold, not the best one

    def prompt(self, options: Sequence[str] | None = None, subject: str | None = None) -> str:
        """UIE's classification prompt, ``情感倾向[正向,负向]``; of one entity, ``张三的情感倾向[正向,负向]``."""
        prefix = f"{subject}的{self.prefix}" if subject is not None else self.prefix
        return f"{prefix}[{','.join(options or self.options)}]"


@dataclass(frozen=True)
class Schema:
    """Everything a labeling config asks UIE: entity labels, relation predicates, choices."""

    spans: tuple[SpanControl, ...]
    predicates: tuple[str, ...] = ()
    choices: tuple[ChoicesControl, ...] = ()

    @property
    def labels(self) -> list[str]:
        """Entity labels in config order, each once: UIE's first-level prompts."""
        return schema_labels(self.spans)

    @property
    def text_choices(self) -> tuple[ChoicesControl, ...]:
        return tuple(c for c in self.choices if not c.per_region)

    @property
    def region_choices(self) -> tuple[ChoicesControl, ...]:
        return tuple(c for c in self.choices if c.per_region)

    def prompt_kind(self, scored: str) -> tuple[str, str, str | None] | None:
        """What a scored prompt asked (labels of trainer.metric_span): ``("entity", label, None)``,
        ``("relation", predicate, None)`` or ``("choice", control name, option)``; None for none of this
        schema's (the config changed since the data was made)."""
        if "]" in scored:
            prompt, option = scored[:scored.rindex("]") + 1], scored[scored.rindex("]") + 2:]
            prefix = prompt[:prompt.rfind("[")]
            control = next((c for c in self.choices if prefix == c.prefix), None) or next(
                (c for c in self.region_choices if prefix.endswith(f"的{c.prefix}")), None)
            if control is not None and option in control.options:
                return "choice", control.from_name, option
        if scored in self.labels:
            return "entity", scored, None
        predicate = max((p for p in self.predicates if scored.endswith(f"的{p}")), key=len, default=None)
        return ("relation", predicate, None) if predicate else None


_DOCTYPE_REFUSED = "label config must not contain a DOCTYPE or entity declarations"


def _hardened_parser() -> etree.XMLParser:
    # The config comes over the network (/setup, /predict): never fetch, never expand, never grow unbounded.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _reject_doctype(xml: str) -> None:
    # libxml2 expands internal entities in attribute values even with resolve_entities=False, so a
    # "billion laughs" document must be refused before it is parsed; no real config needs a DOCTYPE.
    if "<!DOCTYPE" in xml or "<!ENTITY" in xml:
        raise LabelConfigError(_DOCTYPE_REFUSED)


def _parse_xml(xml: object) -> etree._Element:
    if not isinstance(xml, str) or not xml.strip():
        raise LabelConfigError("label config is empty or not a string")
    _reject_doctype(xml)
    try:
        root = etree.fromstring(xml.strip().encode("utf-8"), _hardened_parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise LabelConfigError(f"label config is not well-formed XML: {exc}") from None
    docinfo = root.getroottree().docinfo
    # A second look after parsing catches a DOCTYPE hidden by an exotic encoding declaration.
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise LabelConfigError(_DOCTYPE_REFUSED)
    return root


def _tag(element: etree._Element) -> str:
    # Label Studio's frontend lower-cases tag names, so <labels> and <Labels> are the same control.
    return etree.QName(element).localname.lower()


def _elements(root: etree._Element, tag: str) -> Iterable[etree._Element]:
    return (el for el in root.iter(etree.Element) if _tag(el) == tag)


def _text_fields(root: etree._Element) -> dict[str, str | None]:
    """Map each ``<Text name>`` to its data field, or None when its value is not ``$field``."""
    fields: dict[str, str | None] = {}
    for text in _elements(root, "text"):
        name = text.get("name")
        value = text.get("value", "")
        if name:
            fields[name] = value[1:] if value.startswith("$") and len(value) > 1 else None
    return fields


def _label_values(labels_el: etree._Element, control_name: str) -> tuple[str, ...]:
    values: dict[str, None] = {}  # ordered and de-duplicated; a list's `in` made 100k labels take 50 s (test_limits)
    for label in _elements(labels_el, "label"):
        value = label.get("value")
        if not value:
            raise LabelConfigError(f"<Labels name={control_name!r}>: a <Label> has no value")
        values[value] = None
    if not values:
        raise LabelConfigError(f"<Labels name={control_name!r}> has no <Label value=...>")
    return tuple(values)


def _targets(control: etree._Element, tag: str, name: str) -> list[str]:
    targets = [t.strip() for t in control.get("toName", "").split(",") if t.strip()]
    if not targets:
        raise LabelConfigError(f"<{tag} name={name!r}> has no toName")
    return targets


def _text_field(text_fields: dict[str, str | None], target: str, tag: str, name: str) -> str:
    data_field = text_fields[target]
    if data_field is None:
        raise LabelConfigError(f"<Text name={target!r}> bound to <{tag} name={name!r}>: value must be '$field'")
    return data_field


def _span_controls(root: etree._Element, text_fields: dict[str, str | None]) -> list[SpanControl]:
    controls: list[SpanControl] = []
    for labels_el in _elements(root, "labels"):
        name = labels_el.get("name")
        if not name:
            raise LabelConfigError("a <Labels> control has no name")
        text_targets = [t for t in _targets(labels_el, "Labels", name) if t in text_fields]
        if not text_targets:
            continue
        labels = _label_values(labels_el, name)
        for target in text_targets:
            controls.append(SpanControl(name, target, _text_field(text_fields, target, "Labels", name), labels))
    return controls


def _predicates(root: etree._Element) -> tuple[str, ...]:
    predicates: dict[str, None] = {}
    for relation in _elements(root, "relation"):
        value = relation.get("value")
        if not value or not value.strip():
            raise LabelConfigError("<Relations>: a <Relation> has no value")
        predicates[value] = None
    return tuple(predicates)


_PROMPT_SYNTAX = "[],"  # UIE's classification prompt is prefix[a,b]: these would make it ambiguous


def _choices_controls(root: etree._Element, text_fields: dict[str, str | None]) -> list[ChoicesControl]:
    controls: list[ChoicesControl] = []
    for choices_el in _elements(root, "choices"):
        name = choices_el.get("name")
        if not name:
            raise LabelConfigError("a <Choices> control has no name")
        targets = _targets(choices_el, "Choices", name)
        text_targets = [t for t in targets if t in text_fields]
        if not text_targets:
            raise LabelConfigError(f"<Choices name={name!r}> labels {', '.join(targets)}, which is not a <Text>: "
                                   "UIE classifies text only")
        options = tuple(dict.fromkeys(c.get("value") or "" for c in _elements(choices_el, "choice")))
        if "" in options:
            raise LabelConfigError(f"<Choices name={name!r}>: a <Choice> has no value")
        if not options:  # options from the task's data (value="$field"): no prompt to ask before seeing it
            continue
        prefix = (choices_el.get("prompt") or name).strip()
        for text in (prefix, *options):
            if any(ch in text for ch in _PROMPT_SYNTAX):
                raise LabelConfigError(f"<Choices name={name!r}>: {text!r} contains one of '[', ']' or ',', which "
                                       "UIE's classification prompt prefix[a,b] uses; rename it (or set prompt=...)")
        per_region = choices_el.get("perRegion", "").lower() == "true"
        multiple = choices_el.get("choice", "single").lower() == "multiple"
        for target in text_targets:
            controls.append(ChoicesControl(name, target, _text_field(text_fields, target, "Choices", name), options,
                                           prefix, per_region, multiple))
    for per_region in (False, True):
        owner: dict[str, str] = {}
        for control in (c for c in controls if c.per_region == per_region):
            for option in control.options:
                if owner.setdefault(option, control.from_name) != control.from_name:
                    raise LabelConfigError(
                        f"option {option!r} is in <Choices name={owner[option]!r}> and <Choices "
                        f"name={control.from_name!r}>: UIE's training data names a choice by its value alone")
    return controls


def parse_label_config(xml: str) -> Schema:
    """The UIE schema of a labeling config: its ``<Labels>``, ``<Relations>`` and ``<Choices>`` on text.

    A ``toName`` listing several objects yields one control per ``<Text>`` among them; the non-Text targets
    of a ``<Labels>`` are skipped because UIE cannot label them.
    """
    root = _parse_xml(xml)
    text_fields = _text_fields(root)
    spans = _span_controls(root, text_fields)
    choices = _choices_controls(root, text_fields)
    predicates = _predicates(root)
    if predicates and not spans:
        raise LabelConfigError("<Relations> needs a <Labels> control bound to a <Text>: a relation joins two "
                               "labelled regions")
    if any(c.per_region for c in choices) and not spans:
        raise LabelConfigError("a <Choices perRegion=\"true\"> needs a <Labels> control bound to a <Text>: "
                               "it classifies labelled regions")
    if not spans and not choices:
        raise LabelConfigError("label config has no <Labels> or <Choices> control bound to a <Text> object")
    return Schema(tuple(spans), predicates, tuple(choices))


def schema_labels(controls: Iterable[SpanControl]) -> list[str]:
    """All labels of ``controls`` in config order, each once: the prompts UIE is asked."""
    return list(dict.fromkeys(label for control in controls for label in control.labels))
