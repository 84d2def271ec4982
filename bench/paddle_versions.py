"""Taskflow inference speed of the installed paddle, on a tiny randomly initialised UIE (the numbers behind
choosing paddle 2.6.2 over 3.x, docs/decisions.md). Runs on either version:

    python bench/paddle_versions.py            # in each candidate's venv, side by side

paddle 3.x exports ``static/inference.json`` where Taskflow 2.8.1 looks for ``inference.pdmodel``; for the
measurement this script points Taskflow at the ``.json`` with the new IR and executor enabled.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import datasets  # noqa: F401  (paddle 2.6.2 needs these imported first, see uie_backend/paddle_env.py)
import scipy.linalg  # noqa: F401

import paddle
import paddle.inference
from paddlenlp import Taskflow
from paddlenlp.transformers import UIE, AutoTokenizer, ErnieConfig

VOCAB = Path(__file__).resolve().parent.parent / "uie_backend" / "uie_vocab"
TEXT = "李四明天要去上海参加阿里巴巴的发布会，听说上海明天有小雨。"


def pdmodel_to_json_shim() -> None:
    original = paddle.inference.Config

    def config(model_file: str, params_file: str):
        json_file = model_file[: -len(".pdmodel")] + ".json"
        if model_file.endswith(".pdmodel") and not os.path.exists(model_file) and os.path.exists(json_file):
            c = original(json_file, params_file)
            c.enable_new_ir(True)
            c.enable_new_executor(True)
            return c
        return original(model_file, params_file)

    paddle.inference.Config = config


def timed(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    if paddle.__version__.startswith("3."):
        pdmodel_to_json_shim()
    model_dir = Path(tempfile.mkdtemp())
    paddle.seed(0)
    UIE(ErnieConfig(vocab_size=40000, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=256, type_vocab_size=4, task_type_vocab_size=3, use_task_id=True)
        ).save_pretrained(str(model_dir))
    AutoTokenizer.from_pretrained(str(VOCAB)).save_pretrained(str(model_dir))
    start = time.perf_counter()
    taskflow = Taskflow("information_extraction", schema=["人名", "地名"], task_path=str(model_dir))
    load_s = time.perf_counter() - start
    taskflow([TEXT])
    single = timed(lambda: taskflow([TEXT]), 20)
    batch = timed(lambda: taskflow([TEXT] * 64), 5)
    print(f"| paddle | python | load s | 1 text, 2 labels, ms (median of 20) | 64 texts, 2 labels, s (median of 5) | texts/s |")
    print(f"|---|---|---:|---:|---:|---:|")
    print(f"| {paddle.__version__} | {sys.version.split()[0]} | {load_s:.2f} | {single * 1000:.1f} | {batch:.2f} | "
          f"{64 / batch:.0f} |")
    shutil.rmtree(model_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
