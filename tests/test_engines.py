"""The two engines behind Predictor.ask: the fast static-graph one (default) and PaddleNLP's Taskflow (the
reference, and the only one for a model given by name) answer the same queries the same way."""

from __future__ import annotations

import dataclasses

from uie_backend.config import Settings
from uie_backend.lineages import ModelSource
from uie_backend.predictor import Predictor

TEXTS = ["王五昨天去了深圳出差。", "李四在腾讯工作了三年。"]
LABELS = ["人名", "地名", "组织"]


def test_taskflow_and_the_fast_engine_find_the_same_entities(trained_checkpoint, tmp_path):
    settings = Settings.from_env({"UIE_DEVICE": "cpu", "PPNLP_HOME": str(tmp_path / "ppnlp")})
    found = {}
    for engine in ("fast", "taskflow"):
        predictor = Predictor(ModelSource(version=engine, path=trained_checkpoint),
                              dataclasses.replace(settings, engine=engine))
        found[engine] = [{(e.label, e.start, e.end, e.text) for e in entities}
                         for entities in predictor.extract(TEXTS, LABELS)]
        # a query of its own per (text, prompt): what the second stage of a prediction sends
        asked = predictor.ask([(text, label) for text in TEXTS for label in LABELS])
        assert [{(e.label, e.start, e.end, e.text) for answer in asked[i * 3:i * 3 + 3] for e in answer}
                for i in range(len(TEXTS))] == found[engine]
    assert found["fast"] == found["taskflow"]
    assert ("人名", 0, 2, "王五") in found["fast"][0] and ("组织", 3, 5, "腾讯") in found["fast"][1]
