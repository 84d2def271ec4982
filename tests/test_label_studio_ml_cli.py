"""The tutorial's way of running a backend: `label-studio-ml init NAME --script my_ml_backend.py` + `start NAME`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import install_model
from corpus import LABEL_CONFIG

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_label_studio_ml_init_and_start_serve_predictions(tmp_path, backend_env, trained_checkpoint):
    install_model(trained_checkpoint, backend_env)
    venv_bin = Path(sys.executable).parent
    # `label-studio-ml start` runs `python NAME/_wsgi.py` from PATH, as a user's activated venv would provide.
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}"}
    init = subprocess.run([str(venv_bin / "label-studio-ml"), "init", "uie", "--script", str(REPO / "my_ml_backend.py"),
                           "--root-dir", str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    assert init.returncode == 0, init.stderr
    assert (tmp_path / "uie" / "my_ml_backend.py").is_file() and (tmp_path / "uie" / "_wsgi.py").is_file()

    port = free_port()
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([str(venv_bin / "label-studio-ml"), "start", "uie", "--root-dir", str(tmp_path),
                               "--port", str(port), "--host", "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT,
                              env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{url}/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.5)
        setup = requests.post(f"{url}/setup", json={"project": "1.1", "schema": LABEL_CONFIG}, timeout=30)
        assert setup.status_code == 200, setup.text
        tasks = [{"id": 1, "data": {"text": "王五昨天去了深圳出差。"}}, {"id": 2, "data": {"text": "李四在腾讯工作了三年。"}}]
        answer = requests.post(f"{url}/predict", json={"tasks": tasks, "project": "1.1", "label_config": LABEL_CONFIG},
                               timeout=60)
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert len(results) == 2
        assert ("人名", "王五") in {(r["value"]["labels"][0], r["value"]["text"]) for r in results[0]["result"]}
        assert ("组织", "腾讯") in {(r["value"]["labels"][0], r["value"]["text"]) for r in results[1]["result"]}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
