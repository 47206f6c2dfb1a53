"""Application entry point: QApplication setup, theme, crash safety, first files."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable
from types import TracebackType

from PySide6.QtCore import QCoreApplication, Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from cxrview.qt.identity import app_icon
from cxrview.qt.settings import AppSettings
from cxrview.qt.theme import apply_theme

log = logging.getLogger(__name__)

ORG = "cxrview"
APP = "cxrview"

ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], object]


def ensure_app(argv: list[str] | None = None) -> QApplication:
    """Return the QApplication, creating it (with our names and DPI policy) if needed."""
    app = QApplication.instance()
    if app is None:
        # Fractional scaling (125 %, 150 %) without rounding: text stays crisp and the
        # canvas computes 1:1 in device pixels itself.
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
            Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(argv if argv is not None else [sys.argv[0]])
    QCoreApplication.setOrganizationName(ORG)
    QCoreApplication.setApplicationName(APP)
    QGuiApplication.setApplicationDisplayName("cxrview")
    QGuiApplication.setDesktopFileName("cxrview")  # Wayland/X11: match packaging/cxrview.desktop
    if QGuiApplication.windowIcon().isNull():
        QGuiApplication.setWindowIcon(app_icon())
    return app  # type: ignore[return-value]


def install_excepthook(report: Callable[[type[BaseException], BaseException,
                                          TracebackType | None], None]) -> ExceptHook:
    """Route uncaught exceptions (e.g. raised in Qt slots) to ``report`` instead of dying.

    Returns the previous hook so callers (tests) can restore it. KeyboardInterrupt still
    goes to the previous hook so Ctrl+C in a terminal behaves normally.
    """
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException,
             tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            previous(exc_type, exc, tb)
            return
        try:
            report(exc_type, exc, tb)
        except Exception:  # the hook itself must never raise
            traceback.print_exception(exc_type, exc, tb)

    sys.excepthook = hook
    return previous


def _quit_on_signals(app: QApplication) -> None:
    """Ctrl+C / SIGTERM close the window normally (settings saved, work cancelled).

    Python only runs signal handlers between bytecodes, so a slow no-op timer gives the
    interpreter a chance while Qt's C++ event loop is idle.
    """
    def handler(_signum: int, _frame: object) -> None:
        app.closeAllWindows()
        app.quit()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread, or unsupported platform
            return
    timer = QTimer(app)
    timer.timeout.connect(_noop)
    timer.start(250)


def _noop() -> None:
    """Lets Python run pending signal handlers."""


def freeze_long_lived_heap(*_args: object) -> None:
    """Take everything alive now (imported modules, Qt wrappers, loaded models) out of the
    cyclic collector's walks.

    With PySide6, torch and both models loaded the heap holds ~418k tracked objects, and
    every full collection walks them all: 221 ms measured, long enough to freeze scrolling
    or delay a first paint whenever one happens to trigger (under 1 ms after the freeze).
    They live as long as the app, so freezing them loses nothing; objects created later are
    collected as usual.
    """
    gc.freeze()


def run_gui(paths: list[str]) -> int:
    """Start the viewer on ``paths`` (files and/or folders) and return the exit code."""
    logging.basicConfig(level=os.environ.get("CXRVIEW_LOG", "WARNING").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = ensure_app()
    settings = AppSettings()
    apply_theme(app, settings.theme())

    from cxrview.qt.main_window import MainWindow

    window = MainWindow(settings)
    previous = install_excepthook(window.report_exception)
    _quit_on_signals(app)
    window.show()
    freeze_long_lived_heap()
    window.ai.predictor_ready.connect(freeze_long_lived_heap)  # torch & the models, once loaded
    if paths:
        # After show(): the window paints immediately and the load runs in the background.
        QTimer.singleShot(0, lambda: window.open_paths(list(paths)))
    else:  # no paths: where the reviewer left off (workspace, sort, image)
        QTimer.singleShot(0, window.resume_last_session)
    QTimer.singleShot(100, window.ai.preload)  # models load while the window is still fresh
    try:
        code = app.exec()
    finally:
        sys.excepthook = previous
    return int(code)
