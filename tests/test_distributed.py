"""Multi-process fine-tuning through `paddle.distributed.launch`, as the README's multi-GPU command runs it.

Two CPU processes (gloo) stand in for two GPUs: the same code path (init_parallel_env, DataParallel, each
process a share of every step's batches, gradients averaged), minus CUDA.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import corpus
from uie_backend import checkpoint
from uie_backend.data import doccano_to_examples, tasks_to_doccano, write_jsonl

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_two_processes_train_one_model_in_step_and_only_the_first_saves_it(tmp_path, random_checkpoint):
    examples = doccano_to_examples(tasks_to_doccano(corpus.annotated_tasks(24, seed=3)), ["人名", "地名", "组织"],
                                   negative_ratio=1)
    write_jsonl(tmp_path / "train.txt", examples)
    write_jsonl(tmp_path / "dev.txt", examples[:20])
    done = subprocess.run(
        [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(tmp_path / "log"),
         "finetune.py", "--train_path", str(tmp_path / "train.txt"), "--dev_path", str(tmp_path / "dev.txt"),
         "--init_from_ckpt", str(random_checkpoint), "--save_dir", str(tmp_path / "out"), "--device", "cpu",
         "--learning_rate", "1e-3", "--batch_size", "4", "--max_seq_len", "64", "--max_steps", "30",
         "--valid_steps", "10"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    logs = [(tmp_path / "log" / f"workerlog.{rank}").read_text(encoding="utf-8") for rank in (0, 1)]
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + logs[0][-3000:] + logs[1][-3000:]

    assert "batch 4 in each of 2 processes" in logs[0]
    checksums = [re.search(rf"process {rank + 1} of 2: 30 steps, weights checksum ([\d.]+)", log).group(1)
                 for rank, log in enumerate(logs)]
    assert checksums[0] == checksums[1]  # gradients averaged: both processes hold the same weights
    assert "dev F1" in logs[0] and "dev F1" not in logs[1]  # the first evaluates and saves; the other follows
    assert checkpoint.is_complete(tmp_path / "out" / "model_best")
    assert checkpoint.read_meta(tmp_path / "out" / "model_best")["step"] in (10, 20, 30)
