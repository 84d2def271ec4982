"""The four CLIs chained as the README shows them: export -> doccano -> UIE examples -> fine-tune -> evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import convert
import corpus
import doccano
import evaluate
import finetune
from uie_backend import checkpoint
from uie_backend.config import Settings
from uie_backend.predictor import ModelSource, Predictor

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_cli_pipeline_produces_a_taskflow_loadable_checkpoint_and_its_scores(tmp_path, random_checkpoint):
    export = tmp_path / "export.json"
    export.write_text(json.dumps(corpus.annotated_tasks(40, seed=1), ensure_ascii=False), encoding="utf-8")
    assert convert.main([str(export), "-o", str(tmp_path / "doccano.jsonl")]) == 0
    assert doccano.main(["--doccano_file", str(tmp_path / "doccano.jsonl"), "--save_dir", str(tmp_path),
                         "--splits", "0.8", "0.2", "--negative_ratio", "2"]) == 0
    assert finetune.main(["--train_path", str(tmp_path / "train.txt"), "--dev_path", str(tmp_path / "dev.txt"),
                          "--init_from_ckpt", str(random_checkpoint), "--save_dir", str(tmp_path / "out"),
                          "--device", "cpu", "--learning_rate", "1e-3", "--batch_size", "8",
                          "--max_seq_len", "64", "--max_steps", "1500", "--valid_steps", "250"]) == 0
    model = tmp_path / "out" / "model_best"
    assert checkpoint.is_complete(model)
    meta = checkpoint.read_meta(model)
    assert meta["train_config"]["learning_rate"] == 1e-3 and meta["dev"]["overall"]["f1"] > 0.5

    predictor = Predictor(ModelSource(version=checkpoint.model_version(model), path=model),
                          Settings(device="cpu", ppnlp_home=tmp_path / "ppnlp"))
    found = predictor.extract(["王五昨天去了深圳出差。"], ["人名", "地名"])[0]
    assert {(e.label, e.text) for e in found} == {("人名", "王五"), ("地名", "深圳")}

    report = tmp_path / "scores.json"
    assert evaluate.main(["--model_path", str(model), "--test_path", str(tmp_path / "doccano_dev.jsonl"),
                          "--device", "cpu", "--max_seq_len", "64", "--report", str(report)]) == 0
    scores = json.loads(report.read_text(encoding="utf-8"))
    assert set(scores["per_label"]) == {"人名", "地名", "组织"}
    assert scores["overall"]["f1"] == pytest.approx(meta["dev"]["overall"]["f1"], abs=0.1)


def test_cli_errors_are_one_line_messages_not_tracebacks(tmp_path):
    missing = tmp_path / "nope.jsonl"
    for script, args in (("finetune.py", ["--train_path", str(missing), "--dev_path", str(missing),
                                          "--init_from_ckpt", str(tmp_path), "--save_dir", str(tmp_path)]),
                         ("evaluate.py", ["--model_path", str(tmp_path), "--test_path", str(missing)])):
        done = subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True, text=True,
                              cwd=REPO, timeout=120)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr and "error:" in done.stderr


def test_convert_then_evaluate_with_a_config_scores_entities_relations_and_choices(tmp_path, random_checkpoint, capsys):
    import schema_corpus

    export, config = tmp_path / "export.json", tmp_path / "config.xml"
    export.write_text(json.dumps(schema_corpus.relation_tasks(6, seed=1), ensure_ascii=False), encoding="utf-8")
    config.write_text(schema_corpus.RELATION_CONFIG, encoding="utf-8")
    assert convert.main([str(export), "-o", str(tmp_path / "doccano.jsonl"), "--label-config", str(config)]) == 0
    assert "relations per predicate:" in capsys.readouterr().out
    report = tmp_path / "scores.json"
    assert evaluate.main(["--model_path", str(random_checkpoint), "--test_path", str(tmp_path / "doccano.jsonl"),
                          "--label_config", str(config), "--report", str(report), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "### Relations (triple: subject, predicate, object)" in printed and "### Entities (span)" in printed
    scores = json.loads(report.read_text(encoding="utf-8"))
    assert set(scores["relations"]["per_label"]) <= {"父亲", "出生地"}
    assert scores["relations"]["overall"]["support"] == sum(
        r["type"] == "relation" for t in json.loads(export.read_text("utf-8")) for r in t["annotations"][0]["result"])
