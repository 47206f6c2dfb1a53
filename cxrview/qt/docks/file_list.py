"""Dock listing the opened files; selecting a row asks the window to show that image.

The list only knows paths, per-file status (ok / failed with a reason) and, once a
batch scoring ran, each file's triage score; loading is the window's business. Arrow
keys move through the list natively; PgUp/PgDn and the View actions call
:meth:`FileListDock.step`. "Sort by triage score" reorders the rows (highest first,
unscored last); paging then follows that order.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from cxrview.qt.compat import emit

PATH_ROLE = Qt.ItemDataRole.UserRole
ERROR_ROLE = Qt.ItemDataRole.UserRole + 1
ORDER_ROLE = Qt.ItemDataRole.UserRole + 2  # position in the opened order
SCORE_ROLE = Qt.ItemDataRole.UserRole + 3  # triage score (highest finding probability) or None
SORT_MODES = {"file": "File order", "triage": "Triage score (highest first)"}


class FileListDock(QDockWidget):
    """The file list: names, full path in the tooltip, failed files marked in red."""

    current_changed = Signal(int, str)  # row, path
    sort_changed = Signal(str)  # "file" | "triage"

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Files", parent)
        self.setObjectName("dock_files")
        body = QWidget(self)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 0)
        bar.addWidget(QLabel("Sort:"))
        self.sort_box = QComboBox(body)
        self.sort_box.setObjectName("file_sort")
        for key, text in SORT_MODES.items():
            self.sort_box.addItem(text, key)
        self.sort_box.setToolTip("Triage score = the highest finding probability; "
                                 "run Model › Score All Files first")
        self.sort_box.currentIndexChanged.connect(self._on_sort_box)
        bar.addWidget(self.sort_box, 1)
        layout.addLayout(bar)
        self.list = QListWidget(body)
        self.list.setObjectName("file_list")
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setUniformItemSizes(True)
        self.list.currentRowChanged.connect(self._on_row_changed)
        layout.addWidget(self.list)
        self.setWidget(body)
        self._emit = True
        self._sort = "file"
        self._items: dict[str, QListWidgetItem] = {}

    def set_files(self, paths: list[str]) -> None:
        """Replace the list; no row is selected (the window chooses which to show)."""
        self._emit = False
        try:
            self.list.clear()
            self._items = {}
            for order, path in enumerate(paths):
                item = QListWidgetItem(Path(path).name)
                item.setData(PATH_ROLE, path)
                item.setData(ORDER_ROLE, order)
                item.setToolTip(path)
                self.list.addItem(item)
                self._items.setdefault(path, item)
        finally:
            self._emit = True
        self.setWindowTitle(f"Files ({len(paths)})")
        self._apply_sort()

    # -- triage scores and sorting ------------------------------------------------------
    def set_score(self, path: str, score: float | None, summary: str = "") -> None:
        """Show a file's triage score (``None`` removes it); re-sorts when sorted by score."""
        item = self._item_for(path)
        if item is None:
            return
        item.setData(SCORE_ROLE, score)
        name = Path(path).name
        item.setText(name if score is None else f"{score:.2f}  {name}")
        if item.data(ERROR_ROLE) is None:
            item.setToolTip(path + (f"\n{summary}" if summary else ""))
        if self._sort == "triage":
            self._apply_sort()

    def score(self, path: str) -> float | None:
        item = self._item_for(path)
        return item.data(SCORE_ROLE) if item is not None else None

    def clear_scores(self) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            item.setData(SCORE_ROLE, None)
            item.setText(Path(item.data(PATH_ROLE)).name)
        self._apply_sort()

    def sort_mode(self) -> str:
        return self._sort

    def set_sort_mode(self, mode: str) -> None:
        if mode not in SORT_MODES:
            return
        self._sort = mode
        index = self.sort_box.findData(mode)
        if index != self.sort_box.currentIndex():
            self.sort_box.setCurrentIndex(index)
        self._apply_sort()
        emit(self.sort_changed, mode)

    def _on_sort_box(self, index: int) -> None:
        mode = self.sort_box.itemData(index)
        if mode != self._sort:
            self.set_sort_mode(mode)

    def _sort_key(self, item: QListWidgetItem) -> tuple[float, int]:
        order = int(item.data(ORDER_ROLE) or 0)
        if self._sort == "triage":
            score = item.data(SCORE_ROLE)
            return (-float(score) if score is not None else 1.0, order)
        return (0.0, order)

    def _apply_sort(self) -> None:
        """Reorder rows in place, keeping the current file selected without re-emitting."""
        current = self.list.currentItem()
        current_path = current.data(PATH_ROLE) if current is not None else None
        items = [self.list.item(i) for i in range(self.list.count())]
        wanted = sorted(items, key=self._sort_key)
        if wanted == items:
            return
        self._emit = False
        try:
            while self.list.count():
                self.list.takeItem(0)
            for item in wanted:
                self.list.addItem(item)
            if current_path is not None:
                row = next(i for i, item in enumerate(wanted) if item.data(PATH_ROLE) == current_path)
                self.list.setCurrentRow(row)
        finally:
            self._emit = True

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
        return self._items.get(path)

    def _on_row_changed(self, row: int) -> None:
        if self._emit and row >= 0:
            emit(self.current_changed, row, self.list.item(row).data(PATH_ROLE))
