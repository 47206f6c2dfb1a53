"""The study browser dock: patients → studies → series → images, as :mod:`cxrview.core.study`
groups them. It only shows entries and says which one the reader picked; scanning is the
study controller's business (on the window's one task runner).

While a scan runs, batches are appended as they arrive (the tree grows, the GUI stays
responsive); when it ends the tree is rebuilt once in reading order (newest study first).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cxrview.core.study import ImageEntry, level_keys
from cxrview.qt.compat import emit

KEY_ROLE = Qt.ItemDataRole.UserRole  # the node's key; an image's is IMAGE_PREFIX + its path
IMAGE_PREFIX = "image:"
LEVEL_ROLE = Qt.ItemDataRole.UserRole + 1  # "patient", "study", "series" or "image"
PATHS_MIME = "application/x-cxrview-paths"  # one path per line (the canvas' drop format)
EXPAND_ALL_UP_TO = 300  # images: a CD's tree opens fully; a big archive shows its patients


class _Tree(QTreeWidget):
    """Dragging a node carries its images' paths (a series into a viewport)."""

    def mimeData(self, items: Sequence[QTreeWidgetItem]) -> QMimeData:  # Qt override
        mime = QMimeData()
        browser = self.parent()
        while browser is not None and not isinstance(browser, StudyBrowserDock):
            browser = browser.parent()
        paths = [p for item in items for p in (browser.paths_of(item) if browser is not None else [])]
        mime.setData(PATHS_MIME, "\n".join(paths).encode("utf-8"))
        return mime


class StudyBrowserDock(QDockWidget):
    """The tree, a progress bar with Cancel while scanning, and a one-line summary."""

    image_activated = Signal(str)  # path: show it
    series_activated = Signal(object)  # list[str]: page through these (a study or a series)
    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Studies", parent)
        self.setObjectName("dock_studies")
        body = QWidget(self)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.tree = _Tree(body)
        self.tree.setObjectName("study_tree")
        self.tree.setHeaderLabels(["Patient / study / series / image", "Images"])
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setDragEnabled(True)
        self.tree.setUniformRowHeights(True)
        self.tree.itemActivated.connect(self._on_activated)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        layout.addWidget(self.tree, 1)
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 0, 4, 2)
        self.summary = QLabel("Open a folder or a CD (DICOMDIR).", body)
        self.summary.setObjectName("study_summary")
        bar.addWidget(self.summary, 1)
        self.progress = QProgressBar(body)
        self.progress.setRange(0, 1000)
        self.progress.setMaximumWidth(120)
        self.progress.hide()
        bar.addWidget(self.progress)
        self.cancel = QPushButton("Cancel", body)
        self.cancel.setObjectName("study_cancel")
        self.cancel.hide()
        self.cancel.clicked.connect(lambda: emit(self.cancel_requested))
        bar.addWidget(self.cancel)
        layout.addLayout(bar)
        self.setWidget(body)
        self.clear("Open a folder or a CD (DICOMDIR).")

    # -- filling ----------------------------------------------------------------------------
    # Each entry goes straight to its place (bisect on the siblings' sort keys): the tree is in
    # reading order while it grows, and the end of a scan rebuilds nothing. Counts live in a
    # dict (item data is copied by Qt on every read and write); paths are read off the tree.
    def clear(self, message: str = "") -> None:
        self.tree.clear()
        self._nodes: dict[str, QTreeWidgetItem] = {}
        self._counts: dict[str, int] = {}
        self._child_keys: dict[str, list[Any]] = {}
        self._count = 0
        self._paths: set[str] = set()
        self.summary.setText(message)

    def scan_started(self, root: str) -> None:
        self.clear(f"Scanning {Path(root).name or root}…")
        self.progress.setValue(0)
        self.progress.show()
        self.cancel.show()

    def scan_progress(self, fraction: float) -> None:
        self.progress.setValue(round(fraction * 1000))

    def add_entries(self, entries: list[ImageEntry]) -> None:
        """Add a batch, each entry at its place in reading order."""
        touched: set[str] = set()
        self.tree.setUpdatesEnabled(False)
        try:
            for e in entries:
                touched.update(self._add(e))
            for key in touched:
                self._nodes[key].setText(1, str(self._counts[key]))
        finally:
            self.tree.setUpdatesEnabled(True)
        self.summary.setText(f"{self._count} images so far…")

    def set_entries(self, entries: list[ImageEntry], *, note: str = "") -> None:
        """The end of a scan: ``entries`` is the whole index (added again only if the batches
        did not already bring exactly these)."""
        self.progress.hide()
        self.cancel.hide()
        missing = [e for e in entries if e.path not in self._paths]
        if self._count + len(missing) != len(entries):  # the batches brought something else
            self.clear()
            missing = entries
        if missing:  # only what the batches did not bring: re-adding 5,000 entries took 0.4 s
            self.add_entries(missing)
        top = self._patients()
        if self._count <= EXPAND_ALL_UP_TO:
            self.tree.expandAll()
        # Bigger trees show their patients open: each was expanded when it was created (empty,
        # so cheap); expanding 250 full patients here took 0.9 s of GUI time.
        patients = len(top)
        studies = sum(patient.childCount() for patient in top)
        text = (f"{patients} patient{'s' * (patients != 1)}, {studies} stud{'ies' if studies != 1 else 'y'}, "
                f"{self._count} image{'s' * (self._count != 1)}")
        self.summary.setText(f"{text} {note}".strip())

    def scan_stopped(self, message: str) -> None:
        self.progress.hide()
        self.cancel.hide()
        self.summary.setText(message)

    def _insert(self, parent_key: str, parent: QTreeWidgetItem | None, sort_key: Any,
                item: QTreeWidgetItem) -> None:
        keys = self._child_keys.setdefault(parent_key, [])
        index = bisect.bisect_right(keys, sort_key)
        keys.insert(index, sort_key)
        if parent is None:
            self.tree.insertTopLevelItem(index, item)
        else:
            parent.insertChild(index, item)

    def _node(self, key: str, parent_key: str, parent: QTreeWidgetItem | None, sort_key: Any, text: str,
              level: str) -> QTreeWidgetItem:
        node = self._nodes.get(key)
        if node is None:
            node = QTreeWidgetItem([text, ""])
            node.setData(0, LEVEL_ROLE, level)
            node.setData(0, KEY_ROLE, key)
            self._insert(parent_key, parent, sort_key, node)
            if level == "patient":
                node.setExpanded(True)
            self._nodes[key] = node
            self._counts[key] = 0
        return node

    def _add(self, e: ImageEntry) -> tuple[str, str, str]:
        p_key, s_key, se_key, i_key = level_keys(e)
        patient = self._node(e.patient_key, "", None, p_key, e.patient_label, "patient")
        study = self._node(e.study_key, e.patient_key, patient, s_key, e.study_label, "study")
        series = self._node(e.series_key, e.study_key, study, se_key, e.series_label, "series")
        name = Path(e.path).name
        text = " ".join(p for p in (name, e.view_position, e.laterality) if p)
        item = QTreeWidgetItem([text, ""])
        item.setToolTip(0, e.path)
        item.setData(0, LEVEL_ROLE, "image")
        item.setData(0, KEY_ROLE, IMAGE_PREFIX + e.path)
        self._insert(e.series_key, series, i_key, item)
        for key in (e.patient_key, e.study_key, e.series_key):
            self._counts[key] += 1
        self._count += 1
        self._paths.add(e.path)
        return e.patient_key, e.study_key, e.series_key

    def paths_of(self, item: QTreeWidgetItem) -> list[str]:
        """The images under a node (itself for an image), in reading order."""
        key = str(item.data(0, KEY_ROLE) or "")
        if key.startswith(IMAGE_PREFIX):
            return [key.removeprefix(IMAGE_PREFIX)]
        return [p for child in _children(item) for p in self.paths_of(child)]

    # -- reading it back (tests, the controller) ---------------------------------------------
    def structure(self) -> list[tuple[str, list[tuple[str, list[tuple[str, int]]]]]]:
        """(patient, [(study, [(series, images)])]) as shown."""
        return [(patient.text(0), [(study.text(0), [(series.text(0), series.childCount())
                                                    for series in _children(study)])
                                   for study in _children(patient)])
                for patient in self._patients()]

    def _patients(self) -> list[QTreeWidgetItem]:
        items = (self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount()))
        return [item for item in items if item is not None]

    def image_count(self) -> int:
        return self._count

    def _on_activated(self, item: QTreeWidgetItem, _column: int) -> None:
        paths = self.paths_of(item)
        if not paths:
            return
        if item.data(0, LEVEL_ROLE) == "image":
            emit(self.image_activated, paths[0])
        else:
            emit(self.series_activated, paths)


def _children(item: QTreeWidgetItem) -> list[QTreeWidgetItem]:
    return [child for child in (item.child(i) for i in range(item.childCount())) if child is not None]
