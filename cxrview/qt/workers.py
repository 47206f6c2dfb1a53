"""The one way cxrview runs work off the GUI thread.

Loading today, inference and batch scoring later: every background job is a plain
function ``fn(state, *args)`` that knows nothing about Qt. It may poll
``state.cancelled`` to stop early and call ``state.set_progress(fraction)``.

:class:`TaskRunner` runs such functions on a :class:`QThreadPool` and hands back a
:class:`TaskHandle` living on the GUI thread. The contract the rest of the GUI relies on:

* a handle ALWAYS emits ``finished`` exactly once, preceded by exactly one of
  ``returned(result)`` or ``errored(exception)``;
* a cancelled or superseded task never delivers its result: it reports
  ``errored(TaskCancelled(...))`` instead, so callers can ignore it in one place;
* tasks submitted with the same ``slot`` are *latest-wins*: submitting a new one cancels
  the previous one, whose result (even if it had already been computed and was waiting
  in the event queue) is dropped.

Workers never touch widgets: results cross to the GUI thread through queued signal
connections on a carrier :class:`QObject` created on the GUI thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal

from cxrview.qt.compat import emit

log = logging.getLogger(__name__)

TaskFn = Callable[..., Any]


class TaskCancelled(Exception):
    """Delivered through ``errored`` when a task was cancelled or superseded."""


class TaskState:
    """What a task body sees: a cancellation flag, a progress callback and a way to
    hand over partial results (batch scoring streams one result per image).

    Thread-safe by construction: ``cancelled`` is backed by a :class:`threading.Event`
    and progress / partial results are forwarded through queued Qt signals.
    """

    def __init__(self, progress_cb: Callable[[float], None] | None = None,
                 partial_cb: Callable[[object], None] | None = None) -> None:
        self._event = threading.Event()
        self._progress_cb = progress_cb
        self._partial_cb = partial_cb

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        self._event.set()

    def set_progress(self, fraction: float) -> None:
        """Report progress in [0, 1]; ignored once the task is cancelled."""
        if self._progress_cb is not None and not self.cancelled:
            self._progress_cb(max(0.0, min(1.0, float(fraction))))

    def publish(self, item: object) -> None:
        """Deliver a partial result (``TaskHandle.partial``); ignored once cancelled."""
        if self._partial_cb is not None and not self.cancelled:
            self._partial_cb(item)


class _Carrier(QObject):
    """Signals emitted from the worker thread, delivered queued on the GUI thread."""

    # One tuple (result, exception, ok): a single opaque payload crosses threads as is.
    done = Signal(object)
    progress = Signal(object)
    partial = Signal(object)

    def send(self, name: str, payload: object) -> None:
        """Emit from any thread, unless Qt already deleted the carrier (the app is quitting while
        the task still ran): then nobody is left to tell, and raising would only kill the thread."""
        try:
            emit(getattr(self, name), payload)
        except RuntimeError:
            if shiboken6.isValid(self):
                raise


class _Runnable(QRunnable):
    """Runs the task body and reports through the carrier; never raises."""

    def __init__(self, fn: TaskFn, args: tuple[Any, ...], state: TaskState,
                 carrier: _Carrier) -> None:
        super().__init__()
        # We keep the Python wrapper alive from the handle; letting Qt delete it
        # underneath Python has historically been fragile with PySide.
        self.setAutoDelete(False)
        self._fn = fn
        self._args = args
        self._state = state
        self._carrier = carrier

    def run(self) -> None:  # executed on a pool thread
        try:
            if self._state.cancelled:
                raise TaskCancelled("cancelled before start")
            result = self._fn(self._state, *self._args)
        except BaseException as exc:  # every failure must reach the GUI
            self._carrier.send("done", (None, exc, False))
        else:
            self._carrier.send("done", (result, None, True))


class TaskHandle(QObject):
    """GUI-thread view of one submitted task."""

    returned = Signal(object)
    errored = Signal(object)
    progress = Signal(float)
    partial = Signal(object)  # items from state.publish(), in order, before returned/errored
    finished = Signal()

    def __init__(self, runner: TaskRunner, fn: TaskFn, args: tuple[Any, ...],
                 slot: str | None, name: str) -> None:
        # No Qt parent: the runner keeps the handle alive until it finishes, then Python's
        # reference counting frees it once the caller drops it too.
        super().__init__()
        self.slot = slot
        self.name = name
        self._runner = runner
        self._carrier = _Carrier()
        self.state = TaskState(partial(self._carrier.send, "progress"),
                               partial(self._carrier.send, "partial"))
        # Explicitly queued: even a cancellation reported from the GUI thread itself is
        # delivered on a later event-loop turn, so callers are never re-entered.
        self._carrier.done.connect(self._on_done, Qt.ConnectionType.QueuedConnection)
        self._carrier.progress.connect(self._on_progress, Qt.ConnectionType.QueuedConnection)
        self._carrier.partial.connect(self._on_partial, Qt.ConnectionType.QueuedConnection)
        self._runnable: _Runnable | None = _Runnable(fn, args, self.state, self._carrier)
        self._done = False

    @property
    def cancelled(self) -> bool:
        return self.state.cancelled

    def is_done(self) -> bool:
        """True once ``finished`` has been emitted."""
        return self._done

    def cancel(self) -> None:
        """Ask the task to stop; its result, if any, will be dropped.

        A task still waiting in the pool queue is removed from it and reported as
        cancelled right away (on the next event-loop turn).
        """
        if self._done or self.state.cancelled:
            return
        self.state.cancel()
        runnable = self._runnable
        if runnable is not None and self._runner.pool.tryTake(runnable):
            emit(self._carrier.done, (None, TaskCancelled(f"{self.name}: cancelled"), False))

    def _on_progress(self, fraction: float) -> None:
        if not self._done and not self.state.cancelled:
            emit(self.progress, fraction)

    def _on_partial(self, item: object) -> None:
        if not self._done and not self.state.cancelled:
            emit(self.partial, item)

    def _on_done(self, outcome: tuple[object, BaseException | None, bool]) -> None:
        result, exc, ok = outcome
        if self._done:
            return
        self._done = True
        self._runnable = None
        try:
            if self.state.cancelled:
                if not isinstance(exc, TaskCancelled):
                    exc = TaskCancelled(f"{self.name}: superseded")
                emit(self.errored, exc)
            elif ok:
                emit(self.returned, result)
            else:
                emit(self.errored, exc)
        finally:
            emit(self.finished)
            self._runner._forget(self)


class TaskRunner(QObject):
    """Submits task bodies to a thread pool; one instance per window is enough."""

    def __init__(self, parent: QObject | None = None, pool: QThreadPool | None = None) -> None:
        super().__init__(parent)
        self.pool = pool or QThreadPool.globalInstance()
        self._live: set[TaskHandle] = set()
        self._slots: dict[str, TaskHandle] = {}

    def submit(self, fn: TaskFn, *args: Any, slot: str | None = None, name: str = "",
               priority: int = 0) -> TaskHandle:
        """Run ``fn(state, *args)`` in the pool.

        With a ``slot``, any earlier task in that slot is cancelled first (latest wins).
        Connect to the handle's signals right after this call: delivery is always queued,
        so nothing is emitted before control returns to the event loop.
        """
        if slot is not None:
            self.cancel(slot)
        handle = TaskHandle(self, fn, args, slot, name or getattr(fn, "__name__", "task"))
        self._live.add(handle)
        if slot is not None:
            self._slots[slot] = handle
        assert handle._runnable is not None
        self.pool.start(handle._runnable, priority)
        return handle

    def current(self, slot: str) -> TaskHandle | None:
        """The task now owning ``slot`` (None once it has finished)."""
        return self._slots.get(slot)

    def cancel(self, slot: str) -> None:
        handle = self._slots.pop(slot, None)
        if handle is not None:
            handle.cancel()

    def cancel_all(self) -> None:
        for handle in list(self._live):
            handle.cancel()
        self._slots.clear()

    def active_count(self) -> int:
        """Tasks submitted whose ``finished`` has not been emitted yet."""
        return len(self._live)

    def shutdown(self, timeout_ms: int = 3000) -> bool:
        """Cancel everything and wait for pool threads; used on window close."""
        self.cancel_all()
        return self.pool.waitForDone(timeout_ms)

    def _forget(self, handle: TaskHandle) -> None:
        self._live.discard(handle)
        if handle.slot is not None and self._slots.get(handle.slot) is handle:
            del self._slots[handle.slot]
