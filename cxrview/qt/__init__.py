"""Qt (PySide6) desktop viewer for cxrview.

Everything Qt lives under this package so that ``cxrview.core`` stays importable
(and testable) on machines without a display or without PySide6 installed.
"""
