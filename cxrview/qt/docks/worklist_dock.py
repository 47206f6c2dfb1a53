"""The Worklist panel: filters, sort order and review progress for the open workspace.

It builds a :class:`WorklistQuery` from its controls and asks for it
(``query_changed``); the review controller runs the query and puts the result
into the file list, so paging (PgUp/PgDn, Confirm & Next) follows the worklist.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QFormLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from cxrview.core.findings import LABEL_VALUES, NIH_FINDINGS, REVIEW_STATES
from cxrview.core.worklist import WorklistQuery
from cxrview.qt.compat import emit
from cxrview.qt.text_keys import keep_keys

SORT_TEXT = {"file": "File name", "triage": "Triage score (highest first)",
             "mislabel": "Most likely mislabelled first", "patient": "Patient, follow-up"}


class WorklistDock(QDockWidget):
    query_changed = Signal(object)  # WorklistQuery

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Worklist", parent)
        self.setObjectName("dock_worklist")
        body = QWidget(self)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(6, 4, 6, 4)
        self.title = QLabel("No workspace open.", body)
        self.title.setObjectName("worklist_title")
        self.title.setWordWrap(True)
        layout.addWidget(self.title)
        form = QFormLayout()
        self.sort = QComboBox(body)
        self.sort.setObjectName("worklist_sort")
        for key, text in SORT_TEXT.items():
            self.sort.addItem(text, key)
        self.finding = QComboBox(body)
        self.finding.setObjectName("worklist_finding")
        self.finding.addItem("Any finding", None)
        for name in NIH_FINDINGS:
            self.finding.addItem(name.replace("_", " "), name)
        self.finding_value = QComboBox(body)
        for value in LABEL_VALUES:
            self.finding_value.addItem(value, value)
        self.state = QComboBox(body)
        self.state.setObjectName("worklist_state")
        self.state.addItem("Any state", None)
        for value in (*REVIEW_STATES, "reviewed"):
            self.state.addItem(value.capitalize(), value)
        self.view = QComboBox(body)
        self.view.addItem("Any view", None)
        for value in ("PA", "AP"):
            self.view.addItem(value, value)
        self.disagreement = QCheckBox("Only where labels and model disagree", body)
        self.disagreement.setObjectName("worklist_disagreement")
        self.text = QLineEdit(body)
        self.text.setPlaceholderText("File name contains…")
        form.addRow("Sort", self.sort)
        form.addRow("Finding", self.finding)
        form.addRow("Label is", self.finding_value)
        form.addRow("State", self.state)
        form.addRow("View", self.view)
        layout.addLayout(form)
        layout.addWidget(self.disagreement)
        layout.addWidget(self.text)
        self.count_label = QLabel("", body)
        self.count_label.setObjectName("worklist_count")
        layout.addWidget(self.count_label)
        self.progress = QProgressBar(body)
        self.progress.setObjectName("worklist_progress")
        self.progress.setFormat("%v of %m reviewed")
        layout.addWidget(self.progress)
        layout.addStretch(1)
        self.setWidget(body)
        for widget in (self.sort, self.finding, self.finding_value, self.state, self.view):
            widget.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
            widget.currentIndexChanged.connect(self._changed)
        self.disagreement.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.disagreement.toggled.connect(self._changed)
        self._typing = QTimer(self)
        self._typing.setSingleShot(True)
        self._typing.setInterval(250)
        self._typing.timeout.connect(self._changed)
        self.text.textChanged.connect(self._typing.start)
        self.text.returnPressed.connect(self._apply_typed)  # Return filters now; it confirms nothing
        keep_keys(self.text)
        self._quiet = False
        self.setEnabled(False)

    def query(self) -> WorklistQuery:
        return WorklistQuery(finding=self.finding.currentData(),
                             finding_value=self.finding_value.currentData(),
                             state=self.state.currentData(), view=self.view.currentData(),
                             disagreement=self.disagreement.isChecked(),
                             text=self.text.text().strip() or None, sort=self.sort.currentData())

    def set_sort(self, sort: str) -> None:
        index = self.sort.findData(sort)
        if index >= 0:
            self.sort.setCurrentIndex(index)

    def set_state_filter(self, state: str | None) -> None:
        index = self.state.findData(state)
        if index >= 0:
            self.state.setCurrentIndex(index)

    def set_workspace(self, title: str | None) -> None:
        self.setEnabled(title is not None)
        self.title.setText(title or "No workspace open.")

    def set_counts(self, shown: int, total: int, reviewed: int, present: int, elapsed_ms: float) -> None:
        more = f" (first {shown})" if shown < total else ""
        self.count_label.setText(f"{total} image(s) match{more} · {elapsed_ms:.0f} ms")
        self.progress.setMaximum(max(present, 1))
        self.progress.setValue(reviewed)

    def _apply_typed(self) -> None:
        self._typing.stop()
        self._changed()

    def _changed(self, *_args: object) -> None:
        if not self._quiet:
            emit(self.query_changed, self.query())
