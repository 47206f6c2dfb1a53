"""Qt (PySide6) desktop viewer for cxrview.

Everything Qt lives under this package so that ``cxrview.core`` stays importable
(and testable) on machines without a display or without PySide6 installed.
"""

# Before anything else touches Qt: protect None/True/False from the binding's
# reference-count defects (see compat.py).
from cxrview.qt import compat as _compat  # noqa: F401
