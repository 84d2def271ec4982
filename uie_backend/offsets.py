"""Correct character offsets for the tokens PaddleNLP cannot place: ``[UNK]``.

PaddleNLP's BERT tokenizer finds each token's characters by searching for the token's text; an ``[UNK]``
has no text to search for, so it guesses, and in a run of them it gives the first one "one character at
the cursor", which can be a space (measured: ``" 🀄🀄"`` maps ``[UNK]`` to the space). A rare character
in a name (``张𠀀``) or an emoji then shifts a predicted span. Here every run of ``[UNK]`` tokens is laid
over the characters between its known neighbours, split the way the tokenizer splits words (on
whitespace; CJK characters and punctuation stand alone).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

from . import paddle_env

UNKNOWN = "[UNK]"


@lru_cache(maxsize=1)
def _classes():
    """The tokenizer's own character classes (imported through paddle_env, like all of paddlenlp)."""
    paddle_env.load()
    from paddlenlp.transformers.tokenizer_utils import _is_control, _is_punctuation, _is_whitespace, is_chinese_char

    return _is_whitespace, _is_control, _is_punctuation, is_chinese_char


def _invisible(ch: str) -> bool:
    """Characters the tokenizer drops: they belong to no token."""
    is_whitespace, is_control, _, _ = _classes()
    return is_whitespace(ch) or is_control(ch) or ord(ch) in (0, 0xFFFD)


def _units(text: str, begin: int, end: int) -> list[tuple[int, int]]:
    """The tokenizer's words in ``text[begin:end]``, as character ranges (invisible characters skipped)."""
    _, _, is_punctuation, is_chinese_char = _classes()
    units, start = [], None
    for i in range(begin, end):
        ch = text[i]
        if _invisible(ch):
            if start is not None:
                units.append((start, i))
                start = None
        elif is_chinese_char(ord(ch)) or is_punctuation(ch):
            if start is not None:
                units.append((start, i))
            units.append((i, i + 1))
            start = None
        elif start is None:
            start = i
    if start is not None:
        units.append((start, end))
    return units


def fix_unknown(tokens: Sequence[str], offsets: Sequence[tuple[int, int]], text: str) -> list[tuple[int, int]]:
    """``offsets`` of ``tokens`` (all from ``text``) with every ``[UNK]`` put on its own characters."""
    fixed = [tuple(o) for o in offsets]
    i = 0
    while i < len(tokens):
        if tokens[i] != UNKNOWN:
            i += 1
            continue
        run_end = i
        while run_end < len(tokens) and tokens[run_end] == UNKNOWN:
            run_end += 1
        begin = fixed[i - 1][1] if i > 0 else 0
        end = fixed[run_end][0] if run_end < len(tokens) else len(text)
        count = run_end - i
        words = _units(text, begin, end)
        # The tokenizer also splits some symbols apart (🀄🀄 -> two [UNK]): then it is one per character.
        chars = [(c, c + 1) for c in range(begin, end) if not _invisible(text[c])]
        pieces = words if len(words) == count else chars
        if len(pieces) >= count:  # should there be more pieces than [UNK]s, the last one takes the rest
            for k in range(count):
                fixed[i + k] = pieces[k] if k < count - 1 else (pieces[k][0], pieces[-1][1])
        i = run_end
    return fixed
