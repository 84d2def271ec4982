"""Shared fixtures: tiny UIE models built on the fly, and a backend configured to use a temporary folder.

No test downloads anything: models are randomly initialised with the real UIE vocabulary and, where a
test needs one that knows entities, trained for a few hundred steps on tests/corpus.py.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/corpus.py

from uie_backend import checkpoint, trainer  # noqa: E402
from uie_backend.config import Settings  # noqa: E402
from uie_backend.data import doccano_to_examples, tasks_to_doccano  # noqa: E402

import corpus  # noqa: E402

# What the project learnt before it started (recorded Label Studio payloads, corpora): beside the project root,
# here and in CI. Tests read from it but never need it to run the product.
SHARED = Path(__file__).resolve().parents[2] / "shared"

# Hyper-parameters that take a randomly initialised tiny UIE to useful accuracy on the corpus in ~30 s; a random
# model learns 3 tasks in 1,500 steps and not in 500 (the embedded model: in 100, UIE_TRAIN_MIN_STEPS's default).
TINY_TRAINING = {"UIE_TRAIN_LR": "1e-3", "UIE_TRAIN_BATCH_SIZE": "8", "UIE_TRAIN_EPOCHS": "250",
                 "UIE_TRAIN_MAX_SEQ_LEN": "64", "UIE_TRAIN_MIN_STEPS": "1500"}


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "random"
    checkpoint.build_random(path, seed=0)
    return path


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory, random_checkpoint) -> Path:
    """A tiny UIE that has learnt the corpus's people, places and organisations."""
    out = tmp_path_factory.mktemp("trained")
    records = tasks_to_doccano(corpus.annotated_tasks(40, seed=1))
    examples = doccano_to_examples(records, ["人名", "地名", "组织"], negative_ratio=2)
    config = trainer.TrainConfig(init_from=random_checkpoint, save_dir=out, learning_rate=1e-3, batch_size=8,
                                 max_seq_len=64, max_steps=1500, eval_every=250, device="cpu")
    result = trainer.train(config, examples, examples)
    assert result.version and result.best_report.overall.f1 > 0.8, result.best_report
    return out / "model_best"


@pytest.fixture
def backend_env(tmp_path, monkeypatch) -> Settings:
    """Point every setting at a fresh temporary folder; no named or embedded model: each test installs its own."""
    env = {"UIE_CHECKPOINT_DIR": str(tmp_path / "checkpoint"), "UIE_DATA_DIR": str(tmp_path / "data"),
           "PPNLP_HOME": str(tmp_path / "ppnlp"), "UIE_DEVICE": "cpu", "UIE_MODEL": "",
           "UIE_DEFAULT_MODEL": str(tmp_path / "no-default-model"), **TINY_TRAINING}
    for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "BASIC_AUTH_USER", "BASIC_AUTH_PASS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env()


def install_model(model_dir: Path, settings: Settings) -> Path:
    """Copy a checkpoint in as the served model_best."""
    shutil.copytree(model_dir, settings.model_best)
    return settings.model_best
