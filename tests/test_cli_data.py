import json
import subprocess
import sys
from pathlib import Path

import convert
import doccano
from uie_backend.data import read_jsonl, write_jsonl

REPO = Path(__file__).resolve().parent.parent

CONFIG = """<View><Text name="doc" value="$content"/>
  <Labels name="ner" toName="doc"><Label value="人名"/><Label value="地名"/><Label value="组织"/></Labels>
</View>"""


def ls_task(task_id, text, regions, was_cancelled=False):
    result = [{"id": f"r{i}", "from_name": "ner", "to_name": "doc", "type": "labels",
               "value": {"start": s, "end": e, "text": text[s:e], "labels": [label]}}
              for i, (s, e, label) in enumerate(regions)]
    return {"id": task_id, "data": {"content": text},
            "annotations": [{"id": task_id, "result": result, "was_cancelled": was_cancelled}]}


TASKS = [
    ls_task(1, "张三在北京", [(0, 2, "人名"), (3, 5, "地名")]),
    ls_task(2, "今天天气不错", []),
    ls_task(3, "跳过这条", [(0, 2, "人名")], was_cancelled=True),
    ls_task(4, "李四去了华为", [(0, 2, "人名"), (4, 6, "组织")]),
]


def write_export(tmp_path, tasks=TASKS):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks, ensure_ascii=False), "utf-8")
    config = tmp_path / "config.xml"
    config.write_text(CONFIG, "utf-8")
    return path, config


def test_convert_writes_doccano_and_prints_counts(tmp_path, capsys):
    export, config = write_export(tmp_path)
    out = tmp_path / "data" / "doccano.jsonl"
    assert convert.main([str(export), "-o", str(out), "--label-config", str(config)]) == 0
    assert [(r["id"], len(r["entities"])) for r in read_jsonl(out)] == [(1, 2), (2, 0), (4, 2)]
    printed = capsys.readouterr().out
    for line in ("tasks read: 4", "kept: 3", "skipped (no usable annotation): 1",
                 "negatives (kept, no entities): 1", "  人名: 2", "  组织: 1"):
        assert line in printed.splitlines()


def test_convert_errors_exit_2_with_one_line(tmp_path, capsys):
    bad = [ls_task(9, "张三", [(0, 5, "人名")])]
    export, _ = write_export(tmp_path, bad)
    out = tmp_path / "out.jsonl"
    for argv in ([str(export), "-o", str(out)], [str(tmp_path / "missing.json"), "-o", str(out)]):
        assert convert.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert not out.exists()

    config = tmp_path / "bad.xml"
    config.write_text("<View>", "utf-8")
    assert convert.main([str(export), "-o", str(out), "--label-config", str(config)]) == 2
    assert "not well-formed" in capsys.readouterr().err


def test_convert_error_names_the_task(tmp_path, capsys):
    export, _ = write_export(tmp_path, [ls_task(9, "张三", [(0, 5, "人名")])])
    convert.main([str(export), "-o", str(tmp_path / "out.jsonl")])
    assert "task 9" in capsys.readouterr().err


def make_doccano(tmp_path, count=60):
    path = tmp_path / "doccano.jsonl"
    rows = [{"id": i, "text": f"张三{i}", "relations": [],
             "entities": [{"id": 0, "start_offset": 0, "end_offset": 2, "label": "人名" if i % 2 else "地名"}]}
            for i in range(count)]
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), "utf-8")
    return path


def test_doccano_writes_uie_and_doccano_splits(tmp_path, capsys):
    source = make_doccano(tmp_path)
    save = tmp_path / "out"
    argv = ["--doccano_file", str(source), "--save_dir", str(save), "--negative_ratio", "1", "--seed", "3"]
    assert doccano.main(argv) == 0
    parts = {name: read_jsonl(save / f"doccano_{name}.jsonl") for name in ("train", "dev", "test")}
    assert sorted(r["id"] for part in parts.values() for r in part) == list(range(60))
    train_examples = read_jsonl(save / "train.txt")
    assert len(train_examples) == 2 * len(parts["train"])  # one positive + one negative each
    assert {x["prompt"] for x in train_examples if not x["result_list"]} <= {"人名", "地名"}
    assert f"train: {len(parts['train'])} tasks" in capsys.readouterr().out

    first = (save / "train.txt").read_bytes()
    assert doccano.main(argv) == 0
    assert (save / "train.txt").read_bytes() == first


def test_doccano_two_splits_and_schema_negatives(tmp_path):
    source = make_doccano(tmp_path)
    config = tmp_path / "config.xml"
    config.write_text(CONFIG, "utf-8")
    save = tmp_path / "out"
    argv = ["--doccano_file", str(source), "--save_dir", str(save), "--splits", "0.5", "0.5",
            "--label_config", str(config)]
    assert doccano.main(argv) == 0
    written = sorted(p.name for p in save.iterdir())
    assert written == ["dev.txt", "doccano_dev.jsonl", "doccano_train.jsonl", "train.txt"]
    assert "组织" in {x["prompt"] for x in read_jsonl(save / "train.txt") if not x["result_list"]}


def _option(example: dict, answer: dict) -> str:
    """The text of a classification answer: a span of the prompt, at PaddleNLP's negative offsets."""
    shift = len(example["prompt"]) + 1
    return example["prompt"][answer["start"] + shift:answer["end"] + shift]


def test_doccano_cls_task_type_with_prefix_and_options(tmp_path):
    source = tmp_path / "cls.jsonl"
    write_jsonl(source, [{"id": i, "text": f"第{i}条评论", "label": ["好评" if i % 2 else "差评"]} for i in range(20)])
    save = tmp_path / "out"
    argv = ["--doccano_file", str(source), "--save_dir", str(save), "--task_type", "cls", "--prompt_prefix", "评价",
            "--options", "好评", "差评", "--splits", "0.5", "0.5"]
    assert doccano.main(argv) == 0
    train, dev = read_jsonl(save / "train.txt"), read_jsonl(save / "dev.txt")
    # dev asks what serving asks, the config's order; train also gets PaddleNLP's shuffled copies
    assert {x["prompt"] for x in dev} == {"评价[好评,差评]"} and len(dev) == len(read_jsonl(save / "doccano_dev.jsonl"))
    assert {x["prompt"] for x in train} == {"评价[好评,差评]", "评价[差评,好评]"}
    for example in train + dev:
        [answer] = example["result_list"]
        i = int(example["content"][1:-3])
        assert answer["start"] < 0 and _option(example, answer) == answer["text"] == ("好评" if i % 2 else "差评")


def test_doccano_ext_relations_and_entity_level_choices_with_a_separator(tmp_path):
    text = "张三的父亲是张一，张一很和蔼。"
    record = {"id": 1, "text": text, "relations": [{"id": 0, "from_id": 0, "to_id": 1, "type": "父亲"}],
              "entities": [{"id": 0, "start_offset": 0, "end_offset": 2, "label": "人物"},
                           {"id": 1, "start_offset": 6, "end_offset": 8, "label": "人物@@正向"}]}
    source = tmp_path / "ext.jsonl"
    write_jsonl(source, [record])
    save = tmp_path / "out"
    assert doccano.main(["--doccano_file", str(source), "--save_dir", str(save), "--separator", "@@",
                         "--splits", "1", "0"]) == 0
    examples = {x["prompt"]: x["result_list"] for x in read_jsonl(save / "train.txt")}
    assert examples["人物"] == [{"text": "张三", "start": 0, "end": 2}, {"text": "张一", "start": 6, "end": 8}]
    assert examples["张三的父亲"] == [{"text": "张一", "start": 6, "end": 8}]
    assert examples["张一的父亲"] == []  # the inverse prompt: PaddleNLP's first kind of relation negative
    choices = [(p, r) for p, r in examples.items() if p.startswith("张一的情感倾向[")]
    assert choices and all(_option({"prompt": p}, answer) == "正向" for p, [answer] in choices)


def test_doccano_refuses_bad_splits(tmp_path, capsys):
    source = make_doccano(tmp_path)
    save = tmp_path / "out"
    assert doccano.main(["--doccano_file", str(source), "--save_dir", str(save), "--splits", "0.8", "0.3"]) == 2
    assert "sum to 1" in capsys.readouterr().err
    assert not save.exists()


def test_scripts_run_as_programs(tmp_path):
    export, config = write_export(tmp_path)
    records = tmp_path / "doccano.jsonl"
    run = lambda *args: subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True)

    converted = run("convert.py", export, "-o", records, "--label-config", config)
    assert converted.returncode == 0, converted.stderr
    split = run("doccano.py", "--doccano_file", records, "--save_dir", tmp_path / "splits")
    assert split.returncode == 0, split.stderr
    assert (tmp_path / "splits" / "train.txt").is_file()

    failed = run("convert.py", tmp_path / "missing.json", "-o", records)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr


def test_convert_choices_as_ext_with_a_separator_or_as_cls_records(tmp_path, capsys):
    import schema_corpus

    export, config = tmp_path / "export.json", tmp_path / "config.xml"
    export.write_text(json.dumps(schema_corpus.choice_tasks(4, seed=1), ensure_ascii=False), encoding="utf-8")
    config.write_text(schema_corpus.CHOICES_CONFIG, encoding="utf-8")
    ext, cls = tmp_path / "ext.jsonl", tmp_path / "cls.jsonl"
    assert convert.main([str(export), "-o", str(ext), "--label-config", str(config), "--separator", "@@"]) == 0
    assert "choices per option:" in capsys.readouterr().out
    assert [r["entities"][0]["label"] for r in read_jsonl(ext)] == ["产品@@好评", "产品@@差评"] * 2
    assert convert.main([str(export), "-o", str(cls), "--label-config", str(config), "--task_type", "cls"]) == 0
    assert read_jsonl(cls) == [{"id": r["id"], "text": r["text"], "label": r["label"]} for r in read_jsonl(ext)]
    assert [r["label"] for r in read_jsonl(cls)] == [["正向"], ["负向"]] * 2
