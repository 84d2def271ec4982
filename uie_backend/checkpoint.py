"""UIE checkpoints on disk: what makes one complete, how to write one safely, and its version string.

A checkpoint is a directory Taskflow can load offline. Taskflow silently downloads uie-base's copy of any
of the five files below that is missing (and, online, mixes them into your model), so a checkpoint is only
ever written complete, into a temporary sibling directory that is renamed into place at the end.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterator

from . import paddle_env

WEIGHTS_FILE = "model_state.pdparams"
REQUIRED_FILES = (
    WEIGHTS_FILE,
    "config.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
META_FILE = "uie_meta.json"  # ours: version, provenance, hyper-parameters, dev scores
VOCAB_DIR = Path(__file__).resolve().parent / "uie_vocab"


class CheckpointError(RuntimeError):
    """A checkpoint directory that cannot be loaded; the message says what is missing and where."""


def missing_files(model_dir: Path) -> list[str]:
    return [name for name in REQUIRED_FILES if not (Path(model_dir) / name).is_file()]


def is_complete(model_dir: Path) -> bool:
    return Path(model_dir).is_dir() and not missing_files(model_dir)


def check(model_dir: Path) -> None:
    """Raise :class:`CheckpointError` naming the missing files, before Taskflow would go looking online."""
    missing = missing_files(model_dir)
    if missing:
        raise CheckpointError(f"{model_dir} is not a complete UIE checkpoint: missing {', '.join(missing)}")


def read_meta(model_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(model_dir) / META_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def model_version(model_dir: Path) -> str:
    """The version string Label Studio sees: the one recorded at training time, else derived from the files.

    The fallback hashes config and weight-file identity (size, mtime) rather than reading hundreds of MB.
    """
    meta_version = read_meta(model_dir).get("version")
    if meta_version:
        return str(meta_version)
    model_dir = Path(model_dir)
    weights = (model_dir / WEIGHTS_FILE).stat()
    digest = hashlib.sha1((model_dir / "config.json").read_bytes())
    digest.update(f"{weights.st_size}:{weights.st_mtime_ns}".encode())
    return f"{model_dir.name}-{digest.hexdigest()[:8]}"


def new_version_id(model_dir: Path) -> str:
    """A version id for freshly written weights: time of creation plus a content hash, e.g. ``20261129-0841-3fa9c2d1``."""
    digest = hashlib.sha256()
    with open(Path(model_dir) / WEIGHTS_FILE, "rb") as weights:
        for chunk in iter(lambda: weights.read(1 << 20), b""):
            digest.update(chunk)
    return time.strftime("%Y%m%d-%H%M%S") + "-" + digest.hexdigest()[:8]


def save(model, tokenizer, out_dir: Path, meta: dict[str, Any] | None = None) -> str:
    """Write a complete checkpoint to ``out_dir`` atomically (old contents replaced only at the end).

    Returns the version id recorded in its metadata.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the model from a server running as another user
    try:
        model.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        check(staging)
        version = new_version_id(staging)
        full_meta = {"version": version, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(meta or {})}
        (staging / META_FILE).write_text(json.dumps(full_meta, ensure_ascii=False, indent=2), encoding="utf-8")
        replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version


def replace_dir(new: Path, target: Path) -> None:
    """Put directory ``new`` at ``target``; at every instant ``target`` is either the old or the new one."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.time_ns()}")
        os.rename(target, old)
        os.rename(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, target)


def build_random(out_dir: Path, *, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 2,
                 seed: int = 0) -> str:
    """Write a randomly initialised UIE with the real UIE vocabulary (tests; training from scratch)."""
    paddle = paddle_env.load().paddle
    from paddlenlp.transformers import UIE, AutoTokenizer, ErnieConfig

    paddle.seed(seed)
    config = ErnieConfig(
        vocab_size=40000, hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=4 * hidden_size, max_position_embeddings=2048,
        type_vocab_size=4, task_type_vocab_size=3, use_task_id=True,
    )
    model = UIE(config)
    tokenizer = AutoTokenizer.from_pretrained(str(VOCAB_DIR))
    return save(model, tokenizer, out_dir, {"source": "random-init", "seed": seed})


def load(model_dir: Path):
    """The dygraph model and tokenizer of a checkpoint, for training and evaluation."""
    check(model_dir)
    paddle_env.load()
    from paddlenlp.transformers import UIE, AutoTokenizer

    return UIE.from_pretrained(str(model_dir)), AutoTokenizer.from_pretrained(str(model_dir))


@contextmanager
def locked(model_dir: Path | None) -> Iterator[None]:
    """Hold an exclusive lock beside a checkpoint directory (all processes on this host).

    Taskflow's first load writes into the checkpoint (``static/`` export, ``.cache_info``), and activating
    a new model renames the directory: two processes doing either at once would corrupt each other.
    """
    if model_dir is None:
        yield
        return
    model_dir = Path(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(model_dir.parent / f".{model_dir.name}.lock", "a+") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
