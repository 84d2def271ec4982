"""What every benchmark here shares: models of a given size, Chinese tasks, a median timer, the backend
under gunicorn, markdown tables and the machine description.

Nothing is downloaded: models are randomly initialised with the real UIE vocabulary (speed depends on the
shape, not on the weights' values), texts are generated from templates, and every file goes to a temp dir.
The machine these run on is usually shared, so every figure is a median over repeats and every comparison
is measured side by side, in one run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the package, and tests/corpus.py

import corpus  # noqa: E402
from uie_backend.config import EMBEDDED_MODEL  # noqa: E402,F401  (re-exported: every script's --model default)

# ---- models -------------------------------------------------------------------------------------

# name -> (layers, hidden size, attention heads); "embedded" is models/uie-zh-small's shape (the embedded model
# before issue 16), "small" that of models/uie-zh-medium, embedded since (the names keep RESULTS.md's commands
# valid), "base" uie-base's
SIZES = {"tiny": (2, 64, 2), "embedded": (3, 128, 2), "small": (4, 256, 4), "base": (12, 768, 12)}


def size_name(size: str) -> str:
    layers, hidden, _ = SIZES[size]
    return f"{size} ({layers}×{hidden})"


def build_model(size: str, checkpoint_dir: Path, hit_rate: float = 0.02) -> Path:
    """A random UIE of ``size`` written as ``<checkpoint_dir>/model_best`` (what the backend serves).

    Untouched random pointer heads put about half of all tokens over the 0.5 threshold: ~170 regions per
    40-character task, so decoding and JSON would dominate every timing. The heads' biases are shifted so
    that only ``hit_rate`` of the content tokens pass: 2–4 regions per short task (the tables show it), like a
    trained model on these texts. The forward pass costs the same either way.
    """
    from uie_backend import checkpoint, trainer

    layers, hidden, heads = SIZES[size]
    target = Path(checkpoint_dir) / "model_best"
    checkpoint.build_random(target, hidden_size=hidden, num_layers=layers, num_heads=heads)
    model, tokenizer = checkpoint.load(target)
    model.eval()
    items = [trainer.encode({"content": text, "prompt": label, "result_list": []}, tokenizer, 512)
             for text in short_texts(16, seed=99) for label in LABELS]
    start_prob, end_prob = trainer.dygraph_forward(model)(items)
    for head, prob in ((model.linear_start, start_prob), (model.linear_end, end_prob)):
        content = np.concatenate([p[:len(e.offsets)][[o != (0, 0) for o in e.offsets]] for p, e in zip(prob, items)])
        logits = np.log(content) - np.log1p(-content)
        head.bias.set_value(head.bias.numpy() - np.quantile(logits, 1 - hit_rate).astype("float32"))
    checkpoint.save(model, tokenizer, target, {"source": f"random-init {size}, pointer hit rate {hit_rate}"})
    return target


def backend_env(home: Path) -> dict[str, str]:
    """The backend's settings for a model in ``<home>/checkpoint``: CPU, no fallback model, all folders in ``home``."""
    return {"UIE_CHECKPOINT_DIR": str(home / "checkpoint"), "UIE_DATA_DIR": str(home / "data"),
            "PPNLP_HOME": str(home / "ppnlp"), "UIE_DEVICE": "cpu", "UIE_MODEL": ""}


@contextmanager
def temp_home(prefix: str = "uie-bench-") -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def use_in_process(home: Path) -> None:
    """Point this process's backend settings at ``home`` (UIEBackend reads them from the environment)."""
    for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "BASIC_AUTH_USER", "BASIC_AUTH_PASS"):
        os.environ.pop(name, None)
    os.environ.update(backend_env(home))


# ---- data ---------------------------------------------------------------------------------------

LABELS = ["人名", "地名", "组织", "时间", "产品", "价格", "天气"]
LABEL_CONFIG = ('<View><Labels name="label" toName="text">'
                + "".join(f'<Label value="{label}"/>' for label in LABELS)
                + '</Labels><Text name="text" value="$text"/></View>')

_POOLS = {"人名": corpus.PEOPLE, "地名": corpus.PLACES, "组织": corpus.ORGS,
          "时间": ["明天上午", "下周三", "今年五月", "昨天晚上", "周末"],
          "产品": ["新手机", "笔记本电脑", "电动汽车", "智能手表", "耳机"],
          "价格": ["三千元", "199元", "两万块", "八折优惠价", "五百多元"],
          "天气": ["小雨", "晴天", "大风", "雷阵雨", "多云"]}
_CLAUSES = ["{人名}{时间}要去{地名}参加{组织}的发布会", "听说{地名}{时间}有{天气}",
            "{组织}推出的{产品}售价{价格}", "{人名}在{地名}买了一台{产品}", "{时间}{地名}的天气是{天气}",
            "{人名}觉得{组织}的{产品}卖{价格}太贵了", "{人名}和朋友在{地名}吃饭"]


def short_texts(count: int, seed: int = 0, low: int = 20, high: int = 60) -> list[str]:
    """``count`` Chinese sentences of ``low``–``high`` characters, naming people, places, products, prices…"""
    rng = random.Random(seed)
    texts = []
    while len(texts) < count:
        target = rng.randint(low, high)
        text = ""
        while len(text) < target:
            clause, _ = corpus.sentence(rng.choice(_CLAUSES), rng, _POOLS)
            text += clause + rng.choice("，。；")
        if len(text) > high:
            text = text[:high - 1] + "。"
        if len(text) >= low:
            texts.append(text)
    return texts


def long_text(chars: int, seed: int = 0) -> str:
    """One text of exactly ``chars`` characters, made of the short sentences (so it has punctuation to cut at)."""
    text, batch = "", 0
    while len(text) < chars:
        text += "".join(short_texts(200, seed=seed + batch))
        batch += 1
    return text[:chars]


def tasks(texts: Sequence[str]) -> list[dict]:
    """Label Studio tasks as ``/predict`` receives them."""
    return [{"id": i + 1, "data": {"text": text}} for i, text in enumerate(texts)]


# ---- timing -------------------------------------------------------------------------------------

def side_by_side(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each of ``fns``, ``repeats`` samples each after ``warmup`` unmeasured calls (kernel
    caches). Calls are interleaved, and each round starts with the next one (A B C, B C A, C A B…), so a noisy
    neighbour, or whatever the previous call left in the caches, weighs on all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            start = time.perf_counter()
            fns[name]()
            samples[name].append(time.perf_counter() - start)
    return samples


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100), nearest rank: with 50 samples p95 is the 48th smallest."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


# ---- the backend under gunicorn -----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """The backend started as `make serve` starts it (gunicorn, gunicorn.conf.py, _wsgi:app) on 127.0.0.1.

    The calling shell's backend and gunicorn settings are left out, so every run measures the defaults
    (1 worker, 4 threads); HOME is the temp dir, so gunicorn's control socket is not a running server's.
    """

    def __init__(self, home: Path, settings: dict[str, str] | None = None):
        """``settings``: backend settings (``UIE_*``) on top of :func:`backend_env`'s."""
        import requests

        self.session = requests.Session()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (home / "home").mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("UIE_", "BASIC_AUTH_", "LABEL_STUDIO_"))
               and k not in ("WORKERS", "THREADS", "TIMEOUT", "LOG_LEVEL")}
        # Upper case: _wsgi.py hands LOG_LEVEL to logging.basicConfig, which rejects "warning" (the worker dies).
        env.update(backend_env(home), HOME=str(home / "home"), HOST="127.0.0.1", PORT=str(self.port),
                   LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1", **(settings or {}))
        self.log_path = home / "server.log"
        self.started = time.perf_counter()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(REPO / ".venv" / "bin" / "gunicorn"), "--config", "gunicorn.conf.py", "_wsgi:app"],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    def predict(self, task_list: list[dict], timeout: float = 600) -> dict:
        answer = self.session.post(f"{self.url}/predict", json={"tasks": task_list, "label_config": LABEL_CONFIG},
                                   timeout=timeout)
        answer.raise_for_status()
        body = answer.json()
        assert len(body["results"]) == len(task_list), body
        return body

    def wait_first_prediction(self, timeout: float = 300) -> float:
        """Seconds from process start to the first successful /predict (what a user waits after `make serve`)."""
        import requests

        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({self.process.returncode}):\n{self.log_path.read_text()[-3000:]}")
            try:
                self.predict(tasks(["李四明天要去上海。"]))
                return time.perf_counter() - self.started
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"no prediction after {timeout} s:\n{self.log_path.read_text()[-3000:]}")

    def pids(self) -> list[int]:
        """The gunicorn master and its workers."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [self.process.pid, *map(int, children)]

    def peak_rss_mb(self) -> dict[int, float]:
        """VmHWM (peak resident memory) of the master and each worker, MiB."""
        peaks = {}
        for pid in self.pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[pid] = int(line.split()[1]) / 1024
        return peaks

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL if it lingers."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                return
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ---- output -------------------------------------------------------------------------------------

def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table under a heading, first column left-aligned, the others (numbers) right-aligned."""
    lines = [f"\n### {title}\n", "| " + " | ".join(headers) + " |",
             "|---|" + "---:|" * (len(headers) - 1)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def progress(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the tables."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> str:
    """Where and with what the numbers were measured (the header of every run)."""
    from uie_backend import paddle_env

    env = paddle_env.load()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))
    load = os.getloadavg()[0]
    text = (f"{datetime.date.today()} · {os.cpu_count()} cores, {cpu}, {mem_kb / 2**20:.0f} GiB RAM, "
            f"load {load:.1f} at start · python {platform.python_version()}, paddle {env.paddle.__version__}, "
            f"paddlenlp {env.paddlenlp.__version__}")
    print(text, flush=True)
    return text


def arguments(doc: str, default_sizes: Sequence[str] = ("tiny", "small")) -> argparse.Namespace:
    """``--quick`` (fewer repeats) and ``--size`` (repeatable) for every benchmark."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller inputs")
    parser.add_argument("--size", action="append", choices=list(SIZES),
                        help=f"model size, repeatable (default: {' '.join(default_sizes)})")
    args = parser.parse_args()
    args.size = args.size or list(default_sizes)
    return args


def quiet_logs() -> None:
    """Paddle's and PaddleNLP's INFO lines and warnings would drown the tables."""
    import logging
    import warnings

    os.environ.setdefault("GLOG_minloglevel", "2")
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    from uie_backend import paddle_env

    paddle_env.load()
    from paddlenlp.utils.log import logger

    logger.set_level("ERROR")
