"""Long texts -> overlapping windows that fit the model; window results -> text results, de-duplicated.

UIE reads at most ``max_seq_len`` tokens, prompt included. Taskflow cuts longer texts into
*non-overlapping* pieces, so an entity across a cut is lost or comes back truncated. Here consecutive
windows overlap by ``overlap`` characters, and cuts fall after sentence punctuation where there is some
near the end of a window. Every entity no longer than ``overlap`` then lies inside some window without
touching a cut edge, and spans that touch a cut edge are kept only if another window saw them whole.

Windows are measured in characters: a character never becomes more than one token, so a window of
``max_seq_len - len(prompt) - 3`` characters always fits beside its prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

SENTENCE_ENDS = frozenset("。！？!?；;\n…")
SOFT_ENDS = frozenset("，,、：:）)」』”\"' \t")


@dataclass(frozen=True)
class Window:
    start: int
    end: int
    cut_left: bool      # the window starts inside the text (not at its beginning)
    cut_right: bool     # the window ends inside the text (not at its end)


def cut(text: str, width: int, overlap: int) -> list[Window]:
    """Cover ``text`` with windows of at most ``width`` characters, consecutive ones sharing ``overlap``."""
    if width <= 0:
        raise ValueError("window width must be positive")
    overlap = max(0, min(overlap, width // 2))
    if len(text) <= width:
        return [Window(0, len(text), False, False)]
    windows, start = [], 0
    while True:
        end = min(start + width, len(text))
        if end < len(text):
            end = _cut_point(text, start, end, overlap)
        windows.append(Window(start, end, start > 0, end < len(text)))
        if end >= len(text):
            return windows
        start = max(end - overlap, start + 1)


def _cut_point(text: str, start: int, end: int, overlap: int) -> int:
    """Prefer to end a window just after a sentence end, else after a comma or space, within the last
    stretch of the window (so the next window, which starts ``overlap`` earlier, still moves on)."""
    earliest = start + max(overlap + 1, (end - start) // 2)
    for stops in (SENTENCE_ENDS, SOFT_ENDS):
        for i in range(end - 1, earliest - 1, -1):
            if text[i] in stops:
                return i + 1
    return end


def merge(per_window: Iterable[tuple[Window, Sequence]], key=lambda e: (e.label, e.start, e.end)) -> list:
    """Window-relative entities -> text entities: shifted back, one per span, the best-scored copy kept.

    ``per_window`` yields each window with the entities found in it (offsets relative to the window,
    objects with ``label``, ``start``, ``end``, ``score`` and a ``shifted(by)`` method). A span that touches
    a cut edge of its window may be a truncated entity; it is kept only if some window saw it clear of
    its cut edges.
    """
    best: dict = {}
    clean: set = set()
    for window, entities in per_window:
        for entity in entities:
            shifted = entity.shifted(window.start)
            k = key(shifted)
            if k not in best or shifted.score > best[k].score:
                best[k] = shifted
            at_edge = (window.cut_left and entity.start == 0) or (
                window.cut_right and entity.end == window.end - window.start)
            if not at_edge:
                clean.add(k)
    return sorted((e for k, e in best.items() if k in clean), key=lambda e: (e.start, e.end, e.label))
