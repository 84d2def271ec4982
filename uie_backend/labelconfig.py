"""Read a Label Studio labeling config and find the controls this backend can serve.

UIE extracts spans from text, so the only controls that matter are ``<Labels>`` bound to a
``<Text>`` object. Everything else in the config (Choices, images, layout Views) is ignored
rather than rejected, so a project can mix span labelling with other tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

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


def parse_label_config(xml: str) -> list[SpanControl]:
    """Return every ``<Labels>`` control bound to a ``<Text>``, in config order.

    A ``toName`` listing several objects yields one control per ``<Text>`` among them; the
    non-Text targets are skipped because UIE cannot label them.
    """
    root = _parse_xml(xml)
    text_fields = _text_fields(root)
    controls: list[SpanControl] = []
    for labels_el in _elements(root, "labels"):
        name = labels_el.get("name")
        if not name:
            raise LabelConfigError("a <Labels> control has no name")
        targets = [t.strip() for t in labels_el.get("toName", "").split(",") if t.strip()]
        if not targets:
            raise LabelConfigError(f"<Labels name={name!r}> has no toName")
        text_targets = [t for t in targets if t in text_fields]
        if not text_targets:
            continue
        labels = _label_values(labels_el, name)
        for target in text_targets:
            data_field = text_fields[target]
            if data_field is None:
                raise LabelConfigError(
                    f"<Text name={target!r}> bound to <Labels name={name!r}>: value must be '$field'")
            controls.append(SpanControl(name, target, data_field, labels))
    if not controls:
        raise LabelConfigError("label config has no <Labels> control bound to a <Text> object")
    return controls


def schema_labels(controls: Iterable[SpanControl]) -> list[str]:
    """All labels of ``controls`` in config order, each once: the prompts UIE is asked."""
    return list(dict.fromkeys(label for control in controls for label in control.labels))
