"""Serving-time forward pass: UIE's static graph run by Paddle Inference, on batches padded only as far
as they need.

Taskflow runs the same static graph but pads every input to ``max_seq_len`` (512), which for the short
texts annotation projects are made of costs 5-10× in wasted positions; the dygraph model pads tightly but
misses Paddle Inference's fused CPU kernels and was ~3× slower on long windows when measured while this
was written. This keeps both advantages (bench/engines.py compares it with Taskflow).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from . import paddle_env
from .trainer import Encoded, pad_batch

MIN_WIDTH = 16
STATIC_PREFIX = Path("static") / "inference"  # where Taskflow exports it too, so either can reuse it


def export_static(model_dir: Path) -> Path:
    """Write the static graph of a checkpoint next to it (once; Taskflow's export is reused when present)."""
    prefix = Path(model_dir) / STATIC_PREFIX
    weights, exported = Path(model_dir) / "model_state.pdparams", prefix.with_suffix(".pdiparams")
    # re-export when the weights are newer than the export (a checkpoint replaced in place, a git pull)
    stale = not exported.exists() or exported.stat().st_mtime < weights.stat().st_mtime
    if stale or not prefix.with_suffix(".pdmodel").exists():
        paddle = paddle_env.load().paddle
        from . import checkpoint

        model, _ = checkpoint.load(model_dir)
        model.eval()
        spec = [paddle.static.InputSpec(shape=[None, None], dtype="int64", name=name)
                for name in ("input_ids", "token_type_ids", "position_ids", "attention_mask")]
        paddle.jit.save(paddle.jit.to_static(model, input_spec=spec), str(prefix))
    return prefix


class StaticForward:
    """Callable on a batch of encoded examples -> (start_prob, end_prob) arrays, like the dygraph model."""

    def __init__(self, model_dir: Path, device: str, num_threads: int = 0):
        paddle = paddle_env.load().paddle
        prefix = export_static(model_dir)
        config = paddle.inference.Config(str(prefix.with_suffix(".pdmodel")), str(prefix.with_suffix(".pdiparams")))
        if device.startswith("gpu"):
            config.enable_use_gpu(100, int(device.partition(":")[2] or 0))
        else:
            config.disable_gpu()
            config.enable_mkldnn()
            config.set_mkldnn_cache_capacity(32)  # bounded kernel cache: memory stays flat across shapes
            config.set_cpu_math_library_num_threads(num_threads or max(1, (os.cpu_count() or 2) // 2))
        config.switch_use_feed_fetch_ops(False)
        config.disable_glog_info()
        config.enable_memory_optim()
        self._predictor = paddle.inference.create_predictor(config)
        self._inputs = [self._predictor.get_input_handle(n) for n in self._predictor.get_input_names()]
        self._outputs = [self._predictor.get_output_handle(n) for n in self._predictor.get_output_names()]

    def __call__(self, batch: Sequence[Encoded]) -> tuple[np.ndarray, np.ndarray]:
        # Rows and width are rounded up to powers of two: at most ~30 distinct shapes ever reach the
        # oneDNN kernel cache (each new shape costs memory and a slow first call; bench/shapes.py).
        width = _power_of_two(max(MIN_WIDTH, max(len(e.input_ids) for e in batch)))
        rows = [e.input_ids for e in batch] + [[]] * (_power_of_two(len(batch)) - len(batch))
        types = [e.token_type_ids for e in batch] + [[]] * (len(rows) - len(batch))
        input_ids = pad_batch(rows, width).astype("int64")
        token_type_ids = pad_batch(types, width).astype("int64")
        position_ids = np.tile(np.arange(width, dtype="int64"), (len(rows), 1))
        attention_mask = (input_ids != 0).astype("int64")  # [PAD] is id 0 in UIE's vocabulary
        for handle, array in zip(self._inputs, (input_ids, token_type_ids, position_ids, attention_mask)):
            handle.copy_from_cpu(array)
        self._predictor.run()
        start_prob, end_prob = (handle.copy_to_cpu()[:len(batch)] for handle in self._outputs)
        return start_prob, end_prob


def _power_of_two(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()
