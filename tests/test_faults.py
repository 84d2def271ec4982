"""Faults: the disk full while saving, Label Studio failing during the pull, a corrupt checkpoint, a crash
inside an activation. In every case the last good model keeps being served, the failure is reported, the
data a run fetched is kept, and the next run or activation works. (Training killed mid-run: see
test_training_jobs.py.)"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import corpus
from my_ml_backend import UIEBackend
from test_security import FakeLabelStudio
from uie_backend import checkpoint, jobs, lineages, paddle_env, predictor, registry
from uie_backend.server import create_app
from uie_backend.training import TrainingRequest

REPO = Path(__file__).resolve().parent.parent
TEXTS = ["王五昨天去了深圳出差。", "李四在腾讯工作了三年。"]
PROJECT = 3  # every test here works on this project's lineage


def lineage(settings) -> Path:
    return lineages.project_dir(settings, PROJECT)


def predict(client) -> dict:
    answer = client.post("/predict", json={"tasks": [{"id": i, "data": {"text": t}} for i, t in enumerate(TEXTS)],
                                           "label_config": corpus.LABEL_CONFIG, "project": f"{PROJECT}.1795936584"})
    assert answer.status_code == 200, answer.json
    assert len(answer.json["results"]) == len(TEXTS)
    return answer.json


def copy_as_version(model_dir: Path, out: Path, version: str) -> Path:
    """A copy of a checkpoint under another version id (a second model without training one)."""
    shutil.copytree(model_dir, out)
    meta = checkpoint.read_meta(out)
    (out / checkpoint.META_FILE).write_text(json.dumps({**meta, "version": version}), encoding="utf-8")
    return out


def registered(settings, *models: Path) -> list[str]:
    """Add the models to the project's lineage, activate the first; their version ids. The first is also the
    base (what runs fine-tune), unless there is one."""
    if not settings.model_best.exists():
        shutil.copytree(models[0], settings.model_best)
    ids = [registry.add(m, lineage(settings)).id for m in models]
    registry.activate(ids[0], lineage(settings))
    return ids


def real_versions(settings) -> list[str]:
    return sorted(p.name for p in registry.versions_dir(lineage(settings)).iterdir()
                  if not p.name.startswith("."))


def run_job_in_process(request, settings, job_dir: Path) -> dict:
    """jobs.execute (the body of a training job: training.run + result.json + train.log), in this process."""
    job_dir.mkdir(parents=True)
    level = logging.getLogger().level
    try:
        jobs.execute(request, settings, job_dir)
    except Exception:  # recorded in result.json, which is what is checked
        pass
    finally:
        logging.getLogger().setLevel(level)
    return json.loads((job_dir / "result.json").read_text(encoding="utf-8"))


# --- (a) disk full --------------------------------------------------------------------------------------


def test_disk_full_while_saving_a_checkpoint_fails_the_run_and_keeps_the_active_model(
        backend_env, random_checkpoint, tmp_path, monkeypatch):
    settings = dataclasses.replace(backend_env, train_epochs=2, train_min_steps=0)
    [old] = registered(settings, random_checkpoint)
    request = TrainingRequest(label_config=corpus.LABEL_CONFIG, project_id=PROJECT, tasks=corpus.annotated_tasks(20, seed=5))
    io = paddle_env.load().paddle.framework.io
    real_save = io._legacy_save

    def disk_full(obj, path, protocol=2):  # what a full disk does: some bytes land, then the write fails
        Path(path).write_bytes(b"\x80\x04partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # paddle.save writes a state dict through _legacy_save (save_pretrained binds paddle.save itself early)
    monkeypatch.setattr(io, "_legacy_save", disk_full)
    failed_dir = settings.data_dir / "runs" / "full"
    result = run_job_in_process(request, settings, failed_dir)
    monkeypatch.setattr(io, "_legacy_save", real_save)

    assert result["state"] == "failed" and result["error"].startswith("OSError: [Errno 28]"), result
    assert "No space left on device" in (failed_dir / "train.log").read_text(encoding="utf-8")
    assert (failed_dir / "tasks.json").exists() and (failed_dir / "train.txt").exists()  # the data is kept
    assert not [p.name for p in failed_dir.iterdir() if p.name.startswith((".model_best", "model_best"))]
    assert real_versions(settings) == [old]  # no version, whole or half
    assert registry.active_path(lineage(settings)) == (registry.versions_dir(lineage(settings)) / old)
    checkpoint.check(registry.active_path(lineage(settings)))
    assert predict(create_app(UIEBackend, settings).test_client())["model_version"] == old  # and it loads

    result = run_job_in_process(request, settings, settings.data_dir / "runs" / "next")  # the next run works
    assert result["state"] == "succeeded", result
    new = result["summary"]["version"]
    assert real_versions(settings) == sorted([old, new])
    checkpoint.check(registry.versions_dir(lineage(settings)) / new)


def test_disk_full_while_copying_into_the_registry_leaves_no_version_behind(backend_env, random_checkpoint,
                                                                            tmp_path, monkeypatch):
    [old] = registered(backend_env, random_checkpoint)
    other = copy_as_version(random_checkpoint, tmp_path / "other", "other-version")
    real_copy = shutil.copyfile

    def copy_until_full(src, dst, **kwargs):
        if os.fspath(src).endswith(".pdparams"):  # (copytree passes DirEntry objects)
            Path(dst).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_copy(src, dst, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", copy_until_full)  # under copytree's copy2
    with pytest.raises(OSError) as failure:
        registry.add(other, lineage(backend_env))
    monkeypatch.setattr(shutil, "copyfile", real_copy)
    assert "No space left on device" in str(failure.value)  # (copytree gathers it into a shutil.Error)
    assert real_versions(backend_env) == [old]
    assert [p.name for p in registry.versions_dir(lineage(backend_env)).iterdir()] == [old]  # nothing half-copied
    client = create_app(UIEBackend).test_client()
    assert [v for v in client.get(f"/versions?project={PROJECT}").json["versions"]] == [old]
    assert predict(client)["model_version"] == old
    assert registry.add(other, lineage(backend_env)).id == "other-version"  # the next copy works
    assert client.post(f"/versions/other-version/activate?project={PROJECT}").status_code == 200
    assert predict(client)["model_version"] == "other-version"


# --- (b) Label Studio failing during the pull --------------------------------------------------------------


@pytest.mark.parametrize("status, message", [
    (500, "Label Studio answered 500 to GET /api/projects/3/export"),
    (401, "refused the API token (401); set LABEL_STUDIO_API_KEY"),
    (403, "refused the API token (403)"),
])
def test_label_studio_failing_during_the_pull_fails_the_job_with_an_actionable_message(
        backend_env, random_checkpoint, status, message):
    [old] = registered(backend_env, random_checkpoint)
    app = create_app(UIEBackend)
    client = app.test_client()
    token = "feedc0de" * 5
    with FakeLabelStudio(status=status, body={"detail": "server trouble"}) as label_studio:
        client.post("/setup", json={"project": "3.1", "schema": corpus.LABEL_CONFIG, "hostname": label_studio.url,
                                    "access_token": token})
        assert client.post("/webhook", json={"action": "START_TRAINING", "project": {
            "id": 3, "label_config": corpus.LABEL_CONFIG}}).status_code == 201
        assert predict(client)["model_version"] == old  # serving goes on meanwhile
        assert app.extensions["uie_jobs"].wait_idle(180)
    assert [r["path"].split("?")[0] for r in label_studio.requests] == ["/api/projects/3/export"]
    job = client.get("/training").json["recent"][0]
    assert job["state"] == "failed" and message in job["error"], job["error"]
    assert token not in json.dumps(job)
    job_dir = Path(job["dir"])
    assert job_dir.is_dir() and (job_dir / "train.log").read_text(encoding="utf-8")
    assert message in (job_dir / "train.log").read_text(encoding="utf-8")
    assert predict(client)["model_version"] == old
    assert client.get(f"/versions?project={PROJECT}").json["versions"] == [old]


def test_annotations_pulled_for_a_run_that_then_fails_are_kept(backend_env, random_checkpoint):
    """Label Studio answers, but nothing in the export is usable: the job fails, the export stays in its folder."""
    [old] = registered(backend_env, random_checkpoint)
    app = create_app(UIEBackend)
    client = app.test_client()
    exported = corpus.annotated_tasks(6, seed=2)
    for task in exported:  # every annotation cancelled (skipped): nothing to train on
        for annotation in task["annotations"]:
            annotation["was_cancelled"] = True
    with FakeLabelStudio(status=200, body=exported) as label_studio:
        client.post("/setup", json={"project": "3.1", "schema": corpus.LABEL_CONFIG, "hostname": label_studio.url,
                                    "access_token": "t" * 40})
        client.post("/webhook", json={"action": "START_TRAINING", "project": {
            "id": 3, "label_config": corpus.LABEL_CONFIG}})
        assert app.extensions["uie_jobs"].wait_idle(180)
    job = client.get("/training").json["recent"][0]
    assert job["state"] == "failed" and job["error"].startswith("DataError"), job["error"]
    assert json.loads((Path(job["dir"]) / "tasks.json").read_text(encoding="utf-8")) == exported
    assert predict(client)["model_version"] == old


# --- (c) a corrupt checkpoint -------------------------------------------------------------------------------


@contextlib.contextmanager
def another_process():
    """Requests made inside run as in a second server process: one that has not loaded any model yet. The
    loaded model is per process (module state in ``predictor``), so that state is set aside meanwhile."""
    saved = dict(predictor._loaded), dict(predictor._serving), dict(predictor._failed)
    for state in (predictor._loaded, predictor._serving, predictor._failed):
        state.clear()
    try:
        yield
    finally:
        for state, kept in zip((predictor._loaded, predictor._serving, predictor._failed), saved):
            state.clear()
            state.update(kept)


def test_a_corrupt_active_checkpoint_never_gives_a_500_and_activating_a_good_version_recovers(
        backend_env, random_checkpoint, tmp_path):
    good = copy_as_version(random_checkpoint, tmp_path / "good", "good-version")
    bad, good_id = registered(backend_env, random_checkpoint, good)
    client = create_app(UIEBackend).test_client()
    assert predict(client)["model_version"] == bad
    weights = registry.versions_dir(lineage(backend_env)) / bad / "model_state.pdparams"
    one_text = {"tasks": [{"data": {"text": TEXTS[0]}}], "label_config": corpus.LABEL_CONFIG, "project": PROJECT}

    with open(weights, "r+b") as f:  # truncated while the server runs
        f.truncate(100)
    later = time.time() + 5  # (file times may be coarse): the weights are newer than the static export
    os.utime(weights, (later, later))
    assert predict(client)["model_version"] == bad  # the loaded model goes on serving
    with another_process():
        answer = create_app(UIEBackend).test_client().post("/predict", json=one_text)
    # the stale static export is not used: the new weights are read, fail, and the answer is a clear 503
    assert answer.status_code == 503 and "could not load" in answer.json["detail"], answer.json

    weights.unlink()  # deleted while the server runs
    assert predict(client)["model_version"] == bad
    with another_process():
        fresh = create_app(UIEBackend).test_client()
        answer = fresh.post("/predict", json=one_text)
        assert answer.status_code == 503 and "model_state.pdparams" in answer.json["detail"], answer.json
        assert fresh.get("/health").status_code == 200 and fresh.get(f"/versions?project={PROJECT}").status_code == 200
        assert fresh.post(f"/versions/{good_id}/activate?project={PROJECT}").status_code == 200
        assert predict(fresh)["model_version"] == good_id
        assert fresh.post(f"/versions/{bad}/activate?project={PROJECT}").status_code == 404  # an incomplete version is not activated
    assert predict(client)["model_version"] == good_id  # the long-running process follows too


# --- (d) killed while activating ----------------------------------------------------------------------------


def test_what_a_crash_inside_activate_leaves_behind_does_not_disturb_serving(backend_env, random_checkpoint,
                                                                              tmp_path):
    v2 = copy_as_version(random_checkpoint, tmp_path / "v2", "v2-version")
    v1, v2_id = registered(backend_env, random_checkpoint, v2)
    ckpt = lineage(backend_env)
    # between os.symlink and os.replace: a stray link; mid-copy in registry.add: a partial staging dir
    os.symlink(os.path.relpath(registry.versions_dir(ckpt) / v2_id, ckpt), ckpt / f".model_best.4242.{time.time_ns()}")
    staging = registry.versions_dir(ckpt) / ".incoming-v3-version.x1y2z3"
    staging.mkdir()
    shutil.copy2(random_checkpoint / "config.json", staging)
    (ckpt / ".model_best.lock").touch()

    client = create_app(UIEBackend).test_client()
    assert client.get("/health").status_code == 200
    assert predict(client)["model_version"] == v1
    assert sorted(client.get(f"/versions?project={PROJECT}").json["versions"]) == sorted([v1, v2_id])
    assert client.post(f"/versions/{v2_id}/activate?project={PROJECT}").status_code == 200
    assert predict(client)["model_version"] == v2_id
    assert client.post(f"/versions/{v1}/activate?project={PROJECT}").status_code == 200
    assert predict(client)["model_version"] == v1


def test_killing_a_process_at_any_instant_of_activate_leaves_a_whole_active_model(backend_env, random_checkpoint,
                                                                                   tmp_path):
    v2 = copy_as_version(random_checkpoint, tmp_path / "v2", "v2-version")
    ids = registered(backend_env, random_checkpoint, v2)
    script = textwrap.dedent(f"""
        import itertools, sys
        from uie_backend import registry
        print("ready", flush=True)
        for version in itertools.cycle({ids!r}):
            registry.activate(version, {str(lineage(backend_env))!r})
    """)
    rng = random.Random(0)
    for _ in range(6):
        flipper = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
        assert flipper.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        os.kill(flipper.pid, signal.SIGKILL)
        flipper.wait(timeout=30)
        flipper.stdout.close()
        active = registry.active_path(lineage(backend_env))
        assert active is not None and active.name in ids and checkpoint.is_complete(active)
        listed = registry.list_versions(lineage(backend_env))
        assert sorted(v.id for v in listed) == sorted(ids) and sum(v.active for v in listed) == 1
    client = create_app(UIEBackend).test_client()
    for version in ids:  # and the next activation, through the API, works
        assert client.post(f"/versions/{version}/activate?project={PROJECT}").status_code == 200
        assert predict(client)["model_version"] == version
