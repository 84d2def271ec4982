"""The backend's Label Studio client (uie_backend/labelstudio.py) against a real Label Studio 1.23.2:
pulling annotations with a legacy token and with a personal access token, and the messages a user gets
when the address or the token is wrong."""

from __future__ import annotations

import pytest

from uie_backend.labelstudio import Connection, LabelStudioError

from .labelstudio import LabelStudio
from .processes import free_port
from .test_labelstudio_harness import EMOJI_TEXT, LABEL_CONFIG, span

pytestmark = pytest.mark.e2e


@pytest.fixture
def annotated_project(label_studio: LabelStudio) -> int:
    project = label_studio.create_project("client pull", LABEL_CONFIG)
    task_ids = label_studio.import_tasks(project["id"], [{"data": {"text": EMOJI_TEXT}}, {"data": {"text": "无"}}])
    label_studio.create_annotation(task_ids[0], [span(EMOJI_TEXT, "张三", "人名")])
    return project["id"]


def pulled_spans(tasks: list[dict]) -> list:
    return [(t["data"]["text"], r["value"]["start"], r["value"]["end"], r["value"]["labels"])
            for t in tasks for a in t["annotations"] for r in a["result"]]


def test_legacy_token_pulls_the_annotated_tasks_with_code_point_offsets(label_studio, annotated_project):
    connection = Connection(label_studio.url, label_studio.token)
    assert not connection.is_personal_access_token
    assert pulled_spans(connection.annotated_tasks(annotated_project)) == [(EMOJI_TEXT, 3, 5, ["人名"])]


def test_personal_access_token_is_refreshed_into_bearer_access_tokens(label_studio, annotated_project):
    connection = Connection(label_studio.url, label_studio.create_personal_access_token())
    assert connection.is_personal_access_token
    assert pulled_spans(connection.annotated_tasks(annotated_project)) == [(EMOJI_TEXT, 3, 5, ["人名"])]
    first_access = connection._access
    connection._access_expires = 0  # as if 5 minutes had passed: the next call must refresh first
    assert pulled_spans(connection.annotated_tasks(annotated_project))
    assert connection._access and connection._access != first_access


def test_a_rejected_token_and_an_unreachable_server_give_messages_a_user_can_act_on(label_studio, annotated_project):
    with pytest.raises(LabelStudioError, match="refused the API token.*LABEL_STUDIO_API_KEY") as rejected:
        Connection(label_studio.url, "0" * 40).annotated_tasks(annotated_project)
    assert "0" * 40 not in str(rejected.value)
    with pytest.raises(LabelStudioError, match="refused the API token"):
        Connection(label_studio.url, "a.b.c").annotated_tasks(annotated_project)  # a bogus PAT
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(LabelStudioError, match=f"cannot reach Label Studio at {dead}.*LABEL_STUDIO_URL"):
        Connection(dead, label_studio.token).annotated_tasks(annotated_project)
