"""The embedded offline model (config.EMBEDDED_MODEL) is what a fresh, offline `make serve` serves."""

from __future__ import annotations

from pathlib import Path

from uie_backend.config import EMBEDDED_MODEL, Settings
from uie_backend.lineages import base_source
from uie_backend.predictor import Predictor

REPO = Path(__file__).resolve().parent.parent
LABELS = ["人名", "地名", "组织", "时间", "产品", "价格", "天气"]


def test_the_embedded_model_is_served_offline_and_finds_obvious_entities(tmp_path):
    settings = Settings(checkpoint_dir=tmp_path / "checkpoint", named_model="", device="cpu",
                        ppnlp_home=tmp_path / "ppnlp")  # default_model: the repository's
    source = base_source(settings)
    assert source.path == EMBEDDED_MODEL
    texts = ["张三明天要去北京参加华为的发布会。", "国务院总理李强在人民大会堂会见了法国总统马克龙。",
             "杭州明天有小雨，这台冰箱只要3999元。"]
    found = [{(e.label, e.text) for e in entities} for entities in Predictor(source, settings).extract(texts, LABELS)]
    # a weak model (see its model card): these are the plain cases it must get
    assert {("地名", "北京"), ("人名", "李强"), ("组织", "国务院"), ("天气", "小雨"), ("地名", "杭州"),
            ("产品", "冰箱")} <= set().union(*found)
    # 价格 and 天气 are learnt from generated sentences only; news text must not be answered as either
    assert not {label for label, _ in found[0] | found[1]} & {"价格", "天气"}


def test_fine_tuning_the_embedded_model_uses_its_recommended_learning_rate_unless_one_is_set():
    from uie_backend.training import DEFAULT_LEARNING_RATE, learning_rate

    model = EMBEDDED_MODEL
    assert learning_rate(Settings(), model) == 3e-4
    assert learning_rate(Settings(train_learning_rate=2e-5), model) == 2e-5
    assert learning_rate(Settings(), REPO / "uie_backend" / "uie_vocab") == DEFAULT_LEARNING_RATE  # no meta


def test_every_shipped_model_card_says_what_licences_its_training_text_carries():
    """A team deciding whether it may use the default model needs to know it learnt from research data."""
    import json

    for model in sorted(path for path in (REPO / "models").iterdir() if path.is_dir()):  # not the lock files
        recipe = json.loads((REPO / "recipes" / f"{model.name}.json").read_text(encoding="utf-8"))
        card = (model / "README.md").read_text(encoding="utf-8")
        assert recipe["licence"] and f"**Licences.** {recipe['licence']}" in card, model.name
