"""The one place that knows how to import PaddleNLP safely on the pinned stack.

Every module that needs paddle or paddlenlp imports them through :func:`load`, never directly, because
three things must happen *before* the first ``import paddle``:

* ``datasets`` (and with it aiohttp's zlib-using C extension) and ``scipy.linalg`` have to be imported
  first: paddle 2.6.2 bundles its own zlib and, imported the other way round, ``import paddlenlp`` dies
  with ``zlib.error: Error -2 while decompressing data`` (measured, docs/decisions.md).
* ``PPNLP_HOME`` decides where PaddleNLP writes its cache; it is read once, at import.
* One of those imports sets the root logger to WARNING, silencing our progress logs; it is put back.
* Taskflow pings a usage-statistics host (1 s timeout per model load) unless told the check already ran;
  a backend that must work offline and start fast does not want that.
"""

from __future__ import annotations

import logging
import os
import types
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=None)
def load(ppnlp_home: str | None = None) -> types.SimpleNamespace:
    """Import paddle and paddlenlp once, in the order that works, and return them.

    ``ppnlp_home`` only takes effect on the first call of the process (PaddleNLP reads it at import).
    """
    if ppnlp_home:
        os.environ.setdefault("PPNLP_HOME", str(Path(ppnlp_home).expanduser()))
    os.environ.setdefault("FLAGS_call_stack_level", "1")  # one-line paddle errors instead of C++ stacks

    root_level = logging.getLogger().level  # one of these imports resets the root logger to WARNING
    import datasets  # noqa: F401  (import-order fix, see module docstring)
    import scipy.linalg  # noqa: F401

    import paddle
    import paddlenlp
    import paddlenlp.taskflow.utils as taskflow_utils

    logging.getLogger().setLevel(root_level)

    taskflow_utils.DOWNLOAD_CHECK = True  # "already reported": no statistics ping on every Taskflow load
    return types.SimpleNamespace(paddle=paddle, paddlenlp=paddlenlp)


def set_device(device: str) -> str:
    """Select ``cpu`` or ``gpu`` (``gpu:N``); ``auto`` picks the GPU when paddle was built with CUDA and sees one.

    Returns the device actually set, so callers can log it.
    """
    paddle = load().paddle
    if device == "auto":
        device = "gpu" if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0 else "cpu"
    if device.startswith("gpu") and not paddle.device.is_compiled_with_cuda():
        raise ValueError("--device gpu needs paddlepaddle-gpu (see README, 'GPU'); this paddle is CPU-only")
    paddle.set_device(device)
    return device
