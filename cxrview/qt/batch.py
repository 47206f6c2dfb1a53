"""Model › Score All Files: batch scoring of the file list in the background.

Each image is decoded and predicted on the worker wrapper (slot ``"batch"``, so a
second request replaces the first), with the results cache in front: images
scored before with the same models (``scoring.predict_cached``: same model input,
header and model identity) cost only a decode. Every scored image is streamed to the
GUI thread (``state.publish``) and shows its triage score in the file list right away; progress and a Cancel
button sit in the status bar. Opening a scored image then shows its findings
from the cache at once.

With a review workspace open, the predictions are recorded in it as ``cxrview score``
records them (``scoring.record_predictions``: probabilities, out-of-sample flags, triage
and mislabel scores; withheld films skipped), a few images at a time from the worker's
own connection, so the worklist's triage and mislabel sorts follow the run.

Collaborators: the task runner, the file list, the settings, a notifier, and two
callables that say which models the viewer uses and which workspace is open.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from cxrview.qt.actions import ActionSet, ActionSpec
from cxrview.qt.compat import emit
from cxrview.qt.workers import TaskCancelled, TaskRunner, TaskState

if TYPE_CHECKING:
    from cxrview.core.workspace import Workspace
    from cxrview.inference.card import ModelCard
    from cxrview.inference.predict import Prediction
    from cxrview.qt.ai.controller import ModelChoice
    from cxrview.qt.docks.file_list import FileListDock
    from cxrview.qt.notify import Notifier
    from cxrview.qt.settings import AppSettings

log = logging.getLogger(__name__)
RECORD_EVERY = 16  # images recorded in the workspace at a time: the worklist follows, memory stays bounded


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
    recorded: int = 0  # predictions stored in the open workspace (withheld films are not)


class _Recorder:
    """Records a run's predictions in a workspace every :data:`RECORD_EVERY` images (worker side)."""

    def __init__(self, workspace: str | None, card: ModelCard) -> None:
        from cxrview.core.workspace import Workspace, WorkspaceError
        from cxrview.inference.scoring import workspace_problem

        self.ws: Workspace | None = None
        self.pending: dict[int, Prediction] = {}
        self.recorded = 0
        self.card = card
        if workspace is None or workspace_problem(card) is not None:
            return  # no workspace, or a model whose labels are not its findings: file-list scores only
        try:
            self.ws = Workspace(workspace)
        except (WorkspaceError, OSError) as exc:
            log.warning("batch scores cannot be recorded in %s: %s", workspace, exc)

    def add(self, path: str, prediction: Prediction) -> None:
        if self.ws is None:
            return
        record = self.ws.image_by_file(path)
        if record is not None:
            self.pending[record.id] = prediction
        if len(self.pending) >= RECORD_EVERY:
            self.flush()

    def flush(self) -> None:
        from cxrview.inference.scoring import record_predictions

        if self.ws is None or not self.pending:
            return
        self.recorded += record_predictions(self.ws, self.card, self.pending).stored
        self.pending.clear()

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()


def score_files_task(state: TaskState, classifier: str, segmenter: str | None, device: str,
                     paths: list[str], workspace: str | None = None) -> BatchSummary:
    """Worker body (no Qt): predict every path (cache first), publishing a :class:`Scored` each, and
    record the predictions in ``workspace`` when one is given (also what was done before a cancel)."""
    from cxrview.core import ImageLoadError, load_image
    from cxrview.inference.cache import ResultCache
    from cxrview.inference.gate import is_withheld, withheld_reasons
    from cxrview.inference.predict import Cancelled, Predictor, triage_score
    from cxrview.inference.scoring import predict_cached
    from cxrview.qt.ai.tasks import leave_a_core_for_the_gui

    start = time.perf_counter()
    leave_a_core_for_the_gui()
    predictor = Predictor(classifier, segmenter, device=device)
    cache = ResultCache()
    recorder = _Recorder(workspace, predictor.card)
    scored = cached = failed = 0
    try:
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
                recorder.add(path, result.prediction)
                state.publish(Scored(path, score, top, hit,
                                     withheld=withheld_reasons(data) if is_withheld(data) else None))
            state.set_progress((index + 1) / len(paths))
        recorder.flush()
    except TaskCancelled:
        recorder.flush()  # what was scored before the cancel is kept, as `cxrview score` keeps it
        raise
    finally:
        recorder.close()
    return BatchSummary(len(paths), scored, cached, failed, time.perf_counter() - start, recorder.recorded)


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
    """Owns the Score All Files command, the status-bar progress and the file-list scores."""

    item_scored = Signal(object)  # Scored
    finished = Signal(object)  # BatchSummary, or None when cancelled / failed

    def __init__(self, runner: TaskRunner, files: FileListDock, settings: AppSettings, notifier: Notifier, *,
                 models: Callable[[], ModelChoice], workspace: Callable[[], Path | None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.files = files
        self.qs = settings.qs
        self.notifier = notifier
        self._models = models
        self._workspace = workspace
        self._done = 0
        self._total = 0
        self.progress = BatchProgress()  # the window puts it into the status bar
        self.progress.cancel_button.clicked.connect(self.cancel)
        self.progress.hide()
        self.actions = ActionSet(self, [
            ActionSpec("score_all", "&Score All Files", "model.batch", self.start, keys=("Ctrl+Shift+S",),
                       tip="Predict every file in the list in the background and show triage scores"),
            ActionSpec("cancel_scoring", "Cancel Scoring", "model.batch", self.cancel, enabled=False),
        ])
        self.action = self.actions["score_all"]
        self.cancel_action = self.actions["cancel_scoring"]
        files.sort_changed.connect(self._on_sort_changed)
        files.set_sort_mode(str(self.qs.value("files/sort", "file") or "file"))

    def start(self) -> None:
        paths = self.files.paths()
        if not paths:
            self.notifier.status("Open a folder first: there is nothing to score.", 20000)
            return
        self._done, self._total = 0, len(paths)
        models = self._models()
        workspace = self._workspace()
        handle = self.runner.submit(score_files_task, models.classifier, models.segmenter, models.device,
                                    list(paths), None if workspace is None else str(workspace), slot="batch",
                                    name=f"score {len(paths)} files", priority=-2)
        handle.partial.connect(self._on_item)
        handle.returned.connect(self._on_done)
        handle.errored.connect(self._on_error)
        self.progress.label.setText(f"Scoring 0/{len(paths)}")
        self.progress.bar.setValue(0)
        self.progress.show()
        self.cancel_action.setEnabled(True)

    def cancel(self) -> None:
        self.runner.cancel("batch")

    def model_changed(self) -> None:
        """Scores of the previous model are stale: re-score in the background if any are shown."""
        if any(self.files.score(p) is not None for p in self.files.paths()[:200]):
            self.files.clear_scores()
            self.start()

    def _on_item(self, item: Scored) -> None:
        self._done += 1
        self.progress.label.setText(f"Scoring {self._done}/{self._total}")
        self.progress.bar.setValue(round(1000 * self._done / max(1, self._total)))
        if item.score is not None:
            tip = f"Triage score {item.score:.2f} (highest validated finding: {item.top})"
            tip += " [cached]" if item.cached else ""
            self.files.set_score(item.path, item.score, tip)
        elif item.withheld is not None:
            self.files.set_score(item.path, None, "AI output withheld: " + "; ".join(item.withheld))
        elif item.error is None:
            self.files.set_score(item.path, None, "No validated finding to rank by")
        else:
            self.files.set_score(item.path, None, f"Not scored: {item.error}")
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
        self.notifier.status(text, 20000)
        emit(self.finished, summary)

    def _on_error(self, exc: BaseException) -> None:
        self._finish()
        if isinstance(exc, TaskCancelled):
            self.notifier.status(f"Scoring cancelled after {self._done} of {self._total} files.", 20000)
        else:
            log.error("batch scoring failed", exc_info=exc)
            self.notifier.error(f"Scoring failed: {type(exc).__name__}: {exc}")
        emit(self.finished, None)

    def _on_sort_changed(self, mode: str) -> None:
        self.qs.setValue("files/sort", mode)
