"""Label names the team chooses (``predicted_values``, issue 17) through a real Label Studio 1.23.2.

A project labelled PER/LOC/ORG whose labels name the prompts 人名/地名/组织 must get, from "Retrieve
Predictions", the regions a project labelled 人名/地名/组织 gets, under its own label names: Label Studio keeps
the attribute in the stored config, sends that config to ``/predict``, and stores the predictions, which it
would drop were a label not one of the config's.
"""

from __future__ import annotations

import random

import pytest

import corpus

from .labelstudio import LabelStudio
from .test_preannotation import ServedApp, served  # noqa: F401 (served: fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MAPPED_CONFIG = """<View>
  <Labels name="label" toName="text">
    <Label value="PER" predicted_values="人名"/><Label value="LOC" predicted_values="地名"/>
    <Label value="ORG" predicted_values="组织"/>
  </Labels>
  <Text name="text" value="$text"/>
</View>"""
VALUE_OF = {"人名": "PER", "地名": "LOC", "组织": "ORG"}
TASKS = 30


def stored_regions(label_studio: LabelStudio, project_id: int, task_ids: list[int]) -> list[list[tuple]]:
    """Each task's stored regions as (start, end, text, label), in task order."""
    by_task: dict[int, list[tuple]] = {task_id: [] for task_id in task_ids}
    for prediction in label_studio.list_predictions(project_id=project_id):
        by_task[prediction["task"]] += [(r["value"]["start"], r["value"]["end"], r["value"]["text"],
                                         r["value"]["labels"][0]) for r in prediction["result"]]
    return [sorted(by_task[task_id]) for task_id in task_ids]


def predicted_in_label_studio(label_studio: LabelStudio, served: ServedApp, config: str, texts: list[str],  # noqa: F811
                              title: str) -> tuple[int, list[list[tuple]]]:
    project_id = label_studio.create_project(title, config)["id"]
    task_ids = label_studio.import_tasks(project_id, [{"text": text} for text in texts])
    label_studio.connect_ml_backend(project_id, served.url, title="uie")
    label_studio.retrieve_predictions(project_id, task_ids)
    return project_id, stored_regions(label_studio, project_id, task_ids)


def test_a_project_labelled_per_loc_org_with_predicted_values_gets_the_chinese_labels_regions_under_its_names(
        label_studio: LabelStudio, served: ServedApp):  # noqa: F811
    rng = random.Random(17)
    texts = [corpus.sentence(rng.choice(corpus.TRAIN_TEMPLATES + corpus.NEW_TEMPLATES), rng)[0] for _ in range(TASKS)]
    _, chinese = predicted_in_label_studio(label_studio, served, corpus.LABEL_CONFIG, texts, "prompts: chinese")
    mapped_id, mapped = predicted_in_label_studio(label_studio, served, MAPPED_CONFIG, texts, "prompts: mapped")

    found = sum(len(regions) for regions in chinese)
    assert found >= TASKS, f"the trained tiny model found only {found} regions in {TASKS} tasks"
    assert mapped == [sorted((s, e, t, VALUE_OF[label]) for s, e, t, label in regions) for regions in chinese]
    stored_config = label_studio.api("GET", f"/api/projects/{mapped_id}").json()["label_config"]
    assert 'predicted_values="人名"' in stored_config  # Label Studio keeps the attribute it was given
