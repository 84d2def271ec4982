"""Sentences from Mozilla Common Voice's Chinese (zh-CN) collection: public-domain text, dense in people,
places and organisations, for LAC to label (``"teacher": "lac"`` in a recipe's spec).

Common Voice takes only public-domain sentences (its ``docs/SENTENCES.md``), so a model trained on them may
be shipped without the doubt the NER research corpora carry (most state no licence). These are Wikipedia
sentences chosen by Mozilla's extractor: encyclopedic, not news, which is why LAC (trained on news) labels
them. The recipe can reach only PyPI, and no PyPI package carries them, so the file is committed
(``recipes/text/``, with its source, commit and sha256 in the README beside it) and checked on use.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..config import REPO_ROOT

TEXT = REPO_ROOT / "recipes" / "text" / "common-voice-zh-CN-wiki.txt"
TEXT_SHA256 = "17df06dd3de48a77da70eec02c042fba67be1800450dc351a199800fd324f903"
SOURCE = ("Mozilla Common Voice's zh-CN Wikipedia sentences (public domain; `common-voice/common-voice` "
          "`server/data/zh-CN/wiki.zh-cn.txt`, committed as `recipes/text/common-voice-zh-CN-wiki.txt`), "
          "labelled by LAC")
UNLABELLED = True  # plain text: a recipe must name a teacher for it


def fetch(cache: Path) -> Path:
    """The committed sentence file, checked against the sha256 it was committed with (``cache`` is unused:
    nothing is downloaded; the argument keeps every source's ``fetch`` alike)."""
    if hashlib.sha256(TEXT.read_bytes()).hexdigest() != TEXT_SHA256:
        raise RuntimeError(f"{TEXT}: not the file this code was checked with (sha256 differs); see "
                           f"{TEXT.parent / 'README.md'}")
    return TEXT


def records(path: Path) -> list[dict]:
    """Doccano records without entities, one per non-empty line."""
    return [{"text": line.strip(), "entities": [], "relations": []}
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
