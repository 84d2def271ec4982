"""Label names the team chooses, prompts the model understands (issue 17): ``predicted_values`` on a ``<Label>``,
``<Relation>`` or ``<Choice>``, else ``UIE_LABEL_PROMPTS``, names what UIE is asked; predictions come back
under the value, and training teaches the prompt."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest

import corpus
from conftest import install_model
from my_ml_backend import UIEBackend
from uie_backend import label_prompts
from uie_backend.config import Settings
from uie_backend.data import DataError, doccano_to_examples, task_to_doccano
from uie_backend.labelconfig import LabelConfigError, parse_label_config
from uie_backend.predictor import Entity
from uie_backend.regions import _chosen, _relation_trees
from uie_backend.relation_schema import RelationSchema
from uie_backend.server import create_app
from uie_backend.training import TrainingRequest, run as run_training, uie_examples

TEXT = '<Text name="text" value="$text"/>'
CHINESE = {"PER": "人名", "LOC": "地名", "ORG": "组织"}


def labels_config(*labels: str) -> str:
    return f'<View>{TEXT}<Labels name="label" toName="text">{"".join(labels)}</Labels></View>'


MAPPED = labels_config(*(f'<Label value="{v}" predicted_values="{p}"/>' for v, p in CHINESE.items()))
BARE = labels_config(*(f'<Label value="{v}"/>' for v in CHINESE))
SCHEMA_CONFIG = f"""<View>{TEXT}
  <Labels name="label" toName="text"><Label value="Person" predicted_values="人物"/><Label value="Place"
    predicted_values="地点"/></Labels>
  <Relations><Relation value="father" predicted_values="父亲"/><Relation value="born in" predicted_values="出生地"/>
  </Relations>
  <Choices name="sentiment" prompt="情感倾向" toName="text"><Choice value="pos" predicted_values="正向"/>
    <Choice value="neg" predicted_values="负向"/></Choices>
</View>"""


def relabelled(tasks: list[dict], value_of: dict[str, str]) -> list[dict]:
    """corpus tasks labelled with the team's names (PER, not 人名)."""
    for task in tasks:
        for r in task["annotations"][0]["result"]:
            r["value"]["labels"] = [value_of[label] for label in r["value"]["labels"]]
    return tasks


# -- the config ---------------------------------------------------------------------------------------------


def test_predicted_values_names_the_prompt_of_labels_relations_and_choices():
    schema = parse_label_config(SCHEMA_CONFIG)
    assert schema.labels == ["Person", "Place"] and schema.prompts == ["人物", "地点"]
    assert (schema.prompt_of("Person"), schema.label_of("地点")) == ("人物", "Place")
    assert schema.predicates == ("father", "born in") and schema.predicate_prompts == ("父亲", "出生地")
    [sentiment] = schema.choices
    assert sentiment.options == ("pos", "neg") and sentiment.prompt() == "情感倾向[正向,负向]"
    assert schema.prompt_mapping() == {
        "labels": {"Person": "人物", "Place": "地点"}, "relations": {"father": "父亲", "born in": "出生地"},
        "choices": {"sentiment": {"prompt": "情感倾向[正向,负向]", "pos": "正向", "neg": "负向"}}}
    # scored prompts are reported under the values the team sees
    assert schema.prompt_kind("人物") == ("entity", "Person", None)
    assert schema.prompt_kind("张三的父亲") == ("relation", "father", None)
    assert schema.prompt_kind("情感倾向[正向,负向]:负向") == ("choice", "sentiment", "neg")


def test_without_the_attribute_nothing_changes_but_a_setting_can_map_values():
    plain = parse_label_config(BARE)
    assert plain.prompts == plain.labels == ["PER", "LOC", "ORG"] and not plain.renames
    mapped = parse_label_config(BARE, {"PER": "人名", "LOC": "地名"})
    assert mapped.prompts == ["人名", "地名", "ORG"] and mapped.labels == ["PER", "LOC", "ORG"]
    # the config's attribute wins over the setting
    config = labels_config('<Label value="PER" predicted_values="人物"/>')
    assert parse_label_config(config, CHINESE).prompts == ["人物"]
    # the setting maps relations and choices too
    choice = f'<View>{TEXT}<Choices name="s" toName="text"><Choice value="pos"/><Choice value="neg"/></Choices></View>'
    assert parse_label_config(choice, {"pos": "正向", "neg": "负向"}).choices[0].prompt() == "s[正向,负向]"


@pytest.mark.parametrize("config, named", [
    (labels_config('<Label value="PER" predicted_values="人名"/>', '<Label value="Person" predicted_values="人名"/>'),
     ["'PER'", "'Person'", "'人名'"]),
    (labels_config('<Label value="PER" predicted_values="人名"/>', '<Label value="人名"/>'), ["'PER'", "'人名'"]),
    (f'<View>{TEXT}<Labels name="a" toName="text"><Label value="PER" predicted_values="人名"/></Labels>'
     f'<Labels name="b" toName="text"><Label value="PER" predicted_values="人物"/></Labels></View>',
     ["'PER'", "'人名'", "'人物'"]),
    (f'<View>{TEXT}<Labels name="label" toName="text"><Label value="人物"/></Labels><Relations><Relation '
     'value="father" predicted_values="父亲"/><Relation value="dad" predicted_values="父亲"/></Relations></View>',
     ["'father'", "'dad'"]),
    (f'<View>{TEXT}<Choices name="s" toName="text"><Choice value="pos" predicted_values="正向"/>'
     '<Choice value="good" predicted_values="正向"/></Choices></View>', ["'pos'", "'good'"]),
])
def test_two_values_asked_as_one_prompt_are_refused_naming_both(config, named):
    with pytest.raises(LabelConfigError) as error:
        parse_label_config(config)
    assert all(name in str(error.value) for name in named), error.value


def test_two_values_mapped_to_one_prompt_by_the_setting_are_refused_too():
    with pytest.raises(LabelConfigError, match="'PER' and 'Person' are both asked as '人名'"):
        parse_label_config(labels_config('<Label value="PER"/>', '<Label value="Person"/>'),
                           {"PER": "人名", "Person": "人名"})


@pytest.mark.parametrize("tag, message", [
    ('<Label value="PER" predicted_values="  "/>', "predicted_values='  ' is empty once trimmed"),
    ('<Label value="PER" predicted_values=""/>', "predicted_values='' is empty once trimmed"),
    ('<Label value="  "/>', "its value is empty once trimmed"),
    ('<Label value="PER" predicted_values="人名,人物"/>', "lists several prompts"),
])
def test_a_label_that_is_no_prompt_is_refused_with_what_to_write(tag, message):
    with pytest.raises(LabelConfigError, match=message):
        parse_label_config(labels_config(tag))


def test_choice_prompts_keep_uie_s_classification_syntax():
    bad = f'<View>{TEXT}<Choices name="s" toName="text"><Choice value="pos" predicted_values="[正向]"/></Choices></View>'
    with pytest.raises(LabelConfigError, match="contains one of"):
        parse_label_config(bad)
    # a value that would break prefix[a,b] is fine once its prompt does not
    fine = f'<View>{TEXT}<Choices name="s" toName="text"><Choice value="a,b" predicted_values="ab"/></Choices></View>'
    assert parse_label_config(fine).choices[0].prompt() == "s[ab]"


def test_the_setting_is_a_json_object_or_a_file_and_bad_values_fail_at_start_up(tmp_path):
    assert Settings.from_env({"UIE_LABEL_PROMPTS": json.dumps(CHINESE)}).prompts() == CHINESE
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps({"PER": " 人名 "}), encoding="utf-8")
    assert Settings.from_env({"UIE_LABEL_PROMPTS": str(path)}).prompts() == {"PER": "人名"}
    assert Settings.from_env({}).prompts() == {}
    for raw, message in [('{"PER": ""}', "non-empty string"), ('{"PER": 1}', "non-empty string"),
                         ('["人名"]', "JSON object"), ("{PER", "not JSON"), (str(tmp_path / "none.json"), "read")]:
        with pytest.raises(ValueError, match=message):
            Settings.from_env({"UIE_LABEL_PROMPTS": raw})


# the team's values asked as the tiny model's prompts, globally for ORG; projects 3 and 4 ask PER and LOC swapped
PER_PROJECT = {"ORG": "组织", "projects": {"3": {"PER": "人名", "LOC": "地名"}, "4": {"PER": "地名", "LOC": "人名"}}}


def test_a_project_s_own_prompts_win_over_the_global_ones_value_by_value(tmp_path):
    settings = Settings.from_env({"UIE_LABEL_PROMPTS": json.dumps(PER_PROJECT)})
    assert settings.prompts() == {"ORG": "组织"}  # no project: the global entries only
    assert settings.prompts(3) == {"ORG": "组织", "PER": "人名", "LOC": "地名"}
    assert settings.prompts(4) == {"ORG": "组织", "PER": "地名", "LOC": "人名"}
    assert settings.prompts(5) == {"ORG": "组织"}
    overridden = {"PER": "人名", "projects": {" 3 ": {"PER": " 人物 "}}}
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(overridden), encoding="utf-8")
    settings = Settings.from_env({"UIE_LABEL_PROMPTS": str(path)})
    assert (settings.prompts(), settings.prompts(3)) == ({"PER": "人名"}, {"PER": "人物"})
    assert parse_label_config(BARE, settings.prompts(3)).prompts == ["人物", "LOC", "ORG"]


@pytest.mark.parametrize("mapping, message", [
    ({"projects": {"abc": {"PER": "人名"}}}, "\"projects\" key 'abc' is not a Label Studio project id"),
    ({"projects": {"3.5": {}}}, "'3.5' is not a Label Studio project id"),
    ({"projects": {"-3": {}}}, "'-3' is not a Label Studio project id"),
    ({"projects": {"3": {"PER": ""}}}, "project 3: the prompt of 'PER' must be a non-empty string, not ''"),
    ({"projects": {"3": {"PER": ["人名"]}}}, "project 3: the prompt of 'PER' must be a non-empty string"),
    ({"projects": {"3": ["人名"]}}, "project 3 must map label values to prompts"),
    ({"projects": {"3": {}, "03": {}}}, "project 3 is given twice"),
    ({"projects": ["3"]}, "\"projects\" must be an object of Label Studio project id"),
    ({"3": {"PER": "人名"}}, "the prompt of '3' must be a non-empty string.*go in {\"projects\": {\"3\""),
])
def test_a_per_project_mapping_of_the_wrong_shape_fails_at_start_up_saying_what_is_wrong(mapping, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env({"UIE_LABEL_PROMPTS": json.dumps(mapping)})


def test_a_project_s_training_data_is_taught_its_own_prompts(backend_env, monkeypatch):
    monkeypatch.setenv("UIE_LABEL_PROMPTS", json.dumps(PER_PROJECT))
    settings = Settings.from_env()
    unannotated = [{"id": 1, "data": {"text": "张三"}}]  # prompts.json is written before the data is checked
    for project, asked in [(3, {"PER": "人名", "LOC": "地名"}), (4, {"PER": "地名", "LOC": "人名"})]:
        run_dir = backend_env.data_dir / "runs" / str(project)
        with pytest.raises(DataError, match="no annotated tasks"):
            run_training(TrainingRequest(BARE, project_id=project, tasks=unannotated), settings, run_dir)
        mapping = json.loads((run_dir / "prompts.json").read_text(encoding="utf-8"))
        assert mapping["labels"] == {**asked, "ORG": "组织"}


# -- data and prediction, without a model -----------------------------------------------------------------


def test_training_data_speaks_prompts():
    schema = parse_label_config(SCHEMA_CONFIG)
    task = {"id": 1, "data": {"text": "张三的父亲是李四"}, "annotations": [{"result": [
        {"id": "a", "from_name": "label", "to_name": "text", "type": "labels",
         "value": {"start": 0, "end": 2, "labels": ["Person"]}},
        {"id": "b", "from_name": "label", "to_name": "text", "type": "labels",
         "value": {"start": 6, "end": 8, "labels": ["Person"]}},
        {"from_id": "a", "to_id": "b", "type": "relation", "direction": "right", "labels": ["father"]},
        {"id": "c", "from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}]}]}
    record = task_to_doccano(task, schema)
    assert {e["label"] for e in record["entities"]} == {"人物"}
    assert record["relations"][0]["type"] == "父亲" and record["label"] == ["正向"]
    prompts = {e["prompt"] for e in uie_examples([record], schema)}
    assert {"人物", "地点", "张三的父亲", "情感倾向[正向,负向]"} <= prompts
    assert not prompts & {"Person", "Place", "张三的father"} and not any("pos" in p for p in prompts)


def test_predicted_prompts_come_back_as_values():
    schema = parse_label_config(SCHEMA_CONFIG)
    learnt = RelationSchema({"人物": {"父亲": ["人物"], "出生地": ["地点"]}})  # the model's tree speaks prompts
    assert _relation_trees(schema, learnt, ask_all=False) == {("label", "Person"): {"父亲": ["Person"],
                                                                                    "出生地": ["Place"]}}
    answers = [Entity("情感倾向[正向,负向]", -5, -3, "负向", 0.9), Entity("情感倾向[正向,负向]", -8, -6, "正向", 0.2)]
    assert _chosen(schema.choices[0], answers) == [("neg", 0.9)]


# -- through the API ------------------------------------------------------------------------------------------


def spans_of(answer) -> list[set]:
    return [{(r["value"]["labels"][0], r["value"]["start"], r["value"]["end"]) for r in res["result"]}
            for res in answer.json["results"]]


def _predict_tasks() -> list[dict]:
    """One sentence of each corpus template: the tiny trained model finds people, places and organisations."""
    return [{"id": i, "data": {"text": text}} for i, (text, _) in
            enumerate(corpus.sentence(t, random.Random(3)) for t in corpus.TRAIN_TEMPLATES)]


def test_predict_asks_the_prompts_and_answers_with_the_values(backend_env, trained_checkpoint, monkeypatch):
    install_model(trained_checkpoint, backend_env)
    client = create_app(UIEBackend).test_client()
    tasks = _predict_tasks()
    chinese = spans_of(client.post("/predict", json={"tasks": tasks, "label_config": corpus.LABEL_CONFIG}))
    value_of = {p: v for v, p in CHINESE.items()}
    expected = [{(value_of[label], s, e) for label, s, e in spans} for spans in chinese]
    assert sum(map(len, expected)) >= 5  # the model finds things: the comparison means something
    assert spans_of(client.post("/predict", json={"tasks": tasks, "label_config": MAPPED})) == expected
    assert not any(spans_of(client.post("/predict", json={"tasks": tasks, "label_config": BARE})))  # asked "PER"
    # the setting, read by the app at each request's parse, maps the bare config the same way
    monkeypatch.setenv("UIE_LABEL_PROMPTS", json.dumps(CHINESE))
    client = create_app(UIEBackend).test_client()
    assert spans_of(client.post("/predict", json={"tasks": tasks, "label_config": BARE})) == expected


@pytest.mark.parametrize("config, named", [
    (labels_config('<Label value="PER" predicted_values="人名"/>', '<Label value="Person" predicted_values="人名"/>'),
     "'PER' and 'Person' are both asked as '人名'"),
    (labels_config('<Label value="PER" predicted_values=" "/>'), "empty once trimmed"),
    (labels_config('<Label value=" "/>'), "empty once trimmed"),
])
def test_a_bad_mapping_is_a_400_on_every_endpoint_that_takes_a_config(backend_env, config, named):
    client = create_app(UIEBackend).test_client()
    task = {"id": 1, "data": {"text": "张三"}}
    for path, body in [("/predict", {"tasks": [task], "label_config": config}), ("/setup", {"schema": config}),
                       ("/train", {"annotations": [task], "label_config": config, "project": 1})]:
        answer = client.post(path, json=body)
        assert answer.status_code == 400 and named in answer.json["detail"], (path, answer.json)


@pytest.mark.slow
def test_start_training_on_mapped_labels_teaches_the_prompts(backend_env, random_checkpoint):
    install_model(random_checkpoint, backend_env)
    app = create_app(UIEBackend)
    client = app.test_client()
    value_of = {p: v for v, p in CHINESE.items()}
    tasks = relabelled(corpus.annotated_tasks(8, seed=5), value_of)
    answer = client.post("/train", json={"annotations": tasks, "label_config": MAPPED, "project": 7})
    assert answer.status_code == 201, answer.json
    assert app.extensions["uie_jobs"].wait_idle(600)
    job = client.get("/training").json["recent"][0]
    assert job["state"] == "succeeded", job
    run = Path(job["dir"])
    # the data speaks prompts, and says so beside it
    assert {e["prompt"] for e in map(json.loads, (run / "train.txt").read_text().splitlines())} <= set(value_of)
    mapping = json.loads((run / "prompts.json").read_text(encoding="utf-8"))
    assert mapping["labels"] == CHINESE and "prompt" in mapping["about"]
    # the report names the values the team sees
    assert set(job["summary"]["dev_new"]["entities"]["per_label"]) <= set(CHINESE)
    assert "PER as 人名" in (run / "report.md").read_text(encoding="utf-8")
    # the model learnt the prompts: asked by value through the mapping, or by the Chinese names directly
    bare = [{"id": t["id"], "data": t["data"]} for t in tasks]
    gold = [{(r["value"]["labels"][0], r["value"]["start"], r["value"]["end"]) for r in t["annotations"][0]["result"]}
            for t in tasks]
    mapped = spans_of(client.post("/predict", json={"tasks": bare, "label_config": MAPPED, "project": 7}))
    assert sum(len(g & p) for g, p in zip(gold, mapped)) >= 0.8 * sum(map(len, gold))
    chinese = spans_of(client.post("/predict", json={"tasks": bare, "label_config": corpus.LABEL_CONFIG, "project": 7}))
    assert chinese == [{(CHINESE[label], s, e) for label, s, e in spans} for spans in mapped]


def test_each_project_is_asked_its_own_prompts_and_answered_with_the_values(backend_env, trained_checkpoint,
                                                                           monkeypatch):
    install_model(trained_checkpoint, backend_env)
    monkeypatch.setenv("UIE_LABEL_PROMPTS", json.dumps(PER_PROJECT))
    client = create_app(UIEBackend).test_client()
    tasks = _predict_tasks()

    def predicted(project):
        answer = client.post("/predict", json={"tasks": tasks, "label_config": BARE, "project": project})
        assert answer.status_code == 200, answer.json
        return spans_of(answer)

    chinese = spans_of(client.post("/predict", json={"tasks": tasks, "label_config": corpus.LABEL_CONFIG}))
    value_of = {"人名": "PER", "地名": "LOC", "组织": "ORG"}
    three = [{(value_of[label], s, e) for label, s, e in spans} for spans in chinese]
    assert sum(len({x for x in spans if x[0] != "ORG"}) for spans in three) >= 5  # PER and LOC are found
    assert predicted("3.1795936584") == three  # Label Studio's "id.timestamp"
    swapped = {"PER": "LOC", "LOC": "PER", "ORG": "ORG"}  # project 4 asks 地名 for PER: places come back as PER
    assert predicted(4) == [{(swapped[label], s, e) for label, s, e in spans} for spans in three]
    only_org = [{x for x in spans if x[0] == "ORG"} for spans in three]
    assert predicted(5) == only_org and predicted(None) == only_org  # no entry of its own: the global ones


def test_a_config_valid_only_with_its_project_s_prompts_is_served_to_that_project(backend_env, trained_checkpoint,
                                                                                 monkeypatch):
    install_model(trained_checkpoint, backend_env)
    # globally PER and LOC are both asked as 人名 (refused: one prompt for two values); project 3 asks LOC as 地名
    monkeypatch.setenv("UIE_LABEL_PROMPTS", json.dumps({"PER": "人名", "LOC": "人名",
                                                        "projects": {"3": {"LOC": "地名"}}}))
    client = create_app(UIEBackend).test_client()
    tasks = _predict_tasks()
    answer = client.post("/predict", json={"tasks": tasks, "label_config": BARE, "project": "3.1795936584"})
    assert answer.status_code == 200, answer.json
    assert {label for spans in spans_of(answer) for label, _, _ in spans} == {"PER", "LOC"}
    refused = client.post("/predict", json={"tasks": tasks, "label_config": BARE, "project": 4})
    assert refused.status_code == 400 and "'PER'" in refused.json["detail"] and "'LOC'" in refused.json["detail"]


def test_a_prompts_file_broken_while_the_server_runs_keeps_its_last_good_mapping(backend_env, trained_checkpoint,
                                                                                 monkeypatch, tmp_path, caplog):
    install_model(trained_checkpoint, backend_env)
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(CHINESE), encoding="utf-8")
    monkeypatch.setenv("UIE_LABEL_PROMPTS", str(path))
    client = create_app(UIEBackend).test_client()
    tasks = _predict_tasks()

    def predicted():
        answer = client.post("/predict", json={"tasks": tasks, "label_config": BARE, "project": 3})
        assert answer.status_code == 200, answer.json
        return spans_of(answer)

    good = predicted()
    assert sum(map(len, good)) >= 5
    caplog.set_level(logging.WARNING, logger="uie_backend.label_prompts")
    path.unlink()
    assert predicted() == good and predicted() == good
    path.write_text("{PER", encoding="utf-8")
    assert predicted() == good
    path.write_text(json.dumps({"PER": ""}), encoding="utf-8")
    assert predicted() == good
    warnings = [r.getMessage() for r in caplog.records if r.name == "uie_backend.label_prompts"]
    assert len(warnings) == 3, warnings  # one per new problem, not one per request
    assert "cannot be read" in warnings[0] and "not JSON" in warnings[1] and "non-empty string" in warnings[2]
    # fixed with another mapping: it applies from the next request
    path.write_text(json.dumps({**CHINESE, "PER": "地名", "LOC": "人名"}), encoding="utf-8")
    swapped = {"PER": "LOC", "LOC": "PER", "ORG": "ORG"}
    assert predicted() == [{(swapped[label], s, e) for label, s, e in spans} for spans in good]
    # a fresh start (a new process: nothing read well yet) on a broken file still fails loudly
    path.write_text("{PER", encoding="utf-8")
    monkeypatch.setattr(label_prompts, "_last_good", {})
    with pytest.raises(ValueError, match="not JSON"):
        Settings.from_env()
