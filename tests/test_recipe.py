"""The offline default model's recipe (`finetune.py --from_scratch`), run end to end on a miniature config:
corpora in Label Studio's export format, a one-layer model, one epoch; then run again, which resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import corpus
import finetune
from uie_backend import checkpoint

REPO = Path(__file__).resolve().parent.parent
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


def test_lac_the_teacher_finds_people_places_organisations_and_times():
    from uie_backend import lac

    teacher = lac.Lac(lac.fetch(REPO / ".cache" / "lac"))  # LAC's sdist, fetched from PyPI once
    found = teacher.spans(["江泽民主席昨天在北京会见了美国总统克林顿。", "", "新华社北京十二月三十一日电"])
    assert found[0] == {("人名", 0, 3), ("时间", 5, 7), ("地名", 8, 10), ("人名", 17, 20)}
    assert found[1] == set()
    assert {("组织", 0, 3), ("地名", 3, 5), ("时间", 5, 13)} == found[2]


@pytest.mark.slow
def test_a_staged_recipe_trains_its_first_stage_first_and_can_learn_from_lac_labelled_text(tmp_path):
    corpora = tmp_path / "corpora"
    write(corpora / "news" / "train.json", corpus.annotated_tasks(20, seed=1))
    write(corpora / "news" / "dev.json", corpus.annotated_tasks(6, seed=2))
    training = {"learning_rate": 0.001, "batch_size": 8, "max_seq_len": 64, "num_epochs": 1, "positive_weight": 5.0,
                "negative_ratio": 1, "eval_every": 10, "warmup_proportion": 0.05, "seed": 1, "state_every_s": 0,
                "fine_tune_learning_rate": 0.0003}
    common = {"model": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "seed": 0}, "selection_fraction": 0.2,
              "evaluate": [{"name": "News dev", "file": "news/dev.json", "labels": LABELS}], "training": training}
    write(tmp_path / "recipes" / "first.json", {"name": "first", **common,
                                                "train": [{"file": "news/train.json", "labels": LABELS}]})
    second = write(tmp_path / "recipes" / "second.json", {
        "name": "second", "start_from": "first", "baseline": "lac", **common,
        "train": [{"file": "news/train.json", "labels": [*LABELS, "时间"], "teacher": "lac"}]})
    argv = ["--from_scratch", "--config", str(second), "--corpora", str(corpora), "--save_dir", str(tmp_path / "out"),
            "--workdir", str(tmp_path / "work" / "second")]
    assert finetune.main(argv) == 0

    assert checkpoint.is_complete(tmp_path / "work" / "first" / "model_best")  # stage 1 ran, in its own folder
    meta = checkpoint.read_meta(tmp_path / "out")
    assert meta["stages"] == ["first", "second"]
    assert meta["init_from"] == str(tmp_path / "work" / "first" / "model_best")
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "news/train.json (silver: labelled by LAC)" in card
    evaluation = json.loads((tmp_path / "out" / "evaluation.json").read_text(encoding="utf-8"))
    lac_f1 = evaluation["lac_scores"]["News dev"]["overall"]["f1"]  # the baseline, on the same sentences
    assert lac_f1 > 0.3 and "LAC (Baidu's lexical analysis" in card
