import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uie_backend.data import (
    DataError,
    choose_annotation,
    doccano_to_examples,
    load_tasks,
    read_jsonl,
    record_labels,
    split_records,
    task_to_doccano,
    tasks_to_doccano,
    write_jsonl,
)
from uie_backend.labelconfig import Schema, SpanControl

from conftest import SHARED

PAYLOADS = SHARED / "docs" / "label-studio-payloads"
REAL_EXPORT = SHARED / "data" / "ner" / "product_titles" / "all.json"


def region(start, end, *labels, text=None, region_id="r", from_name="label", to_name="text"):
    value = {"start": start, "end": end, "labels": list(labels)}
    if text is not None:
        value["text"] = text
    return {"id": region_id, "from_name": from_name, "to_name": to_name, "type": "labels", "value": value}


def annotation(*regions, annotation_id=1, **fields):
    return {"id": annotation_id, "result": list(regions), "was_cancelled": False, **fields}


def task(data, *annotations, task_id=1):
    """A Label Studio task; ``data`` is the text itself or the whole data object."""
    data = {"text": data} if isinstance(data, str) else data
    return {"id": task_id, "data": data, "annotations": list(annotations)}


def spans(record):
    return [(e["label"], record["text"][e["start_offset"]:e["end_offset"]]) for e in record["entities"]]


# -- load_tasks -------------------------------------------------------------------------------------


def write(tmp_path, content, name="in.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content, ensure_ascii=False), "utf-8")
    return path


@pytest.mark.parametrize("wrap", [
    lambda tasks: tasks,
    lambda tasks: {"annotations": tasks, "project": 2, "label_config": "<View/>"},
    lambda tasks: {"tasks": tasks},
])
def test_load_tasks_accepts_export_train_payload_and_tasks_object(tmp_path, wrap):
    tasks = [task("张三", annotation(region(0, 2, "人名")), task_id=i) for i in (1, 2)]
    assert [t["id"] for t in load_tasks(write(tmp_path, wrap(tasks)))] == [1, 2]


def test_load_tasks_accepts_jsonl_and_a_single_task(tmp_path):
    lines = "\n".join(json.dumps(task("x", task_id=i)) for i in (1, 2)) + "\n\n"
    assert [t["id"] for t in load_tasks(write(tmp_path, lines, "in.jsonl"))] == [1, 2]
    assert [t["id"] for t in load_tasks(write(tmp_path, task("x", task_id=7)))] == [7]


def test_load_tasks_reports_jsonl_line_number(tmp_path):
    content = json.dumps(task("x")) + "\n{broken\n"
    with pytest.raises(DataError, match="line 2"):
        load_tasks(write(tmp_path, content, "in.jsonl"))


def test_load_tasks_reports_json_array_position(tmp_path):
    with pytest.raises(DataError, match="line 3"):
        load_tasks(write(tmp_path, '[\n{"id": 1},\n{"id": 2,,}\n]'))


@pytest.mark.parametrize("content, message", [("", "empty"), ('{"project": 1}', "list of tasks"), ("[1, 2]", "item 0")])
def test_load_tasks_rejects_unusable_files(tmp_path, content, message):
    with pytest.raises(DataError, match=message):
        load_tasks(write(tmp_path, content))


def test_load_tasks_accepts_a_byte_order_mark(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([task("x")]).encode())
    assert len(load_tasks(path)) == 1


def test_non_utf8_file_is_a_data_error(tmp_path):
    path = tmp_path / "gbk.json"
    path.write_bytes('[{"data": {"text": "中文"}}]'.encode("gbk"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_tasks(path)


def test_recorded_export_and_legacy_train_payload(tmp_path):
    [exported] = load_tasks(PAYLOADS / "exported_annotation.json")
    record = task_to_doccano(exported)
    assert ("价格", "6999元") in spans(record) and ("产品", "Mate 60") in spans(record)

    legacy = json.loads((PAYLOADS / "training_request_legacy_train.json").read_text("utf-8"))["json"]
    records = tasks_to_doccano(load_tasks(write(tmp_path, legacy)))
    assert records and all(record["entities"] for record in records)


def test_real_export_converts_with_matching_entity_text():
    tasks = load_tasks(REAL_EXPORT)
    records = tasks_to_doccano(tasks)
    assert len(records) == len(tasks)
    for task_, record in zip(tasks, records):
        expected = {(v["labels"][0], v["text"]) for v in (r["value"] for r in task_["annotations"][0]["result"])}
        assert set(spans(record)) == expected


# -- choose_annotation ------------------------------------------------------------------------------


def test_cancelled_annotations_are_ignored():
    skipped = annotation(region(0, 1, "A"), annotation_id=2, was_cancelled=True, updated_at="2030-01-01T00:00:00Z")
    kept = annotation(annotation_id=1, updated_at="2020-01-01T00:00:00Z")
    assert choose_annotation(task("x", kept, skipped))["id"] == 1
    assert choose_annotation(task("x", skipped)) is None
    assert choose_annotation(task("x")) is None
    assert choose_annotation({"id": 3, "data": {"text": "x"}}) is None


def test_ground_truth_wins_over_newer():
    truth = annotation(annotation_id=1, ground_truth=True, updated_at="2020-01-01T00:00:00Z")
    newer = annotation(annotation_id=2, updated_at="2025-01-01T00:00:00Z")
    assert choose_annotation(task("x", newer, truth))["id"] == 1


def test_newest_wins_comparing_real_times_not_strings():
    # As strings "…25Z" > "…25.9Z"; as times the fractional one is newer.
    older = annotation(annotation_id=5, updated_at="2026-11-29T07:16:25Z")
    newer = annotation(annotation_id=4, updated_at="2026-11-29T07:16:25.900000Z")
    assert choose_annotation(task("x", newer, older))["id"] == 4


def test_created_at_then_id_are_fallbacks():
    by_created = [annotation(annotation_id=1, created_at="2024-05-01T00:00:00+00:00"),
                  annotation(annotation_id=2, created_at="2023-05-01T00:00:00+00:00")]
    assert choose_annotation(task("x", *by_created))["id"] == 1
    assert choose_annotation(task("x", annotation(annotation_id=3), annotation(annotation_id=9)))["id"] == 9


# -- task_to_doccano --------------------------------------------------------------------------------


def test_record_shape_and_running_entity_ids():
    labelled = annotation(region(0, 2, "人名", text="张三"), region(3, 5, "地名"))
    record = task_to_doccano(task("张三在北京", labelled, task_id=6))
    assert record == {
        "id": 6,
        "text": "张三在北京",
        "entities": [
            {"id": 0, "start_offset": 0, "end_offset": 2, "label": "人名"},
            {"id": 1, "start_offset": 3, "end_offset": 5, "label": "地名"},
        ],
        "relations": [],
    }


def test_overlapping_and_multi_label_spans():
    text = "北京大学的学生"
    record = task_to_doccano(task(text, annotation(region(0, 4, "组织", "地名"), region(0, 2, "地名"))))
    assert spans(record) == [("组织", "北京大学"), ("地名", "北京大学"), ("地名", "北京")]


def test_exact_duplicates_are_dropped():
    record = task_to_doccano(task("张三", annotation(region(0, 2, "人名"), region(0, 2, "人名", region_id="r2"))))
    assert len(record["entities"]) == 1


def test_offsets_are_code_points_after_emoji_and_crlf():
    text = "😀👍🏽 hi\r\n马云在杭州"
    start = text.index("杭州")
    record = task_to_doccano(task(text, annotation(region(start, start + 2, "地名", text="杭州"))))
    assert record["text"] == text  # \r\n kept: Label Studio counted both characters
    assert spans(record) == [("地名", "杭州")]


def test_empty_result_is_kept_as_negative_and_skipped_task_dropped():
    negative = task("无实体", annotation(), task_id=1)
    skipped = task("跳过", annotation(region(0, 1, "A"), was_cancelled=True), task_id=2)
    unannotated = task("未标注", task_id=3)
    records = tasks_to_doccano([negative, skipped, unannotated])
    assert [(r["id"], r["entities"]) for r in records] == [(1, [])]


def test_a_text_choice_is_doccanos_classification_label():
    choice = {"id": "c", "from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}
    record = task_to_doccano(task("好", annotation(choice)))
    assert record["entities"] == [] and record["label"] == ["pos"]


@pytest.mark.parametrize("start, end", [(-1, 2), (2, 2), (3, 1), (0, 99), ("0", 2), (0.0, 2), (None, 2)])
def test_bad_offsets_name_the_task_and_region(start, end):
    bad = task("张三在北京", annotation(region(start, end, "人名", region_id="r9")), task_id=42)
    with pytest.raises(DataError, match=r"task 42, region 'r9'"):
        task_to_doccano(bad)


def test_mismatched_value_text_names_task_region_and_field():
    bad = task("张三在北京", annotation(region(0, 2, "人名", text="李四", region_id="r1")), task_id=7)
    with pytest.raises(DataError, match=r"task 7, region 'r1'.*value\.text"):
        task_to_doccano(bad)


@pytest.mark.parametrize("data", [{"text": 5}, {"a": "x", "b": "y"}, {}])
def test_missing_text_names_task_and_field(data):
    bad = task(data, annotation(), task_id=11)
    with pytest.raises(DataError, match=r"task 11: field 'data\.text'"):
        task_to_doccano(bad)


def test_text_field_guessed_from_to_name_or_the_only_string():
    by_to_name = task({"doc": "张三", "text": "other"}, annotation(region(0, 2, "人名", to_name="doc")))
    assert task_to_doccano(by_to_name)["text"] == "张三"
    only_string = task({"content": "张三", "n": 3}, annotation(region(0, 2, "人名", to_name="x")))
    assert task_to_doccano(only_string)["text"] == "张三"


def test_controls_pick_regions_and_data_field():
    controls = Schema((SpanControl("ner", "doc", "content", ("人名",)),))
    tagged = annotation(region(0, 2, "人名", from_name="ner", to_name="doc"),
                        region(3, 5, "地名", from_name="old", to_name="doc"))
    record = task_to_doccano(task({"content": "张三在北京"}, tagged), controls)
    assert spans(record) == [("人名", "张三")]
    empty = task_to_doccano(task({"content": "无"}, annotation()), controls)
    assert empty["text"] == "无"


def test_spans_on_two_text_fields_are_refused():
    controls = Schema((SpanControl("a", "title", "title", ("X",)), SpanControl("b", "body", "body", ("X",))))
    both = [region(0, 1, "X", from_name="a", to_name="title"), region(0, 1, "X", from_name="b", to_name="body")]
    bad = task({"title": "t", "body": "b"}, annotation(*both), task_id=5)
    with pytest.raises(DataError, match="task 5: spans label several text fields"):
        task_to_doccano(bad, controls)


@given(st.lists(st.tuples(st.text(max_size=8), st.text(min_size=1, max_size=6)), min_size=1, max_size=6), st.data())
def test_offsets_round_trip_for_any_text(pieces, data):
    text, regions = "", []
    for index, (filler, entity) in enumerate(pieces):
        text += filler
        regions.append(region(len(text), len(text) + len(entity), f"L{index}", text=entity, region_id=str(index)))
        text += entity
    text += data.draw(st.text(max_size=8))
    record = task_to_doccano(task(text, annotation(*regions)))
    assert [(e["label"], text[e["start_offset"]:e["end_offset"]]) for e in record["entities"]] == \
        [(f"L{i}", entity) for i, (_, entity) in enumerate(pieces)]


# -- doccano_to_examples ----------------------------------------------------------------------------


def record(record_id, text, *entities):
    entity_dicts = [{"id": i, "start_offset": s, "end_offset": e, "label": label}
                    for i, (label, s, e) in enumerate(entities)]
    return {"id": record_id, "text": text, "entities": entity_dicts, "relations": []}


LABELS = [f"L{i}" for i in range(20)]


def test_positive_examples_group_spans_by_label():
    text = "张三和李四在北京"
    unordered = record(1, text, ("人名", 3, 5), ("人名", 0, 2), ("地名", 6, 8))
    examples = doccano_to_examples([unordered], negative_ratio=0)
    assert examples == [
        {"content": text, "prompt": "人名",
         "result_list": [{"text": "张三", "start": 0, "end": 2}, {"text": "李四", "start": 3, "end": 5}]},
        {"content": text, "prompt": "地名", "result_list": [{"text": "北京", "start": 6, "end": 8}]},
    ]


def test_negative_count_is_ratio_times_positive_prompts_capped_by_absent_labels():
    two_labels = record(1, "ab", ("L0", 0, 1), ("L1", 1, 2))
    no_entities = record(2, "cd")
    examples = doccano_to_examples([two_labels, no_entities], labels=LABELS, negative_ratio=3)
    negatives = {rid: [x["prompt"] for x in examples if not x["result_list"] and x["content"] == text]
                 for rid, text in ((1, "ab"), (2, "cd"))}
    assert len(negatives[1]) == 6 and not {"L0", "L1"} & set(negatives[1])
    assert len(negatives[2]) == 3
    assert len(doccano_to_examples([two_labels], labels=["L0", "L1", "L2"], negative_ratio=3)) == 3


def test_negatives_default_to_labels_seen_in_records():
    examples = doccano_to_examples([record(1, "ab", ("A", 0, 1)), record(2, "cd", ("B", 0, 1))])
    assert sorted((x["content"], x["prompt"]) for x in examples if not x["result_list"]) == [("ab", "B"), ("cd", "A")]


def test_negatives_are_deterministic_and_independent_of_record_order():
    records = [record(i, f"text {i}", ("L0", 0, 1)) for i in range(30)]
    by_record = lambda examples: sorted((x["content"], x["prompt"]) for x in examples)
    first = doccano_to_examples(records, labels=LABELS, negative_ratio=2)
    assert first == doccano_to_examples(records, labels=LABELS, negative_ratio=2)
    assert by_record(first) == by_record(doccano_to_examples(records[::-1], labels=LABELS, negative_ratio=2))
    assert by_record(first) != by_record(doccano_to_examples(records, labels=LABELS, negative_ratio=2, seed=1))
    negatives_per_record = {x["content"]: set() for x in first}
    for x in first:
        if not x["result_list"]:
            negatives_per_record[x["content"]].add(x["prompt"])
    # Seeded per record: records with the same absent labels still get different negatives.
    assert len({frozenset(prompts) for prompts in negatives_per_record.values()}) > 1


@pytest.mark.parametrize("bad, field", [
    ({"id": 3, "entities": []}, "'text'"),
    ({"id": 3, "text": "ab", "label": [[0, 1, "A"]]}, "'entities'"),
    (record(3, "ab", ("A", 1, 5)), "entity 0"),
])
def test_malformed_records_name_the_record(bad, field):
    with pytest.raises(DataError, match=f"record 3.*{field}"):
        doccano_to_examples([bad])


def test_record_labels_are_sorted_and_unique():
    assert record_labels([record(1, "ab", ("B", 0, 1), ("A", 1, 2)), record(2, "c", ("B", 0, 1))]) == ["A", "B"]


# -- split_records ----------------------------------------------------------------------------------


def split_ids(parts):
    return [{r["id"] for r in part} for part in parts]


@pytest.mark.parametrize("splits", [(0.8, 0.1), (0.5, 0.5, 0.5), (1.0,), (0.5, 0.2, 0.2, 0.1), (1.2, -0.1, -0.1)])
def test_bad_splits_are_refused(splits):
    with pytest.raises(DataError, match="splits"):
        split_records([record(1, "a")], splits)


def test_empty_input_is_refused():
    with pytest.raises(DataError, match="no annotated tasks"):
        split_records([])


def test_splits_are_deterministic_by_task_and_roughly_proportional():
    records = [record(i, f"t{i}") for i in range(2000)]
    train, dev, test = split_records(records)
    assert sorted(r["id"] for r in train + dev + test) == list(range(2000))
    assert 1500 < len(train) < 1700 and 120 < len(dev) < 280 and 120 < len(test) < 280
    assert split_ids((train, dev, test)) == split_ids(split_records(records[::-1]))


def test_adding_tasks_never_moves_existing_ones():
    before = split_ids(split_records([record(i, "same text") for i in range(100)]))
    after = split_ids(split_records([record(i, "same text") for i in range(300)]))
    assert all(old <= new for old, new in zip(before, after))


def test_two_way_split_seed_and_text_fallback():
    records = [{"text": f"doc {i}", "entities": []} for i in range(200)]
    train, dev = split_records(records, (0.5, 0.5), seed=7)
    assert len(train) + len(dev) == 200 and train and dev
    assert [r["text"] for r in train] != [r["text"] for r in split_records(records, (0.5, 0.5), seed=8)[0]]


def test_zero_share_split_stays_empty():
    train, dev, test = split_records([record(i, "x") for i in range(200)], (0.9, 0.1, 0.0))
    assert test == [] and len(train) + len(dev) == 200


# -- read_jsonl / write_jsonl -----------------------------------------------------------------------


def test_jsonl_round_trip_keeps_unicode_and_line_separators(tmp_path):
    rows = [{"text": "中文\u2028第二行\r\n😀"}, {"n": 1}]
    path = tmp_path / "sub" / "rows.jsonl"
    write_jsonl(path, rows)
    assert "中文" in path.read_text("utf-8")
    assert read_jsonl(path) == rows
    assert [p.name for p in path.parent.iterdir()] == ["rows.jsonl"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, [{"old": True}])

    def rows():
        yield {"new": True}
        raise RuntimeError("disk trouble")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows())
    assert read_jsonl(path) == [{"old": True}]
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]


def test_read_jsonl_rejects_non_objects(tmp_path):
    with pytest.raises(DataError, match="item 1"):
        read_jsonl(write(tmp_path, '{"a": 1}\n[1]\n', "rows.jsonl"))


def test_relations_follow_their_direction_and_the_configs_predicates():
    text = "张三的父亲是张一"
    regions = [region(0, 2, "人物", region_id="a"), region(6, 8, "人物", region_id="b")]
    relation = lambda direction, label: {"from_id": "a", "to_id": "b", "type": "relation",  # noqa: E731
                                         "direction": direction, "labels": [label]}
    results = [relation("right", "父亲"), relation("left", "儿子"), relation("bi", "亲属"), relation("right", "旧的"),
               {"from_id": "a", "to_id": "gone", "type": "relation", "labels": ["父亲"]},
               {"from_id": "a", "to_id": "b", "type": "relation", "labels": []}]
    record = task_to_doccano(task(text, annotation(*regions, *results)))
    assert [(r["from_id"], r["to_id"], r["type"]) for r in record["relations"]] == [
        (0, 1, "父亲"), (1, 0, "儿子"), (0, 1, "亲属"), (1, 0, "亲属"), (0, 1, "旧的")]
    schema = Schema((SpanControl("label", "text", "text", ("人物",)),), predicates=("父亲", "儿子", "亲属"))
    assert "旧的" not in {r["type"] for r in task_to_doccano(task(text, annotation(*regions, *results)), schema)["relations"]}


def test_records_whose_entities_have_no_ids_still_make_examples():
    """The recipe's LAC-labelled silver records carry no entity ids (a relation needs them; a span does not)."""
    silver = {"text": "王五在北京", "entities": [{"start_offset": 0, "end_offset": 2, "label": "人名"}]}
    assert doccano_to_examples([silver], ["人名", "地名"], negative_ratio=1) == [
        {"content": "王五在北京", "result_list": [{"text": "王五", "start": 0, "end": 2}], "prompt": "人名"},
        {"content": "王五在北京", "result_list": [], "prompt": "地名"}]
