"""File › Workspace › Import NIH Dataset… and Export…: thin forms over the Qt-free core.

Both jobs are short (the full NIH index imports in about a second) but still
run on the worker wrapper so the window never freezes; errors are shown in
the dialog, never raised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from cxrview.qt.workers import TaskRunner, TaskState


def _path_row(parent: QWidget, edit: QLineEdit, pick: Any) -> QHBoxLayout:
    row = QHBoxLayout()
    row.addWidget(edit, 1)
    button = QPushButton("Browse…", parent)
    button.clicked.connect(pick)
    row.addWidget(button)
    return row


def import_task(state: TaskState, images: str, data_entry: str, bbox: str | None, workspace: str,
                replace: bool = False) -> str:
    from cxrview.core.nih_import import import_nih
    from cxrview.core.workspace import Workspace

    with Workspace(workspace, create=True, images_root=images) as ws:
        summary = import_nih(ws, data_entry, images, bbox or None, replace_dataset_labels=replace)
        return (f"{summary.rows} images ({summary.present} on this machine), {summary.boxes} boxes, "
                f"{summary.seconds:.1f} s|{ws.path}")


def export_task(state: TaskState, workspace: str, fmt: str, out: str,
                options: dict[str, Any]) -> dict[str, Any]:
    from cxrview.core.dataset_export import export_workspace
    from cxrview.core.workspace import Workspace

    with Workspace(workspace) as ws:
        return export_workspace(ws, fmt, Path(out), **options)


class _JobDialog(QDialog):
    def __init__(self, title: str, parent: QWidget | None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.runner = TaskRunner(self)
        self.form = QFormLayout()
        self.message = QLabel("", self)
        self.message.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel, self)
        self.buttons.accepted.connect(self.start)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        self.resize(620, 10)

    def start(self) -> None:
        raise NotImplementedError

    def _run(self, fn: Any, *args: Any) -> None:
        self.buttons.setEnabled(False)
        self.message.setText("Working…")
        handle = self.runner.submit(fn, *args, slot="job")
        handle.returned.connect(self._done)
        handle.errored.connect(self._failed)

    def _failed(self, exc: BaseException) -> None:
        self.buttons.setEnabled(True)
        self.message.setText(f"<span style='color:#e06060'>{type(exc).__name__}: {exc}</span>")

    def _done(self, result: Any) -> None:
        raise NotImplementedError

    def done(self, code: int) -> None:  # Qt override: never leave a job running behind a closed dialog
        self.runner.cancel_all()
        super().done(code)


class ImportNihDialog(_JobDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Import NIH Dataset", parent)
        self.result_path: str | None = None
        self._job: tuple[str, str, str | None, str] | None = None
        self.images = QLineEdit(self)
        self.data_entry = QLineEdit(self)
        self.bbox = QLineEdit(self)
        self.workspace = QLineEdit(self)
        self.workspace.setPlaceholderText("default: next to the images")
        self.form.addRow("Image folder", _path_row(self, self.images, self._pick_images))
        self.form.addRow("Data_Entry_2017 CSV", _path_row(self, self.data_entry, self._pick_csv))
        self.form.addRow("BBox_List_2017 CSV (optional)", _path_row(self, self.bbox, self._pick_bbox))
        self.form.addRow("Workspace file", self.workspace)

    def _pick_images(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Image folder")
        if folder:
            self.images.setText(folder)

    def _pick_csv(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Data_Entry CSV", "", "CSV (*.csv *.csv.gz)")
        if path:
            self.data_entry.setText(path)

    def _pick_bbox(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "BBox_List CSV", "", "CSV (*.csv *.csv.gz)")
        if path:
            self.bbox.setText(path)

    def start(self) -> None:
        from cxrview.core.workspace import default_workspace_path

        images, csv = self.images.text().strip(), self.data_entry.text().strip()
        if not images or not csv:
            self.message.setText("Choose the image folder and the Data_Entry CSV.")
            return
        target = self.workspace.text().strip() or str(default_workspace_path(images))
        self._job = (images, csv, self.bbox.text().strip() or None, target)
        self._run(import_task, *self._job)

    def _failed(self, exc: BaseException) -> None:
        from cxrview.core.nih_import import DatasetReplaceRefused

        if isinstance(exc, DatasetReplaceRefused) and self._job is not None and self.confirm_replace(exc):
            self._run(import_task, *self._job, True)
            return
        super()._failed(exc)

    def confirm_replace(self, exc: BaseException) -> bool:
        """Ask before these CSVs replace the dataset labels already in the workspace (default: no)."""
        answer = QMessageBox.question(
            self, "Replace dataset labels?", f"{exc}\n\nReplace them?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def _done(self, result: str) -> None:
        text, _, path = result.partition("|")
        self.result_path = path
        self.message.setText(f"Imported {text}.")
        self.accept()


class ExportDialog(_JobDialog):
    FORMATS: ClassVar[dict[str, str]] = {"nih-csv": "NIH CSVs (Data_Entry + BBox_List) — folder",
                                         "coco": "COCO JSON (boxes) — file",
                                         "manifest": "Training manifest (JSON, for fine-tuning) — file"}

    def __init__(self, workspace: Path, parent: QWidget | None = None) -> None:
        super().__init__("Export Workspace", parent)
        self.workspace_path = workspace
        self.format = QComboBox(self)
        for key, text in self.FORMATS.items():
            self.format.addItem(text, key)
        self.output = QLineEdit(self)
        self.reviewed_only = QCheckBox("Reviewed images only (manifest)", self)
        self.patient_ids = QCheckBox("Include real patient IDs (default: pseudonyms)", self)
        self.pseudonymise = QCheckBox("Pseudonymise to share: rename files, no patient IDs, ID residue, "
                                      "reserved flag, reviewer logins or local paths", self)
        self.pseudonymise.toggled.connect(lambda on: self.patient_ids.setEnabled(not on))
        self.form.addRow("Format", self.format)
        self.form.addRow("Output", _path_row(self, self.output, self._pick_output))
        self.form.addRow("", self.reviewed_only)
        self.form.addRow("", self.patient_ids)
        self.form.addRow("", self.pseudonymise)
        self.summary: dict[str, Any] | None = None

    def _pick_output(self) -> None:
        if self.format.currentData() == "nih-csv":
            path = QFileDialog.getExistingDirectory(self, "Export folder")
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Export file", "", "JSON (*.json)")
        if path:
            self.output.setText(path)

    def start(self) -> None:
        out = self.output.text().strip()
        if not out:
            self.message.setText("Choose where to write the export.")
            return
        fmt = self.format.currentData()
        options: dict[str, Any] = {}
        if self.pseudonymise.isChecked():
            options["pseudonymise"] = True
        elif fmt != "coco":
            options["include_patient_ids"] = self.patient_ids.isChecked()
        if fmt == "manifest":
            options["reviewed_only"] = self.reviewed_only.isChecked()
        self._run(export_task, str(self.workspace_path), fmt, out, options)

    def _done(self, result: dict[str, Any]) -> None:
        self.summary = result
        self.message.setText("Exported: " + ", ".join(f"{k} {v}" for k, v in result.items()))
        self.buttons.setEnabled(True)
        self.buttons.button(QDialogButtonBox.StandardButton.Cancel).setText("Close")
