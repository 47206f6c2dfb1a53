"""Work-arounds for bugs in the Qt binding, in one place so they can be dropped later.

PySide6 6.12 on CPython 3.11: every call of a C++ method returning ``void`` hands
back ``None`` without taking a reference to it (measured: ``setText`` ×100 lowers
``sys.getrefcount(None)`` by 100). None starts with a few thousand references, so a
busy session (the review panel makes ~100 such calls per edit) drives it to zero and
the interpreter aborts with "Fatal Python error: none_dealloc". CPython 3.12+ makes
None, True and False immortal, which hides the bug; :func:`pin_singletons` gives
them the same protection here by adding a very large number of references once
(the count can then never reach zero in any session), and only when the defect is
detected.

PySide6 6.12 on CPython 3.11: ``SignalInstance.emit()`` returns ``True`` without taking
a reference to it. Every Python-side ``emit`` therefore steals one reference from
``Py_True``; after a few thousand emissions the interpreter aborts with "Fatal Python
error: bool_dealloc" (usually at exit, sometimes mid-session). CPython 3.12+ makes
``True`` immortal, which hides the bug.

:func:`emit` detects the defect once at import and, if present, gives the reference
back. The check is behavioural, so a fixed binding simply turns the compensation off.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

from PySide6.QtCore import QObject, Signal, SignalInstance


class _Probe(QObject):
    ping = Signal()


def _emit_steals_true() -> bool:
    probe = _Probe()
    before = sys.getrefcount(True)
    result = probe.ping.emit()
    del result
    after = sys.getrefcount(True)
    if after < before:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(True))  # undo the probe's own damage
        return True
    return False


def _void_call_steals_none() -> bool:
    probe = _Probe()
    before = sys.getrefcount(None)
    for _ in range(10):
        probe.setObjectName("probe")
    return sys.getrefcount(None) < before


PIN_REFERENCES = 1 << 40  # ~10^12: more void calls than any session will ever make


def pin_singletons() -> bool:
    """Make None/True/False effectively immortal when the binding steals their references."""
    if sys.version_info >= (3, 12) or not _void_call_steals_none():
        return False
    for obj in (None, True, False):
        cell = ctypes.c_ssize_t.from_address(id(obj))  # ob_refcnt is the first field of every object
        cell.value += PIN_REFERENCES
    return True


_PINNED = pin_singletons()
_COMPENSATE = _emit_steals_true()
_incref = ctypes.pythonapi.Py_IncRef
_incref.argtypes = [ctypes.py_object]
_incref.restype = None


def emit(signal: SignalInstance, *args: Any) -> None:
    """``signal.emit(*args)`` without the binding's reference-count bug."""
    result = signal.emit(*args)
    if _COMPENSATE and result is True:
        _incref(result)


def singletons_pinned() -> bool:
    """Whether None/True/False had to be pinned (the void-call defect is present)."""
    return _PINNED


def emit_bug_present() -> bool:
    """Whether the compensation is active (for diagnostics and tests)."""
    return _COMPENSATE
