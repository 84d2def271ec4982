"""LAC, Baidu's lexical analysis model: the embedded model's teacher, and the baseline its card compares with.

LAC 2.1.2 cannot be installed on paddle 2.6 (its setup.py and runtime need paddle.fluid, gone since 2.5), but
its model is an ordinary Paddle inference model. :func:`fetch` downloads the sdist from PyPI once (checked
against the sha256 PyPI's index gives); :class:`Lac` runs the model with paddle.inference and uses LAC's own
pure-Python tokenisation (its segmenter and vocabulary, loaded from the sdist with a stub for paddle.fluid).
LAC's PER/LOC/ORG/TIME become 人名/地名/组织/时间. Used to build and to measure the offline model, never to serve.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np

from .. import paddle_env
from . import sdist

SDIST = "LAC-2.1.2.tar.gz"
SDIST_SHA256 = "22fcde0d5082d2044205ea6f6a7a9cd1f0d63e7b21b2dd5c9c73f27e7c0a3ef1"  # as published on PyPI
LAC_LABELS = {"PER": "人名", "LOC": "地名", "ORG": "组织", "TIME": "时间"}


def fetch(cache: Path) -> Path:
    """The unpacked LAC sdist, downloaded from PyPI once and checked against the pinned sha256."""
    return sdist.fetch("lac", SDIST, SDIST_SHA256, cache)


class Lac:
    """LAC's lexical analysis: text in, (label, start, end) spans of people, places, organisations and times out."""

    def __init__(self, unpacked: Path):
        inference = paddle_env.load().paddle.inference

        package = types.ModuleType("lac_sdist")
        package.__path__ = [str(unpacked / "LAC")]
        sys.modules["lac_sdist"] = package
        # LAC's utils.py imports paddle.fluid but uses it only for the model, which is run here instead: a stub
        # stands in while it loads, and is gone afterwards, so nothing else mistakes it for the real one
        sys.modules["paddle.fluid"] = types.ModuleType("paddle.fluid")
        try:
            utils, reader, segment = (self._module(unpacked, name) for name in ("utils", "reader", "segment"))
        finally:
            del sys.modules["paddle.fluid"]
        model = unpacked / "LAC" / "lac_model"
        self.dataset = reader.Dataset(utils.DefaultArgs(str(model)))
        self.segmenter = segment.Segment(dict_path=str(model / "conf" / "small_seg.dic"))
        config = inference.Config(str(model / "model"))
        config.disable_gpu()
        config.disable_glog_info()
        self.predictor = inference.create_predictor(config)

    @staticmethod
    def _module(unpacked: Path, name: str):
        spec = importlib.util.spec_from_file_location(f"lac_sdist.{name}", unpacked / "LAC" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module

    def spans(self, texts: list[str], batch: int = 64) -> list[set[tuple[str, int, int]]]:
        out = []
        for begin in range(0, len(texts), batch):
            out += self._batch(texts[begin:begin + batch])
        return out

    def _batch(self, texts: list[str]) -> list[set[tuple[str, int, int]]]:
        lod, ids, lengths = [0], [], []
        for text in texts:  # LAC mixes granularities: known words are one token, the rest characters
            text_ids, word_lengths = self.dataset.text_to_ids(self.segmenter.fast_cut(text))
            ids += text_ids
            lengths.append(word_lengths)
            lod.append(lod[-1] + len(text_ids))
        handle = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        handle.reshape([len(ids), 1])
        handle.copy_from_cpu(np.array(ids, dtype="int64").reshape(-1, 1))
        handle.set_lod([lod])
        self.predictor.run()
        output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])
        tags, bounds = output.copy_to_cpu().reshape(-1), output.lod()[0]
        found = []
        for index, text in enumerate(texts):
            char_tags = []
            for tag_id, length in zip(tags[bounds[index]:bounds[index + 1]], lengths[index]):
                tag = self.dataset.id2label_dict[str(tag_id)]
                char_tags += [tag] + [tag[:-2] + "-I"] * (length - 1)
            found.append(_entities(char_tags))
        return found


def _entities(char_tags: list[str]) -> set[tuple[str, int, int]]:
    """BIO-style word tags (``PER-B``, ``PER-I``) of each character -> labelled spans of LAC's four entity types."""
    spans, start, kind = set(), None, None
    for position, tag in enumerate(char_tags + ["O-B"]):
        name, _, part = tag.rpartition("-")
        if start is not None and (part != "I" or name != kind):
            if kind in LAC_LABELS:
                spans.add((LAC_LABELS[kind], start, position))
            start = None
        if part == "B" or (part == "I" and start is None):
            start, kind = position, name
    return spans
