"""What Label Studio 1.23.2 does with predictions written through its API: the behaviours the background
pre-annotation job (uie_backend/preannotation.py) is built on, pinned against a real server, so that an
upgrade of Label Studio that changes one of them fails here first. docs/preannotation.md explains each."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from .labelstudio import LabelStudio, LabelStudioError
from .test_labelstudio_harness import LABEL_CONFIG, StubBackend, span, stub_backend  # noqa: F401 (fixture)

pytestmark = pytest.mark.e2e

TEXT = "张三去了北京出差。"


def prediction(task_id: int, version: str, score: float, region: dict | None = None) -> dict:
    return {"task": task_id, "model_version": version, "score": score,
            "result": [region or span(TEXT, "张三", "人名")]}


def lacking(version: str, after: int = 0) -> dict:
    """The data manager's query for the tasks with no prediction of ``version``, past task id ``after``."""
    return {"filters": {"conjunction": "and", "items": [
        {"filter": "filter:tasks:predictions_model_versions", "operator": "not_contains", "type": "List",
         "value": [version]},
        {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": after}]},
        "ordering": ["tasks:id"]}


def listed(label_studio: LabelStudio, project_id: int, query: dict, page_size: int = 100) -> list[dict]:
    return label_studio.api("GET", "/api/tasks", params={"project": project_id, "page": 1, "page_size": page_size,
                                                         "query": json.dumps(query)}).json()["tasks"]


@pytest.fixture
def project_with_backend(label_studio: LabelStudio, stub_backend: StubBackend) -> tuple[int, list[int]]:  # noqa: F811
    """A project of 4 tasks with a backend connected as "uie", as a user connects one."""
    project_id = label_studio.create_project("predictions api", LABEL_CONFIG)["id"]
    task_ids = label_studio.import_tasks(project_id, [{"text": TEXT}] * 4)
    label_studio.connect_ml_backend(project_id, stub_backend.url, title="uie")
    return project_id, task_ids


def selected_version(label_studio: LabelStudio, project_id: int) -> str:
    return label_studio.api("GET", f"/api/projects/{project_id}").json()["model_version"]


def test_connecting_a_backend_selects_its_title_and_bulk_imports_leave_the_selection_alone(
        label_studio: LabelStudio, project_with_backend):
    project_id, task_ids = project_with_backend
    assert selected_version(label_studio, project_id) == "uie"  # the backend's title, not a model version
    answer = label_studio.api("POST", f"/api/projects/{project_id}/import/predictions",
                              json=[prediction(t, "v1", 0.5) for t in task_ids[:2]]).json()
    assert answer == {"created": 2}
    assert selected_version(label_studio, project_id) == "uie"


def test_a_bulk_import_skips_an_invalid_prediction_silently_and_stores_a_repeat_twice(
        label_studio: LabelStudio, project_with_backend):
    project_id, task_ids = project_with_backend
    invalid = prediction(task_ids[1], "v1", 0.5, {**span(TEXT, "北京", "地名"), "from_name": "no-such-control"})
    answer = label_studio.api("POST", f"/api/projects/{project_id}/import/predictions",
                              json=[prediction(task_ids[0], "v1", 0.5), invalid]).json()
    assert answer == {"created": 1}  # 201 all the same: only the count tells
    assert label_studio.list_predictions(task_id=task_ids[1]) == []
    label_studio.api("POST", f"/api/projects/{project_id}/import/predictions",
                     json=[prediction(task_ids[0], "v1", 0.5)])
    assert [p["model_version"] for p in label_studio.list_predictions(task_id=task_ids[0])] == ["v1", "v1"]
    with pytest.raises(LabelStudioError, match="-> 400"):  # a task of no such project refuses the whole request
        label_studio.api("POST", f"/api/projects/{project_id}/import/predictions",
                         json=[prediction(task_ids[2], "v1", 0.5), prediction(10 ** 9, "v1", 0.5)])
    assert label_studio.list_predictions(task_id=task_ids[2]) == []


def test_the_tasks_lacking_a_version_are_one_data_manager_query_whose_value_must_be_a_list(
        label_studio: LabelStudio, project_with_backend):
    project_id, task_ids = project_with_backend
    label_studio.api("POST", f"/api/projects/{project_id}/import/predictions",
                     json=[prediction(task_ids[0], "v1", 0.5), prediction(task_ids[2], "v0", 0.5)])
    assert [t["id"] for t in listed(label_studio, project_id, lacking("v1"))] == [task_ids[1], task_ids[2], task_ids[3]]
    assert [t["id"] for t in listed(label_studio, project_id, lacking("v1", after=task_ids[2]))] == [task_ids[3]]
    assert listed(label_studio, project_id, lacking("v1"))[0]["data"] == {"text": TEXT}
    as_string = lacking("v1")
    as_string["filters"]["items"][0]["value"] = "v1"  # iterated per character: "v" also matches v0
    assert [t["id"] for t in listed(label_studio, project_id, as_string)] == [task_ids[1], task_ids[3]]


def test_prediction_score_ordering_works_only_once_the_project_selects_a_version(
        label_studio: LabelStudio, project_with_backend):
    project_id, task_ids = project_with_backend
    scores = dict(zip(task_ids, (0.9, 0.2, 0.7, 0.4)))
    label_studio.api("POST", f"/api/projects/{project_id}/import/predictions",
                     json=[prediction(t, "v1", s) for t, s in scores.items()])
    by_score = {"ordering": ["tasks:predictions_score"]}
    assert {t["predictions_score"] for t in listed(label_studio, project_id, by_score)} == {None}  # "uie" selected
    with pytest.raises(LabelStudioError, match="Model version doesn't exist"):
        label_studio.api("PATCH", f"/api/projects/{project_id}", json={"model_version": "v2"})  # nothing stored of v2
    label_studio.api("PATCH", f"/api/projects/{project_id}", json={"model_version": "v1"})
    ordered = listed(label_studio, project_id, by_score)
    assert [t["id"] for t in ordered] == sorted(scores, key=scores.get)
    assert [t["predictions_score"] for t in ordered] == sorted(scores.values())


def test_the_labeling_page_shows_the_newest_prediction_unless_the_project_selects_a_version(
        label_studio: LabelStudio, project_with_backend, stub_backend: StubBackend,  # noqa: F811
        screenshot: Callable[..., dict], tmp_path):
    project_id, task_ids = project_with_backend
    task_id = task_ids[0]
    label_studio.api("POST", f"/api/projects/{project_id}/import/predictions",
                     json=[prediction(task_id, "v1", 0.5, span(TEXT, "张三", "人名"))])
    label_studio.api("POST", f"/api/projects/{project_id}/import/predictions",
                     json=[prediction(task_id, "v2", 0.5, span(TEXT, "北京", "地名"))])
    ready = (f"(() => {{ const marks = [...document.querySelectorAll('.htx-highlight')].map(m => m.innerText);"
             f" return {{ready: document.body.innerText.includes({json.dumps(TEXT)}) && marks.length > 0, marks}}; }})()")
    url = f"{label_studio.url}/projects/{project_id}/data?task={task_id}"
    predict_calls = len(stub_backend.bodies("/predict"))
    assert screenshot(url, tmp_path / "live.png", ready_js=ready)["marks"] == ["北京"]  # "uie" selected: the newest
    label_studio.api("PATCH", f"/api/projects/{project_id}", json={"model_version": "v1"})
    assert screenshot(url, tmp_path / "v1.png", ready_js=ready)["marks"] == ["张三"]
    # a task that holds any prediction is never sent to the backend when opened
    assert len(stub_backend.bodies("/predict")) == predict_calls
