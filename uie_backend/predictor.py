"""Where predictions are made: the loaded models of this process, batched over texts and labels.

Which model a project is served is decided by lineages.py (its active version, else the base). A loaded
model never picks up new weights, so when a project's active version changes (a training run finished,
or a rollback, in this or any other process) the new version is loaded as a model of its own and the
project switches to it whole: a request sees either the old model or the new one, never a half-loaded one.
Projects served the same version share one loaded model, and a bounded number stay loaded.
"""

from __future__ import annotations

import contextvars
import ctypes
import gc
import logging
import threading
import time
from collections import OrderedDict, deque
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

from . import checkpoint, lineages, paddle_env, trainer, windows
from .config import Settings
from .inference import StaticForward
from .lineages import ModelSource, ModelUnavailable
from .relation_schema import RelationSchema

log = logging.getLogger(__name__)

CHUNK_BATCHES = 8  # batches per lock hold in Predictor.ask
BACKGROUND_CHUNK_BATCHES = 2  # per hold in background work, so a request that arrives waits for little of it
_background = contextvars.ContextVar("uie_background_priority", default=False)


@contextmanager
def background_priority() -> Iterator[None]:
    """Model calls of this thread inside the block give way to every other request (interactive ``/predict``).

    The background pre-annotation of a whole project shares the loaded model with the requests Label Studio
    makes while people work (preannotation.py); those must not queue behind it. Inside the block each engine
    call holds the model for ``BACKGROUND_CHUNK_BATCHES`` batches, and takes it only when no other request is
    waiting: an annotator's request waits for at most one such slice (``bench/preannotation.py`` measures it).
    """
    token = _background.set(True)
    try:
        yield
    finally:
        _background.reset(token)


class EngineLock:
    """The one-caller-at-a-time lock of a loaded model: callers take turns in the order they came, and a
    background caller only when no other caller waits.

    A plain lock is not fair: a request that releases it between slices and takes it again at once (a big
    "Retrieve Predictions", or the background job) kept a one-task request waiting for all of its slices
    (``bench/preannotation.py`` measured 1.1 s behind a /predict of 200 tasks with the tiny model).
    """

    def __init__(self):
        self._changed = threading.Condition()
        self._held = False
        self._queue: deque[object] = deque()  # the foreground callers waiting, first come first

    @contextmanager
    def hold(self, background: bool = False) -> Iterator[None]:
        with self._changed:
            if background:
                self._changed.wait_for(lambda: not self._held and not self._queue)
            else:
                turn = object()
                self._queue.append(turn)
                try:
                    self._changed.wait_for(lambda: not self._held and self._queue[0] is turn)
                finally:
                    self._queue.remove(turn)
                    self._changed.notify_all()  # the next in line, when this one gave up waiting
            self._held = True
        try:
            yield
        finally:
            with self._changed:
                self._held = False
                self._changed.notify_all()


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
    """One loaded model: long texts cut into windows, every (window × prompt) in one batched engine call,
    results merged back with exact offsets, thresholds and the per-task cap applied."""

    def __init__(self, source: ModelSource, settings: Settings):
        self.source = source
        self.version = source.version
        self.settings = settings
        self._thresholds = settings.thresholds()
        # the schema tree learnt with this model (relation_schema.py); None: a model that never saw relations
        self.relation_schema = RelationSchema.from_dict(
            checkpoint.read_meta(source.path).get("relation_schema") if source.path else None)
        self._lock = EngineLock()  # neither engine is safe to call from two threads at once
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
        """Entities of every label in every text, best first when capped, offsets exact in every case."""
        answers = self.ask([(text, label) for text in texts for label in labels], deadline)
        results: list[list[Entity]] = []
        for index in range(len(texts)):
            found = [e for answer in answers[index * len(labels):(index + 1) * len(labels)] for e in answer]
            found.sort(key=lambda e: (e.start, e.end, e.label))
            if self.settings.max_regions:
                found = sorted(found, key=lambda e: -e.score)[:self.settings.max_regions]
            results.append(found)
        return results

    def ask(self, queries: Sequence[tuple[str, str]], deadline: float | None = None) -> list[list[Entity]]:
        """UIE's answers to ``(text, prompt)`` queries, each an :class:`Entity` labelled with its prompt.

        Answers in the text have exact offsets into the whole text, however long (windows). The answers of a
        classification prompt (``情感倾向[正向,负向]``) are options, spans of the prompt with negative offsets
        (trainer.encode), each with its best probability over the text's windows.

        ``deadline`` (a ``time.monotonic()`` value) is checked before each slice: past it, the work stops
        with :class:`PredictionTimeout` rather than answering after the client stopped waiting.
        """
        pieces = []  # (query index, window)
        for index, (text, prompt) in enumerate(queries):
            width = self.settings.max_seq_len - len(prompt) - 3
            if text.strip() and width > 0:  # nothing to find in empty text (and Taskflow rejects it); a relation
                # prompt naming a subject longer than a window has no room for text, so no answer
                pieces += [(index, w) for w in windows.cut(text, width, self.settings.window_overlap)]
        # The lock is taken per slice of CHUNK_BATCHES batches, not for the whole request: a task opened by an
        # annotator then waits for one slice of a big "Retrieve Predictions", not for all of it; and for one
        # smaller slice of background work, which never takes the model while a request waits.
        background = _background.get()
        per_chunk = self.settings.batch_size * (BACKGROUND_CHUNK_BATCHES if background else CHUNK_BATCHES)
        found: list[list[tuple[int, int, float]]] = []
        for begin in range(0, len(pieces), per_chunk):
            chunk = pieces[begin:begin + per_chunk]
            if begin and deadline is not None and time.monotonic() > deadline:  # one slice always runs
                raise PredictionTimeout(
                    f"prediction stopped after {begin} of {len(pieces)} text windows: past UIE_PREDICT_TIMEOUT="
                    f"{self.settings.predict_timeout_s:g} s; send fewer tasks per request or raise the limit")
            with self._lock.hold(background):
                found += self._engine.answer([(queries[i][0][w.start:w.end], queries[i][1]) for i, w in chunk],
                                             self.threshold)
        by_query: dict[int, list] = {}
        for (index, window), spans in zip(pieces, found):
            by_query.setdefault(index, []).append((window, spans))
        results: list[list[Entity]] = [[] for _ in queries]
        for index, per_window in by_query.items():
            text, prompt = queries[index]
            in_text = windows.merge((w, [Entity(prompt, s, e, "", p) for s, e, p in spans if s >= 0])
                                    for w, spans in per_window)
            options: dict[tuple[int, int], float] = {}
            for _, spans in per_window:
                for s, e, p in spans:
                    if s < 0:
                        options[(s, e)] = max(p, options.get((s, e), 0.0))
            shift = len(prompt) + 1
            results[index] = [replace(e, text=text[e.start:e.end]) for e in in_text] + [
                Entity(prompt, s, e, prompt[s + shift:e + shift], p) for (s, e), p in sorted(options.items())]
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

    def answer(self, queries: Sequence[tuple[str, str]], threshold) -> list[list[tuple[int, int, float]]]:
        tokenized: dict[str, tuple] = {}  # each text and each prompt tokenised once per call

        def tokens(string: str) -> tuple:
            if string not in tokenized:
                tokenized[string] = trainer.tokenize(self.tokenizer, string)
            return tokenized[string]

        items = [trainer.encode({"content": text, "prompt": prompt, "result_list": []}, self.tokenizer,
                                self.settings.max_seq_len, tokens(text), tokens(prompt))
                 for text, prompt in queries]
        return trainer.predict_encoded(self.forward, items, self.settings.batch_size,
                                       lambda item: threshold(item.prompt))


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

    def answer(self, queries: Sequence[tuple[str, str]], threshold) -> list[list[tuple[int, int, float]]]:
        found: list[list[tuple[int, int, float]]] = [[] for _ in queries]
        by_prompt: dict[str, list[int]] = {}
        for index, (_, prompt) in enumerate(queries):
            by_prompt.setdefault(prompt, []).append(index)
        for prompt, indices in by_prompt.items():
            # Taskflow takes one threshold per instance; it is a plain attribute read at each call.
            self._taskflow.task_instance._position_prob = threshold(prompt)
            self._taskflow.set_schema([prompt])
            for index, by_label in zip(indices, self._taskflow([queries[i][0] for i in indices])):
                for item in by_label.get(prompt, []):
                    if "start" in item:
                        found[index].append((int(item["start"]), int(item["end"]), float(item["probability"])))
                    elif trainer.is_choice_prompt(prompt):  # an option: Taskflow gives its text, not its place
                        start = prompt.rfind(item["text"]) - len(prompt) - 1
                        found[index].append((start, start + len(item["text"]), float(item["probability"])))
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
