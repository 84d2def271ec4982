"""Interactive requests go before background work on a loaded model (predictor.EngineLock): the background
pre-annotation of a whole project must not make an annotator's /predict queue behind it."""

from __future__ import annotations

import threading
import time

import pytest

from conftest import install_model
from uie_backend import predictor
from uie_backend.predictor import EngineLock


def wait_until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_waiting_request_takes_the_model_before_any_background_slice_that_asks_after_it():
    lock = EngineLock()
    order: list[str] = []
    holding, release = threading.Event(), threading.Event()

    def background_slice(name: str, hold_until: threading.Event | None = None) -> None:
        with lock.hold(background=True):
            order.append(name)
            if hold_until is not None:
                holding.set()
                hold_until.wait(10)

    def request() -> None:
        with lock.hold():
            order.append("request")

    first = threading.Thread(target=background_slice, args=("background 1", release))
    first.start()
    holding.wait(10)
    waiting = threading.Thread(target=request)
    waiting.start()
    wait_until(lambda: len(lock._queue) == 1)
    second = threading.Thread(target=background_slice, args=("background 2",))
    second.start()
    time.sleep(0.05)  # the second slice is waiting too, now
    assert order == ["background 1"]
    release.set()
    for thread in (first, waiting, second):
        thread.join(10)
    assert order == ["background 1", "request", "background 2"]


def test_requests_still_take_turns_and_background_work_runs_when_nobody_waits():
    lock = EngineLock()
    inside = 0
    most_inside = 0

    def work(background: bool) -> None:
        nonlocal inside, most_inside
        for _ in range(50):
            with lock.hold(background=background):
                inside += 1
                most_inside = max(most_inside, inside)
                time.sleep(0.0005)
                inside -= 1

    threads = [threading.Thread(target=work, args=(n % 2 == 0,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert most_inside == 1 and not any(thread.is_alive() for thread in threads)


def test_a_request_gets_its_turn_between_the_slices_of_a_longer_one():
    """The big request releases the model after each slice and asks again at once: the waiting request,
    which asked first, goes next."""
    lock = EngineLock()
    order: list[str] = []
    first_slice, go_on = threading.Event(), threading.Event()

    def long_request() -> None:
        for n in range(3):
            with lock.hold():
                order.append(f"slice {n}")
                if n == 0:
                    first_slice.set()
                    go_on.wait(10)

    def short_request() -> None:
        with lock.hold():
            order.append("short")

    long = threading.Thread(target=long_request)
    long.start()
    first_slice.wait(10)
    short = threading.Thread(target=short_request)
    short.start()
    wait_until(lambda: len(lock._queue) == 1)
    go_on.set()
    long.join(10)
    short.join(10)
    assert order == ["slice 0", "short", "slice 1", "slice 2"]


@pytest.mark.slow
def test_background_priority_asks_the_model_in_smaller_slices_and_answers_the_same(backend_env, random_checkpoint,
                                                                                     monkeypatch):
    install_model(random_checkpoint, backend_env)
    model = predictor.for_project(backend_env, None)
    slices = []
    answer = model._engine.answer
    monkeypatch.setattr(model._engine, "answer", lambda queries, threshold: slices.append(len(queries))
                        or answer(queries, threshold))
    queries = [(f"张三在北京工作了{n}年。", label) for n in range(40) for label in ("人名", "地名", "组织")]
    interactive = model.ask(queries)
    interactive_slices, slices[:] = list(slices), []
    with predictor.background_priority():
        background = model.ask(queries)
    assert background == interactive
    size = backend_env.batch_size
    assert len(queries) <= size * predictor.CHUNK_BATCHES
    assert interactive_slices == [len(queries)]  # 120 queries: within one slice of 128
    assert max(slices) == size * predictor.BACKGROUND_CHUNK_BATCHES and sum(slices) == len(queries)
