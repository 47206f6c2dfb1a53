"""Dock showing the image's metadata (DICOM elements or file properties) with a filter."""

from __future__ import annotations

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QHeaderView,
    QLineEdit,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from cxrview.core import MetadataItem
from cxrview.qt.text_keys import keep_keys

COLUMNS = ("Tag", "Name", "VR", "Value")
MAX_VALUE_CHARS = 500  # long values (private blobs) would make rows unreadable
MAX_NAME_WIDTH = 150  # px: long DICOM keywords would push the Value column out of view


class MetadataDock(QDockWidget):
    """A read-only table of ``img.metadata``; the line edit filters tag, name and value."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Metadata", parent)
        self.setObjectName("dock_metadata")
        body = QWidget(self)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(2, 2, 2, 2)
        self.filter_edit = QLineEdit(body)
        self.filter_edit.setObjectName("metadata_filter")
        self.filter_edit.setPlaceholderText("Filter tag, name or value…")
        self.filter_edit.setClearButtonEnabled(True)
        keep_keys(self.filter_edit)
        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(-1)  # any column
        self.table = QTableView(body)
        self.table.setObjectName("metadata_table")
        self.table.setModel(self.proxy)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.table)
        self.setWidget(body)
        self.filter_edit.textChanged.connect(self.proxy.setFilterFixedString)

    def set_metadata(self, items: list[MetadataItem]) -> None:
        self.model.removeRows(0, self.model.rowCount())
        for it in items:
            value = it.value if len(it.value) <= MAX_VALUE_CHARS else (
                it.value[:MAX_VALUE_CHARS] + "…")
            row = [QStandardItem(it.tag), QStandardItem(it.name), QStandardItem(it.vr),
                   QStandardItem(value)]
            row[3].setToolTip(it.value[:4000])
            self.model.appendRow(row)
        for column in (0, 1, 2):
            self.table.resizeColumnToContents(column)
        # Long DICOM keywords would push the Value column out of a narrow dock.
        self.table.setColumnWidth(1, min(self.table.columnWidth(1), MAX_NAME_WIDTH))

    def clear(self) -> None:
        self.model.removeRows(0, self.model.rowCount())

    def visible_rows(self) -> list[tuple[str, str, str, str]]:
        """Rows that pass the filter (tests and copy-to-clipboard use it)."""
        rows = []
        for r in range(self.proxy.rowCount()):
            rows.append(tuple(self.proxy.index(r, c).data() or "" for c in range(len(COLUMNS))))
        return rows  # type: ignore[return-value]
