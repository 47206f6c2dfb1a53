"""Dock listing the opened files; selecting a row asks the window to show that image.

The list only knows paths and per-file status (ok / failed with a reason); loading is
the window's business. Arrow keys move through the list natively; PgUp/PgDn and the
View actions call :meth:`FileListDock.step`.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QListWidget,
    QListWidgetItem,
    QStyle,
    QWidget,
)

from cxrview.qt.compat import emit

PATH_ROLE = Qt.ItemDataRole.UserRole
ERROR_ROLE = Qt.ItemDataRole.UserRole + 1


class FileListDock(QDockWidget):
    """The file list: names, full path in the tooltip, failed files marked in red."""

    current_changed = Signal(int, str)  # row, path

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Files", parent)
        self.setObjectName("dock_files")
        self.list = QListWidget(self)
        self.list.setObjectName("file_list")
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setUniformItemSizes(True)
        self.list.currentRowChanged.connect(self._on_row_changed)
        self.setWidget(self.list)
        self._emit = True

    def set_files(self, paths: list[str]) -> None:
        """Replace the list; no row is selected (the window chooses which to show)."""
        self._emit = False
        try:
            self.list.clear()
            for path in paths:
                item = QListWidgetItem(Path(path).name)
                item.setData(PATH_ROLE, path)
                item.setToolTip(path)
                self.list.addItem(item)
        finally:
            self._emit = True
        self.setWindowTitle(f"Files ({len(paths)})")

    def paths(self) -> list[str]:
        return [self.list.item(i).data(PATH_ROLE) for i in range(self.list.count())]

    def count(self) -> int:
        return self.list.count()

    def current_row(self) -> int:
        return self.list.currentRow()

    def set_current_row(self, row: int, *, notify: bool = True) -> None:
        if not 0 <= row < self.list.count():
            return
        self._emit = notify
        try:
            self.list.setCurrentRow(row)
            self.list.scrollToItem(self.list.item(row))
        finally:
            self._emit = True

    def step(self, delta: int) -> bool:
        """Move the selection by ``delta`` rows; False at either end of the list."""
        if self.list.count() == 0:
            return False
        row = self.list.currentRow()
        target = 0 if row < 0 else row + delta
        if not 0 <= target < self.list.count() or target == row:
            return False
        self.set_current_row(target)
        return True

    def mark_failed(self, path: str, reason: str) -> None:
        """Keep the file in the list but show that (and why) it could not be opened."""
        item = self._item_for(path)
        if item is None:
            return
        item.setData(ERROR_ROLE, reason)
        item.setForeground(QBrush(QColor(235, 90, 90)))
        item.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning))
        item.setToolTip(f"{path}\nCould not open: {reason}")

    def mark_ok(self, path: str) -> None:
        item = self._item_for(path)
        if item is None or item.data(ERROR_ROLE) is None:
            return
        item.setData(ERROR_ROLE, None)
        item.setData(Qt.ItemDataRole.ForegroundRole, None)
        item.setIcon(QListWidgetItem().icon())
        item.setToolTip(path)

    def error_for(self, path: str) -> str | None:
        item = self._item_for(path)
        return item.data(ERROR_ROLE) if item is not None else None

    def _item_for(self, path: str) -> QListWidgetItem | None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(PATH_ROLE) == path:
                return item
        return None

    def _on_row_changed(self, row: int) -> None:
        if self._emit and row >= 0:
            emit(self.current_changed, row, self.list.item(row).data(PATH_ROLE))
