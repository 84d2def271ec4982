"""Span-level exact-match scores: the one metric training, evaluation and reports all quote.

A predicted span counts only if its label, start and end all equal a gold span's. This is
stricter than PaddleNLP's own token-boundary metric but it is what an annotator experiences:
a pre-annotation that is one character off still has to be fixed by hand.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Callable, Iterable

Span = tuple[str, int, int]  # (label, start, end), end exclusive


@dataclass
class Score:
    precision: float
    recall: float
    f1: float
    support: int  # gold spans
    predicted: int
    correct: int


def _score(correct: int, predicted: int, support: int) -> Score:
    # An empty denominator scores 0.0: "no predictions" must never look like perfect precision.
    precision = correct / predicted if predicted else 0.0
    recall = correct / support if support else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Score(precision, recall, f1, support, predicted, correct)


def f1_standard_error(score: Score) -> float:
    """How far a micro F1 moves by chance: F1 = 2·correct / (support + predicted) read as a proportion over
    (support + predicted) / 2 trials, with one success and one failure added so that a perfect score on two
    spans is not taken as certain. On a dev split of a few tasks it is large (0.25 for F1 0.5 on six spans),
    which is the point: one span more or less there is noise, not a better model."""
    trials = (score.support + score.predicted) / 2
    if not trials:
        return 0.0
    smoothed = (score.f1 * trials + 1) / (trials + 2)
    return math.sqrt(smoothed * (1 - smoothed) / trials)


@dataclass
class SpanReport:
    per_label: dict[str, Score]
    overall: Score  # micro-averaged over all spans

    def to_dict(self) -> dict:
        return {
            "per_label": {label: asdict(score) for label, score in self.per_label.items()},
            "overall": asdict(self.overall),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "SpanReport":
        return cls({label: Score(**score) for label, score in data["per_label"].items()}, Score(**data["overall"]))

    def to_markdown(self) -> str:
        """A table with one row per label and a final micro-averaged row."""
        rows = ["| label | P | R | F1 | support |", "|---|---:|---:|---:|---:|"]
        named = [*self.per_label.items(), ("**overall (micro)**", self.overall)]
        for label, s in named:
            rows.append(f"| {label} | {s.precision:.4f} | {s.recall:.4f} | {s.f1:.4f} | {s.support} |")
        return "\n".join(rows)


def regroup(report: SpanReport, group_of: Callable[[str], str | None]) -> SpanReport:
    """The report's rows summed into groups (``group_of(label)``; None leaves a row out), the overall row
    recomputed over the rows kept: per-predicate scores out of per-prompt ones, for instance."""
    totals: dict[str, Counter[str]] = {}
    for label, score in report.per_label.items():
        group = group_of(label)
        if group is not None:
            totals.setdefault(group, Counter()).update(
                {"correct": score.correct, "predicted": score.predicted, "support": score.support})
    per_label = {group: _score(c["correct"], c["predicted"], c["support"]) for group, c in totals.items()}
    overall = _score(*(sum(c[k] for c in totals.values()) for k in ("correct", "predicted", "support")))
    return SpanReport(per_label, overall)


def score_spans(gold: Iterable[Iterable[Span]], predicted: Iterable[Iterable[Span]]) -> SpanReport:
    """Score predicted spans against gold spans, document by document.

    ``gold`` and ``predicted`` hold one collection of spans per document, in the same order. A
    span repeated within one document counts once, so duplicate predictions earn nothing.
    """
    gold, predicted = list(gold), list(predicted)
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold documents but {len(predicted)} predicted ones")
    support: Counter[str] = Counter()
    guessed: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    for gold_doc, predicted_doc in zip(gold, predicted):
        # tuple(): spans read back from JSON arrive as lists, which a set cannot hold.
        gold_spans = {tuple(span) for span in gold_doc}
        predicted_spans = {tuple(span) for span in predicted_doc}
        support.update(label for label, _, _ in gold_spans)
        guessed.update(label for label, _, _ in predicted_spans)
        correct.update(label for label, _, _ in gold_spans & predicted_spans)
    labels = sorted(support.keys() | guessed.keys())
    per_label = {label: _score(correct[label], guessed[label], support[label]) for label in labels}
    overall = _score(sum(correct.values()), sum(guessed.values()), sum(support.values()))
    return SpanReport(per_label, overall)


def spans_from_doccano(record: dict) -> set[Span]:
    """The gold spans of one doccano record (see ``uie_backend.data``)."""
    return {(e["label"], e["start_offset"], e["end_offset"]) for e in record["entities"]}
