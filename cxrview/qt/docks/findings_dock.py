"""The findings dock: what the AI says about the image on screen, and how far to trust it.

It shows a prediction as :func:`cxrview.inference.gate.presented` lets it through
(the dock applies the gate itself to a raw ``Prediction.to_dict()``, so nothing
reaches a reader ungated):

* validated findings above their operating point first (bold, coloured bar), then
  validated findings below it, then the not-validated ones apart under their own
  header, greyed, never bold, with no operating-point marker; each row's tooltip
  carries the evidence (calibrated probability, operating point, sensitivity and
  specificity with 95 % intervals, AUROC, number of validation positives) or, for
  a not-validated finding, why it is not validated;
* a banner when the input check withheld the output (not a frontal adult chest
  radiograph) with the reasons and "Show AI output anyway" / "Hide again";
* the input-check warnings, the CTR, the model, and a disclaimer that stays
  visible in every state.

Everything above the finding list scrolls with it: a long warning in a narrow dock
makes the dock scroll instead of clipping the text. Greyed text uses the palette's
placeholder role so both themes keep it readable.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPalette, QPen, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from cxrview.inference.gate import positive_findings, presented, withheld_reasons
from cxrview.qt.compat import emit
from cxrview.qt.overlays import finding_color

DISCLAIMER = "AI: research use, not for diagnosis"
WITHHELD_TITLE = "AI output withheld: not a frontal adult chest radiograph"
FORCED_TITLE = "Shown on request — input check failed:"
NOT_VALIDATED_HEADER = "Not validated (too little evidence)"
MUTED = QPalette.ColorRole.PlaceholderText  # greyed text that follows the theme
ALERT_BG, CAUTION_BG = "#b3261e", "#8a5a00"  # white text on both, in either theme


def output_visible(shown: dict[str, Any]) -> bool:
    """Whether a presented prediction may show findings and overlays (not withheld, or forced)."""
    return not shown.get("withheld", False) or bool(shown.get("forced", False))


def summary_text(shown: dict[str, Any]) -> str:
    n = len(positive_findings(shown))
    if n == 0:
        return "No validated finding above its operating point"
    return f"{n} finding{'s' if n != 1 else ''} above the operating point"


def _pct(value: Any) -> str:
    return f"{float(value):.0%}"


def _two_places(value: Any) -> str:
    return f"{float(value):.2f}"


def _interval(ci: Any, fmt: Any = _pct) -> str:
    if not ci or len(ci) != 2 or ci[0] is None or ci[1] is None:
        return ""
    return f" (95% CI {fmt(ci[0])}–{fmt(ci[1])})"


def short_note(info: dict[str, Any]) -> str:
    """The row's one-liner for a not-validated finding ("not validated: 8 positives"); with no
    validation positives at all the back end's note says why (e.g. the card has no evidence)."""
    n = int(info.get("n_positives") or 0)
    if n == 0:
        return str(info.get("note") or "not validated")
    return f"not validated: {n} positive{'s' if n != 1 else ''}"


def finding_tooltip(name: str, info: dict[str, Any]) -> str:
    """The evidence behind one finding's row, as plain text lines."""
    lines = [name.replace("_", " "), f"Probability {float(info.get('probability', 0.0)):.1%} (calibrated)"]
    n_pos = info.get("n_positives")
    if not info.get("validated", False):
        lines.append(str(info.get("note") or "not validated: too little validation evidence"))
        lines.append("Never marked positive: no operating point is validated for it.")
        if n_pos is not None:
            lines.append(f"Validation positives: {int(n_pos)}")
        return "\n".join(lines)
    threshold = info.get("threshold")
    if threshold is not None:
        side = "above" if info.get("positive", False) else "below"
        lines.append(f"Operating point {float(threshold):.1%} ({side} it)")
    for key, title in (("sensitivity", "Sensitivity"), ("specificity", "Specificity")):
        value = info.get(key)
        if value is not None:
            lines.append(f"{title} {_pct(value)}{_interval(info.get(f'{key}_ci'))} at the operating point")
    auroc = info.get("auroc")
    if auroc is not None:
        lines.append(f"AUROC {float(auroc):.2f}{_interval(info.get('auroc_ci'), _two_places)}")
    if n_pos is not None:
        lines.append(f"Validation positives: {int(n_pos)}")
    return "\n".join(lines)


def _category(info: dict[str, Any]) -> int:
    """0: validated positive, 1: validated below its operating point, 2: not validated."""
    if not info.get("validated", False):
        return 2
    return 0 if info.get("positive", False) else 1


# -- widgets ---------------------------------------------------------------------------------

class ProbabilityBar(QWidget):
    """A horizontal bar for a probability, with the operating point marked (when there is one)."""

    def __init__(self, probability: float, threshold: float | None, color: QColor, *,
                 muted: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.probability = max(0.0, min(1.0, float(probability)))
        self.threshold = None if threshold is None else max(0.0, min(1.0, float(threshold)))
        self.color = QColor(color)
        self.muted = muted
        self.setMinimumSize(30, 12)

    def sizeHint(self) -> QSize:  # Qt override
        return QSize(120, 14)

    def paintEvent(self, event: QPaintEvent) -> None:  # Qt override
        p = QPainter(self)
        r = QRectF(self.rect()).adjusted(0.5, 2.5, -0.5, -2.5)
        p.fillRect(r, QColor(128, 128, 128, 60))
        filled = QRectF(r.left(), r.top(), r.width() * self.probability, r.height())
        if self.muted:
            color = self.palette().color(MUTED)
            color.setAlpha(min(color.alpha(), 120))  # recedes: a long grey bar must not draw the eye
        else:
            color = QColor(self.color)
            if self.threshold is not None and self.probability < self.threshold:
                color.setAlpha(110)
        p.fillRect(filled, color)
        if self.threshold is not None:
            x = r.left() + r.width() * self.threshold
            p.setPen(QPen(self.palette().text().color(), 2))
            p.drawLine(int(x), 0, int(x), self.height())
        p.end()


class _NameLabel(QLabel):
    """A finding's name: a column's width when there is room, squeezable in a narrow dock
    (the full name is in the row's tooltip) so the percentage is never pushed out of view."""

    PREFERRED_WIDTH = 110

    def sizeHint(self) -> QSize:  # Qt override
        hint = super().sizeHint()
        return QSize(max(self.PREFERRED_WIDTH, hint.width()), hint.height())

    def minimumSizeHint(self) -> QSize:  # Qt override
        return QSize(40, super().minimumSizeHint().height())


class FindingRow(QWidget):
    """One finding: name, bar, percentage; a second greyed line when it is not validated."""

    def __init__(self, name: str, info: dict[str, Any], color: QColor,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.validated = bool(info.get("validated", False))
        self.positive = self.validated and bool(info.get("positive", False))
        layout = QGridLayout(self)
        layout.setContentsMargins(4, 1, 4, 1)
        layout.setHorizontalSpacing(6)
        layout.setVerticalSpacing(0)
        self.name_label = _NameLabel(name.replace("_", " "), self)
        self.name_label.setObjectName("finding_name")
        self.pct = QLabel(_pct(info.get("probability", 0.0)), self)
        self.pct.setObjectName("finding_probability")
        self.pct.setMinimumWidth(36)
        self.pct.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        threshold = info.get("threshold") if self.validated else None
        self.bar = ProbabilityBar(float(info.get("probability", 0.0)), threshold, color,
                                  muted=not self.validated, parent=self)
        layout.addWidget(self.name_label, 0, 0)
        layout.addWidget(self.bar, 0, 1)
        layout.addWidget(self.pct, 0, 2)
        layout.setColumnStretch(1, 1)
        self.note: QLabel | None = None
        if self.positive:
            font = self.name_label.font()
            font.setBold(True)
            self.name_label.setFont(font)
            self.pct.setFont(font)
        if not self.validated:
            self.note = QLabel(short_note(info), self)
            self.note.setObjectName("finding_note")
            self.note.setMinimumWidth(40)  # squeezable like the name; the tooltip has the whole note
            font = self.note.font()
            font.setPointSizeF(max(6.0, font.pointSizeF() * 0.85))
            self.note.setFont(font)
            for label in (self.name_label, self.pct, self.note):
                label.setForegroundRole(MUTED)
            layout.addWidget(self.note, 1, 0, 1, 3)
        self.setToolTip(finding_tooltip(name, info))

    def is_bold(self) -> bool:
        return self.name_label.font().bold()


class WithheldBanner(QFrame):
    """The "AI output withheld …" banner: the reasons, and the button that overrides the gate for
    this image ("Show AI output anyway") or undoes that ("Hide again")."""

    show_requested = Signal()
    hide_requested = Signal()

    STYLE = ("QFrame#ai_withheld_banner {{ background: {bg}; border-radius: 4px; }}"
             " QFrame#ai_withheld_banner QLabel {{ color: white; background: transparent; }}")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ai_withheld_banner")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 5, 6, 5)
        layout.setSpacing(3)
        self.title = QLabel(self)
        self.title.setObjectName("ai_withheld_title")
        self.title.setWordWrap(True)
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.reasons = QLabel(self)
        self.reasons.setObjectName("ai_withheld_reasons")
        self.reasons.setWordWrap(True)
        self.reasons.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.show_button = QPushButton("Show AI output anyway", self)
        self.show_button.setObjectName("ai_show_anyway")
        self.show_button.setToolTip("Show findings and overlays for this image although the input "
                                    "check failed (remembered for this image only)")
        self.hide_button = QPushButton("Hide again", self)
        self.hide_button.setObjectName("ai_hide_again")
        self.show_button.clicked.connect(lambda *_: emit(self.show_requested))
        self.hide_button.clicked.connect(lambda *_: emit(self.hide_requested))
        buttons = QHBoxLayout()
        buttons.addWidget(self.show_button)
        buttons.addWidget(self.hide_button)
        buttons.addStretch(1)
        layout.addWidget(self.title)
        layout.addWidget(self.reasons)
        layout.addLayout(buttons)
        self.forced = False
        self.hide()

    def set_state(self, reasons: list[str], *, forced: bool) -> None:
        self.forced = forced
        self.title.setText(FORCED_TITLE if forced else WITHHELD_TITLE)
        self.reasons.setText("\n".join(reasons) if reasons else "input check failed")
        self.show_button.setVisible(not forced)
        self.hide_button.setVisible(forced)
        # Dark red while withheld, dark amber once shown on request: white text on both, any theme.
        self.setStyleSheet(self.STYLE.format(bg=CAUTION_BG if forced else ALERT_BG))
        self.show()


class _FindingList(QListWidget):
    """The rows, re-laid out when the width changes.

    A top-to-bottom list view only re-lays its items out when its height changes, so the row
    widgets keep the width they were first shown with and a narrowed dock cuts off the %.
    """

    def resizeEvent(self, event: QResizeEvent) -> None:  # Qt override
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self.scheduleDelayedItemsLayout()


class FindingsDock(QDockWidget):
    """Findings with probability bars, the input-check banner and badge, model info and CTR."""

    finding_selected = Signal(str)
    opacity_changed = Signal(float)
    show_anyway_requested = Signal()
    hide_again_requested = Signal()
    # The scroll area shadows QWidget.scroll(dx, dy), which nothing calls on a dock; the name is
    # what the dock's tests and callers use.
    scroll: QScrollArea  # type: ignore[assignment]

    def __init__(self, parent: QWidget | None = None) -> None:
        self._built = False  # changeEvent may come before the children exist
        super().__init__("Findings", parent)
        self.setObjectName("dock_findings")
        outer = QWidget(self)
        outer_layout = QVBoxLayout(outer)
        outer_layout.setContentsMargins(0, 0, 0, 4)
        outer_layout.setSpacing(2)
        # Outside the scroll area: visible whatever is scrolled, loading, failed or withheld.
        self.disclaimer = QLabel(DISCLAIMER, outer)
        self.disclaimer.setObjectName("ai_disclaimer")
        self.disclaimer.setWordWrap(True)
        self.disclaimer.setContentsMargins(6, 3, 6, 0)
        font = self.disclaimer.font()
        font.setItalic(True)
        self.disclaimer.setFont(font)

        self.scroll = QScrollArea(outer)
        self.scroll.setObjectName("findings_scroll")
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        body = QWidget(self.scroll)
        body.setObjectName("findings_body")
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        self.model_label = QLabel("Model: not loaded", body)
        self.model_label.setObjectName("findings_model")
        self.model_label.setWordWrap(True)
        self.banner = WithheldBanner(body)
        self.banner.show_requested.connect(lambda: emit(self.show_anyway_requested))
        self.banner.hide_requested.connect(lambda: emit(self.hide_again_requested))
        self.badge = QLabel(body)
        self.badge.setObjectName("findings_validity")
        self.badge.setWordWrap(True)
        self.badge.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.badge.hide()
        self.message = QLabel(body)
        self.message.setObjectName("findings_message")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary = QLabel(body)
        self.summary.setObjectName("findings_summary")
        self.summary.setWordWrap(True)
        self.ctr_label = QLabel(body)
        self.ctr_label.setObjectName("findings_ctr")
        self.ctr_label.setWordWrap(True)
        self.list = _FindingList(body)
        self.list.setObjectName("findings_list")
        # Sized to its rows (see _fit_list): one scroll bar for the whole dock, not two nested.
        self.list.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.list.currentItemChanged.connect(self._on_current)
        for w in (self.model_label, self.banner, self.badge, self.message, self.summary, self.ctr_label,
                  self.list):
            layout.addWidget(w)
        layout.addStretch(1)
        self.scroll.setWidget(body)

        opacity_row = QHBoxLayout()
        opacity_row.setContentsMargins(4, 0, 4, 0)
        opacity_row.addWidget(QLabel("Heatmap opacity", outer))
        self.opacity = QSlider(Qt.Orientation.Horizontal, outer)
        self.opacity.setObjectName("heatmap_opacity")
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity.valueChanged.connect(self._on_opacity)
        opacity_row.addWidget(self.opacity, 1)
        outer_layout.addWidget(self.disclaimer)
        outer_layout.addWidget(self.scroll, 1)
        outer_layout.addLayout(opacity_row)
        self.setWidget(outer)
        self._rows: list[FindingRow] = []
        self.shown: dict[str, Any] | None = None
        self._message_error = False
        self._ctr_flagged = False
        self._built = True
        self.clear("")

    # -- content -------------------------------------------------------------------------
    def clear(self, message: str = "") -> None:
        self.list.blockSignals(True)
        self.list.clear()
        self.list.blockSignals(False)
        self._rows = []
        self.shown = None
        self._fit_list()
        self.banner.hide()
        self.badge.hide()
        self.summary.clear()
        self.summary.hide()
        self.ctr_label.clear()
        self.ctr_label.hide()
        self._ctr_flagged = False
        self.set_message(message)

    def set_message(self, text: str, *, error: bool = False) -> None:
        self.message.setText(text)
        self._message_error = error
        self.message.setVisible(bool(text))
        self._restyle()

    def _restyle(self) -> None:
        """Text colours that must stay readable on the current theme's background."""
        dark = self.palette().color(QPalette.ColorRole.Window).lightness() < 128
        red, orange = ("#ff6b6b", "#ff9f43") if dark else ("#b3261e", "#a04a00")
        self.message.setStyleSheet(f"color: {red}; font-weight: bold;" if self._message_error else "")
        self.ctr_label.setStyleSheet(f"color: {orange}; font-weight: bold;" if self._ctr_flagged else "")

    def changeEvent(self, event: QEvent) -> None:  # Qt override
        super().changeEvent(event)
        if self._built and event.type() in (QEvent.Type.PaletteChange,
                                            QEvent.Type.ApplicationPaletteChange):
            self._restyle()

    def message_text(self) -> str:
        return self.message.text() if not self.message.isHidden() else ""

    def set_model_info(self, model: dict[str, Any]) -> None:
        text = f"Model: {model.get('name', '?')} {model.get('version', '')}".rstrip()
        seg = model.get("segmenter")
        if seg:
            text += f"\nSegmenter: {seg.get('name', '?')} {seg.get('version', '')}".rstrip()
        text += f"\nDevice: {model.get('device', '?')}"
        self.model_label.setText(text)

    def set_prediction(self, data: dict[str, Any]) -> None:
        """Show a prediction: ``presented(...)`` output, or a raw dict (then gated here, not forced)."""
        shown = data if "forced" in data else presented(data)
        self.clear("")
        self.shown = shown
        self.set_model_info(shown.get("model") or {})
        reasons = withheld_reasons(shown) if shown.get("withheld") else []
        if shown.get("withheld"):
            self.banner.set_state(reasons, forced=bool(shown.get("forced")))
        self._set_badge(shown, reasons)
        if not output_visible(shown):
            return
        self._fill_rows(shown.get("findings") or {})
        self.summary.setText(summary_text(shown))
        self.summary.show()
        self._set_ctr(shown.get("ctr"))

    def _set_badge(self, shown: dict[str, Any], in_banner: list[str]) -> None:
        """Cautions beside visible output (amber); nothing while the banner withholds the output,
        since cautions are about contours and CTR that are not shown then."""
        if shown.get("withheld") and not shown.get("forced"):
            return
        validity = shown.get("validity") or {}
        warnings = [str(w) for w in (validity.get("warnings") or []) if str(w) not in in_banner]
        if not warnings:
            return
        self.badge.setText("⚠ Caution:\n" + "\n".join(warnings))
        self.badge.setStyleSheet(f"background: {CAUTION_BG}; color: white;"
                                 " border-radius: 4px; padding: 3px; font-weight: bold;")
        self.badge.show()

    def _set_ctr(self, ctr: dict[str, Any] | None) -> None:
        self._ctr_flagged = bool(ctr and ctr.get("flag"))
        if ctr:
            text = f"CTR {float(ctr['value']):.2f}"
            if ctr.get("flag"):
                text += f" — {ctr['flag']}"
            self.ctr_label.setText(text)
        else:
            self.ctr_label.setText("CTR: not measured")
        self._restyle()
        self.ctr_label.show()

    def _fill_rows(self, findings: dict[str, dict[str, Any]]) -> None:
        labels = list(findings)
        order = sorted(findings, key=lambda n: (_category(findings[n]), -float(findings[n]["probability"])))
        header_done = False
        for name in order:
            if _category(findings[name]) == 2 and not header_done:
                self._add_header(NOT_VALIDATED_HEADER)
                header_done = True
            row = FindingRow(name, findings[name], finding_color(name, labels))
            item = QListWidgetItem(self.list)
            item.setData(Qt.ItemDataRole.UserRole, name)
            item.setToolTip(row.toolTip())
            # The minimum width: a list in list mode makes items as wide as the widest hint or the
            # view, whichever is wider, so the preferred width would push the % off the right edge.
            item.setSizeHint(QSize(row.minimumSizeHint().width(), row.sizeHint().height()))
            self.list.setItemWidget(item, row)
            self._rows.append(row)
        self._fit_list()

    def _add_header(self, text: str) -> None:
        label = QLabel(text)
        label.setObjectName("findings_not_validated_header")
        label.setMinimumWidth(40)
        label.setContentsMargins(4, 6, 4, 1)
        label.setForegroundRole(MUTED)
        font = label.font()
        font.setPointSizeF(max(6.0, font.pointSizeF() * 0.9))
        label.setFont(font)
        item = QListWidgetItem(self.list)
        item.setFlags(Qt.ItemFlag.NoItemFlags)  # neither selectable nor reachable with the keys
        item.setSizeHint(QSize(label.minimumWidth(), label.sizeHint().height()))
        self.list.setItemWidget(item, label)

    def _fit_list(self) -> None:
        rows_height = sum(self.list.sizeHintForRow(i) for i in range(self.list.count()))
        self.list.setFixedHeight(rows_height + 2 * self.list.frameWidth() + 2)
        self.list.setVisible(self.list.count() > 0)
        widest = max((row.minimumSizeHint().width() for row in self._rows), default=0)
        self.list.setMinimumWidth(widest + 2 * self.list.frameWidth())

    # -- queries -------------------------------------------------------------------------
    def finding_names(self) -> list[str]:
        return [row.name for row in self._rows]

    def rows(self) -> list[FindingRow]:
        return list(self._rows)

    def row(self, name: str) -> FindingRow | None:
        return next((r for r in self._rows if r.name == name), None)

    def select_finding(self, name: str | None) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if name is not None and item.data(Qt.ItemDataRole.UserRole) == name:
                self.list.setCurrentItem(item)
                return

    def _on_current(self, current: QListWidgetItem | None, _previous: object) -> None:
        name = current.data(Qt.ItemDataRole.UserRole) if current is not None else None
        if name:
            emit(self.finding_selected, str(name))

    def _on_opacity(self, value: int) -> None:
        emit(self.opacity_changed, value / 100.0)
