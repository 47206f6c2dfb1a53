"""One fine-tune run in the GUI: plan (worker) → train (QProcess) → compare (QProcess) → register
(worker), with the steps of :mod:`cxrview.finetune_orchestration`.

Fine-tuning runs as separate processes (``python -m training finetune``, then
``python -m training compare``) started with QProcess; their JSON-lines stdout drives
the progress, their stderr goes to the run's log. The GUI never waits on them. Cancel
(or a crash, or a kill) leaves the log and the active model untouched: a candidate is
registered only after a finished comparison, and only activating it changes the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Signal

from cxrview.finetune_orchestration import kill_tree
from cxrview.qt.compat import emit
from cxrview.qt.workers import TaskCancelled, TaskRunner, TaskState

if TYPE_CHECKING:
    from cxrview.finetune_orchestration import FinetuneOptions, FinetunePlan
    from cxrview.inference.registry import ModelVersion


def plan_task(state: TaskState, ws_path: str, options: FinetuneOptions) -> FinetunePlan:
    from cxrview.core.workspace import Workspace
    from cxrview.finetune_orchestration import plan_finetune
    from cxrview.inference.registry import ModelRegistry

    with Workspace(ws_path) as ws:
        return plan_finetune(ws, ModelRegistry(), options)  # $CXRVIEW_REGISTRY_DIR or the user's


def register_task(state: TaskState, plan: FinetunePlan) -> ModelVersion:
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

    def __init__(self, runner: TaskRunner, workspace: Path | None, options: FinetuneOptions,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.workspace = workspace
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
        if self.workspace is None:
            self._fail("Open a workspace (or a folder of images) and review some images first.")
            return
        emit(self.stage, "planning")
        handle = self.runner.submit(plan_task, str(self.workspace), self.options,
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
        handle = self.runner.submit(register_task, self.plan, slot="finetune-register")
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
        self.runner.cancel("finetune-plan")
        process = self.process
        if process is not None and process.state() != QProcess.ProcessState.NotRunning:
            kill_tree(int(process.processId()))
        elif self.plan is None or self._step == "":
            self._fail("Cancelled. The active model is unchanged.")
