"""Source conventions for the GUI package, checked statically (no Qt needed).

* Every Python-side signal emission goes through :func:`cxrview.qt.compat.emit` (the
  PySide6 6.12 reference-count work-around); only ``compat.py`` calls ``.emit(`` itself.
* Background work runs through the one worker wrapper (:mod:`cxrview.qt.workers`), on
  threads: the GUI package never starts processes (``multiprocessing``,
  ``ProcessPoolExecutor``).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

QT_DIR = Path(__file__).resolve().parents[2] / "cxrview" / "qt"
FORBIDDEN_PROCESS_APIS = ("multiprocessing", "ProcessPoolExecutor")


def _qt_sources() -> list[Path]:
    files = sorted(QT_DIR.rglob("*.py"))
    assert any(p.name == "main_window.py" for p in files), f"no sources found in {QT_DIR}"
    return files


def _code_only(source: str) -> str:
    """``source`` with comments and string literals blanked (docstrings may say ``.emit(``)."""
    kept: list[str] = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in (tokenize.COMMENT, tokenize.STRING):
            continue
        kept.append(tok.string)
    return " ".join(kept)


def test_only_compat_calls_emit_directly() -> None:
    offenders = []
    for path in _qt_sources():
        if path.name == "compat.py" and path.parent == QT_DIR:
            continue
        source = path.read_text(encoding="utf-8")
        # Token-level check (catches ``sig . emit (`` too) plus an AST check for calls.
        if re.search(r"\.\s*emit\s*\(", _code_only(source)):
            offenders.append(str(path.relative_to(QT_DIR)))
            continue
        for node in ast.walk(ast.parse(source)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "emit"):
                offenders.append(f"{path.relative_to(QT_DIR)}:{node.lineno}")
    assert not offenders, ("use cxrview.qt.compat.emit(signal, ...) instead of "
                           f"signal.emit(...): {offenders}")


def test_no_process_pools_in_gui_package() -> None:
    offenders = []
    for path in _qt_sources():
        code = _code_only(path.read_text(encoding="utf-8"))
        for name in FORBIDDEN_PROCESS_APIS:
            if re.search(rf"\b{name}\b", code):
                offenders.append(f"{path.relative_to(QT_DIR)}: {name}")
    assert not offenders, ("background work goes through cxrview.qt.workers (threads), "
                           f"not processes: {offenders}")


def test_checks_would_catch_violations() -> None:
    """The scanners themselves work (a broken regex must not make the suite vacuous)."""
    assert re.search(r"\.\s*emit\s*\(", _code_only("self.done.emit(1)  # x\n"))
    assert not re.search(r"\.\s*emit\s*\(", _code_only('"""call sig.emit(x)"""\nemit(s, 1)\n'))
    assert re.search(r"\bmultiprocessing\b", _code_only("import multiprocessing as mp\n"))
    assert re.search(r"\bProcessPoolExecutor\b",
                     _code_only("from concurrent.futures import ProcessPoolExecutor\n"))


def test_void_qt_calls_cannot_exhaust_none() -> None:
    """PySide6 6.12 on CPython 3.11 steals a reference to None per void call; compat pins it.
    Without the pin this loop (more calls than None has references) aborts the interpreter."""
    import subprocess
    import sys

    code = ("import sys, cxrview.qt\n"
            "from PySide6.QtCore import QObject\n"
            "o = QObject()\n"
            "for _ in range(60000):  # None has ~5,000 references in a fresh interpreter\n"
            "    o.setObjectName('x')\n"
            "import gc; gc.collect()\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-500:]
