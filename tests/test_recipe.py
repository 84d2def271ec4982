"""The offline default model's recipe (`finetune.py --from_scratch`), run end to end on a miniature config:
corpora in Label Studio's export format, a one-layer model, one epoch; then run again, which resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import corpus
import finetune
from uie_backend import checkpoint

LABELS = ["人名", "地名", "组织"]


def write(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.mark.slow
def test_the_recipe_trains_evaluates_writes_a_model_card_and_resumes(tmp_path, capsys):
    corpora = tmp_path / "corpora"
    write(corpora / "news" / "train.json", corpus.annotated_tasks(30, seed=1))
    write(corpora / "news" / "dev.json", corpus.annotated_tasks(10, seed=2))
    config = write(tmp_path / "mini.json", {
        "name": "mini", "model": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "seed": 0},
        "label_map": {},
        "train": [{"file": "news/train.json", "labels": LABELS}],
        "evaluate": [{"name": "News dev", "file": "news/dev.json", "labels": LABELS}],
        "synthetic": {"labels": ["价格", "天气"], "train_sentences": 10, "eval_sentences": 5, "seed": 7},
        "selection_fraction": 0.1,
        "history": ["a note the model card repeats"],
        "training": {"learning_rate": 0.001, "batch_size": 8, "max_seq_len": 64, "num_epochs": 1,
                     "positive_weight": 5.0, "negative_ratio": 1, "eval_every": 10, "warmup_proportion": 0.05,
                     "seed": 1, "state_every_s": 0.001, "fine_tune_learning_rate": 0.0003}})
    argv = ["--from_scratch", "--config", str(config), "--corpora", str(corpora), "--save_dir", str(tmp_path / "out"),
            "--workdir", str(tmp_path / "work")]
    assert finetune.main(argv) == 0

    out = tmp_path / "out"
    assert checkpoint.is_complete(out)
    meta = checkpoint.read_meta(out)
    assert meta["recipe"] == "mini" and meta["fine_tune_learning_rate"] == 0.0003
    evaluation = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    assert set(evaluation["scores"]) == {"News dev", "synthetic 价格/天气 (generated, not real text)"}
    assert set(evaluation["scores"]["News dev"]["per_label"]) == set(LABELS)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "### News dev" in card and "| 人名 |" in card and "- a note the model card repeats" in card
    assert "news/train.json" in card and f"{evaluation['steps']} steps" in card
    steps = evaluation["steps"]

    capsys.readouterr()
    assert finetune.main(argv) == 0  # a second run finds the finished state and trains no further
    again = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    assert again["steps"] == steps and again["scores"] == evaluation["scores"]
