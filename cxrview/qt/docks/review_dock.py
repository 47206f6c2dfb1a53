"""The Review panel: the image's labels side by side (dataset · model · decision), reason, note,
review state and the same patient's other films. Pure view: the review controller fills it and
turns its signals into commands.

Edits made here carry the id of the image they were typed for (``note_edited(image_id, text)``,
``reason_changed(image_id, reason)``): a note still being typed when another image is shown is
saved on the image it was typed for, never on the new one. The reason starts at "(none)" on
every image, so a reason chosen for one image is never attached to another's edits."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cxrview.core.findings import ABSENT, NIH_FINDINGS, PRESENT, REASON_CODES, UNCERTAIN
from cxrview.core.workspace import NOT_TRAINED, FindingState, ImageRecord
from cxrview.qt.compat import emit
from cxrview.qt.text_keys import keep_keys

VALUE_COLORS = {PRESENT: QColor(235, 110, 90), ABSENT: QColor(140, 200, 140), UNCERTAIN: QColor(240, 200, 80)}
STATE_TEXT = {"unreviewed": "Unreviewed", "confirmed": "Confirmed ✓", "corrected": "Corrected ✎",
              "flagged": "Flagged ⚑"}
COLUMNS = ("Key", "Finding", "Dataset", "Model", "Decision")


def finding_key(index: int) -> str:
    """Keys 1–9, 0 for findings 1–10, Alt+1…Alt+4 for 11–14."""
    return str((index + 1) % 10) if index < 10 else f"Alt+{index - 9}"


class ReviewDock(QDockWidget):
    cycle_requested = Signal(str)  # finding: present → absent → uncertain → present
    finding_selected = Signal(str)
    note_edited = Signal(int, str)  # image id the note was typed for, the text
    note_committed = Signal()  # Return in the note field: typing is over (focus may go back)
    reason_changed = Signal(int, object)  # image id shown when the reason was picked, reason or None
    confirm_requested = Signal()
    flag_requested = Signal()
    next_unreviewed_requested = Signal()
    open_image_requested = Signal(int)  # image id (same patient list)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Review", parent)
        self.setObjectName("dock_review")
        body = QWidget(self)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(6, 4, 6, 4)
        self.header = QLabel("Open a folder or a workspace to review.", body)
        self.header.setObjectName("review_header")
        self.header.setWordWrap(True)
        self.state_label = QLabel("", body)
        self.state_label.setObjectName("review_state")
        bold = QFont(self.state_label.font())
        bold.setBold(True)
        self.state_label.setFont(bold)
        self.training_badge = QLabel("", body)
        self.training_badge.setObjectName("review_not_trained")
        self.training_badge.setWordWrap(True)
        self.training_badge.setStyleSheet("color: #d0a040")
        self.training_badge.hide()
        layout.addWidget(self.header)
        layout.addWidget(self.state_label)
        layout.addWidget(self.training_badge)

        self.table = QTableWidget(len(NIH_FINDINGS), len(COLUMNS), body)
        self.table.setObjectName("review_table")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(self.table.fontMetrics().height() + 6)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys belong to the review actions
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for row, name in enumerate(NIH_FINDINGS):
            self.table.setItem(row, 0, QTableWidgetItem(finding_key(row)))
            self.table.setItem(row, 1, QTableWidgetItem(name.replace("_", " ")))
            for col in (2, 3, 4):
                self.table.setItem(row, col, QTableWidgetItem(""))
        self.table.cellClicked.connect(self._on_cell_clicked)
        layout.addWidget(self.table, 1)

        reason_row = QHBoxLayout()
        reason_row.addWidget(QLabel("Reason for changes:", body))
        self.reason = QComboBox(body)
        self.reason.setObjectName("review_reason")
        self.reason.addItem("(none)", None)
        for key, text in REASON_CODES.items():
            self.reason.addItem(text, key)
        self.reason.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.reason.currentIndexChanged.connect(self._on_reason)
        reason_row.addWidget(self.reason, 1)
        layout.addLayout(reason_row)
        self.note = QLineEdit(body)
        self.note.setObjectName("review_note")
        self.note.setPlaceholderText("Note (Enter to save)")
        self.note.editingFinished.connect(self._on_note)
        self.note.returnPressed.connect(lambda: emit(self.note_committed))
        keep_keys(self.note)
        self._image_id: int | None = None  # the image shown (what the note and reason belong to)
        self._note_saved = ""  # its stored note, to tell an edit from the text as shown
        layout.addWidget(self.note)

        buttons = QHBoxLayout()
        self.confirm_button = QPushButton("Confirm && Next", body)
        self.flag_button = QPushButton("Flag", body)
        self.next_button = QPushButton("Next Unreviewed", body)
        for button in (self.confirm_button, self.flag_button, self.next_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            buttons.addWidget(button)
        self.confirm_button.clicked.connect(lambda: emit(self.confirm_requested))
        self.flag_button.clicked.connect(lambda: emit(self.flag_requested))
        self.next_button.clicked.connect(lambda: emit(self.next_unreviewed_requested))
        layout.addLayout(buttons)
        self.auto_advance = QCheckBox("Advance to the next image after Confirm / Flag", body)
        self.auto_advance.setObjectName("review_auto_advance")
        self.auto_advance.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        layout.addWidget(self.auto_advance)

        layout.addWidget(QLabel("Same patient:", body))
        self.patient_list = QListWidget(body)
        self.patient_list.setObjectName("review_patient_list")
        self.patient_list.setMaximumHeight(90)
        self.patient_list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.patient_list.itemActivated.connect(self._on_patient_item)
        self.patient_list.itemClicked.connect(self._on_patient_item)
        layout.addWidget(self.patient_list)
        self.setWidget(body)
        self.set_enabled(False)

    def set_enabled(self, on: bool) -> None:
        for widget in (self.table, self.reason, self.note, self.confirm_button, self.flag_button,
                       self.next_button, self.patient_list):
            widget.setEnabled(on)

    # -- filling ------------------------------------------------------------------------
    def show_image(self, record: ImageRecord, findings: list[FindingState], thresholds: dict[str, float],
                   same_patient: list[ImageRecord], *, not_trained: str | None = None) -> None:
        """``not_trained``: why fine-tuning will not learn from this image (shown as a badge)."""
        self.set_enabled(True)
        bits = [f"<b>{record.file}</b>"]
        if record.patient_id is not None:
            bits.append(f"patient {record.patient_id}, follow-up {record.follow_up}")
        if record.view:
            bits.append(record.view)
        if record.age is not None:
            bits.append(f"{record.age} {record.sex or ''}".strip())
        self.header.setText(" · ".join(bits))
        state = STATE_TEXT.get(record.review_state, record.review_state)
        if record.reviewed_by:
            state += f" by {record.reviewed_by}"
        if record.suspicion():
            state += f"   — suspected: {record.suspicion()}"
        self.state_label.setText(state)
        self.training_badge.setText(f"Not trained on: {NOT_TRAINED[not_trained]}" if not_trained else "")
        self.training_badge.setVisible(bool(not_trained))
        for row, f in enumerate(findings):
            self._set_cell(row, 2, f.dataset or "—", f.dataset)
            if f.probability is None:
                self._set_cell(row, 3, "—", None).setToolTip("")
            elif f.finding not in thresholds:  # no validated operating point: a number, not a call
                cell = self._set_cell(row, 3, f"{f.probability:.2f} (n.v.)", None)
                cell.setToolTip("Not validated: the model has too little validation evidence for "
                                "this finding to call it positive")
            else:
                decided = f.probability >= thresholds[f.finding]
                self._set_cell(row, 3, f"{f.probability:.2f}" + (" ▲" if decided else ""),
                               PRESENT if decided else None).setToolTip("")
            text = f.current or "—"
            if f.human is not None:
                text += " (you)" if f.human.author else ""
            item = self._set_cell(row, 4, text, f.current)
            font = item.font()
            font.setBold(f.human is not None)
            item.setFont(font)
            tip = ""
            if f.human is not None:
                reason = REASON_CODES.get(f.human.reason or "", "")
                tip = f"Decided by {f.human.author}" + (f": {reason}" if reason else "")
            item.setToolTip(tip)
        if record.id != self._image_id:
            self._flush_note()  # typed for the previous image: saved there, not here
            self._image_id = record.id
            self.note.setText(record.note)
            self.reason.blockSignals(True)
            self.reason.setCurrentIndex(0)  # a reason is chosen per image, never carried over
            self.reason.blockSignals(False)
        elif not self.note.hasFocus() or self.note.text() == self._note_saved:
            self.note.setText(record.note)
        self._note_saved = record.note
        self.patient_list.clear()
        for other in same_patient:
            prefix = f"#{other.follow_up}  " if other.follow_up is not None else ""
            label = f"{prefix}{other.file}  [{other.review_state}]"
            entry = QListWidgetItem(label + ("" if other.present else "  (not here)"))
            entry.setData(Qt.ItemDataRole.UserRole, other.id)
            if other.id == record.id:
                font = entry.font()
                font.setBold(True)
                entry.setFont(font)
            if not other.present:
                entry.setFlags(entry.flags() & ~Qt.ItemFlag.ItemIsEnabled)
            self.patient_list.addItem(entry)

    def clear(self, message: str) -> None:
        self._flush_note()
        self._image_id = None
        self.note.clear()
        self.reason.blockSignals(True)
        self.reason.setCurrentIndex(0)
        self.reason.blockSignals(False)
        self.header.setText(message)
        self.state_label.setText("")
        for row in range(len(NIH_FINDINGS)):
            for col in (2, 3, 4):
                self._set_cell(row, col, "", None)
        self.patient_list.clear()
        self.set_enabled(False)

    def _set_cell(self, row: int, col: int, text: str, value: str | None) -> QTableWidgetItem:
        item = self.table.item(row, col)
        assert item is not None  # every cell got an item in __init__
        item.setText(text)
        color = VALUE_COLORS.get(value or "")
        item.setForeground(QBrush(color) if color is not None else QBrush())
        return item

    def select_finding(self, finding: str) -> None:
        if finding in NIH_FINDINGS:
            self.table.selectRow(NIH_FINDINGS.index(finding))

    def selected_finding(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return NIH_FINDINGS[rows[0].row()] if rows else None

    def current_reason(self) -> str | None:
        reason = self.reason.currentData()
        return None if reason is None else str(reason)

    # -- signals ----------------------------------------------------------------------------
    def _on_cell_clicked(self, row: int, col: int) -> None:
        emit(self.finding_selected, NIH_FINDINGS[row])
        if col == 4:
            emit(self.cycle_requested, NIH_FINDINGS[row])

    def shown_image_id(self) -> int | None:
        return self._image_id

    def _flush_note(self) -> None:
        if self._image_id is not None and self.note.text() != self._note_saved:
            image_id, text = self._image_id, self.note.text()
            self._note_saved = text
            emit(self.note_edited, image_id, text)

    def _on_note(self) -> None:
        self._flush_note()

    def _on_reason(self, _index: int) -> None:
        if self._image_id is not None:
            emit(self.reason_changed, self._image_id, self.current_reason())

    def _on_patient_item(self, item: QListWidgetItem) -> None:
        image_id = item.data(Qt.ItemDataRole.UserRole)
        if image_id is not None and item.flags() & Qt.ItemFlag.ItemIsEnabled:
            emit(self.open_image_requested, int(image_id))


def next_value(current: str | None) -> str:
    """Click cycle on the decision cell: present → absent → uncertain → present."""
    return {PRESENT: ABSENT, ABSENT: UNCERTAIN}.get(current or "", PRESENT)
