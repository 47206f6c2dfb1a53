"""The worker wrapper's contract: finished + exactly one outcome; latest wins per slot."""

from __future__ import annotations

import threading

import pytest

from cxrview.qt.workers import TaskCancelled, TaskRunner, TaskState


class Recorder:
    def __init__(self, handle) -> None:
        self.events: list[tuple[str, object]] = []
        handle.returned.connect(lambda r: self.events.append(("returned", r)))
        handle.errored.connect(lambda e: self.events.append(("errored", e)))
        handle.progress.connect(lambda f: self.events.append(("progress", f)))
        handle.finished.connect(lambda: self.events.append(("finished", None)))

    def outcomes(self) -> list[str]:
        return [kind for kind, _ in self.events if kind != "progress"]


def test_returned_then_finished_with_progress(qtbot) -> None:
    runner = TaskRunner()

    def body(state: TaskState, a: int, b: int) -> int:
        state.set_progress(0.5)
        return a + b

    handle = runner.submit(body, 2, 3)
    rec = Recorder(handle)
    with qtbot.waitSignal(handle.finished, timeout=5000):
        pass
    assert rec.outcomes() == ["returned", "finished"]
    assert rec.events[-2] == ("returned", 5)
    assert ("progress", 0.5) in rec.events
    assert runner.active_count() == 0


def test_exception_is_delivered_not_raised(qtbot) -> None:
    runner = TaskRunner()

    def body(state: TaskState) -> None:
        raise ValueError("bad file")

    handle = runner.submit(body)
    rec = Recorder(handle)
    with qtbot.waitSignal(handle.finished, timeout=5000):
        pass
    assert rec.outcomes() == ["errored", "finished"]
    assert isinstance(rec.events[0][1], ValueError)


def test_latest_wins_drops_stale_result(qtbot) -> None:
    runner = TaskRunner()
    release = threading.Event()
    started = threading.Event()

    def slow(state: TaskState, value: str) -> str:
        started.set()
        release.wait(5)  # ignores cancellation on purpose: its result must still be dropped
        return value

    old = runner.submit(slow, "old", slot="load")
    old_rec = Recorder(old)
    assert started.wait(5)
    new = runner.submit(lambda state, v: v, "new", slot="load")
    new_rec = Recorder(new)
    assert old.cancelled and runner.current("load") is new
    with qtbot.waitSignal(new.finished, timeout=5000):
        pass
    release.set()
    with qtbot.waitSignal(old.finished, timeout=5000):
        pass
    assert new_rec.events == [("returned", "new"), ("finished", None)]
    assert old_rec.outcomes() == ["errored", "finished"]
    assert isinstance(old_rec.events[0][1], TaskCancelled)


def test_cancel_cooperative_and_queued(qtbot) -> None:
    runner = TaskRunner()
    seen_cancel = threading.Event()

    def loop(state: TaskState) -> str:
        for _ in range(500):
            if state.cancelled:
                seen_cancel.set()
                raise TaskCancelled("stopped")
            threading.Event().wait(0.01)
        return "ran to completion"

    handle = runner.submit(loop, slot="batch")
    rec = Recorder(handle)
    runner.cancel("batch")
    with qtbot.waitSignal(handle.finished, timeout=5000):
        pass
    assert rec.outcomes() == ["errored", "finished"]
    assert isinstance(rec.events[0][1], TaskCancelled)
    assert handle.is_done()


@pytest.mark.parametrize("n", [6])
def test_many_slots_each_deliver_once(qtbot, n: int) -> None:
    runner = TaskRunner()
    handles = [runner.submit(lambda state, i: i * i, i, slot=f"s{i}") for i in range(n)]
    recs = [Recorder(h) for h in handles]
    qtbot.waitUntil(lambda: runner.active_count() == 0, timeout=5000)
    for i, rec in enumerate(recs):
        assert rec.events == [("returned", i * i), ("finished", None)]


def test_emit_helper_keeps_true_alive(qtbot) -> None:
    """Thousands of emissions must not drain Py_True's refcount (PySide 6.12 bug)."""
    import sys

    from PySide6.QtCore import QObject, Signal

    from cxrview.qt.compat import emit

    class Source(QObject):
        ping = Signal(object)

    source = Source()
    source.ping.connect(lambda _v: None)
    before = sys.getrefcount(True)
    for i in range(5000):
        emit(source.ping, i)
    assert sys.getrefcount(True) >= before


def test_a_task_outliving_its_handle_ends_quietly(qtbot) -> None:
    """Quitting while a task runs: Qt deletes the carrier first; the task must neither raise nor
    report (seen as "Signal source has been deleted" tracebacks when the window closed mid-task)."""
    import shiboken6

    from cxrview.qt.workers import _Carrier, _Runnable

    carrier = _Carrier()
    got: list[object] = []
    carrier.done.connect(got.append)
    state = TaskState(lambda _f: None, lambda _p: None)
    runnable = _Runnable(lambda st: 42, (), state, carrier)
    shiboken6.delete(carrier)
    runnable.run()  # must not raise
    assert got == []
    live = _Carrier()
    live.done.connect(got.append)
    _Runnable(lambda st: 7, (), state, live).run()
    assert got == [(7, None, True)]
