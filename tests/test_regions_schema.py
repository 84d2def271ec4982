"""The second stage of a prediction, from first-stage regions and the model's answers to the result Label
Studio gets: which predicates are asked, which regions a relation joins, which options are chosen."""

from __future__ import annotations

from uie_backend.labelconfig import parse_label_config
from uie_backend.predictor import Entity
from uie_backend.regions import _chosen, _relation_trees, _relations, region
from uie_backend.relation_schema import RelationSchema, learn

CONFIG = """<View><Text name="text" value="$text"/>
  <Relations><Relation value="父亲"/><Relation value="出生地"/><Relation value="校长"/></Relations>
  <Labels name="label" toName="text"><Label value="人物"/><Label value="地点"/><Label value="学校"/></Labels>
  <Choices name="sentiment" prompt="情感倾向" toName="text"><Choice value="正向"/><Choice value="负向"/></Choices>
  <Choices name="tags" toName="text" choice="multiple"><Choice value="家庭"/><Choice value="教育"/></Choices>
</View>"""
SCHEMA = parse_label_config(CONFIG)
[CONTROL] = SCHEMA.spans
TEXT = "张三的父亲是李四。张三出生于北京，后来张三在北京大学读书。"


def entity_region(label: str, text: str, nth: int = 0) -> tuple[dict, object]:
    start = -1
    for _ in range(nth + 1):
        start = TEXT.index(text, start + 1)
    return region(CONTROL, Entity(label, start, start + len(text), text, 0.9)), CONTROL


def test_no_relations_are_asked_of_a_model_that_never_learnt_them_unless_a_setting_says_so():
    assert _relation_trees(SCHEMA, None, ask_all=False) == {}
    every = _relation_trees(SCHEMA, None, ask_all=True)
    assert every[("label", "人物")] == {"父亲": None, "出生地": None, "校长": None}  # object label unknown
    assert set(every) == {("label", "人物"), ("label", "地点"), ("label", "学校")}


def test_a_learnt_tree_asks_only_its_predicates_within_the_config():
    learnt = RelationSchema({"人物": {"父亲": ["人物"], "出生地": ["地点", "学校"], "配偶": ["人物"]},
                             "学校": {"校长": ["校长"]}})
    trees = _relation_trees(SCHEMA, learnt, ask_all=True)  # learnt wins over the setting
    # 配偶 is not in this config; 学校's 校长 joins a label 校长 this config lacks: nothing to ask
    assert trees == {("label", "人物"): {"父亲": ["人物"], "出生地": ["地点", "学校"]}}


def test_a_relation_joins_the_nearest_occurrence_of_its_subject_and_creates_its_object_region():
    regions = [entity_region("人物", "张三", 0), entity_region("人物", "李四"), entity_region("人物", "张三", 1),
               entity_region("人物", "张三", 2)]
    beijing = TEXT.index("北京")
    key = ("relation", 0, CONTROL, "张三", "人物", "出生地", ("地点",))
    answers = [Entity("张三的出生地", beijing, beijing + 2, "北京", 0.8)]
    out = _relations(key, answers, regions, known=set())
    new_region, relation = out
    assert new_region["value"] == {"start": beijing, "end": beijing + 2, "text": "北京", "labels": ["地点"]}
    second = regions[2][0]  # 张三 just before 出生于北京, not the first or the last 张三
    assert relation == {"from_id": second["id"], "to_id": new_region["id"], "type": "relation",
                        "direction": "right", "labels": ["出生地"]}
    assert regions[-1][0] is new_region  # a later relation to 北京 points at the same region


def test_an_answer_on_a_found_region_points_at_it_and_unknown_or_excluded_objects_are_left_out():
    regions = [entity_region("人物", "张三", 0), entity_region("人物", "李四")]
    lisi = regions[1][0]
    father = _relations(("relation", 0, CONTROL, "张三", "人物", "父亲", ("人物",)),
                        [Entity("张三的父亲", lisi["value"]["start"], lisi["value"]["end"], "李四", 0.7)], regions, set())
    assert father == [{"from_id": regions[0][0]["id"], "to_id": lisi["id"], "type": "relation",
                       "direction": "right", "labels": ["父亲"]}]
    beijing = TEXT.index("北京")
    answer = [Entity("张三的出生地", beijing, beijing + 2, "北京", 0.8)]
    assert _relations(("relation", 0, CONTROL, "张三", "人物", "出生地", ()), answer, regions, set()) == []
    annotated = {("text", beijing, beijing + 2)}  # an interactive request where the annotator has that span
    assert _relations(("relation", 0, CONTROL, "张三", "人物", "出生地", ("地点",)), answer, regions, annotated) == []
    # the model's answer to 张三的父亲 is a region labelled 地点: 父亲 was learnt to join a 人物, so no relation
    place = regions + [entity_region("地点", "北京")]
    assert _relations(("relation", 0, CONTROL, "张三", "人物", "父亲", ("人物",)), answer, place, set()) == []
    # nothing learnt (UIE_ASK_ALL_PREDICATES): any region found at the span is the object, none is created
    assert _relations(("relation", 0, CONTROL, "张三", "人物", "父亲", None), answer, place, set())[0]["to_id"] == place[-1][0]["id"]


def test_a_span_found_under_two_labels_hangs_a_predicate_only_on_the_label_that_takes_it():
    lisi = entity_region("人物", "李四")[0]
    as_place, as_person = entity_region("地点", "张三", 0), entity_region("人物", "张三", 0)
    answer = [Entity("张三的父亲", lisi["value"]["start"], lisi["value"]["end"], "李四", 0.7)]
    for regions in ([as_place, as_person, (lisi, CONTROL)], [as_person, as_place, (lisi, CONTROL)]):
        [relation] = _relations(("relation", 0, CONTROL, "张三", "人物", "父亲", ("人物",)), answer, regions, set())
        assert relation["from_id"] == as_person[0]["id"] != as_place[0]["id"]
    # asked of a 学校 subject: no region of that label holds 张三, so there is nothing to hang it on
    assert _relations(("relation", 0, CONTROL, "张三", "学校", "父亲", ("人物",)), answer,
                      [as_place, as_person, (lisi, CONTROL)], set()) == []


def test_a_single_choice_is_the_best_option_and_a_multiple_one_every_option_found():
    sentiment, tags = SCHEMA.text_choices
    answers = [Entity("p", -7, -5, "负向", 0.6), Entity("p", -4, -2, "正向", 0.9), Entity("p", 3, 5, "北京", 0.99)]
    assert _chosen(sentiment, answers) == [("正向", 0.9)]
    assert _chosen(tags, [Entity("p", -7, -5, "家庭", 0.7), Entity("p", -4, -2, "教育", 0.6)]) == [
        ("家庭", 0.7), ("教育", 0.6)]
    assert _chosen(sentiment, []) == []


def test_the_tree_learnt_from_annotations():
    records = [{"text": "张三的父亲是李四，裁员", "entities": [
        {"id": 0, "start_offset": 0, "end_offset": 2, "label": "人物"},
        {"id": 1, "start_offset": 6, "end_offset": 8, "label": "人物##正向"},
        {"id": 2, "start_offset": 9, "end_offset": 11, "label": "裁员"},
        {"id": 3, "start_offset": 0, "end_offset": 2, "label": "裁员方"}],
        "relations": [{"id": 0, "from_id": 0, "to_id": 1, "type": "父亲"},
                      {"id": 1, "from_id": 2, "to_id": 3, "type": "裁员方"}]}]
    tree = learn(records)
    assert tree.predicates == {"人物": {"父亲": ["人物"]}, "裁员": {"裁员方": ["裁员方"]}}
    assert tree.objects_only == {"裁员方"}  # an event role: found through its trigger, never asked alone
    # a label named like a predicate and never annotated alone (the role of an event nobody annotated yet) is
    # not asked alone either; one annotated alone (人物 as a subject) or named like no predicate is
    assert tree.first_stage(["人物", "裁员", "裁员方", "震中", "地点"], ["父亲", "裁员方", "震中"]) == ["人物", "裁员", "地点"]
    assert RelationSchema.from_dict(tree.to_dict()) == tree
    assert RelationSchema.from_dict({"predicates": {"人物": {"父亲": "人物"}}}).predicates == {"人物": {"父亲": ["人物"]}}
