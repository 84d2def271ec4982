"""The paddle/paddlenlp import fix lives in one place; these tests say why it is needed and that it works."""

from __future__ import annotations

import subprocess
import sys


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_plain_import_of_paddlenlp_breaks_on_the_pinned_stack():
    """If this starts passing, a pin changed and uie_backend/paddle_env.py's import order may be dropped.

    The broken import fails in ways that vary between runs, all seen in CI: zlib.error, a segmentation fault
    (-11), or glibc aborting on "free(): invalid pointer" (-6). The interpreter dying by a signal or the zlib
    error both count; a clean import, or an ordinary Python exception, does not.
    """
    done = run("import paddlenlp")
    killed_by_signal = done.returncode < 0
    assert "zlib.error" in done.stderr or killed_by_signal, (done.returncode, done.stderr[-2000:])


def test_paddle_env_imports_paddlenlp_keeps_logging_and_skips_the_statistics_ping():
    done = run(
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        "from uie_backend import paddle_env\n"
        "env = paddle_env.load()\n"
        "import paddlenlp.taskflow.utils as u\n"
        "print(env.paddle.__version__, env.paddlenlp.__version__, logging.getLogger().level, u.DOWNLOAD_CHECK)\n"
        "print(paddle_env.set_device('auto'))\n")
    assert done.returncode == 0, done.stderr
    versions, device = done.stdout.split("\n")[:2]
    paddle_version, paddlenlp_version, root_level, ping_skipped = versions.split()
    assert paddle_version == "2.6.2" and paddlenlp_version.startswith("2.8.1")
    assert (root_level, ping_skipped) == ("20", "True")
    assert device == "cpu"  # this machine has no GPU; `auto` must not pick one


def test_asking_for_a_gpu_on_a_cpu_build_is_a_clear_error():
    done = run("from uie_backend import paddle_env; paddle_env.set_device('gpu')")
    assert done.returncode != 0 and "paddlepaddle-gpu" in done.stderr
