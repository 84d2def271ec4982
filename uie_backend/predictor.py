"""Where predictions are made: one UIE Taskflow per process, batched over texts and labels.

The model is chosen in this order: the fine-tuned ``checkpoint/model_best``; else the PaddleNLP model
named by ``UIE_MODEL`` (``uie-base``; PaddleNLP downloads it, so only online); else nothing, with a message
saying where to put a checkpoint. A Taskflow object never picks up new weights, so when the active model
changes (a training run finished, in this or any other process) a new one is built and swapped in whole:
a request sees either the old model or the new one, never a half-loaded one.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from . import checkpoint, paddle_env
from .config import Settings

log = logging.getLogger(__name__)


class ModelUnavailable(RuntimeError):
    """No model can be loaded; the message tells the user what to do."""


@dataclass(frozen=True)
class Entity:
    label: str
    start: int          # code points, end exclusive, as Label Studio counts
    end: int
    text: str
    score: float


@dataclass(frozen=True)
class ModelSource:
    version: str
    path: Path | None = None    # a checkpoint directory, or
    name: str | None = None     # a PaddleNLP model name

    def describe(self) -> str:
        return str(self.path) if self.path else f"PaddleNLP model {self.name!r}"


def resolve_source(settings: Settings) -> ModelSource:
    """Which model to serve now. Cheap (reads one small JSON file): called on every request."""
    best = settings.model_best
    if best.exists():
        real = best.resolve()  # the immutable version directory model_best points at
        checkpoint.check(real)
        return ModelSource(version=checkpoint.model_version(real), path=real)
    if settings.fallback_model:
        return ModelSource(version=settings.fallback_model, name=settings.fallback_model)
    raise ModelUnavailable(
        f"no model to serve: put a fine-tuned UIE checkpoint (the five files of `finetune.py`'s output) in "
        f"{best}, or set UIE_MODEL to a PaddleNLP UIE model name such as uie-base (needs internet once)")


class Predictor:
    """A loaded Taskflow plus the lock that serialises calls to it (Taskflow is not thread-safe)."""

    def __init__(self, source: ModelSource, settings: Settings):
        self.source = source
        self.version = source.version
        self._lock = threading.Lock()
        env = paddle_env.load(str(settings.ppnlp_home))
        from paddlenlp import Taskflow

        device = paddle_env.set_device(settings.device)
        kwargs = dict(schema=[], batch_size=settings.batch_size, max_seq_len=settings.max_seq_len,
                      position_prob=settings.position_prob,
                      device_id=-1 if device == "cpu" else int(device.partition(":")[2] or 0))
        if settings.num_threads:
            kwargs["num_threads"] = settings.num_threads
        if source.path:
            kwargs["task_path"] = str(source.path)
        else:
            kwargs["model"] = source.name
        log.info("loading %s (version %s) on %s", source.describe(), source.version, device)
        try:
            with checkpoint.locked(source.path):
                self._taskflow = Taskflow("information_extraction", **kwargs)
        except Exception as exc:  # paddle raises plain RuntimeError/OSError/ValueError here
            raise ModelUnavailable(f"could not load {source.describe()}: {exc}") from exc
        del env

    def extract(self, texts: Sequence[str], labels: Sequence[str]) -> list[list[Entity]]:
        """Entities of every label in every text, in one Taskflow call (it batches texts × labels)."""
        results: list[list[Entity]] = [[] for _ in texts]
        todo = [i for i, text in enumerate(texts) if text.strip()]  # Taskflow rejects empty texts
        if not todo or not labels:
            return results
        with self._lock:
            self._taskflow.set_schema(list(labels))
            raw = self._taskflow([texts[i] for i in todo])
        for index, by_label in zip(todo, raw):
            text = texts[index]
            for label, found in by_label.items():
                for item in found:
                    if "start" not in item:  # a span inside the prompt: Taskflow's classification-style answer
                        continue
                    start, end = int(item["start"]), int(item["end"])
                    if 0 <= start < end <= len(text):
                        results[index].append(Entity(label, start, end, text[start:end], float(item["probability"])))
        return results


_current: Predictor | None = None
_failed: tuple[ModelSource, str] | None = None  # the last source that failed to load, and why
_swap_lock = threading.Lock()


def current(settings: Settings) -> Predictor:
    """The process's predictor for the active model, (re)loading it when the active model changed.

    While one thread loads a new model, other requests keep being answered by the old one; a model that
    fails to load is not retried on every request, and the old one stays in service.
    """
    global _current, _failed
    source = resolve_source(settings)
    predictor = _current
    if predictor is not None and (predictor.source == source or (_failed and _failed[0] == source)):
        return predictor
    if not _swap_lock.acquire(blocking=predictor is None):
        return predictor
    try:
        if _current is None or _current.source != source:
            if _failed and _failed[0] == source:
                raise ModelUnavailable(_failed[1])
            try:
                _current = Predictor(source, settings)
            except ModelUnavailable as exc:
                _failed = (source, str(exc))
                log.error("%s", exc)
                if _current is None:
                    raise
                log.error("still serving %s", _current.version)
        return _current
    finally:
        _swap_lock.release()


def loaded_version() -> str | None:
    """The version of the loaded model, without loading anything (for /health)."""
    return _current.version if _current else None
