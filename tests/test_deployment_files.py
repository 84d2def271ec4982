"""The Dockerfile and docker-compose.yml, checked statically (Docker cannot run here) and against the README's
commands, gunicorn's settings and the backend's own settings, so they cannot drift apart."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from uie_backend.config import Settings

REPO = Path(__file__).resolve().parent.parent
SERVE = ["gunicorn", "--config", "gunicorn.conf.py", "_wsgi:app"]
GUNICORN_VARS = set(re.findall(r"os\.environ\.get\(['\"](\w+)['\"]", (REPO / "gunicorn.conf.py").read_text()))
SETTINGS_VARS = {f.metadata["env"] for f in dataclasses.fields(Settings)}
VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def instructions(dockerfile, name: str) -> list[str]:
    return [args for instruction, args in dockerfile if instruction == name]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def default_port() -> int:
    """The port gunicorn.conf.py binds when nothing is set (what the container runs)."""
    source = (REPO / "gunicorn.conf.py").read_text()
    return int(re.search(r"environ\.get\(['\"]PORT['\"],\s*['\"](\d+)['\"]\)", source).group(1))


def test_compose_parses_with_label_studio_and_the_backend_and_no_redis(compose):
    assert set(compose["services"]) == {"label-studio", "backend"}
    assert not any("redis" in json.dumps(service).lower() for service in compose["services"].values())
    assert compose["services"]["backend"]["build"] == "."
    assert "label-studio" in compose["services"]["backend"]["depends_on"]
    named = {v.split(":", 1)[0] for s in compose["services"].values() for v in s.get("volumes", [])
             if not v.startswith((".", "/"))}
    assert named <= set(compose.get("volumes") or {}), "every named volume is declared"


def test_label_studio_is_pinned_to_the_version_the_end_to_end_tests_run(compose):
    tested = re.search(r"^VERSION=(\S+)", (REPO / "scripts" / "install_label_studio.sh").read_text(), re.M).group(1)
    assert compose["services"]["label-studio"]["image"] == f"heartexlabs/label-studio:{tested}"


def test_ports_agree_with_gunicorns_default_and_the_dockerfile(compose, dockerfile):
    port = default_port()
    assert port == 9090
    assert instructions(dockerfile, "EXPOSE") == [str(port)]
    backend = compose["services"]["backend"]
    assert [p.rsplit(":", 1)[1] for p in backend["ports"]] == [str(port)]
    assert "PORT" not in environment(backend) and "HOST" not in environment(backend)
    assert f"127.0.0.1:{port}/health" in " ".join(backend["healthcheck"]["test"])
    assert "8080:8080" in compose["services"]["label-studio"]["ports"]
    assert f"http://localhost:{port}" in (REPO / "README.md").read_text(encoding="utf-8")


def test_the_container_runs_the_readmes_serve_command(dockerfile):
    """`make serve` (README) runs the Makefile's gunicorn line; the image runs the same, minus the venv."""
    assert json.loads(instructions(dockerfile, "CMD")[-1]) == SERVE
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^serve:.*\n\t(.+)$", makefile, re.M).group(1)
    argv = [word for word in shlex.split(recipe) if "=" not in word]
    assert [Path(argv[0]).name] + argv[1:] == SERVE
    assert "make serve" in (REPO / "README.md").read_text(encoding="utf-8")
    assert " ".join(SERVE) in (REPO / "_wsgi.py").read_text()


def test_the_image_installs_the_lock_without_resolving_and_runs_as_a_non_root_user(dockerfile):
    runs = " ".join(instructions(dockerfile, "RUN"))
    assert re.search(r"pip install (.* )?--no-deps (.* )?-r requirements\.lock", runs)
    assert "requirements.txt" not in runs
    users = instructions(dockerfile, "USER")
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith(("root:", "0:"))
    order = [instruction for instruction, _ in dockerfile]
    assert order.index("USER") < order.index("CMD") and "USER" not in order[order.index("CMD"):]
    assert not any(name.startswith(("BASIC_AUTH", "LABEL_STUDIO_API_KEY")) for name in " ".join(
        instructions(dockerfile, "ENV")).split()), "no credentials baked into the image"


def test_the_build_context_leaves_out_local_models_data_and_virtual_environments():
    ignored = (REPO / ".dockerignore").read_text().split()
    for pattern in (".venv", ".git", "checkpoint/*", "data/*"):
        assert pattern in ignored


def test_every_backend_variable_is_a_setting_the_backend_knows(compose):
    env = environment(compose["services"]["backend"])
    unknown = set(env) - SETTINGS_VARS - GUNICORN_VARS
    assert not unknown, f"not settings of the backend: {unknown}"
    assert GUNICORN_VARS - SETTINGS_VARS == {"HOST", "PORT", "WORKERS", "THREADS", "TIMEOUT", "LOG_LEVEL"}
    assert env["WORKERS"] == "1"  # one process: the job queue and the model live in it


def test_the_backend_volumes_are_where_its_settings_point(compose, dockerfile):
    backend = compose["services"]["backend"]
    env = environment(backend)
    targets = {v.split(":")[1] for v in backend["volumes"]}
    ppnlp_home = re.search(r"PPNLP_HOME=(\S+)", " ".join(instructions(dockerfile, "ENV"))).group(1)
    assert targets == {env["UIE_CHECKPOINT_DIR"], env["UIE_DATA_DIR"], ppnlp_home}
    workdir = instructions(dockerfile, "WORKDIR")[-1]
    assert env["UIE_CHECKPOINT_DIR"] == f"{workdir}/checkpoint" and env["UIE_DATA_DIR"] == f"{workdir}/data"
    assert f"{workdir}/checkpoint" in " ".join(instructions(dockerfile, "RUN"))  # made and owned by the user


def test_label_studio_may_call_the_backend_and_the_backend_pulls_from_it_with_its_token(compose):
    label_studio = environment(compose["services"]["label-studio"])
    backend = environment(compose["services"]["backend"])
    assert label_studio["ML_BLOCK_LOCAL_IP"] == "false" and label_studio["SSRF_PROTECTION_ENABLED"] == "false"
    assert label_studio["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    url = urlsplit(backend["LABEL_STUDIO_URL"])
    assert url.hostname == "label-studio" and str(url.port) == compose["services"]["label-studio"]["ports"][0].split(":")[-1]
    assert VARIABLE.search(backend["LABEL_STUDIO_API_KEY"]).group(1) == \
        VARIABLE.search(label_studio["LABEL_STUDIO_USER_TOKEN"]).group(1)


def test_there_are_no_default_credentials(compose):
    label_studio = environment(compose["services"]["label-studio"])
    backend = environment(compose["services"]["backend"])
    for name in ("LABEL_STUDIO_USERNAME", "LABEL_STUDIO_PASSWORD", "LABEL_STUDIO_USER_TOKEN"):
        assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", label_studio[name]), f"{name} must be required, not defaulted"
    assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", backend["LABEL_STUDIO_API_KEY"])
    assert backend["BASIC_AUTH_USER"] == "${BASIC_AUTH_USER:-}" and backend["BASIC_AUTH_PASS"] == "${BASIC_AUTH_PASS:-}"


def test_every_default_in_compose_is_a_valid_value_for_the_backend(compose):
    """Compose's `${X:-default}`s, resolved, must start the backend (Settings.from_env validates them)."""
    env = {k: VARIABLE.sub(lambda m: (re.search(r":-([^}]*)", m.group(0)) or [None, "x"])[1], v)
           for k, v in environment(compose["services"]["backend"]).items()}
    Settings.from_env({k: v for k, v in env.items() if k in SETTINGS_VARS})
    assert env["LOG_LEVEL"].isupper()  # _wsgi.py gives it to logging.basicConfig, which knows only upper case
    int(env["THREADS"]), int(env["TIMEOUT"])


# --- docker-compose.redis.yml: the queue, a worker, several server processes -------------------------------


@pytest.fixture(scope="module")
def with_redis() -> dict:
    return yaml.safe_load((REPO / "docker-compose.redis.yml").read_text(encoding="utf-8"))


def test_the_redis_override_adds_a_pinned_redis_and_a_worker_on_the_backends_queue(with_redis, compose):
    from uie_backend import redis_jobs, redis_preannotation

    services = with_redis["services"]
    assert set(services) == {"redis", "backend", "worker"}
    assert re.fullmatch(r"redis:\d+\.\d+[\w.-]*", services["redis"]["image"])  # pinned, never `latest`
    assert "ports" not in services["redis"]  # private to the compose network
    url = environment(services["backend"])["REDIS_URL"]
    assert urlsplit(url).hostname == "redis" and environment(services["worker"])["REDIS_URL"] == url
    command = services["worker"]["command"]
    assert command[:2] == ["rq", "worker"] and command[command.index("--url") + 1] == url
    queues = [redis_jobs.QUEUE, redis_preannotation.QUEUE]  # training first: RQ takes them in this order
    assert command[-2:] == queues
    makefile = (REPO / "Makefile").read_text()
    assert f"rq worker --url \"$(REDIS_URL)\" {' '.join(queues)}" in makefile  # `make worker`, the same queues
    assert services["worker"]["image"] == compose["services"]["backend"]["image"]


def test_the_worker_trains_into_the_folders_the_backend_serves_from(with_redis, compose):
    worker, backend = with_redis["services"]["worker"], compose["services"]["backend"]
    assert sorted(worker["volumes"]) == sorted(backend["volumes"])
    worker_env, backend_env = environment(worker), environment(backend)
    for name in ("UIE_CHECKPOINT_DIR", "UIE_DATA_DIR"):
        assert worker_env[name] == backend_env[name]
    assert set(worker_env) <= SETTINGS_VARS, set(worker_env) - SETTINGS_VARS
    assert int(VARIABLE.sub(lambda m: m.group(0).split(":-")[1].rstrip("}"),
                            environment(with_redis["services"]["backend"])["WORKERS"])) > 1
    assert set(with_redis.get("volumes") or {}) >= {v.split(":", 1)[0] for v in with_redis["services"]["redis"]["volumes"]}


@pytest.mark.parametrize("redis_url, refused", [("", True), ("redis://redis:6379/0", False)])
def test_several_gunicorn_workers_are_refused_without_a_shared_training_queue(redis_url, refused, monkeypatch):
    """Each worker without Redis would keep its own job queue, and two could train one project at once."""
    monkeypatch.setenv("WORKERS", "3")
    monkeypatch.setenv("REDIS_URL", redis_url)
    source = (REPO / "gunicorn.conf.py").read_text()
    if refused:
        with pytest.raises(SystemExit, match="WORKERS=3 needs REDIS_URL"):
            exec(compile(source, "gunicorn.conf.py", "exec"), {})
    else:
        settings: dict = {}
        exec(compile(source, "gunicorn.conf.py", "exec"), settings)
        assert settings["workers"] == 3
