"""Image loading for the viewer: decode in a helper process, cache, prefetch.

Why a process and not just a thread: some decoders hold the GIL for the whole decode
(pylibjpeg-openjpeg takes ~130 ms on a 1955x1841 JPEG 2000 chest film without releasing
it), which freezes the GUI thread even though the work runs on a pool thread. A
decoder that crashes on a malformed file (native code) would also take the whole
application down. Decoding in a small process pool fixes both: the pool thread that
runs :func:`load_task` only *waits* (GIL released), and a crashed decoder surfaces as
a normal load error.

If the process pool cannot be used (e.g. a frozen build without multiprocessing
support) loading falls back to the calling worker thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
import types
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from cxrview.core import ImageLoadError, XrayImage, load_image, render_display
from cxrview.core import errors as core_errors
from cxrview.qt.workers import TaskCancelled, TaskState

log = logging.getLogger(__name__)

POLL_S = 0.02
PR_SET_PDEATHSIG = 1  # linux/prctl.h  # how often a waiting worker thread checks for cancellation


@dataclass
class LoadedImage:
    """A decoded image plus its default 8-bit rendering, ready for the canvas."""

    image: XrayImage
    pixels: np.ndarray
    decode_ms: float


@dataclass
class _ChildError:
    """A picklable description of an exception raised in the decoder process.

    Exceptions with custom ``__init__`` signatures (like ``ImageLoadError(path,
    reason)``) do not survive pickling, so the child sends this instead.
    """

    type_name: str
    path: str | None
    reason: str | None
    message: str
    trace: str

    def rebuild(self) -> BaseException:
        cls = getattr(core_errors, self.type_name, None)
        if (isinstance(cls, type) and issubclass(cls, ImageLoadError)
                and self.path is not None and self.reason is not None):
            return cls(self.path, self.reason)
        err = RuntimeError(f"{self.type_name}: {self.message}")
        err.__notes__ = [self.trace]  # keep the child's traceback for the log
        return err


def decode_for_display(path: str) -> LoadedImage:
    """Load ``path`` and render its default display (runs in a worker or child)."""
    t0 = time.perf_counter()
    image = load_image(path)
    pixels = render_display(image)
    return LoadedImage(image, pixels, (time.perf_counter() - t0) * 1000.0)


def _child_decode(path: str) -> LoadedImage | _ChildError:
    try:
        return decode_for_display(path)
    except BaseException as exc:  # everything must reach the parent
        return _ChildError(type(exc).__name__, getattr(exc, "path", None),
                           getattr(exc, "reason", None), str(exc), traceback.format_exc())


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Spawned children re-import the parent's ``__main__`` unless it is hidden.

    Decoder children only need ``cxrview.core``; re-running the launching script (or
    ``python -m cxrview`` without a main guard) in every child would start a second GUI
    there. Replacing ``__main__`` by an empty module while the processes are spawned makes
    multiprocessing skip that step.
    """
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved


def _child_init() -> None:
    """Runs first in each decoder process: exit when the GUI process dies.

    Without it a GUI killed by SIGKILL (or a crash) leaves decoders running forever.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() == 1:  # the parent died before prctl took effect
                os._exit(0)
        except (OSError, AttributeError):
            log.debug("prctl(PR_SET_PDEATHSIG) unavailable")


def _child_warm_up() -> int:
    """Import the decoders once so the first real load does not pay for it."""
    import pydicom.pixels  # noqa: F401

    import cxrview.core  # noqa: F401
    return os.getpid()


class DecoderPool:
    """A lazily started, restartable pool of decoder processes."""

    def __init__(self, workers: int = 2) -> None:
        self._workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._warm: list[Future[int]] = []
        self.disabled = os.environ.get("CXRVIEW_DECODE_IN_PROCESS", "1") == "0"

    def _context(self) -> multiprocessing.context.BaseContext:
        # Never fork a multi-threaded Qt process; spawn (rather than forkserver) keeps the
        # decoders direct children of the GUI so they can die with it (_child_init).
        return multiprocessing.get_context("spawn")

    def executor(self) -> ProcessPoolExecutor | None:
        if self.disabled:
            return None
        with self._lock:
            if self._executor is None:
                try:
                    with _main_module_hidden():
                        ex = ProcessPoolExecutor(self._workers, mp_context=self._context(),
                                                 initializer=_child_init)
                        # One task per worker spawns every process now, while __main__
                        # is hidden; the pool never spawns again (a dead worker breaks
                        # the pool and we build a new one through this same path).
                        self._warm = [ex.submit(_child_warm_up) for _ in range(self._workers)]
                    self._executor = ex
                except Exception:  # fall back to in-thread decoding
                    log.exception("could not start decoder processes; decoding in-thread")
                    self.disabled = True
                    return None
            return self._executor

    def warm_up(self) -> None:
        """Start the processes now (they boot in the background) instead of on first load."""
        self.executor()

    def ready(self) -> bool:
        """True once every decoder process has booted and imported the decoders."""
        ex = self._executor
        return (ex is not None and all(f.done() and not f.cancelled() and f.exception() is None
                                       for f in self._warm))

    def submit(self, path: str) -> Future[LoadedImage | _ChildError] | None:
        ex = self.executor()
        if ex is None:
            return None
        try:
            return ex.submit(_child_decode, path)
        except (BrokenProcessPool, RuntimeError):
            self.restart()
            ex = self.executor()
            return ex.submit(_child_decode, path) if ex is not None else None

    def restart(self) -> None:
        with self._lock:
            ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        with self._lock:
            ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=True, cancel_futures=True)


_POOL: DecoderPool | None = None


def decoder_pool() -> DecoderPool:
    """The process-wide decoder pool (shared by every window)."""
    global _POOL
    if _POOL is None:
        _POOL = DecoderPool(workers=max(1, min(2, (os.cpu_count() or 2))))
    return _POOL


def load_task(state: TaskState, path: str, pool: DecoderPool | None = None) -> LoadedImage:
    """Worker body for the "load"/"prefetch" slots: decode ``path`` for display."""
    if state.cancelled:
        raise TaskCancelled(path)
    # While the decoder processes are still booting (the first ~0.5-1 s after start-up)
    # decode here instead: waiting for them would delay the first image by more than a
    # short GIL hold costs, and nothing else is on screen yet to stay responsive for.
    future = pool.submit(path) if pool is not None and pool.ready() else None
    if future is None:
        return decode_for_display(path)
    arrived = threading.Event()
    future.add_done_callback(lambda _f: arrived.set())  # wake at once, not at the next poll
    while not arrived.wait(POLL_S):
        if state.cancelled:
            future.cancel()  # only helps if it has not started; the result is dropped anyway
            raise TaskCancelled(path)
    if state.cancelled:
        raise TaskCancelled(path)
    try:
        result = future.result(timeout=0)
    except BrokenProcessPool as exc:
        pool.restart()
        raise ImageLoadError(path, "the image decoder crashed on this file") from exc
    if isinstance(result, _ChildError):
        raise result.rebuild()
    return result


class ImageCache:
    """A small LRU of decoded images keyed by path (paging back and forth is instant)."""

    def __init__(self, capacity: int = 4) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, LoadedImage] = OrderedDict()

    def get(self, path: str) -> LoadedImage | None:
        item = self._items.get(path)
        if item is not None:
            self._items.move_to_end(path)
        return item

    def put(self, path: str, item: LoadedImage) -> None:
        self._items[path] = item
        self._items.move_to_end(path)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __contains__(self, path: object) -> bool:
        return path in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
