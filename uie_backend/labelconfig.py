"""Read a Label Studio labeling config and find the UIE schema in it.

UIE answers prompts about text, so what matters is the controls bound to a ``<Text>`` object:

* ``<Labels>``: entity prompts, one per label (events too: a trigger label, ``地震触发词`` in PaddleNLP's
  convention or the plain event type, is an entity label whose roles are relations);
* ``<Relations>``: relation predicates, asked as ``"{subject text}的{predicate}"`` of entities found in the text;
* ``<Choices>``: classification prompts, ``"{prefix}[{option},{option}...]"``; with ``perRegion="true"`` asked of
  each entity (``"{entity text}的{prefix}[...]"``, PaddleNLP's entity-level classification). The prefix is the
  ``<Choices>``'s ``prompt`` attribute, else its ``name``.

What UIE is asked for a label is its *prompt*: the ``predicted_values`` attribute of the ``<Label>``,
``<Relation>`` or ``<Choice>`` (the attribute label-studio-ml-backend's examples map model labels with), else
the value's entry in ``UIE_LABEL_PROMPTS`` (``default_prompts``), else the value itself. So a team can label
``PER`` and the Chinese model still be asked ``人名``. Every prompt maps back to one value, which predictions
carry; training data, the learnt relation tree and the model speak prompts (data.py, relation_schema.py).

Layout tags and controls of other objects (images, audio) are ignored, so a project can mix these with other
work; a ``<Choices>`` that can only label something other than text, or ``<Relations>`` with no ``<Labels>``
to relate, is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Mapping, Sequence

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
    prompts: tuple[str, ...] = ()  # what UIE is asked for each label, in the same order; (): the labels

    def __post_init__(self):
        if not self.prompts:
            object.__setattr__(self, "prompts", self.labels)

    def label_of(self, prompt: str) -> str:
        """The label value Label Studio knows for one of this control's prompts."""
        return self.labels[self.prompts.index(prompt)]


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
    option_prompts: tuple[str, ...] = ()  # each option as the prompt names it, in the same order; (): the options

    def __post_init__(self):
        if not self.option_prompts:
            object.__setattr__(self, "option_prompts", self.options)

    def prompt(self, option_prompts: Sequence[str] | None = None, subject: str | None = None) -> str:
        """UIE's classification prompt, ``情感倾向[正向,负向]``; of one entity, ``张三的情感倾向[正向,负向]``."""
        prefix = f"{subject}的{self.prefix}" if subject is not None else self.prefix
        return f"{prefix}[{','.join(option_prompts or self.option_prompts)}]"

    def option_of(self, option_prompt: str) -> str:
        """The option value Label Studio knows for an option as the prompt names it."""
        return self.options[self.option_prompts.index(option_prompt)]

    def option_prompt(self, option: str) -> str | None:
        """How the prompt names an option value; None for a value this control does not have."""
        return self.option_prompts[self.options.index(option)] if option in self.options else None


@dataclass(frozen=True)
class Schema:
    """Everything a labeling config asks UIE: entity labels, relation predicates, choices."""

    spans: tuple[SpanControl, ...]
    predicates: tuple[str, ...] = ()
    choices: tuple[ChoicesControl, ...] = ()
    predicate_prompts: tuple[str, ...] = ()  # what UIE is asked for each predicate, in order; (): the predicates

    def __post_init__(self):
        if not self.predicate_prompts:
            object.__setattr__(self, "predicate_prompts", self.predicates)

    @property
    def labels(self) -> list[str]:
        """Entity label values in config order, each once: what Label Studio's regions carry."""
        return list(self._prompt_of_label)

    @property
    def prompts(self) -> list[str]:
        """Entity prompts in config order, each once: UIE's first-level prompts."""
        return list(self._prompt_of_label.values())

    @cached_property
    def _prompt_of_label(self) -> dict[str, str]:
        # one to one over the whole config (parse_label_config checks), so one dict serves every control
        return dict(pair for control in self.spans for pair in zip(control.labels, control.prompts))

    @cached_property
    def _label_of_prompt(self) -> dict[str, str]:
        return {prompt: label for label, prompt in self._prompt_of_label.items()}

    def prompt_of(self, label: str) -> str:
        """The prompt of an entity label value; a label the config does not have is its own prompt."""
        return self._prompt_of_label.get(label, label)

    def label_of(self, prompt: str) -> str:
        """The entity label value of a prompt; a prompt the config does not ask is its own label."""
        return self._label_of_prompt.get(prompt, prompt)

    def predicate_prompt(self, predicate: str) -> str | None:
        """The prompt of a ``<Relation>`` value; None for a predicate the config does not have."""
        return self.predicate_prompts[self.predicates.index(predicate)] if predicate in self.predicates else None

    def predicate_of(self, prompt: str) -> str:
        """The ``<Relation>`` value Label Studio knows for a predicate prompt."""
        return self.predicates[self.predicate_prompts.index(prompt)]

    def prompt_mapping(self) -> dict:
        """Every value and the prompt it is asked as, for a reader of the training data (``prompts.json``)."""
        return {"labels": dict(self._prompt_of_label), "relations": dict(zip(self.predicates, self.predicate_prompts)),
                "choices": {c.from_name: {"prompt": c.prompt(), **dict(zip(c.options, c.option_prompts))}
                            for c in self.choices}}

    @property
    def text_choices(self) -> tuple[ChoicesControl, ...]:
        return tuple(c for c in self.choices if not c.per_region)

    @property
    def region_choices(self) -> tuple[ChoicesControl, ...]:
        return tuple(c for c in self.choices if c.per_region)

    def prompt_kind(self, scored: str) -> tuple[str, str, str | None] | None:
        """What a scored prompt asked (labels of trainer.metric_span), named by the values Label Studio shows:
        ``("entity", label, None)``, ``("relation", predicate, None)`` or ``("choice", control name, option)``;
        None for none of this schema's (the config changed since the data was made)."""
        if "]" in scored:
            prompt, option = scored[:scored.rindex("]") + 1], scored[scored.rindex("]") + 2:]
            prefix = prompt[:prompt.rfind("[")]
            control = next((c for c in self.choices if prefix == c.prefix), None) or next(
                (c for c in self.region_choices if prefix.endswith(f"的{c.prefix}")), None)
            if control is not None and option in control.option_prompts:
                return "choice", control.from_name, control.option_of(option)
        if scored in self._label_of_prompt:
            return "entity", self.label_of(scored), None
        predicate = max((p for p in self.predicate_prompts if scored.endswith(f"的{p}")), key=len, default=None)
        return ("relation", self.predicate_of(predicate), None) if predicate else None

    @property
    def renames(self) -> bool:
        """Whether any value is asked under another name (reports then name the values)."""
        return (any(c.labels != c.prompts for c in self.spans) or self.predicates != self.predicate_prompts
                or any(c.options != c.option_prompts for c in self.choices))


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


PROMPT_ATTRIBUTE = "predicted_values"  # label-studio-ml-backend's name for the model's label of a <Label>


def _prompt(element: etree._Element, value: str, where: str, default_prompts: Mapping[str, str]) -> str:
    """What UIE is asked for ``value``: its ``predicted_values``, else ``default_prompts[value]``, else the value.

    A prompt of only whitespace asks the model nothing it can answer; one ``predicted_values`` listing several
    (``"a,b"`` in label-studio-ml-backend's examples) would need the answers of several prompts merged into
    one label, which this backend does not do: both are refused with what to write instead."""
    named = element.get(PROMPT_ATTRIBUTE)
    if named is not None:
        if "," in named:
            raise LabelConfigError(f"{where}: {PROMPT_ATTRIBUTE}={named!r} lists several prompts; UIE is asked "
                                   f"one per value: write one")
        prompt = named.strip()
    else:
        prompt = default_prompts.get(value, value)
    if not prompt.strip():
        source = f"{PROMPT_ATTRIBUTE}={named!r}" if named is not None else "its value"
        raise LabelConfigError(f"{where}: {source} is empty once trimmed, and UIE cannot be asked an empty prompt: "
                               f"give the value a name, or a prompt with {PROMPT_ATTRIBUTE}=\"...\"")
    return prompt


def _one_to_one(pairs: Iterable[tuple[str, str]], what: str) -> dict[str, str]:
    """value -> prompt, each value with one prompt and each prompt with one value: the model's answer to a
    prompt shared by two values could not say which of them it found."""
    prompt_of: dict[str, str] = {}
    value_of: dict[str, str] = {}
    for value, prompt in pairs:
        if prompt_of.setdefault(value, prompt) != prompt:
            raise LabelConfigError(f"{what} {value!r} is asked as {prompt_of[value]!r} and as {prompt!r}: give "
                                   f"every {what} {value!r} the same {PROMPT_ATTRIBUTE}")
        if value_of.setdefault(prompt, value) != value:
            raise LabelConfigError(f"{what}s {value_of[prompt]!r} and {value!r} are both asked as {prompt!r}: "
                                   f"UIE's answer could not say which it found; give them different prompts "
                                   f"({PROMPT_ATTRIBUTE} or UIE_LABEL_PROMPTS)")
    return prompt_of


def _label_values(labels_el: etree._Element, control_name: str,
                  default_prompts: Mapping[str, str]) -> list[tuple[str, str]]:
    """The (value, prompt) of each ``<Label>``, in order (duplicates too: _one_to_one checks they agree)."""
    pairs = []
    for label in _elements(labels_el, "label"):
        value = label.get("value")
        if not value:
            raise LabelConfigError(f"<Labels name={control_name!r}>: a <Label> has no value")
        pairs.append((value, _prompt(label, value, f"<Labels name={control_name!r}>: <Label value={value!r}>",
                                     default_prompts)))
    if not pairs:
        raise LabelConfigError(f"<Labels name={control_name!r}> has no <Label value=...>")
    return pairs


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


def _span_controls(root: etree._Element, text_fields: dict[str, str | None],
                   default_prompts: Mapping[str, str]) -> list[SpanControl]:
    controls: list[SpanControl] = []
    pairs: list[tuple[str, str]] = []
    for labels_el in _elements(root, "labels"):
        name = labels_el.get("name")
        if not name:
            raise LabelConfigError("a <Labels> control has no name")
        text_targets = [t for t in _targets(labels_el, "Labels", name) if t in text_fields]
        if not text_targets:
            continue
        control_pairs = _label_values(labels_el, name, default_prompts)
        pairs += control_pairs
        # ordered and de-duplicated by dict; a list's `in` made 100k labels take 50 s (test_limits)
        labels = dict(control_pairs)
        for target in text_targets:
            controls.append(SpanControl(name, target, _text_field(text_fields, target, "Labels", name),
                                        tuple(labels), tuple(labels.values())))
    _one_to_one(pairs, "label")  # across controls: training data and the relation tree name a label by its prompt
    return controls


def _predicates(root: etree._Element, default_prompts: Mapping[str, str]) -> dict[str, str]:
    """Each ``<Relation>`` value and its prompt, in config order."""
    pairs = []
    for relation in _elements(root, "relation"):
        value = relation.get("value")
        if not value or not value.strip():
            raise LabelConfigError("<Relations>: a <Relation> has no value")
        pairs.append((value, _prompt(relation, value, f"<Relation value={value!r}>", default_prompts)))
    return _one_to_one(pairs, "relation")


_PROMPT_SYNTAX = "[],"  # UIE's classification prompt is prefix[a,b]: these would make it ambiguous


def _choices_controls(root: etree._Element, text_fields: dict[str, str | None],
                      default_prompts: Mapping[str, str]) -> list[ChoicesControl]:
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
        choice_els = list(_elements(choices_el, "choice"))
        if any(not c.get("value") for c in choice_els):
            raise LabelConfigError(f"<Choices name={name!r}>: a <Choice> has no value")
        if not choice_els:  # options from the task's data (value="$field"): no prompt to ask before seeing it
            continue
        options = _one_to_one(((c.get("value"), _prompt(c, c.get("value"), f"<Choices name={name!r}>: <Choice "
                                                        f"value={c.get('value')!r}>", default_prompts))
                               for c in choice_els), "option")
        prefix = (choices_el.get("prompt") or name).strip()
        for text in (prefix, *options.values()):
            if any(ch in text for ch in _PROMPT_SYNTAX):
                raise LabelConfigError(f"<Choices name={name!r}>: {text!r} contains one of '[', ']' or ',', which "
                                       "UIE's classification prompt prefix[a,b] uses; rename it (or set prompt=... "
                                       f"or {PROMPT_ATTRIBUTE}=...)")
        per_region = choices_el.get("perRegion", "").lower() == "true"
        multiple = choices_el.get("choice", "single").lower() == "multiple"
        for target in text_targets:
            controls.append(ChoicesControl(name, target, _text_field(text_fields, target, "Choices", name),
                                           tuple(options), prefix, per_region, multiple, tuple(options.values())))
    for per_region in (False, True):
        owner: dict[str, str] = {}
        for control in (c for c in controls if c.per_region == per_region):
            for option in control.option_prompts:
                if owner.setdefault(option, control.from_name) != control.from_name:
                    raise LabelConfigError(
                        f"option {option!r} is in <Choices name={owner[option]!r}> and <Choices "
                        f"name={control.from_name!r}>: UIE's training data names a choice by its prompt alone")
    return controls


def parse_label_config(xml: str, default_prompts: Mapping[str, str] | None = None) -> Schema:
    """The UIE schema of a labeling config: its ``<Labels>``, ``<Relations>`` and ``<Choices>`` on text.

    A ``toName`` listing several objects yields one control per ``<Text>`` among them; the non-Text targets
    of a ``<Labels>`` are skipped because UIE cannot label them. ``default_prompts`` (``UIE_LABEL_PROMPTS``)
    names the prompt of a value whose tag has no ``predicted_values``.
    """
    root = _parse_xml(xml)
    text_fields = _text_fields(root)
    spans = _span_controls(root, text_fields, default_prompts or {})
    choices = _choices_controls(root, text_fields, default_prompts or {})
    predicates = _predicates(root, default_prompts or {})
    if predicates and not spans:
        raise LabelConfigError("<Relations> needs a <Labels> control bound to a <Text>: a relation joins two "
                               "labelled regions")
    if any(c.per_region for c in choices) and not spans:
        raise LabelConfigError("a <Choices perRegion=\"true\"> needs a <Labels> control bound to a <Text>: "
                               "it classifies labelled regions")
    if not spans and not choices:
        raise LabelConfigError("label config has no <Labels> or <Choices> control bound to a <Text> object")
    return Schema(tuple(spans), tuple(predicates), tuple(choices), tuple(predicates.values()))
