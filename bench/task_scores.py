"""Task-level scores of what ``/predict`` returns: Label Studio results against the gold annotations.

The backend's own metrics (``trainer.evaluate``) score prompts one at a time; what an annotator sees is the end
result of the hierarchical prediction (``regions.predict_tasks``): entity regions, relations between them and
choices. Gold and predictions are the same Label Studio ``result`` lists, so one set of readers serves both:

* spans: ``(label, start, end)``;
* triples: ``(predicate, subject span, object span)``, spans as ``(start, end)``: a relation counts only when its
  predicate and both ends are exact (what an annotator would otherwise have to redraw);
* choices: the options chosen by one ``<Choices>`` control.

Spans and triples are scored with :func:`uie_backend.metrics.score_spans`, which groups by a tuple's first
element: per label for spans, per predicate for triples.
"""

from __future__ import annotations

from typing import Collection, Sequence

from uie_backend.data import choose_annotation
from uie_backend.metrics import SpanReport, score_spans

Triple = tuple[str, tuple[int, int], tuple[int, int]]


def gold_result(task: dict) -> list[dict]:
    """The annotation the backend would learn from (``data.choose_annotation``), as a result list."""
    annotation = choose_annotation(task)
    return (annotation.get("result") or []) if annotation else []


def spans(result: Sequence[dict], labels: Collection[str] | None = None) -> set[tuple[str, int, int]]:
    """The labelled regions of a result, ``(label, start, end)``, only those of ``labels`` when given."""
    found = set()
    for r in result:
        if r.get("type") == "labels":
            value = r["value"]
            for label in value["labels"]:
                if labels is None or label in labels:
                    found.add((label, value["start"], value["end"]))
    return found


def triples(result: Sequence[dict]) -> set[Triple]:
    """The relations of a result as ``(predicate, subject span, object span)``."""
    ends = {r["id"]: (r["value"]["start"], r["value"]["end"]) for r in result if r.get("type") == "labels"}
    return {(predicate, ends[r["from_id"]], ends[r["to_id"]])
            for r in result if r.get("type") == "relation" and r.get("from_id") in ends and r.get("to_id") in ends
            for predicate in r.get("labels") or ()}


def chosen(result: Sequence[dict], from_name: str) -> list[str]:
    """The options a text-level ``<Choices name=from_name>`` picked (empty: no answer)."""
    return [option for r in result if r.get("type") == "choices" and r.get("from_name") == from_name
            and "start" not in r["value"] for option in r["value"]["choices"]]


def span_report(gold: Sequence[Sequence[dict]], predicted: Sequence[Sequence[dict]],
                labels: Collection[str] | None = None) -> SpanReport:
    """Exact-span scores of the regions of ``labels`` (all when None), task by task."""
    return score_spans([spans(g, labels) for g in gold], [spans(p, labels) for p in predicted])


def triple_report(gold: Sequence[Sequence[dict]], predicted: Sequence[Sequence[dict]]) -> SpanReport:
    """Exact-triple scores, per predicate and overall, task by task."""
    return score_spans([triples(g) for g in gold], [triples(p) for p in predicted])


def choice_accuracy(gold: Sequence[Sequence[dict]], predicted: Sequence[Sequence[dict]],
                    from_name: str) -> tuple[float, int]:
    """The share of tasks whose predicted options equal the gold ones (a task left without an answer counts
    as wrong), and how many tasks were left without an answer."""
    pairs = [(set(chosen(g, from_name)), set(chosen(p, from_name))) for g, p in zip(gold, predicted, strict=True)]
    correct = sum(1 for g, p in pairs if p and g == p)
    return correct / len(pairs) if pairs else 0.0, sum(1 for _, p in pairs if not p)
