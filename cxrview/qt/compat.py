"""Work-arounds for bugs in the Qt binding, in one place so they can be dropped later.

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


_COMPENSATE = _emit_steals_true()
_incref = ctypes.pythonapi.Py_IncRef
_incref.argtypes = [ctypes.py_object]
_incref.restype = None


def emit(signal: SignalInstance, *args: Any) -> None:
    """``signal.emit(*args)`` without the binding's reference-count bug."""
    result = signal.emit(*args)
    if _COMPENSATE and result is True:
        _incref(result)


def emit_bug_present() -> bool:
    """Whether the compensation is active (for diagnostics and tests)."""
    return _COMPENSATE
