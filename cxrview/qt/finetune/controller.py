"""Model › Fine-tune on Corrections… and Model › Models…: the loop the product exists for.

The controller owns the two commands, the one run at a time (:mod:`~cxrview.qt.finetune.run`),
its status-bar progress and the dialogs (:mod:`~cxrview.qt.finetune.dialog`,
:mod:`~cxrview.qt.finetune.models_dialog`). Collaborators: the task runner, a notifier, the
open workspace (a callable) and a parent for its dialogs; activating a model is announced
with ``model_activated`` and the window makes the viewer use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QMessageBox, QProgressBar, QWidget

from cxrview.qt.actions import ActionSet, ActionSpec
from cxrview.qt.compat import emit
from cxrview.qt.finetune.dialog import FinetuneDialog
from cxrview.qt.finetune.models_dialog import ModelsDialog
from cxrview.qt.finetune.run import FinetuneRun
from cxrview.qt.workers import TaskRunner

if TYPE_CHECKING:
    from cxrview.core.workspace import Workspace
    from cxrview.finetune_orchestration import FinetuneOptions
    from cxrview.inference.card import ModelCard
    from cxrview.inference.registry import ModelRegistry, ModelVersion
    from cxrview.qt.notify import Notifier


class FinetuneController(QObject):
    """Owns the fine-tune commands, the one active run, its status-bar progress and the dialogs."""

    run_finished = Signal(object)  # ModelVersion or None
    model_activated = Signal(str)  # the classifier bundle now active (activated or rolled back to)

    def __init__(self, runner: TaskRunner, notifier: Notifier, *, workspace: Callable[[], Workspace | None],
                 dialog_parent: QWidget | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.notifier = notifier
        self._workspace = workspace
        self.dialog_parent = dialog_parent
        self.run: FinetuneRun | None = None
        self.dialog: FinetuneDialog | None = None
        self.last_version: ModelVersion | None = None
        self._estimate_inputs: tuple[ModelCard, dict[str, int], int] | None = None
        self.last_error: str | None = None
        self.bar = QProgressBar()  # the window puts it into the status bar
        self.bar.setObjectName("finetune_progress")
        self.bar.setMaximumWidth(220)
        self.bar.setMaximumHeight(14)
        self.bar.setFormat("fine-tune %p%")
        self.bar.hide()
        self.actions = ActionSet(self, [
            ActionSpec("finetune", "&Fine-tune on Corrections…", "model.finetune", self.show_dialog),
            ActionSpec("models", "&Models…", "model.finetune", self.show_models),
        ])

    # -- registry ---------------------------------------------------------------------------
    def registry(self) -> ModelRegistry:
        from cxrview.inference.registry import ModelRegistry

        return ModelRegistry()  # honours $CXRVIEW_REGISTRY_DIR

    def base_text(self) -> str:
        try:
            active = self.registry().active("classifier")
            return f"{active.id} (active)"
        except Exception as exc:  # no registry / bundle: say so in the dialog
            return f"unavailable: {exc}"

    def estimate_text(self, options: FinetuneOptions) -> str:
        from cxrview.finetune_orchestration import ensure_locked_patients, estimate
        from cxrview.inference.card import ModelCard

        ws = self._workspace()
        if ws is None:
            return "Open a workspace first."
        if self._estimate_inputs is None:  # read once per showing of the dialog, not per keystroke
            try:
                card = ModelCard.read(self.registry().active("classifier").path)
            except Exception as exc:
                return f"No base model: {exc}"
            try:  # the locked set the run will use (chosen once per workspace, as plan_finetune does)
                locked = ensure_locked_patients(ws, card)
            except Exception:  # a read-only workspace: the set chosen before, if any
                locked = ws.locked_patients()
            counts = ws.training_counts(excluding_patients=locked)
            self._estimate_inputs = (card, counts, ws.image_count(present_only=True))
        card, counts, present = self._estimate_inputs
        trainable = counts["trainable"]
        images = trainable + options.replay if options.reviewed_only else present
        est = estimate(card, images, options)
        free = est["free_memory_bytes"]
        memory = f"{est['memory_bytes'] / 1e9:.1f} GB" + (f" of {free / 1e9:.1f} GB free" if free else "")
        return (f"~{images} training images × {options.epochs} epoch(s): about {est['seconds'] // 60} min "
                f"{est['seconds'] % 60} s on CPU, batch {est['batch_size']}, memory {memory}. "
                f"{counts['reviewed']} image(s) reviewed so far, {trainable} of them trainable"
                + (f" ({counts['locked']} in the locked evaluation set, {counts['reserved']} of reserved "
                   "acceptance patients: never trained on)" if counts["locked"] or counts["reserved"] else "")
                + ".")

    # -- runs -------------------------------------------------------------------------------
    def show_dialog(self) -> FinetuneDialog:
        self._estimate_inputs = None
        if self.dialog is None:
            self.dialog = FinetuneDialog(self, self.dialog_parent)
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
            self.notifier.error("A fine-tune is already running: one at a time.")
            return False
        self.last_version, self.last_error = None, None
        ws = self._workspace()
        run = FinetuneRun(self.runner, ws.path if ws is not None else None, options, self)
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
        self.notifier.status(f"Fine-tune: {text}", 0)
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
            self.notifier.status(f"Fine-tune: {text}", 0)
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
        self.notifier.status(text, 0)
        if self.dialog is not None:
            self.dialog.status.setText(text)
            self.dialog.set_running(False)
        emit(self.run_finished, version)

    def _on_failed(self, message: str) -> None:
        self.last_error = message
        self.bar.hide()
        self.notifier.status(f"Fine-tune stopped: {message.splitlines()[0]}", 0)
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
            answer = QMessageBox.question(self.dialog_parent, "Fine-tune running",
                                          "A fine-tune is running. Stop it and quit? The active model stays "
                                          "as it is; the run's log is kept.")
        if answer != QMessageBox.StandardButton.Yes:
            return False
        self.cancel()
        return True

    # -- models dialog ------------------------------------------------------------------------
    def show_models(self) -> ModelsDialog:
        dialog = ModelsDialog(self, self.dialog_parent)
        dialog.show()
        return dialog

    def activate(self, version_id: str, *, rollback: bool = False) -> bool:
        from cxrview.inference.registry import RegistryError

        registry = self.registry()
        try:
            registry.rollback(version_id) if rollback else registry.activate(version_id)
        except RegistryError as exc:
            self.notifier.error(str(exc))
            return False
        active = registry.active("classifier")
        emit(self.model_activated, str(active.path))  # the viewer, review and batch scores follow
        self.notifier.status(f"Active model: {active.id}", 10000)
        return True
