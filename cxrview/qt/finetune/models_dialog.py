"""Model › Models…: compare versions on their evidence and the locked set; activate, roll back."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from cxrview.qt.model_evidence import evidence_lines, read_card_json

if TYPE_CHECKING:
    from cxrview.inference.registry import ModelRegistry


class ModelsSource(Protocol):
    """What the dialog asks of its controller: the registry, and activating a version."""

    def registry(self) -> ModelRegistry: ...

    def activate(self, version_id: str, *, rollback: bool = False) -> bool: ...


class ModelsDialog(QDialog):
    """Every classifier version with its validation evidence and locked-set comparison."""

    COLUMNS = ("", "Version", "Created", "Parent", "Locked set: candidate / base AUROC", "Verdict")

    def __init__(self, controller: ModelsSource, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        # Asked before a version becomes the one every new prediction uses; tests replace it.
        self.confirm: Callable[[str, str], bool] = self._ask
        self.setWindowTitle("Models")
        self.setObjectName("models_dialog")
        self.table = QTableWidget(0, len(self.COLUMNS), self)
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._show_details)
        self.details = QTextEdit(self)
        self.details.setObjectName("models_details")
        self.details.setReadOnly(True)
        self.details.setLineWrapMode(QTextEdit.LineWrapMode.NoWrap)  # the tables are fixed-width text
        self.details.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.activate_button = QPushButton("Activate", self)
        self.rollback_button = QPushButton("Roll Back to Selected", self)
        self.activate_button.clicked.connect(self._activate)
        self.rollback_button.clicked.connect(self._rollback)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        close.rejected.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addWidget(self.activate_button)
        buttons.addWidget(self.rollback_button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 2)
        layout.addWidget(self.details, 3)
        layout.addLayout(buttons)
        self.resize(900, 600)
        self.refresh()

    def refresh(self) -> None:
        self.versions = self.controller.registry().versions("classifier")
        self.table.setRowCount(len(self.versions))
        for row, v in enumerate(self.versions):
            comp = v.comparison or {}
            cand = (comp.get("candidate") or {}).get("mean_auroc")
            base = (comp.get("baseline_model") or {}).get("mean_auroc")
            scores = f"{cand:.3f} / {base:.3f}" if cand is not None and base is not None else "—"
            values = ("●" if v.active else "", v.id, (v.created or "")[:19], v.parent or "—", scores,
                      comp.get("verdict", "—"))
            for col, text in enumerate(values):
                self.table.setItem(row, col, QTableWidgetItem(str(text)))
        self._show_details()

    def selected(self) -> Any:
        rows = self.table.selectionModel().selectedRows()
        return self.versions[rows[0].row()] if rows else None

    def select_id(self, version_id: str) -> None:
        for row, v in enumerate(self.versions):
            if v.id == version_id:
                self.table.selectRow(row)

    def _show_details(self) -> None:
        v = self.selected()
        active = next((x for x in self.versions if x.active), None)
        comp = (v.comparison or {}) if v is not None else {}
        can_activate = v is not None and not v.active and (v.read_only or comp.get("baseline") == (
            active.id if active else None))
        self.activate_button.setEnabled(bool(can_activate))
        self.rollback_button.setEnabled(v is not None and not v.active)
        if v is None:
            self.details.setPlainText("Select a version.")
            return
        lines = [f"{v.id}  ({'active' if v.active else 'inactive'}{', shipped' if v.read_only else ''})",
                 f"path: {v.path}"]
        if v.log_path:
            lines.append(f"training log: {v.log_path}")
        lines.append("")
        try:
            lines += evidence_lines(read_card_json(v.path))
        except (OSError, ValueError, TypeError, AttributeError) as exc:  # a bad card: say so, go on
            lines.append(f"Validation evidence: card unreadable ({type(exc).__name__}: {exc})")
        if comp:
            ci = comp.get("mean_auroc_diff_ci")
            lines.append(f"\nCompared with {comp.get('baseline')} on the locked set "
                         f"({comp.get('locked_set')}):")
            if ci:
                lines.append(f"mean AUROC difference 95% CI [{ci[0]:+.3f}, {ci[1]:+.3f}] → "
                             f"{comp.get('verdict')}")
            lines.append(f"{'finding':22s} {'n+':>4s} {'cand':>6s} {'base':>6s} {'diff [95% CI]':>22s}")
            for name, e in (comp.get("per_label") or {}).items():
                if e.get("candidate") is None:
                    lines.append(f"{name:22s} {e.get('n_pos', 0):4d}   (no AUROC: needs positives "
                                 "and negatives)")
                else:
                    lines.append(f"{name:22s} {e['n_pos']:4d} {e['candidate']:6.3f} {e['baseline']:6.3f} "
                                 f"{e['diff']:+.3f} [{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}]")
            thresholds = (comp.get("candidate") or {}).get("thresholds") or {}
            if thresholds:
                lines.append("\nThresholds re-chosen on the fine-tune's validation split (F1): "
                             + ", ".join(f"{k} {t:.2f}" for k, t in thresholds.items()))
        elif not v.read_only:
            lines.append("\nNo comparison on the locked set yet: it cannot be activated.")
        self.details.setPlainText("\n".join(lines))

    def _activate(self) -> None:
        v = self.selected()
        if v is None:
            return
        question = (f"Activate {v.id}?\n\nEvery new prediction, score and worklist ranking will use it "
                    "(cached results of other models are not reused). The current model stays listed "
                    "and can be restored with Roll Back.")
        if not self.confirm("Activate model", question):
            return
        if self.controller.activate(v.id, rollback=v.read_only):
            self.refresh()

    def _ask(self, title: str, question: str) -> bool:
        answer = QMessageBox.question(self, title, question,
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
                                      QMessageBox.StandardButton.Cancel)
        return answer == QMessageBox.StandardButton.Yes

    def _rollback(self) -> None:
        v = self.selected()
        if v is not None and self.controller.activate(v.id, rollback=True):
            self.refresh()
