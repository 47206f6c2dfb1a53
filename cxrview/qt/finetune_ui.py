"""Model › Fine-tune on Corrections… and Model › Models…: the loop the product exists for.

Fine-tuning runs as a separate process (``python -m training finetune``, then
``python -m training compare``) started with QProcess; its JSON-lines stdout
drives the status bar and the dialog's live curve, its stderr goes to the run's
log. The GUI never waits on it. Cancel (or a crash, or a kill) leaves the log
and the active model untouched: a candidate is registered only after a
finished comparison, and only activating it (Models…) changes the model.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QPointF, QProcess, QProcessEnvironment, Qt, Signal
from PySide6.QtGui import QAction, QColor, QFontDatabase, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from cxrview.finetune_orchestration import kill_tree
from cxrview.qt.compat import emit
from cxrview.qt.model_evidence import evidence_lines, read_card_json
from cxrview.qt.workers import TaskCancelled, TaskState

if TYPE_CHECKING:
    from cxrview.finetune_orchestration import FinetuneOptions, FinetunePlan
    from cxrview.qt.main_window import MainWindow

log = logging.getLogger(__name__)


def plan_task(state: TaskState, ws_path: str, options: FinetuneOptions) -> FinetunePlan:
    from cxrview.core.workspace import Workspace
    from cxrview.finetune_orchestration import plan_finetune
    from cxrview.inference.registry import ModelRegistry

    with Workspace(ws_path) as ws:
        return plan_finetune(ws, ModelRegistry(), options)  # $CXRVIEW_REGISTRY_DIR or the user's


def register_task(state: TaskState, plan: FinetunePlan) -> Any:
    from cxrview.finetune_orchestration import finish_finetune
    from cxrview.inference.registry import ModelRegistry

    if state.cancelled:
        raise TaskCancelled("register")
    return finish_finetune(plan, ModelRegistry())


class FinetuneRun(QObject):
    """One fine-tune: plan (worker) → train (QProcess) → compare (QProcess) → register (worker)."""

    progress = Signal(object)  # dict: a JSON event from the training process
    stage = Signal(str)  # "planning" | "training" | "comparing" | "registering"
    finished = Signal(object)  # ModelVersion on success
    failed = Signal(str)  # message (log kept)

    def __init__(self, window: MainWindow, options: FinetuneOptions) -> None:
        super().__init__(window)
        self.window = window
        self.options = options
        self.plan: FinetunePlan | None = None
        self.process: QProcess | None = None
        self.events: list[dict[str, Any]] = []
        self._buffer = b""
        self._cancelled = False
        self._step = ""
        self._events_file: Any = None
        self.done = False

    def start(self) -> None:
        review = self.window.review
        if review.ws is None:
            self._fail("Open a workspace (or a folder of images) and review some images first.")
            return
        emit(self.stage, "planning")
        handle = self.window.runner.submit(plan_task, str(review.ws.path), self.options,
                                           slot="finetune-plan", name="plan fine-tune")
        handle.returned.connect(self._planned)
        handle.errored.connect(lambda exc: self._fail(str(exc)))

    def _planned(self, plan: FinetunePlan) -> None:
        self.plan = plan
        if self._cancelled:
            self._fail("Cancelled.")
            return
        self._launch("training", plan.train_argv)

    def _launch(self, step: str, argv: list[str]) -> None:
        from cxrview.finetune_orchestration import child_environment

        assert self.plan is not None
        self._step = step
        emit(self.stage, step)
        process = QProcess(self)
        env = QProcessEnvironment()
        for key, value in child_environment().items():
            env.insert(key, value)
        process.setProcessEnvironment(env)
        process.setStandardErrorFile(str(self.plan.log_path), QProcess.OpenModeFlag.Append)
        process.readyReadStandardOutput.connect(self._read)
        process.finished.connect(self._process_finished)
        process.errorOccurred.connect(self._process_error)
        self.process = process
        self._events_file = open(self.plan.events_path, "ab")
        process.start(argv[0], argv[1:])

    def _read(self) -> None:
        if self.process is None or self.plan is None:
            return
        self._buffer += bytes(self.process.readAllStandardOutput().data())
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if self._events_file is not None:
                self._events_file.write(line + b"\n")
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                event.setdefault("stage", self._step)
                self.events.append(event)
                emit(self.progress, event)

    def _process_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._fail(f"Could not start {self._step}: {self.process.errorString() if self.process else ''}")

    def _process_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._read()
        if self._events_file is not None:
            self._events_file.close()
            self._events_file = None
        if self.done:
            return
        if self._cancelled:
            self._fail("Cancelled. The active model is unchanged.")
            return
        if status != QProcess.ExitStatus.NormalExit or code != 0:
            errors = [e.get("message") for e in self.events if e.get("event") == "error"]
            why = errors[-1] if errors else f"exit code {code}" if status == QProcess.ExitStatus.NormalExit \
                else "the process was killed"
            self._fail(f"{self._step.capitalize()} failed ({why}). The active model is unchanged.")
            return
        assert self.plan is not None
        if self._step == "training":
            self._launch("comparing", self.plan.compare_argv)
            return
        emit(self.stage, "registering")
        handle = self.window.runner.submit(register_task, self.plan, slot="finetune-register")
        handle.returned.connect(self._registered)
        handle.errored.connect(lambda exc: self._fail(str(exc)))

    def _registered(self, version: Any) -> None:
        self.done = True
        emit(self.finished, version)

    def _fail(self, message: str) -> None:
        if self.done:
            return
        self.done = True
        if self._events_file is not None:
            self._events_file.close()
            self._events_file = None
        if self.plan is not None:
            message += f"\nLog: {self.plan.log_path}"
        emit(self.failed, message)

    def running(self) -> bool:
        return not self.done

    def cancel(self) -> None:
        self._cancelled = True
        self.window.runner.cancel("finetune-plan")
        process = self.process
        if process is not None and process.state() != QProcess.ProcessState.NotRunning:
            kill_tree(int(process.processId()))
        elif self.plan is None or self._step == "":
            self._fail("Cancelled. The active model is unchanged.")


class LossCurve(QWidget):
    """Live training curve: loss per step, validation loss per epoch."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(140)
        self.steps: list[float] = []
        self.val: list[tuple[int, float]] = []

    def add(self, event: dict[str, Any]) -> None:
        if event.get("event") == "step" and isinstance(event.get("loss"), (int, float)):
            self.steps.append(float(event["loss"]))
        elif event.get("event") == "epoch" and isinstance(event.get("val_loss"), (int, float)):
            self.val.append((len(self.steps), float(event["val_loss"])))
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # Qt override
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(30, 30, 34))
        values = self.steps + [v for _, v in self.val]
        if not self.steps or not values:
            painter.setPen(QColor(170, 170, 170))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Loss curve appears here")
            return
        lo, hi = min(values), max(values)
        span = (hi - lo) or 1.0
        w, h, n = self.width() - 10, self.height() - 20, len(self.steps)

        def point(i: float, v: float) -> QPointF:
            return QPointF(5 + w * i / max(1, n - 1), 10 + h * (1 - (v - lo) / span))

        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor(90, 170, 255), 1.5))
        for i in range(1, n):
            painter.drawLine(point(i - 1, self.steps[i - 1]), point(i, self.steps[i]))
        for i, v in enumerate(self.steps if n <= 40 else []):
            painter.drawEllipse(point(i, v), 2, 2)
        painter.setPen(QPen(QColor(255, 170, 60), 2))
        for i, v in self.val:
            painter.drawEllipse(point(min(i, n - 1), v), 3, 3)
        painter.setPen(QColor(200, 200, 200))
        painter.drawText(8, 14, f"train loss (blue) · val loss (orange)   {lo:.3f}–{hi:.3f}")


class FinetuneDialog(QDialog):
    def __init__(self, controller: FinetuneController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.setWindowTitle("Fine-tune on Corrections")
        self.setObjectName("finetune_dialog")
        form = QFormLayout()
        self.base = QLabel(controller.base_text(), self)
        self.corrections = QComboBox(self)
        self.corrections.addItem("Reviewed and corrected images only", True)
        self.corrections.addItem("All labelled images", False)
        self.replay = QSpinBox(self)
        self.replay.setRange(0, 100000)
        self.replay.setValue(200)
        self.replay.setSuffix(" original images")
        self.epochs = QSpinBox(self)
        self.epochs.setRange(1, 100)
        self.epochs.setValue(1)
        self.frozen = QSpinBox(self)
        self.frozen.setRange(0, 6)
        self.frozen.setValue(2)
        self.device = QComboBox(self)
        for name in ("auto", "cpu", "cuda", "mps"):
            self.device.addItem(name, name)
        self.estimate = QLabel("", self)
        self.estimate.setWordWrap(True)
        form.addRow("Base model", self.base)
        form.addRow("Corrections", self.corrections)
        form.addRow("Replay", self.replay)
        form.addRow("Epochs", self.epochs)
        form.addRow("Frozen blocks", self.frozen)
        form.addRow("Device", self.device)
        form.addRow("Estimate", self.estimate)
        self.status = QLabel("", self)
        self.status.setObjectName("finetune_status")
        self.status.setWordWrap(True)
        self.bar = QProgressBar(self)
        self.curve = LossCurve(self)
        self.start_button = QPushButton("Start", self)
        self.cancel_button = QPushButton("Cancel Run", self)
        self.cancel_button.setEnabled(False)
        self.close_button = QPushButton("Close", self)
        self.start_button.clicked.connect(self._start)
        self.cancel_button.clicked.connect(controller.cancel)
        self.close_button.clicked.connect(self.hide)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.start_button, self.cancel_button, self.close_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.bar)
        layout.addWidget(self.curve, 1)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        for widget in (self.corrections, self.replay, self.epochs, self.frozen, self.device):
            signal_ = getattr(widget, "valueChanged", None) or widget.currentIndexChanged
            signal_.connect(self._update_estimate)
        self._update_estimate()
        self.resize(560, 560)

    def options(self) -> FinetuneOptions:
        from cxrview.finetune_orchestration import FinetuneOptions

        return FinetuneOptions(epochs=self.epochs.value(), freeze_blocks=self.frozen.value(),
                               replay=self.replay.value(), reviewed_only=bool(self.corrections.currentData()),
                               device=self.device.currentData())

    def _update_estimate(self, *_args: object) -> None:
        self.estimate.setText(self.controller.estimate_text(self.options()))

    def _start(self) -> None:
        self.curve.steps.clear()
        self.curve.val.clear()
        self.controller.start(self.options())

    def set_running(self, on: bool) -> None:
        self.start_button.setEnabled(not on)
        self.cancel_button.setEnabled(on)


class FinetuneController(QObject):
    """Owns the menu actions, the one active run, its status-bar progress and the dialogs."""

    run_finished = Signal(object)  # ModelVersion or None

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.run: FinetuneRun | None = None
        self.dialog: FinetuneDialog | None = None
        self.last_version: Any = None
        self._estimate_inputs: tuple[Any, int, int] | None = None
        self.last_error: str | None = None
        self.bar = QProgressBar(window)
        self.bar.setObjectName("finetune_progress")
        self.bar.setMaximumWidth(220)
        self.bar.setMaximumHeight(14)
        self.bar.setFormat("fine-tune %p%")
        window.statusBar().addPermanentWidget(self.bar)
        self.bar.hide()
        menu = window.ai.model_menu
        menu.addSeparator()
        self.finetune_action = QAction("&Fine-tune on Corrections…", window)
        self.finetune_action.setObjectName("action_finetune")
        self.finetune_action.triggered.connect(self.show_dialog)
        self.models_action = QAction("&Models…", window)
        self.models_action.setObjectName("action_models")
        self.models_action.triggered.connect(self.show_models)
        menu.addAction(self.finetune_action)
        menu.addAction(self.models_action)

    # -- registry ---------------------------------------------------------------------------
    def registry(self) -> Any:
        from cxrview.inference.registry import ModelRegistry

        return ModelRegistry()  # honours $CXRVIEW_REGISTRY_DIR

    def base_text(self) -> str:
        try:
            active = self.registry().active("classifier")
            return f"{active.id} (active)"
        except Exception as exc:  # no registry / bundle: say so in the dialog
            return f"unavailable: {exc}"

    def estimate_text(self, options: FinetuneOptions) -> str:
        from cxrview.finetune_orchestration import estimate
        from cxrview.inference.card import ModelCard

        ws = self.window.review.ws
        if ws is None:
            return "Open a workspace first."
        if self._estimate_inputs is None:  # read once per showing of the dialog, not per keystroke
            try:
                card = ModelCard.read(self.registry().active("classifier").path)
            except Exception as exc:
                return f"No base model: {exc}"
            self._estimate_inputs = (card, ws.review_progress()[0], ws.image_count(present_only=True))
        card, reviewed, present = self._estimate_inputs
        images = reviewed + options.replay if options.reviewed_only else present
        est = estimate(card, images, options)
        free = est["free_memory_bytes"]
        memory = f"{est['memory_bytes'] / 1e9:.1f} GB" + (f" of {free / 1e9:.1f} GB free" if free else "")
        return (f"~{images} training images × {options.epochs} epoch(s): about {est['seconds'] // 60} min "
                f"{est['seconds'] % 60} s on CPU, batch {est['batch_size']}, memory {memory}. "
                f"{reviewed} image(s) reviewed so far.")

    # -- runs -------------------------------------------------------------------------------
    def show_dialog(self) -> FinetuneDialog:
        self._estimate_inputs = None
        if self.dialog is None:
            self.dialog = FinetuneDialog(self, self.window)
        self.dialog.base.setText(self.base_text())
        self.dialog._update_estimate()
        self.dialog.set_running(self.running())
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog

    def running(self) -> bool:
        return self.run is not None and self.run.running()

    def start(self, options: FinetuneOptions) -> bool:
        if self.running():
            self.window.show_error("A fine-tune is already running: one at a time.")
            return False
        self.last_version, self.last_error = None, None
        run = FinetuneRun(self.window, options)
        run.progress.connect(self._on_progress)
        run.stage.connect(self._on_stage)
        run.finished.connect(self._on_finished)
        run.failed.connect(self._on_failed)
        self.run = run
        self.bar.setValue(0)
        self.bar.show()
        if self.dialog is not None:
            self.dialog.set_running(True)
        run.start()
        return True

    def cancel(self) -> None:
        if self.run is not None:
            self.run.cancel()

    def _on_stage(self, stage: str) -> None:
        text = {"planning": "Exporting corrections…", "training": "Training…",
                "comparing": "Comparing with the active model on the locked set…",
                "registering": "Registering the candidate…"}.get(stage, stage)
        self.window.status.showMessage(f"Fine-tune: {text}", 0)
        if self.dialog is not None:
            self.dialog.status.setText(text)

    def _on_progress(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        text = None
        if kind == "start" and event.get("epochs"):
            self.bar.setMaximum(100)
        elif kind == "step":
            steps, epochs = event.get("steps") or 0, event.get("epochs") or 1
            if steps:
                # "step" counts from the start of the run
                self.bar.setValue(min(100, int(100 * event.get("step", 0) / (steps * epochs))))
            text = (f"epoch {event.get('epoch', 0) + 1}/{event.get('epochs', '?')}, "
                    f"step {event.get('step')}, loss {event.get('loss', 0):.3f}")
        elif kind == "epoch":
            epochs = event.get("epochs") or 1
            self.bar.setValue(int(100 * (event.get("epoch", 0) + 1) / epochs))
            score = event.get("val_mean_auroc")
            text = (f"epoch {event.get('epoch', 0) + 1}/{epochs}: train {event.get('train_loss', 0):.3f}, "
                    f"val {event.get('val_loss', 0):.3f}" + (f", val AUROC {score:.3f}" if score else ""))
        if text:
            self.window.status.showMessage(f"Fine-tune: {text}", 0)
            if self.dialog is not None:
                self.dialog.status.setText(text)
        if self.dialog is not None:
            self.dialog.curve.add(event)

    def _on_finished(self, version: Any) -> None:
        self.last_version = version
        self.bar.hide()
        verdict = (version.comparison or {}).get("verdict", "?")
        text = f"Fine-tune finished: candidate {version.id} ({verdict} on the locked set). Model › Models… " \
               "to compare and activate."
        self.window.status.showMessage(text, 0)
        if self.dialog is not None:
            self.dialog.status.setText(text)
            self.dialog.set_running(False)
        emit(self.run_finished, version)

    def _on_failed(self, message: str) -> None:
        self.last_error = message
        self.bar.hide()
        self.window.status.showMessage(f"Fine-tune stopped: {message.splitlines()[0]}", 0)
        if self.dialog is not None:
            self.dialog.status.setText(message)
            self.dialog.set_running(False)
        emit(self.run_finished, None)

    def confirm_close(self) -> bool:
        """Closing the window while training: ask (the run is stopped if the user closes anyway)."""
        if not self.running():
            return True
        if os.environ.get("CXRVIEW_ASSUME_YES"):
            answer = QMessageBox.StandardButton.Yes
        else:
            answer = QMessageBox.question(self.window, "Fine-tune running",
                                          "A fine-tune is running. Stop it and quit? The active model stays "
                                          "as it is; the run's log is kept.")
        if answer != QMessageBox.StandardButton.Yes:
            return False
        self.cancel()
        return True

    # -- models dialog ------------------------------------------------------------------------
    def show_models(self) -> ModelsDialog:
        dialog = ModelsDialog(self, self.window)
        dialog.show()
        return dialog

    def activate(self, version_id: str, *, rollback: bool = False) -> bool:
        from cxrview.inference.registry import RegistryError

        registry = self.registry()
        try:
            registry.rollback(version_id) if rollback else registry.activate(version_id)
        except RegistryError as exc:
            self.window.show_error(str(exc))
            return False
        active = registry.active("classifier")
        self.window.ai.set_bundles(active.path, self.window.ai.segmenter)
        self.window.ai.request()
        self.window.review._thresholds = self.window.review._model_thresholds()
        if any(self.window.file_dock.score(p) is not None for p in self.window.file_dock.paths()[:200]):
            self.window.file_dock.clear_scores()
            self.window.batch.start()  # scores of the old model are stale: re-score in the background
        self.window.status.showMessage(f"Active model: {active.id}", 10000)
        return True


class ModelsDialog(QDialog):
    COLUMNS = ("", "Version", "Created", "Parent", "Locked set: candidate / base AUROC", "Verdict")

    def __init__(self, controller: FinetuneController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.setWindowTitle("Models")
        self.setObjectName("models_dialog")
        self.table = QTableWidget(0, len(self.COLUMNS), self)
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._show_details)
        self.details = QTextEdit(self)
        self.details.setObjectName("models_details")
        self.details.setReadOnly(True)
        self.details.setLineWrapMode(QTextEdit.LineWrapMode.NoWrap)  # the tables are fixed-width text
        self.details.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.activate_button = QPushButton("Activate", self)
        self.rollback_button = QPushButton("Roll Back to Selected", self)
        self.activate_button.clicked.connect(self._activate)
        self.rollback_button.clicked.connect(self._rollback)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        close.rejected.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.activate_button)
        buttons.addWidget(self.rollback_button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 2)
        layout.addWidget(self.details, 3)
        layout.addLayout(buttons)
        self.resize(900, 600)
        self.refresh()

    def refresh(self) -> None:
        self.versions = self.controller.registry().versions("classifier")
        self.table.setRowCount(len(self.versions))
        for row, v in enumerate(self.versions):
            comp = v.comparison or {}
            cand = (comp.get("candidate") or {}).get("mean_auroc")
            base = (comp.get("baseline_model") or {}).get("mean_auroc")
            scores = f"{cand:.3f} / {base:.3f}" if cand is not None and base is not None else "—"
            values = ("●" if v.active else "", v.id, (v.created or "")[:19], v.parent or "—", scores,
                      comp.get("verdict", "—"))
            for col, text in enumerate(values):
                self.table.setItem(row, col, QTableWidgetItem(str(text)))
        self._show_details()

    def selected(self) -> Any:
        rows = self.table.selectionModel().selectedRows()
        return self.versions[rows[0].row()] if rows else None

    def select_id(self, version_id: str) -> None:
        for row, v in enumerate(self.versions):
            if v.id == version_id:
                self.table.selectRow(row)

    def _show_details(self) -> None:
        v = self.selected()
        active = next((x for x in self.versions if x.active), None)
        comp = (v.comparison or {}) if v is not None else {}
        can_activate = v is not None and not v.active and (v.read_only or comp.get("baseline") == (
            active.id if active else None))
        self.activate_button.setEnabled(bool(can_activate))
        self.rollback_button.setEnabled(v is not None and not v.active)
        if v is None:
            self.details.setPlainText("Select a version.")
            return
        lines = [f"{v.id}  ({'active' if v.active else 'inactive'}{', shipped' if v.read_only else ''})",
                 f"path: {v.path}"]
        if v.log_path:
            lines.append(f"training log: {v.log_path}")
        lines.append("")
        try:
            lines += evidence_lines(read_card_json(v.path))
        except (OSError, ValueError, TypeError, AttributeError) as exc:  # a bad card: say so, go on
            lines.append(f"Validation evidence: card unreadable ({type(exc).__name__}: {exc})")
        if comp:
            ci = comp.get("mean_auroc_diff_ci")
            lines.append(f"\nCompared with {comp.get('baseline')} on the locked set "
                         f"({comp.get('locked_set')}):")
            if ci:
                lines.append(f"mean AUROC difference 95% CI [{ci[0]:+.3f}, {ci[1]:+.3f}] → "
                             f"{comp.get('verdict')}")
            lines.append(f"{'finding':22s} {'n+':>4s} {'cand':>6s} {'base':>6s} {'diff [95% CI]':>22s}")
            for name, e in (comp.get("per_label") or {}).items():
                if e.get("candidate") is None:
                    lines.append(f"{name:22s} {e.get('n_pos', 0):4d}   (no AUROC: needs positives "
                                 "and negatives)")
                else:
                    lines.append(f"{name:22s} {e['n_pos']:4d} {e['candidate']:6.3f} {e['baseline']:6.3f} "
                                 f"{e['diff']:+.3f} [{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}]")
            thresholds = (comp.get("candidate") or {}).get("thresholds") or {}
            if thresholds:
                lines.append("\nThresholds re-chosen on the fine-tune's validation split (F1): "
                             + ", ".join(f"{k} {t:.2f}" for k, t in thresholds.items()))
        elif not v.read_only:
            lines.append("\nNo comparison on the locked set yet: it cannot be activated.")
        self.details.setPlainText("\n".join(lines))

    def _activate(self) -> None:
        v = self.selected()
        if v is not None and self.controller.activate(v.id, rollback=v.read_only):
            self.refresh()

    def _rollback(self) -> None:
        v = self.selected()
        if v is not None and self.controller.activate(v.id, rollback=True):
            self.refresh()
