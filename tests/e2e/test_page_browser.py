"""The status page in a real browser, against the backend as `make serve` runs it, after it trained twice.

No Label Studio here: the page reads what the backend wrote, and two runs through the backend's own
``POST /train`` write exactly that (versions, run directories, reports). The test compares what headless
Chromium shows (the SVG points' values, the per-label table) with the runs' report.json, waits for the live
jobs list that page.js fills from ``GET /training``, rolls back by clicking the button and the confirmation,
and checks ``GET /versions`` afterwards. Its screenshot is the README's (docs/screenshots/page.png, refreshed
with UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import corpus
from conftest import TINY_TRAINING  # tests/conftest.py

from .backend_process import BackendProcess
from .conftest import browser_page
from .labelstudio import REPO_ROOT

pytestmark = [pytest.mark.slow]

PROJECT = 7
README_SCREENSHOT = REPO_ROOT / "docs" / "screenshots" / "page.png"
# The base knows the corpus's 人名, 地名 and 组织; the project calls two of them by new names, which the base
# has never been asked: their curves start low and rise within a few epochs (seconds per run), 组织 stays
# high. `always`: the second run is served whatever its score, so there is something to roll back from.
RENAMED = {"人名": "人物", "地名": "城市"}
LABEL_CONFIG = corpus.LABEL_CONFIG.replace('"人名"', '"人物"').replace('"地名"', '"城市"')
TRAINING = {**TINY_TRAINING, "UIE_TRAIN_EPOCHS": "8", "UIE_TRAIN_MIN_STEPS": "0", "UIE_ACTIVATION_POLICY": "always",
            "UIE_PREANNOTATE": "false"}

CHART_VALUES_JS = """(() => {
  const charts = [...document.querySelectorAll('svg.chart')].map(svg => Object.fromEntries(
    [...svg.querySelectorAll('g[data-series]')].map(g => [g.dataset.series,
      [...g.querySelectorAll('circle')].map(c => [Number(c.dataset.x), Number(c.dataset.y)])])));
  const labels = Object.fromEntries([...document.querySelectorAll('#labels tbody tr')].map(tr =>
    [tr.dataset.label, [...tr.querySelectorAll('td.num')].map(td => td.textContent.trim())]));
  const jobs = [...document.querySelectorAll('#jobs .job.training')].map(d => d.textContent);
  return {ready: document.getElementById('jobs').dataset.loaded === 'true' && jobs.length === 2,
          charts, labels, jobs, served: document.getElementById('served').textContent};
})()"""


def project_tasks(count: int, seed: int) -> list[dict]:
    """Corpus tasks annotated with the project's label names."""
    tasks = corpus.annotated_tasks(count, seed=seed)
    for result in (r for t in tasks for a in t["annotations"] for r in a["result"]):
        result["value"]["labels"] = [RENAMED.get(label, label) for label in result["value"]["labels"]]
    return tasks


def train(backend: BackendProcess, tasks: int, seed: int) -> dict:
    """One run through POST /train; its report.json."""
    job = backend.api("POST", "/train", json={"annotations": project_tasks(tasks, seed=seed),
                                              "label_config": LABEL_CONFIG, "project": PROJECT})
    finished = backend.wait_for_training(job["job"], timeout_s=600)
    assert finished["state"] == "succeeded", finished
    return json.loads((backend.data_dir / "runs" / job["job"] / "report.json").read_text(encoding="utf-8"))


def test_the_page_shows_what_two_runs_learnt_and_rolls_back(chromium: str, trained_checkpoint: Path,
                                                            tmp_path: Path):
    backend = BackendProcess.start(tmp_path / "backend", model=trained_checkpoint, env=TRAINING)
    try:
        first, second = train(backend, 12, seed=5), train(backend, 30, seed=6)
        url = f"{backend.url}/projects/{PROJECT}"
        shot = README_SCREENSHOT if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path / "page.png"
        (tmp_path / "chromium").mkdir()
        with browser_page(chromium, url, {}, tmp_path / "chromium", size=(1200, 1250)) as page:
            shown = page.wait_until(CHART_VALUES_JS, timeout_s=30)
            page.screenshot(shot)

            versions, epochs = shown["charts"][:2]
            assert [y for _, y in versions["dev F1"]] == pytest.approx(
                [first["dev_new"]["overall"]["f1"], second["dev_new"]["overall"]["f1"]], abs=1e-5)
            assert [y for _, y in versions["tasks"]] == [first["tasks"], second["tasks"]] == [12, 30]
            for series, key in (("dev F1", "dev_f1"), ("loss", "loss")):
                assert [x for x, _ in epochs[series]] == pytest.approx([h["epoch"] for h in second["history"]])
                assert [y for _, y in epochs[series]] == pytest.approx([h[key] for h in second["history"]], rel=1e-5)
            assert len(second["history"]) >= 8  # one point per epoch at least
            assert set(shown["labels"]) == set(second["dev_new"]["per_label"])
            for label, cells in shown["labels"].items():
                before, after = second["dev_active"]["per_label"][label], second["dev_new"]["per_label"][label]
                assert cells[:6] == [f"{s[k]:.4f}" for s in (before, after) for k in ("precision", "recall", "f1")]
            assert shown["served"] == second["version"]
            assert all("succeeded" in job for job in shown["jobs"]), shown["jobs"]

            page.evaluate(f"document.querySelector('tr[data-version=\"{first['version']}\"] button.rollback').click()")
            page.wait_loaded()
            assert "Yes, serve" in page.evaluate("document.querySelector('#confirm button').textContent")
            page.evaluate("document.querySelector('#confirm button').click()")
            page.wait_loaded()
            assert page.evaluate("document.getElementById('served').textContent") == first["version"]
        listed = backend.api("GET", f"/versions?project={PROJECT}")
        assert [v["version"] for v in listed["details"] if v["active"]] == [first["version"]]
        assert listed["model_version"] == first["version"]
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        backend.stop()
