"""The whole loop against a real Label Studio 1.23.2 and the backend served as `make serve` serves it.

Label Studio -> Connect Model -> Retrieve Predictions (untrained model) -> annotate 20 tasks -> Start
Training -> the backend pulls the annotations from Label Studio, fine-tunes and activates a new version of
the project's model -> Retrieve Predictions again: Label Studio now stores the new version's predictions,
which find the entities, in new tasks and, complete, in the annotated ones. Along the way: a second project
with other control names, served the base model throughout, and a screenshot of the labeling page with the
pre-annotations (docs/screenshots/labeling.png, shown in the README).

The backend starts from an *untrained* tiny UIE, so everything it finds at the end it learnt through
Label Studio. Each step's duration is printed as a table at the end, also under `make test`.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import corpus
from uie_backend.metrics import score_spans

from .backend_process import BackendProcess
from .labelstudio import REPO_ROOT, LabelStudio

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LABELS = ["人名", "地名", "组织", "时间", "产品", "价格", "天气"]
LABEL_CONFIG = ('<View><Labels name="label" toName="text">'
                + "".join(f'<Label value="{label}"/>' for label in LABELS)
                + '</Labels><Text name="text" value="$text"/></View>')
OTHER_NAMES_CONFIG = ('<View><Labels name="ner" toName="doc">'
                      + "".join(f'<Label value="{label}"/>' for label in LABELS)
                      + '</Labels><Text name="doc" value="$content"/></View>')

ANNOTATED = 20
NEW = 6
TRAINING_TIMEOUT_S = 480.0  # selection and refit: about 3 min here (1 min before the refit existed)
START_TRAINING_MAX_S = 5.0
# The README's picture is refreshed only on request (UPDATE_SCREENSHOTS=1 make test): a test run must not
# leave the working tree modified.
README_SCREENSHOT = REPO_ROOT / "docs" / "screenshots" / "labeling.png"

# Quality bars, both far above the untrained model's 0.0.
# - the tasks the annotators labelled (their stored predictions after training): the model must reproduce them.
SEEN_MIN_F1 = 0.8
# - the 6 sentences of templates no annotated task used: people are always found, places and organisations
#   in a context never seen only about half the time. Measured in-process on this setup (20 annotated tasks,
#   these 7 labels, TINY_TRAINING) over sets of 6 such sentences: 0.58-0.91 in 4 training runs on this data
#   (seed 3), 0.52-0.80 on two other seeds; mostly 0.6-0.8. The score moves with Label Studio's task ids
#   (they decide the train/dev split) and from run to run, so 0.8 would fail most runs; 0.4 still needs the
#   people plus some places or organisations.
NEW_MIN_F1 = 0.4

Span = tuple[str, int, int]


class Steps:
    """Wall time of each named step, printed as a table at the end (also when the test fails)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float]] = []

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.rows.append((name, time.monotonic() - started))

    def table(self) -> str:
        width = max(len(name) for name, _ in self.rows)
        lines = [f"{'step':<{width}}  seconds", f"{'-' * width}  -------"]
        lines += [f"{name:<{width}}  {seconds:7.1f}" for name, seconds in self.rows]
        lines.append(f"{'total':<{width}}  {sum(s for _, s in self.rows):7.1f}")
        return "\n".join(lines)


@pytest.fixture
def steps(capsys: pytest.CaptureFixture) -> Iterator[Steps]:
    """The step timer; its table goes to the terminal even when pytest captures output (`make test`)."""
    timer = Steps()
    yield timer
    if timer.rows:
        with capsys.disabled():
            print("\n\nend-to-end timings\n" + timer.table())


# ---- helpers -----------------------------------------------------------------------------------------


def spans_of(task: dict) -> list[Span]:
    """The (label, start, end) spans of a corpus task's annotation."""
    return [(r["value"]["labels"][0], r["value"]["start"], r["value"]["end"]) for r in task["annotations"][0]["result"]]


def check_regions(prediction: dict, text: str, from_name: str = "label", to_name: str = "text") -> list[Span]:
    """Every region of a stored prediction points at its own text, through the config's names; its spans."""
    spans = []
    for region in prediction["result"]:
        value = region["value"]
        assert (region["from_name"], region["to_name"], region["type"]) == (from_name, to_name, "labels"), region
        assert text[value["start"]:value["end"]] == value["text"], (text, region)
        assert len(value["labels"]) == 1 and value["labels"][0] in LABELS, region
        spans.append((value["labels"][0], value["start"], value["end"]))
    return spans


def predictions_by_task(label_studio: LabelStudio, project_id: int, version: str) -> dict[int, list[dict]]:
    """The project's stored predictions of one model version, by task id."""
    found: dict[int, list[dict]] = {}
    for prediction in label_studio.list_predictions(project_id=project_id):
        if prediction["model_version"] == version:
            found.setdefault(prediction["task"], []).append(prediction)
    return found


# ---- the scenario ------------------------------------------------------------------------------------


def test_label_studio_pre_annotates_trains_on_its_annotations_and_serves_the_new_model(
    label_studio: LabelStudio, uie_backend: BackendProcess, screenshot, steps: Steps, tmp_path: Path
):
    backend = uie_backend
    with steps("create project, import 26 tasks"):
        project = label_studio.create_project("e2e UIE loop", LABEL_CONFIG)
        pid = project["id"]
        annotated = corpus.annotated_tasks(ANNOTATED, seed=3)
        rng = random.Random(2026)
        new = [corpus.sentence(corpus.NEW_TEMPLATES[i % len(corpus.NEW_TEMPLATES)], rng) for i in range(NEW)]
        texts = [t["data"]["text"] for t in annotated] + [text for text, _ in new]
        task_ids = label_studio.import_tasks(pid, [{"text": text} for text in texts])
        assert len(task_ids) == ANNOTATED + NEW
        annotated_ids, new_ids = task_ids[:ANNOTATED], task_ids[ANNOTATED:]
        text_of = dict(zip(task_ids, texts))

    with steps("connect backend (POST /api/ml)"):
        ml = label_studio.connect_ml_backend(pid, backend.url)
        assert label_studio.get_ml_backend(ml["id"])["state"] == "CO"
        version_before = backend.setup(LABEL_CONFIG, pid)["model_version"]
        assert version_before not in ("", "none")
        assert backend.health()["model_version"] == version_before

    with steps("retrieve predictions, 26 tasks (untrained)"):
        answer = label_studio.retrieve_predictions(pid, task_ids)
        assert answer["processed_items"] == len(task_ids), answer

    with steps("check stored predictions"):
        stored = predictions_by_task(label_studio, pid, version_before)
        assert sorted(stored) == sorted(task_ids), f"tasks without a prediction: {set(task_ids) - set(stored)}"
        before = {tid: check_regions(preds[0], text_of[tid]) for tid, preds in stored.items() if len(preds) == 1}
        assert len(before) == len(task_ids), "a task holds more than one prediction of the same version"
        untrained = score_spans([spans for _, spans in new], [before[tid] for tid in new_ids])

    with steps("annotate 20 tasks through the API"):
        for tid, task in zip(annotated_ids, annotated):
            label_studio.create_annotation(tid, task["annotations"][0]["result"])
        exported = label_studio.export_tasks(pid)
        assert sorted(t["id"] for t in exported) == sorted(annotated_ids)
        status = backend.training()
        assert not status["is_training"], f"annotation events must not start training: {status}"
        jobs_before = {job["id"] for job in status["recent"] + status["running"]}

    with steps("press Start Training"):
        started = time.monotonic()
        label_studio.start_training(ml["id"])
        start_training_s = time.monotonic() - started
        assert start_training_s < START_TRAINING_MAX_S, f"Start Training took {start_training_s:.1f} s"
        status = backend.training()
        jobs = [job for job in status["running"] + status["recent"]
                if job["id"] not in jobs_before and job["project"] == str(pid)]
        assert len(jobs) == 1, status
        job_id = jobs[0]["id"]

    with steps("fine-tune (poll GET /training)"):
        job = backend.wait_for_training(job_id, TRAINING_TIMEOUT_S)
        assert job["state"] == "succeeded", f"{job}\n{(Path(job['dir']) / 'train.log').read_text()[-3000:]}"
        summary = job["summary"]
        # START_TRAINING carries no annotations: the job pulled them from Label Studio (hostname and token
        # that Label Studio sent to /setup) and keeps what it trained on
        assert summary["tasks"] == ANNOTATED, summary
        pulled = json.loads((Path(job["dir"]) / "tasks.json").read_text(encoding="utf-8"))
        assert sorted(t["id"] for t in pulled) == sorted(annotated_ids)
        assert summary["activated"] and summary["version"], summary
        version_after = backend.setup(LABEL_CONFIG, pid)["model_version"]
        assert version_after == summary["version"] != version_before
        assert backend.health()["model_version"] == version_before  # the base: other projects are served it

    with steps("retrieve predictions, 6 new tasks (trained)"):
        answer = label_studio.retrieve_predictions(pid, new_ids)
        assert answer["processed_items"] == NEW, answer
        stored = predictions_by_task(label_studio, pid, version_after)
        assert sorted(stored) == sorted(new_ids), f"tasks with a prediction of {version_after}: {sorted(stored)}"
        assert all(len(preds) == 1 for preds in stored.values()), stored
        after = {tid: check_regions(stored[tid][0], text_of[tid]) for tid in new_ids}
        trained = score_spans([spans for _, spans in new], [after[tid] for tid in new_ids])
        print(f"\n6 new sentences, untrained model {version_before}: F1 {untrained.overall.f1:.3f}; "
              f"trained {version_after}: F1 {trained.overall.f1:.3f}\n{trained.to_markdown()}")
        for (text, gold), tid in zip(new, new_ids):
            print(f"  {text}  expected {sorted(gold)}  predicted {sorted(after[tid])}")
        assert untrained.overall.f1 < 0.2
        assert trained.overall.f1 >= NEW_MIN_F1

    with steps("retrieve predictions, 20 annotated tasks (trained)"):
        # the model trained on every one of them; its stored predictions are its whole opinion
        answer = label_studio.retrieve_predictions(pid, annotated_ids)
        assert answer["processed_items"] == ANNOTATED, answer
        stored = predictions_by_task(label_studio, pid, version_after)
        predicted = [check_regions(stored[tid][0], text_of[tid]) for tid in annotated_ids]
        seen = score_spans([spans_of(t) for t in annotated], predicted)
        print(f"\nthe 20 annotated tasks, their stored predictions: F1 {seen.overall.f1:.3f}")
        assert seen.overall.f1 >= SEEN_MIN_F1, seen.to_markdown()

    with steps("second project: other names, the base model"):
        other = label_studio.create_project("e2e other names", OTHER_NAMES_CONFIG)
        other_ids = label_studio.import_tasks(other["id"], [{"content": text_of[tid]} for tid in new_ids])
        label_studio.connect_ml_backend(other["id"], backend.url, title="uie (ner/doc)")
        answer = label_studio.retrieve_predictions(other["id"], other_ids)
        assert answer["processed_items"] == len(other_ids), answer
        stored = predictions_by_task(label_studio, other["id"], version_before)  # not the other project's model
        assert sorted(stored) == sorted(other_ids)
        predicted = [check_regions(stored[tid][0], text_of[new_tid], "ner", "doc")
                     for tid, new_tid in zip(other_ids, new_ids)]
        assert predicted == [before[tid] for tid in new_ids]  # what the first project had before training

    with steps("screenshot of the labeling page"):
        # the task with the most regions among those predicted exactly right (the picture goes in the README)
        gold_of = {tid: sorted(spans) for tid, (_, spans) in zip(new_ids, new)}
        shown = max(new_ids, key=lambda tid: (sorted(after[tid]) == gold_of[tid], len(after[tid])))
        regions = len(after[shown])
        assert regions > 0
        ready = (f"(() => {{ const marks = document.querySelectorAll('.htx-highlight').length;"
                 f" const shown = document.body.innerText.includes({json.dumps(text_of[shown])});"
                 f" return {{ready: shown && marks >= {regions}, marks, shown}}; }})()")
        url = f"{label_studio.url}/projects/{pid}/data?task={shown}"
        shot = README_SCREENSHOT if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path / "labeling.png"
        page = screenshot(url, shot, ready_js=ready)
        assert page["marks"] >= regions
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"\nscreenshot of task {shown} ({regions} pre-annotated regions): {shot}")
