"""Long texts: windows that overlap, cut at sentence ends, and lose no entity at an edge."""

from __future__ import annotations

from dataclasses import dataclass, replace

from hypothesis import given, settings, strategies as st

from uie_backend import windows

NAMES = ["张三", "欧阳修文", "𠀀𠀁", "😀李四", "Mate 60"]


@dataclass(frozen=True)
class Found:
    label: str
    start: int
    end: int
    score: float = 1.0

    def shifted(self, by: int) -> "Found":
        return replace(self, start=self.start + by, end=self.end + by)


def oracle(window_text: str, at_text_start: bool, at_text_end: bool) -> list[Found]:
    """A model that finds every whole name in its window, and, like a real one, also a truncated piece of a
    name cut by the window edge (the failure overlapping windows must not let through)."""
    found = []
    for name in NAMES:
        i = window_text.find(name)
        while i >= 0:
            found.append(Found("人名", i, i + len(name)))
            i = window_text.find(name, i + 1)
        for k in range(1, len(name)):
            if not at_text_end and window_text.endswith(name[:k]):
                found.append(Found("人名", len(window_text) - k, len(window_text)))
            if not at_text_start and window_text.startswith(name[-k:]):
                found.append(Found("人名", 0, k))
    return found


filler = st.text(alphabet="的了在是我有他这中大来上个国和。，！？\r\n 😀𠀀abc", max_size=40)


@st.composite
def texts_with_names(draw):
    parts, spans, text = [], [], ""
    for _ in range(draw(st.integers(1, 30))):
        text += draw(filler)
        name = draw(st.sampled_from(NAMES))
        spans.append((len(text), len(text) + len(name)))
        text += name
    return text + draw(filler), spans


@settings(max_examples=300, deadline=None)
@given(texts_with_names(), st.integers(8, 60), st.integers(0, 20))
def test_every_name_shorter_than_the_overlap_is_found_exactly_once_with_exact_offsets(case, width, overlap):
    text, spans = case
    cuts = windows.cut(text, width, overlap)
    assert cuts[0].start == 0 and cuts[-1].end == len(text)
    assert all(w.end - w.start <= width for w in cuts)
    assert all(a.start < b.start <= a.end for a, b in zip(cuts, cuts[1:]))  # in order, no gap
    merged = windows.merge((w, oracle(text[w.start:w.end], not w.cut_left, not w.cut_right)) for w in cuts)
    occurrences = set()
    for name in NAMES:  # the filler can happen to spell a name too
        i = text.find(name)
        while i >= 0:
            occurrences.add((i, i + len(name)))
            i = text.find(name, i + 1)
    found = {(f.start, f.end) for f in merged}
    effective_overlap = min(overlap, width // 2)  # cut() never lets windows share more than half
    assert {(s, e) for s, e in occurrences if e - s < effective_overlap} <= found  # none lost at an edge
    assert found <= occurrences  # and no truncated piece let through
    assert len(merged) == len({(f.label, f.start, f.end) for f in merged})  # never the same span twice


def test_cuts_prefer_sentence_ends_then_commas():
    text = "甲" * 30 + "。" + "乙" * 10 + "，" + "丙" * 30
    cuts = windows.cut(text, width=45, overlap=5)
    assert text[cuts[0].end - 1] == "。"
    text = "甲" * 40 + "，" + "乙" * 40
    assert text[windows.cut(text, width=45, overlap=5)[0].end - 1] == "，"


def test_short_text_is_one_window_and_a_100k_text_is_covered_in_order():
    assert windows.cut("短文本", 10, 4) == [windows.Window(0, 3, False, False)]
    text = ("今天张三去了北京。\r\n😀" * 10000)[:100_000]
    cuts = windows.cut(text, 500, 64)
    assert cuts[0].start == 0 and cuts[-1].end == 100_000
    assert all(a.start < b.start and b.start < a.end for a, b in zip(cuts, cuts[1:]))
