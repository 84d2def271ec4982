"""Past one machine: two backend replicas, a real Redis, and RQ workers (`make worker`), sharing storage.

The replicas share UIE_CHECKPOINT_DIR and UIE_DATA_DIR (in production: a shared volume) and the Redis
queue. Proven here: training requests arriving at both replicas at once never train one project twice at
the same time, both replicas serve the same model version after every training and every activation, and
both report the same jobs; pre-annotation (against a real Label Studio) is a queued job too, one per project,
and follows a worker's activating run. Two workers run, not one, so that the per-project locks are what keep
two runs apart, not the accident of a single worker doing one job at a time.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from rq import Queue

import corpus
from test_security import FakeLabelStudio
from conftest import TINY_TRAINING
from uie_backend import redis_jobs, redis_preannotation
from uie_backend.config import Settings
from uie_backend.jsonio import write_json
from uie_backend.labelstudio import Connection
from uie_backend.preannotation import Preannotator
from uie_backend.redis_jobs import RedisJobRunner
from uie_backend.redis_preannotation import QueuedPreannotator, RedisProjectLock
from uie_backend.training import TrainingRequest

from .backend_process import BackendProcess
from .conftest import debian_binary
from .labelstudio import REPO_ROOT, LabelStudio
from .processes import free_port, read_log, spawn_logged, stop_process_group, tail

pytestmark = pytest.mark.e2e

RQ = Path(sys.executable).parent / "rq"
PROJECT = 5
# a few epochs: the model's quality is not the point here, the coordination is; every version is served
# (long enough, ~10 s, for a second request to arrive while the first job trains). The fake Label Studio of
# some tests gets the pre-annotation their activations queue: it fails within seconds, not 2 minutes.
TRAINING = {**TINY_TRAINING, "UIE_TRAIN_EPOCHS": "30", "UIE_TRAIN_MIN_STEPS": "0",
            "UIE_ACTIVATION_POLICY": "always", "UIE_AUTO_TRAIN_EVERY": "4", "UIE_AUTO_TRAIN_DELAY": "0.5",
            "UIE_LABEL_STUDIO_RETRY_S": "3"}
QUEUES = [redis_jobs.QUEUE, redis_preannotation.QUEUE]  # as `make worker` takes them


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server (Debian's) on a free loopback port, with nothing persisted."""
    binary = debian_binary("redis-server", "redis-server")
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    log_path = folder / "redis.log"
    process = spawn_logged([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                            "--dir", str(folder)], log_path)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_process_group(process, 5)
                pytest.fail(f"redis-server did not start:\n{tail(read_log(log_path))}")
            time.sleep(0.1)
    yield url
    stop_process_group(process, 10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, redis_url, random_checkpoint) -> Iterator[tuple[list[BackendProcess], Path]]:
    """Two gunicorn replicas and two `rq worker`s over one shared folder; yields the replicas and that folder."""
    shared = tmp_path_factory.mktemp("shared")
    folders = {"UIE_CHECKPOINT_DIR": str(shared / "checkpoint"), "UIE_DATA_DIR": str(shared / "data"),
               "PPNLP_HOME": str(shared / "ppnlp"), "REDIS_URL": redis_url, **TRAINING}
    shutil.copytree(random_checkpoint, shared / "checkpoint" / "model_best")
    replicas: list[BackendProcess] = []
    workers: list[subprocess.Popen] = []
    try:
        replicas.append(BackendProcess.start(tmp_path_factory.mktemp("replica-a"), env=folders))
        replicas.append(BackendProcess.start(tmp_path_factory.mktemp("replica-b"), env=folders))
        for name in ("worker-1", "worker-2"):
            log_path = shared / f"{name}.log"
            env = BackendProcess.environment(shared / name, 0, folders)
            workers.append(spawn_logged([str(RQ), "worker", "--url", redis_url, "--name", name, *QUEUES],
                                        log_path, cwd=REPO_ROOT, env=env))
        yield replicas, shared
    finally:
        for worker in workers:
            stop_process_group(worker, 30)
        for replica in replicas:
            replica.stop()


def train(replica: BackendProcess) -> dict:
    tasks = corpus.annotated_tasks(16, seed=PROJECT)
    return replica.api("POST", "/train", json={"annotations": tasks, "label_config": corpus.LABEL_CONFIG,
                                               "project": PROJECT})


def served_version(replica: BackendProcess, project: int = PROJECT) -> str:
    answer = replica.api("POST", "/predict", json={"tasks": [{"data": {"text": "王五在深圳工作。"}}],
                                                   "label_config": corpus.LABEL_CONFIG, "project": project})
    return answer["results"][0]["model_version"]


def wait_for(replica: BackendProcess, condition, what: str, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = replica.training()
        if condition(status):
            return status
        time.sleep(0.1)
    pytest.fail(f"waited {timeout_s:.0f} s for {what}: {status}")


def wait_until_idle(replica: BackendProcess, shared: Path, timeout_s: float = 600) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = replica.training()
        if not status["running"] and not status["queued"]:
            return status
        time.sleep(0.5)
    logs = "\n".join(f"{p.name}:\n{tail(read_log(p))}" for p in sorted(shared.glob("worker-*.log")))
    pytest.fail(f"training still running after {timeout_s:.0f} s: {status}\n{logs}")


def test_replicas_never_train_a_project_twice_at_once_and_serve_the_same_version(cluster):
    (a, b), shared = cluster
    first = served_version(a)
    assert served_version(b) == first  # one registry: the model placed under replica A is B's too

    first_job = train(a)
    assert first_job["state"] == "queued" and not first_job.get("follow_up_queued"), first_job
    wait_for(a, lambda status: any(job["id"] == first_job["job"] and job["phase"] == "training"
                                   for job in status["running"]), "the first job to start training")
    # while it trains, "Start Training" at the other replica, then at the first again
    second_job, third_job = train(b), train(a)
    assert second_job["job"] != first_job["job"] and not second_job.get("follow_up_queued"), second_job
    assert third_job["job"] == second_job["job"] and third_job["follow_up_queued"], third_job  # joins the waiting one

    seen_waiting = False  # the second job, picked up by the idle worker, waits for the project's lock
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = a.training()
        seen_waiting |= any(job["id"] == second_job["job"] and job["phase"].startswith("waiting")
                            for job in status["running"])
        assert sum(job["phase"] == "training" for job in status["running"]) <= 1, status  # never two at once
        if not status["running"] and not status["queued"]:
            break
        time.sleep(0.2)
    assert seen_waiting, "the second job never waited for the lock: the test did not exercise it"
    status = wait_until_idle(a, shared)
    assert b.training()["recent"] == status["recent"]  # both replicas report the same jobs
    runs = [job for job in status["recent"] if job["project"] == str(PROJECT)]
    assert [job["id"] for job in runs] == [second_job["job"], first_job["job"]]  # newest first
    assert all(job["state"] == "succeeded" for job in runs), runs
    spans = sorted((job["started_at"], job["finished_at"]) for job in runs)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans

    newest = runs[0]["summary"]["version"]
    assert served_version(a) == served_version(b) == newest
    versions = f"/versions?project={PROJECT}"
    assert a.api("GET", versions)["versions"] == b.api("GET", versions)["versions"]
    assert served_version(a, PROJECT + 1) == served_version(b, PROJECT + 1) == first  # other projects: the base

    older = runs[1]["summary"]["version"]
    b.api("POST", f"/versions/{older}/activate?project={PROJECT}")  # a rollback at one replica...
    assert served_version(a) == served_version(b) == older  # ...is served by both


def test_start_training_at_one_replica_uses_what_label_studio_told_another_at_setup(cluster):
    """Label Studio's /setup (address, token) and its Start Training may reach different replicas."""
    (a, b), shared = cluster
    token = "f" * 40
    with FakeLabelStudio(status=200, body=corpus.annotated_tasks(6, seed=9)) as label_studio:
        a.api("POST", "/setup", json={"project": "9.1712345678", "schema": corpus.LABEL_CONFIG,
                                      "hostname": label_studio.url, "access_token": token})
        job = b.api("POST", "/webhook", json={"action": "START_TRAINING",
                                              "project": {"id": 9, "label_config": corpus.LABEL_CONFIG}})
        wait_until_idle(b, shared)
    finished = next(j for j in b.training()["recent"] if j["id"] == job["job"])
    assert finished["state"] == "succeeded", finished
    pulls = [r for r in label_studio.requests if "/api/projects/9/" in r["path"]]
    assert pulls and all(r["headers"]["Authorization"] == f"Token {token}" for r in pulls), label_studio.requests


def test_auto_training_counts_the_annotations_saved_through_every_replica(cluster):
    """Every 4th annotation starts a run: two saves reach replica A and two reach B, and B starts it."""
    (a, b), shared = cluster
    with FakeLabelStudio(status=200, body=corpus.annotated_tasks(6, seed=11)) as label_studio:
        a.api("POST", "/setup", json={"project": "11.1712345678", "schema": corpus.LABEL_CONFIG,
                                      "hostname": label_studio.url, "access_token": "e" * 40})
        event = {"action": "ANNOTATION_CREATED", "project": {"id": 11, "label_config": corpus.LABEL_CONFIG}}
        answers = [replica.api("POST", "/webhook", json=event)["status"] for replica in (a, a, b, b)]
        assert answers == ["counted", "counted", "counted", "auto-training scheduled"], answers
        wait_for(b, lambda status: any(job["project"] == "11" for job in status["recent"] + status["running"]
                                       + status["queued"]), "the auto-training run of project 11", timeout_s=30)
        wait_until_idle(b, shared)
    runs = [job for job in b.training()["recent"] if job["project"] == "11"]
    assert [job["state"] for job in runs] == ["succeeded"], runs


def test_a_waiting_claim_whose_job_vanished_does_not_block_the_project(redis_url, tmp_path):
    """A job deleted from Redis by hand (or expired) must not leave its project unable to train."""
    other_db = redis_url.rsplit("/", 1)[0] + "/1"  # no worker listens there: nothing runs what is queued
    runner = RedisJobRunner(Settings.from_env({"REDIS_URL": other_db, "UIE_DATA_DIR": str(tmp_path)}))
    runner.redis.set("uie:project:77:waiting-job", "a-job-that-is-gone")
    request = TrainingRequest(label_config=corpus.LABEL_CONFIG, project_id=77, tasks=corpus.annotated_tasks(2, seed=1))
    queued = runner.submit(request)
    assert queued["job"] != "a-job-that-is-gone" and not queued.get("follow_up_queued"), queued
    assert runner.submit(request) == {**queued, "follow_up_queued": True}  # the next request joins the new job
    assert [job["id"] for job in runner.status()["queued"]] == [queued["job"]]
    runner.redis.flushdb()


def test_a_job_a_worker_has_taken_but_not_yet_started_is_shown_running(redis_url, tmp_path):
    """RQ moves a job from the queue to an intermediate list, then registers it as started: in between
    it is in neither, and a status that missed it said "idle" while the job was about to train (CI saw it)."""
    other_db = redis_url.rsplit("/", 1)[0] + "/2"  # no worker listens there: the test plays the worker
    runner = RedisJobRunner(Settings.from_env({"REDIS_URL": other_db, "UIE_DATA_DIR": str(tmp_path)}))
    request = TrainingRequest(label_config=corpus.LABEL_CONFIG, project_id=78, tasks=corpus.annotated_tasks(2, seed=1))
    queued = runner.submit(request)
    runner.redis.lmove(runner.queue.key, runner.queue.intermediate_queue_key)  # what a worker's dequeue does
    status = runner.status()
    assert [job["id"] for job in status["running"]] == [queued["job"]] and not status["queued"], status
    assert not runner.wait_idle(timeout=0.5)
    runner.redis.flushdb()


def preannotated(replica: BackendProcess, redis_url: str, project_id: int, version: str,
                 timeout_s: float = 300) -> dict:
    """The project's job status once it succeeded with ``version`` and no pre-annotation job is left queued."""
    queue = Queue(redis_preannotation.QUEUE, connection=redis.Redis.from_url(redis_url))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        jobs = replica.api("GET", f"/preannotation?project={project_id}")["jobs"]
        idle = not queue.count and not queue.started_job_registry.get_job_ids()
        if idle and jobs and jobs[0]["state"] == "succeeded" and jobs[0]["version"] == version:
            return jobs[0]
        time.sleep(0.3)
    pytest.fail(f"project {project_id} not pre-annotated with {version} in {timeout_s:.0f} s: {jobs}")


def predictions_by_version(label_studio: LabelStudio, project_id: int) -> Counter:
    """(task, model_version) -> how many predictions of it the task holds."""
    return Counter((p["task"], p["model_version"]) for p in label_studio.list_predictions(project_id=project_id))


def test_pre_annotation_is_a_queued_job_one_per_project_that_follows_a_workers_training(cluster, redis_url,
                                                                                        label_studio):
    """Asked at both replicas at once, a project's tasks get one prediction each, by a worker; a worker's
    activating training run queues the job again for the new version. A real Label Studio 1.23."""
    (a, b), shared = cluster
    project_id = label_studio.create_project("replicas pre-annotate", corpus.LABEL_CONFIG)["id"]
    rng = random.Random(project_id)
    task_ids = label_studio.import_tasks(
        project_id, [{"text": corpus.sentence(rng.choice(corpus.TRAIN_TEMPLATES), rng)[0]} for _ in range(300)])
    label_studio.connect_ml_backend(project_id, a.url, title="uie")  # /setup reaches A: its token goes to Redis
    base = served_version(a, project_id)

    answers: list[dict] = []
    askers = [threading.Thread(target=lambda r=r: answers.append(r.api("POST", f"/preannotate?project={project_id}")))
              for r in (a, b)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join()
    assert all(answer["state"] == "queued" for answer in answers), answers  # queued for a worker, at both
    status = preannotated(b, redis_url, project_id, base)
    assert status["done"] == status["total"] == len(task_ids) or status["total"] == 0, status
    assert a.api("GET", f"/preannotation?project={project_id}") == b.api("GET", f"/preannotation?project={project_id}")
    queue = Queue(redis_preannotation.QUEUE, connection=redis.Redis.from_url(redis_url))
    ran = [queue.fetch_job(job_id) for job_id in queue.finished_job_registry.get_job_ids()]
    assert any(job.meta["project"] == str(project_id) for job in ran), ran  # by a worker, not a replica
    held = predictions_by_version(label_studio, project_id)
    assert set(held) == {(task, base) for task in task_ids} and set(held.values()) == {1}, held.most_common(3)

    annotated = corpus.annotated_tasks(16, seed=project_id)
    job = b.api("POST", "/train", json={"annotations": annotated, "label_config": corpus.LABEL_CONFIG,
                                        "project": project_id})
    run = b.wait_for_training(job["job"], timeout_s=600)
    assert run["state"] == "succeeded" and run["summary"]["activated"], run
    new = run["summary"]["version"]
    status = preannotated(a, redis_url, project_id, new)
    assert status["reason"] == f"version {new} activated" and status["done"] == len(task_ids), status
    held = predictions_by_version(label_studio, project_id)
    assert set(held) == {(task, v) for task in task_ids for v in (base, new)} and set(held.values()) == {1}


def test_one_pre_annotation_job_per_project_across_machines_and_a_dead_workers_job_shows_interrupted(redis_url,
                                                                                                     tmp_path):
    """The project lock lives in Redis (any machine's job sees it) and lapses with its holder; the status
    of a job whose lock is gone says ``interrupted``, the state a replica queues again."""
    other_db = redis_url.rsplit("/", 1)[0] + "/3"  # no worker listens there
    settings = Settings.from_env({"REDIS_URL": other_db, "UIE_DATA_DIR": str(tmp_path)})
    replica = QueuedPreannotator(settings, lambda _: None)
    (tmp_path / "preannotation").mkdir()
    write_json(tmp_path / "preannotation" / "12.json", {"job": "j", "project": 12, "state": "running", "started_at": 1})
    first, second = RedisProjectLock(replica.redis, 12), RedisProjectLock(redis.Redis.from_url(other_db), 12)
    assert first.acquire() and not second.acquire() and not second.is_free()
    assert replica.status_of(12)["state"] == "running" and replica.is_running(12)
    first.release()
    assert second.is_free() and replica.status_of(12)["state"] == "interrupted" and not replica.is_running(12)
    replica.redis.flushdb()


def test_a_running_pre_annotation_job_gives_way_to_a_queued_training_job(redis_url, tmp_path):
    """A worker takes training first, but only between jobs: a job pre-annotating a large project stops at its
    next page when a training job is queued, and is queued again after it."""
    other_db = redis_url.rsplit("/", 1)[0] + "/4"  # no worker listens there: nothing takes the training job
    settings = Settings.from_env({"REDIS_URL": other_db, "UIE_DATA_DIR": str(tmp_path)})
    connection = redis.Redis.from_url(other_db)
    jobs = Preannotator(settings, lambda _: None)
    done, yielded = threading.Event(), threading.Event()
    watcher = threading.Thread(target=redis_preannotation._yield_to_training, args=(jobs, connection, done, yielded))
    watcher.start()
    time.sleep(2 * redis_preannotation.YIELD_CHECK_S)
    assert not yielded.is_set() and not jobs._stop.is_set()  # nothing queued: the job goes on
    RedisJobRunner(settings).submit(TrainingRequest(label_config=corpus.LABEL_CONFIG, project_id=79,
                                                    tasks=corpus.annotated_tasks(2, seed=1)))
    watcher.join(timeout=3 * redis_preannotation.YIELD_CHECK_S)
    assert yielded.is_set() and jobs._stop.is_set()  # the job stops at its next page
    done.set()
    connection.flushdb()


def test_a_job_a_worker_of_several_queues_has_taken_is_not_idle(redis_url, tmp_path):
    """`make worker` listens to two queues, and RQ then takes a job with BLPOP: until the job starts it is in
    no list of RQ's, neither the queue nor the intermediate one (CI saw `/training` say idle meanwhile, and a
    test's wait for the run return before it began). Both kinds of job are still shown."""
    other_db = redis_url.rsplit("/", 1)[0] + "/5"  # no worker listens there: the test plays the worker
    settings = Settings.from_env({"REDIS_URL": other_db, "UIE_DATA_DIR": str(tmp_path)})
    runner = RedisJobRunner(settings)
    queued = runner.submit(TrainingRequest(label_config=corpus.LABEL_CONFIG, project_id=80,
                                           tasks=corpus.annotated_tasks(2, seed=1)))
    assert runner.redis.blpop([runner.queue.key], timeout=1)  # what a worker of several queues does
    assert [job["id"] for job in runner.status()["queued"]] == [queued["job"]], runner.status()
    assert not runner.wait_idle(timeout=0.5)

    replica = QueuedPreannotator(settings, lambda _: None)
    redis_preannotation.enqueue(replica.redis, 80, "test", Connection("http://label-studio", "t" * 40))
    assert replica.redis.blpop([replica.queue.key], timeout=1)
    assert replica.is_running(80) and not replica.wait_idle(timeout=0.5)
    runner.redis.flushdb()


def test_with_redis_down_serving_goes_on_and_training_requests_get_a_clear_503(cluster, redis_url):
    """(Last in this file: it shuts Redis down.)"""
    (a, _), _ = cluster
    redis.Redis.from_url(redis_url).shutdown(nosave=True)
    health = a.health()
    assert health["status"] == "UP" and health["training"] is None
    assert served_version(a)
    answer = requests.post(f"{a.url}/train", json={"annotations": corpus.annotated_tasks(2, seed=1),
                                                   "label_config": corpus.LABEL_CONFIG, "project": PROJECT}, timeout=30)
    assert answer.status_code == 503 and answer.json()["error"] == "training queue unavailable", answer.text
    assert "Redis" in answer.json()["detail"] and "127.0.0.1" not in answer.json()["detail"]
    # project 9's /setup is in Redis: unreadable now, which is a 503 too, not "connect the project" (a 400)
    answer = requests.post(f"{a.url}/preannotate?project=9", timeout=30)
    assert answer.status_code == 503 and "Redis" in answer.json()["detail"], answer.text
    assert a.api("GET", f"/versions?project={PROJECT}")["versions"]  # the registry is on disk, not in Redis
