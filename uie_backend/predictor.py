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
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from . import checkpoint, paddle_env, trainer, windows
from .config import Settings
from .inference import StaticForward

log = logging.getLogger(__name__)

CHUNK_BATCHES = 8  # batches per lock hold in Predictor.extract


class ModelUnavailable(RuntimeError):
    """No model can be loaded; the message tells the user what to do."""


class PredictionTimeout(RuntimeError):
    """A prediction ran past its deadline (``UIE_PREDICT_TIMEOUT``); the message says what to change."""


@dataclass(frozen=True)
class Entity:
    label: str
    start: int          # code points, end exclusive, as Label Studio counts
    end: int
    text: str
    score: float

    def shifted(self, by: int) -> "Entity":
        return replace(self, start=self.start + by, end=self.end + by)


@dataclass(frozen=True)
class ModelSource:
    version: str
    path: Path | None = None    # a checkpoint directory, or
    name: str | None = None     # a PaddleNLP model name

    def describe(self) -> str:
        return str(self.path) if self.path else f"PaddleNLP model {self.name!r}"


def resolve_source(settings: Settings) -> ModelSource:
    """Which model to serve now. Cheap (reads one small JSON file): called on every request.

    In order: the active fine-tuned model (``model_best``); else the PaddleNLP model named by ``UIE_MODEL``;
    else the embedded offline model; else nothing, with a message saying where to put a checkpoint.
    """
    best = settings.model_best
    if best.exists():
        real = best.resolve()  # the immutable version directory model_best points at
        checkpoint.check(real)
        return ModelSource(version=checkpoint.model_version(real), path=real)
    if settings.named_model:
        return ModelSource(version=settings.named_model, name=settings.named_model)
    if settings.default_model.name and checkpoint.is_complete(settings.default_model):
        return ModelSource(version=checkpoint.model_version(settings.default_model), path=settings.default_model)
    raise ModelUnavailable(
        f"no model to serve: put a fine-tuned UIE checkpoint (the five files of `finetune.py`'s output) in "
        f"{best}, or set UIE_MODEL to a PaddleNLP UIE model name such as uie-base (needs internet once)")


class Predictor:
    """One loaded model: long texts cut into windows, every (window × label) in one batched engine call,
    results merged back with exact offsets, thresholds and the per-task cap applied."""

    def __init__(self, source: ModelSource, settings: Settings):
        self.source = source
        self.version = source.version
        self.settings = settings
        self._thresholds = settings.thresholds()
        self._lock = threading.Lock()  # neither engine is safe to call from two threads at once
        paddle_env.load(str(settings.ppnlp_home))
        device = paddle_env.set_device(settings.device)
        log.info("loading %s (version %s) on %s, %s engine", source.describe(), source.version, device,
                 settings.engine if source.path else "taskflow")
        try:
            with checkpoint.locked(source.path):
                if source.path and settings.engine == "fast":
                    self._engine = PointerEngine(source.path, settings, device)
                else:
                    self._engine = TaskflowEngine(source, settings, device)
        except Exception as exc:  # paddle raises plain RuntimeError/OSError/ValueError here
            raise ModelUnavailable(f"could not load {source.describe()}: {exc}") from exc

    def threshold(self, label: str) -> float:
        return self._thresholds.get(label, self.settings.position_prob)

    def extract(self, texts: Sequence[str], labels: Sequence[str],
                deadline: float | None = None) -> list[list[Entity]]:
        """Entities of every label in every text, best first when capped, offsets exact in every case.

        ``deadline`` (a ``time.monotonic()`` value) is checked before each slice: past it, the work stops
        with :class:`PredictionTimeout` rather than answering after the client stopped waiting.
        """
        results: list[list[Entity]] = [[] for _ in texts]
        if not labels:
            return results
        width = self.settings.max_seq_len - max(len(label) for label in labels) - 3
        pieces = []  # (text index, window)
        for index, text in enumerate(texts):
            if text.strip():  # nothing to find in empty text (and Taskflow rejects it)
                pieces += [(index, w) for w in windows.cut(text, width, self.settings.window_overlap)]
        # The lock is taken per slice of CHUNK_BATCHES batches, not for the whole request: a task opened by an
        # annotator then waits for one slice of a big "Retrieve Predictions", not for all of it.
        per_chunk = max(1, self.settings.batch_size * CHUNK_BATCHES // len(labels))
        found: list[list[Entity]] = []
        for begin in range(0, len(pieces), per_chunk):
            chunk = pieces[begin:begin + per_chunk]
            if begin and deadline is not None and time.monotonic() > deadline:  # one slice always runs
                raise PredictionTimeout(
                    f"prediction stopped after {begin} of {len(pieces)} text windows: past UIE_PREDICT_TIMEOUT="
                    f"{self.settings.predict_timeout_s:g} s; send fewer tasks per request or raise the limit")
            with self._lock:
                found += self._engine.extract([texts[i][w.start:w.end] for i, w in chunk], labels, self.threshold)
        by_text: dict[int, list] = {}
        for (index, window), entities in zip(pieces, found):
            by_text.setdefault(index, []).append((window, entities))
        for index, per_window in by_text.items():
            merged = windows.merge(per_window)
            if self.settings.max_regions:
                merged = sorted(merged, key=lambda e: -e.score)[:self.settings.max_regions]
            results[index] = [replace(e, text=texts[index][e.start:e.end]) for e in merged]
        return results


class PointerEngine:
    """UIE's start/end pointers from the static graph (inference.py), batched by length: the default engine.

    The same encoding and decoding as training and evaluation (trainer.py), so what is measured on the dev
    set is what is served.
    """

    def __init__(self, model_dir: Path, settings: Settings, device: str):
        from paddlenlp.transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.forward = StaticForward(model_dir, device, settings.num_threads)
        self.settings = settings

    def extract(self, texts: Sequence[str], labels: Sequence[str], threshold) -> list[list[Entity]]:
        items = []
        for text in texts:
            tokens = trainer.tokenize(self.tokenizer, text)  # once per text, not once per label
            items += [trainer.encode({"content": text, "prompt": label, "result_list": []}, self.tokenizer,
                                     self.settings.max_seq_len, tokens) for label in labels]
        spans = trainer.predict_encoded(self.forward, items, self.settings.batch_size,
                                        lambda item: threshold(item.prompt))
        found: list[list[Entity]] = [[] for _ in texts]
        for n, (item, item_spans) in enumerate(zip(items, spans)):
            found[n // len(labels)] += [Entity(item.prompt, s, e, item.content[s:e], p) for s, e, p in item_spans]
        return found


class TaskflowEngine:
    """PaddleNLP's own Taskflow: the reference path, and the only one for a model given by name."""

    def __init__(self, source: ModelSource, settings: Settings, device: str):
        from paddlenlp import Taskflow

        kwargs = dict(schema=[], batch_size=settings.batch_size, max_seq_len=settings.max_seq_len,
                      position_prob=settings.position_prob,
                      device_id=-1 if device == "cpu" else int(device.partition(":")[2] or 0))
        if settings.num_threads:
            kwargs["num_threads"] = settings.num_threads
        kwargs.update({"task_path": str(source.path)} if source.path else {"model": source.name})
        self._taskflow = Taskflow("information_extraction", **kwargs)

    def extract(self, texts: Sequence[str], labels: Sequence[str], threshold) -> list[list[Entity]]:
        found: list[list[Entity]] = [[] for _ in texts]
        by_threshold: dict[float, list[str]] = {}
        for label in labels:
            by_threshold.setdefault(threshold(label), []).append(label)
        for position_prob, group in by_threshold.items():
            # Taskflow takes one threshold per instance; it is a plain attribute read at each call.
            self._taskflow.task_instance._position_prob = position_prob
            self._taskflow.set_schema(group)
            for index, by_label in enumerate(self._taskflow(list(texts))):
                for label, items in by_label.items():
                    for item in items:
                        if "start" not in item:  # a span inside the prompt: Taskflow's classification-style answer
                            continue
                        start, end = int(item["start"]), int(item["end"])
                        found[index].append(Entity(label, start, end, texts[index][start:end], float(item["probability"])))
        return found


_current: Predictor | None = None
_failed: tuple[ModelSource, str] | None = None  # the last source that failed to load, and why
_swap_lock = threading.Lock()


def current(settings: Settings) -> Predictor:
    """The process's predictor for the active model, (re)loading it when the active model changed.

    While one thread loads a new model, other requests keep being answered by the old one; a model that
    fails to load is not retried on every request, and the old one stays in service.
    """
    global _current, _failed
    predictor = _current
    try:
        source = resolve_source(settings)
    except (ModelUnavailable, checkpoint.CheckpointError) as exc:
        if predictor is None or predictor.settings != settings:
            raise ModelUnavailable(str(exc)) from None
        log.error("the active model is unusable (%s); still serving %s", exc, predictor.version)
        return predictor
    if predictor is not None and predictor.settings == settings and (
            predictor.source == source or (_failed and _failed[0] == source)):
        return predictor
    if not _swap_lock.acquire(blocking=predictor is None):
        return predictor
    try:
        if _current is None or _current.source != source or _current.settings != settings:
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
