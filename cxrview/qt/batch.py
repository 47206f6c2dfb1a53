"""Model › Score All Files: batch scoring of the file list in the background.

Each image is decoded and predicted on the worker wrapper (slot ``"batch"``, so a
second request replaces the first), with the results cache in front: images
scored before with the same models (``scoring.predict_cached``: same model input,
header and model identity) cost only a decode. Every scored image is streamed to the
GUI thread (``state.publish``) and shows its triage score in the file list right away; progress and a Cancel
button sit in the status bar. Opening a scored image then shows its findings
from the cache at once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from cxrview.qt.compat import emit
from cxrview.qt.workers import TaskCancelled, TaskState

if TYPE_CHECKING:
    from cxrview.qt.ai import AIController
    from cxrview.qt.main_window import MainWindow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    path: str
    score: float | None  # None when the image could not be scored or its output is withheld
    top: str | None
    cached: bool
    error: str | None = None
    withheld: list[str] | None = None  # the input check's reasons, when the film is withheld


@dataclass(frozen=True)
class BatchSummary:
    total: int
    scored: int
    cached: int
    failed: int
    seconds: float


def score_files_task(state: TaskState, classifier: str, segmenter: str | None, device: str,
                     paths: list[str]) -> BatchSummary:
    """Worker body (no Qt): predict every path (cache first), publishing a :class:`Scored` each."""
    from cxrview.core import ImageLoadError, load_image
    from cxrview.inference.cache import ResultCache
    from cxrview.inference.gate import is_withheld, withheld_reasons
    from cxrview.inference.predict import Cancelled, Predictor, triage_score
    from cxrview.inference.scoring import predict_cached
    from cxrview.qt.ai import leave_a_core_for_the_gui

    start = time.perf_counter()
    leave_a_core_for_the_gui()
    predictor = Predictor(classifier, segmenter, device=device)
    cache = ResultCache()
    scored = cached = failed = 0
    for index, path in enumerate(paths):
        if state.cancelled:
            raise TaskCancelled("batch scoring")
        try:
            image = load_image(path)
            result = predict_cached(predictor, image, cache=cache, state=state)
            data, hit = result.data, result.cached
        except Cancelled:
            raise TaskCancelled("batch scoring") from None
        except (ImageLoadError, RuntimeError, ValueError, MemoryError, OSError) as exc:
            failed += 1
            state.publish(Scored(path, None, None, False, f"{type(exc).__name__}: {exc}"))
        else:
            score, top = triage_score(data)
            scored += 1
            cached += hit
            state.publish(Scored(path, score, top, hit,
                                 withheld=withheld_reasons(data) if is_withheld(data) else None))
        state.set_progress((index + 1) / len(paths))
    return BatchSummary(len(paths), scored, cached, failed, time.perf_counter() - start)


class BatchProgress(QWidget):
    """Status-bar widget: "Scoring 12/52" with a bar and a Cancel button."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("batch_progress")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel(self)
        self.bar = QProgressBar(self)
        self.bar.setRange(0, 1000)
        self.bar.setMaximumWidth(140)
        self.bar.setMaximumHeight(14)
        self.bar.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("batch_cancel")
        for widget in (self.label, self.bar, self.cancel_button):
            layout.addWidget(widget)


class BatchScorer(QObject):
    """Owns the Score All Files action, the status-bar progress and the file-list scores."""

    item_scored = Signal(object)  # Scored
    finished = Signal(object)  # BatchSummary, or None when cancelled / failed

    def __init__(self, window: MainWindow, ai: AIController) -> None:
        super().__init__(window)
        self.window = window
        self.ai = ai
        self._done = 0
        self._total = 0
        self.progress = BatchProgress(window)
        self.progress.cancel_button.clicked.connect(self.cancel)
        window.statusBar().addPermanentWidget(self.progress)
        self.progress.hide()
        self.action = QAction("&Score All Files", window)
        self.action.setObjectName("action_score_all")
        self.action.setShortcut(QKeySequence("Ctrl+Shift+S"))
        self.action.setStatusTip("Predict every file in the list in the background and show triage scores")
        self.action.triggered.connect(self.start)
        self.cancel_action = QAction("Cancel Scoring", window)
        self.cancel_action.setObjectName("action_cancel_scoring")
        self.cancel_action.setEnabled(False)
        self.cancel_action.triggered.connect(self.cancel)
        ai.model_menu.addSeparator()
        ai.model_menu.addAction(self.action)
        ai.model_menu.addAction(self.cancel_action)
        window.file_dock.sort_changed.connect(self._on_sort_changed)
        saved = str(window.settings.qs.value("files/sort", "file") or "file")
        window.file_dock.set_sort_mode(saved)

    def running(self) -> bool:
        handle = self.window.runner.current("batch")
        return handle is not None and not handle.is_done()

    def start(self) -> None:
        paths = self.window.file_dock.paths()
        if not paths:
            self._say("Open a folder first: there is nothing to score.")
            return
        self._done, self._total = 0, len(paths)
        handle = self.window.runner.submit(score_files_task, self.ai.classifier, self.ai.segmenter,
                                           self.ai.device, list(paths), slot="batch",
                                           name=f"score {len(paths)} files", priority=-2)
        handle.partial.connect(self._on_item)
        handle.returned.connect(self._on_done)
        handle.errored.connect(self._on_error)
        self.progress.label.setText(f"Scoring 0/{len(paths)}")
        self.progress.bar.setValue(0)
        self.progress.show()
        self.cancel_action.setEnabled(True)

    def cancel(self) -> None:
        self.window.runner.cancel("batch")

    def _say(self, text: str) -> None:
        self.window.statusBar().showMessage(text, 20000)

    def _on_item(self, item: Scored) -> None:
        self._done += 1
        self.progress.label.setText(f"Scoring {self._done}/{self._total}")
        self.progress.bar.setValue(round(1000 * self._done / max(1, self._total)))
        if item.score is not None:
            tip = f"Triage score {item.score:.2f} (highest validated finding: {item.top})"
            tip += " [cached]" if item.cached else ""
            self.window.file_dock.set_score(item.path, item.score, tip)
        elif item.withheld is not None:
            self.window.file_dock.set_score(item.path, None, "AI output withheld: "
                                            + "; ".join(item.withheld))
        elif item.error is None:
            self.window.file_dock.set_score(item.path, None, "No validated finding to rank by")
        else:
            self.window.file_dock.set_score(item.path, None, f"Not scored: {item.error}")
        emit(self.item_scored, item)

    def _finish(self) -> None:
        self.progress.hide()
        self.cancel_action.setEnabled(False)

    def _on_done(self, summary: BatchSummary) -> None:
        self._finish()
        rate = summary.scored / summary.seconds if summary.seconds > 0 else 0.0
        text = (f"Scored {summary.scored} of {summary.total} files in {summary.seconds:.1f} s "
                f"({rate:.1f}/s; {summary.cached} from cache)")
        if summary.failed:
            text += f"; {summary.failed} could not be scored (see their tooltips)"
        self._say(text)
        emit(self.finished, summary)

    def _on_error(self, exc: BaseException) -> None:
        self._finish()
        if isinstance(exc, TaskCancelled):
            self._say(f"Scoring cancelled after {self._done} of {self._total} files.")
        else:
            log.error("batch scoring failed", exc_info=exc)
            self.window.show_error(f"Scoring failed: {type(exc).__name__}: {exc}")
        emit(self.finished, None)

    def _on_sort_changed(self, mode: str) -> None:
        self.window.settings.qs.setValue("files/sort", mode)
