"""Where predictions are made: the loaded models of this process, batched over texts and labels.

Which model a project is served is decided by lineages.py (its active version, else the base). A loaded
model never picks up new weights, so when a project's active version changes (a training run finished,
or a rollback, in this or any other process) the new version is loaded as a model of its own and the
project switches to it whole: a request sees either the old model or the new one, never a half-loaded one.
Projects served the same version share one loaded model, and a bounded number stay loaded.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from . import checkpoint, lineages, paddle_env, trainer, windows
from .config import Settings
from .inference import StaticForward
from .lineages import ModelSource, ModelUnavailable

log = logging.getLogger(__name__)

CHUNK_BATCHES = 8  # batches per lock hold in Predictor.extract


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


_loaded: OrderedDict[tuple[ModelSource, Settings], Predictor] = OrderedDict()  # least recently used first
# project -> what it was last served, most recent last; bounded, as project ids come from requests
_serving: OrderedDict[int | None, tuple[ModelSource, Settings]] = OrderedDict()
SERVING_MEMORY = 10_000  # projects whose last model is remembered (to answer with it while a new one loads)
_failed: dict[tuple[ModelSource, Settings], str] = {}  # sources that failed to load, and why
_cache_lock = threading.Lock()  # guards the three dicts; held for dict operations only
_load_lock = threading.Lock()   # one load at a time: two big models loading at once could exhaust memory


def for_project(settings: Settings, project_id: int | None) -> Predictor:
    """The loaded model a project is served now, loading it when it is not loaded yet.

    Projects served the same version share one loaded model; at most ``UIE_MAX_LOADED_MODELS`` are kept,
    the least recently used unloaded first. While a project's new version loads, its requests keep being
    answered by the version it had (when that is still loaded); a version that fails to load is not retried
    on every request, and the project keeps the one it had.
    """
    previous = _previous(settings, project_id)
    try:
        source = lineages.source_for(settings, project_id)
    except (ModelUnavailable, checkpoint.CheckpointError) as exc:
        if previous is None:
            raise ModelUnavailable(str(exc)) from None
        log.error("project %s: its model is unusable (%s); still serving %s", project_id, exc, previous.version)
        return previous
    key = (source, settings)
    with _cache_lock:
        if key in _loaded:
            return _use(key, project_id)
        if key in _failed:
            if previous is None:
                raise ModelUnavailable(_failed[key])
            return previous
    if not _load_lock.acquire(blocking=previous is None):
        return previous  # another thread is loading: answer with what this project had
    try:
        with _cache_lock:
            if key in _loaded:  # loaded by the thread this one waited for
                return _use(key, project_id)
        try:
            loaded = Predictor(source, settings)
        except ModelUnavailable as exc:
            with _cache_lock:
                _failed[key] = str(exc)
            log.error("%s", exc)
            if previous is None:
                raise
            log.error("project %s: still serving %s", project_id, previous.version)
            return previous
        with _cache_lock:
            _loaded[key] = loaded
            _failed.pop(key, None)
            evicted = []
            while len(_loaded) > settings.max_loaded_models:
                evicted.append(_loaded.popitem(last=False)[1])
                log.info("unloaded version %s (UIE_MAX_LOADED_MODELS=%d)", evicted[-1].version,
                         settings.max_loaded_models)
            chosen = _use(key, project_id)
        if evicted:
            del evicted
            _release_memory()
        return chosen
    finally:
        _load_lock.release()


def _release_memory() -> None:
    """Hand an unloaded model's memory back to the system: glibc keeps freed heap pages, and a worker that
    loaded and unloaded uie-base-sized versions grew by about 115 MiB a cycle without this (bench/lineages.py:
    1,400 MiB over 12 cycles at 3 loaded; 12 MiB with it)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _use(key: tuple[ModelSource, Settings], project_id: int | None) -> Predictor:
    """Mark a loaded model as just used by the project (call with _cache_lock held)."""
    _loaded.move_to_end(key)
    _serving[project_id] = key
    _serving.move_to_end(project_id)
    if len(_serving) > SERVING_MEMORY:
        _serving.popitem(last=False)
    return _loaded[key]


def _previous(settings: Settings, project_id: int | None) -> Predictor | None:
    with _cache_lock:
        key = _serving.get(project_id)
        return _loaded.get(key) if key is not None and key[1] == settings else None


def loaded_versions(settings: Settings) -> list[str]:
    """The versions loaded in this process with these settings, most recently used first, without loading
    anything (/health)."""
    with _cache_lock:
        return [predictor.version for (_, loaded_with), predictor in reversed(_loaded.items())
                if loaded_with == settings]
