"""Help dialogs. The shortcut list is generated from the live actions, never hand-written."""

from __future__ import annotations

from PySide6.QtCore import QSettings
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QKeySequenceEdit,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cxrview.qt.actions import plain_text, shortcut_text

SHORTCUT_KEY = "shortcuts/{}"


def apply_saved_shortcuts(actions: list[QAction], qs: QSettings) -> None:
    """User remappings (saved by the Keyboard Shortcuts dialog) override the defaults."""
    for action in actions:
        saved = qs.value(SHORTCUT_KEY.format(action.objectName()))
        if saved is not None and action.objectName():
            action.setShortcuts([QKeySequence(k) for k in str(saved).split(";;") if k])


def assign_shortcut(action: QAction, sequence: QKeySequence, actions: list[QAction],
                    qs: QSettings) -> QAction | None:
    """Give ``action`` the keys ``sequence`` (empty = none); a clash returns the other action
    and changes nothing."""
    if not sequence.isEmpty():
        for other in actions:
            if other is not action and any(s.matches(sequence) == QKeySequence.SequenceMatch.ExactMatch
                                           for s in other.shortcuts()):
                return other
    action.setShortcuts([] if sequence.isEmpty() else [sequence])
    qs.setValue(SHORTCUT_KEY.format(action.objectName()),
                sequence.toString(QKeySequence.SequenceFormat.PortableText))
    return None


class ShortcutsDialog(QDialog):
    """Lists every action that has a shortcut, plus the canvas's mouse gestures; remaps keys."""

    def __init__(self, actions: list[QAction], mouse_bindings: tuple[tuple[str, str], ...],
                 parent: QWidget | None = None, settings: QSettings | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard Shortcuts")
        self.setObjectName("shortcuts_dialog")
        self._actions = actions  # not `actions`: QWidget.actions() is the widget's own list
        self.settings = settings
        rows: list[tuple[str, str]] = []
        self.row_actions: list[QAction | None] = []
        for action in actions:
            keys = shortcut_text(action)
            if keys or action.objectName().startswith("action_toggle_"):
                rows.append((keys, plain_text(action)))
                self.row_actions.append(action)
        rows.extend(mouse_bindings)
        self.row_actions.extend([None] * len(mouse_bindings))
        self.table = QTableWidget(len(rows), 2, self)
        self.table.setHorizontalHeaderLabels(["Keys / mouse", "Action"])
        for r, (keys, text) in enumerate(rows):
            self.table.setItem(r, 0, QTableWidgetItem(keys))
            self.table.setItem(r, 1, QTableWidgetItem(text))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(
            0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        note = QLabel("F2–F9 apply the current image's presets in the order of the View ▸ Presets "
                      "menu. Number keys toggle findings while reviewing (Review menu). "
                      "Select a row and press Assign… to change its keys.", self)
        note.setWordWrap(True)
        self.editor = QKeySequenceEdit(self)
        self.editor.setMaximumSequenceLength(1)
        self.assign = QPushButton("Assign…", self)
        self.assign.setObjectName("shortcut_assign")
        self.assign.clicked.connect(self._assign)
        self.message = QLabel("", self)
        self.message.setWordWrap(True)
        edit_row = QHBoxLayout()
        edit_row.addWidget(QLabel("New keys for the selected action:", self))
        edit_row.addWidget(self.editor, 1)
        edit_row.addWidget(self.assign)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(note)
        if settings is not None:
            layout.addLayout(edit_row)
            layout.addWidget(self.message)
        layout.addWidget(buttons)
        self.resize(560, 560)

    def _assign(self) -> None:
        row = self.table.currentRow()
        action = self.row_actions[row] if 0 <= row < len(self.row_actions) else None
        if action is None or self.settings is None:
            self.message.setText("Select an action (mouse gestures cannot be changed).")
            return
        clash = assign_shortcut(action, self.editor.keySequence(), self._actions, self.settings)
        if clash is not None:
            self.message.setText(f"Those keys already belong to “{plain_text(clash)}”: change that first.")
            return
        self._cell(row, 0).setText(shortcut_text(action))
        self.message.setText(f"“{plain_text(action)}” is now {shortcut_text(action) or 'unassigned'}.")

    def _cell(self, row: int, col: int) -> QTableWidgetItem:
        item = self.table.item(row, col)
        assert item is not None  # every cell got an item in __init__
        return item

    def rows(self) -> list[tuple[str, str]]:
        return [(self._cell(r, 0).text(), self._cell(r, 1).text()) for r in range(self.table.rowCount())]
