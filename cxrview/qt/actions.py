"""Every user command as a QAction, and the menus built from them.

The action table below is the single source of truth for keyboard shortcuts: the menus,
the window's shortcut handling and the Help > Keyboard Shortcuts dialog all read it, so
the help can never drift from what the keys actually do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial, reduce
from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu

if TYPE_CHECKING:
    from cxrview.qt.main_window import MainWindow

N_PRESET_KEYS = 8  # F2..F9 -> the image's presets in order (number keys toggle findings in review)


@dataclass(frozen=True)
class ActionSpec:
    """One command: id, menu text, shortcuts, menu and the window attribute it calls."""

    id: str
    text: str
    shortcuts: tuple[str, ...]
    menu: str
    target: str  # dotted attribute path on the window, e.g. "canvas.fit"
    checkable: bool = False
    tip: str = ""


SPECS: tuple[ActionSpec, ...] = (
    ActionSpec("open_file", "&Open File…", ("Ctrl+O",), "file", "open_file_dialog"),
    ActionSpec("open_folder", "Open &Folder…", ("Ctrl+Shift+O",), "file", "open_folder_dialog"),
    ActionSpec("quit", "&Quit", ("Ctrl+Q",), "file", "close"),
    ActionSpec("next_image", "&Next Image", ("PgDown",), "view", "next_image"),
    ActionSpec("prev_image", "&Previous Image", ("PgUp",), "view", "previous_image"),
    ActionSpec("fit", "&Fit to Window", ("F",), "view", "canvas.fit"),
    ActionSpec("one_to_one", "&1:1 (Actual Pixels)", ("Ctrl+0",), "view", "canvas.one_to_one"),
    ActionSpec("zoom_in", "Zoom &In", ("Ctrl++", "+", "="), "view", "zoom_in"),
    ActionSpec("zoom_out", "Zoom &Out", ("Ctrl+-", "-"), "view", "zoom_out"),
    ActionSpec("invert", "&Invert", ("I",), "view", "toggle_invert", checkable=True),
    ActionSpec("reset", "&Reset View", ("R", "Esc"), "view", "canvas.reset_view",
               tip="Default window, no inversion, fit, leave Measure mode"),
    ActionSpec("measure", "&Measure Distance", ("M",), "tools", "toggle_measure",
               checkable=True),
    ActionSpec("delete_measurement", "&Delete Selected", ("Del", "Backspace"), "tools",
               "delete_selection", tip="The selected box, else the selected (or last) measurement"),
    ActionSpec("clear_measurements", "&Clear Measurements", ("Ctrl+Del",), "tools",
               "canvas.clear_measurements"),
    ActionSpec("shortcuts", "&Keyboard Shortcuts", ("F1",), "help", "show_shortcuts"),
    ActionSpec("about", "&About cxrview", (), "help", "show_about"),
)


def _resolve(window: MainWindow, dotted: str) -> Callable[[], object]:
    return reduce(getattr, dotted.split("."), window)  # type: ignore[arg-type]


# Slots are partials over these: they accept (and drop) the signal's own arguments,
# such as ``triggered(checked)``.
def _invoke(window: MainWindow, dotted: str, *_signal_args: object) -> None:
    _resolve(window, dotted)()


def _ignore_args(fn: Callable[..., object], arg: object, *_signal_args: object) -> None:
    fn(arg)


class Actions:
    """Owns the window's QActions and menus."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.by_id: dict[str, QAction] = {}
        for spec in SPECS:
            action = QAction(spec.text, window)
            action.setObjectName(f"action_{spec.id}")
            action.setShortcuts([QKeySequence(s) for s in spec.shortcuts])
            action.setCheckable(spec.checkable)
            if spec.tip:
                action.setStatusTip(spec.tip)
                action.setToolTip(spec.tip)
            action.triggered.connect(partial(_invoke, window, spec.target))
            window.addAction(action)  # shortcuts work even with the menu bar hidden
            self.by_id[spec.id] = action

        self.presets: list[QAction] = []
        for i in range(N_PRESET_KEYS):
            action = QAction(f"Preset {i + 1}", window)
            action.setObjectName(f"action_preset_{i + 1}")
            action.setShortcut(QKeySequence(f"F{i + 2}"))
            action.setEnabled(False)
            action.triggered.connect(partial(_ignore_args, window.apply_preset_index, i))
            window.addAction(action)
            self.presets.append(action)

        self.theme_group = QActionGroup(window)
        self.themes: dict[str, QAction] = {}
        for name in ("dark", "light"):
            action = QAction(f"{name.capitalize()} Theme", window, checkable=True)
            action.setObjectName(f"action_theme_{name}")
            action.triggered.connect(partial(_ignore_args, window.set_theme, name))
            self.theme_group.addAction(action)
            self.themes[name] = action

        self.recent_menu = QMenu("Open &Recent", window)
        self.recent_menu.setObjectName("menu_recent")
        self._build_menus()

    def __getitem__(self, action_id: str) -> QAction:
        return self.by_id[action_id]

    def _build_menus(self) -> None:
        w = self.window
        bar = w.menuBar()
        file_menu = bar.addMenu("&File")
        self.file_menu = file_menu
        file_menu.addAction(self["open_file"])
        file_menu.addAction(self["open_folder"])
        file_menu.addMenu(self.recent_menu)
        file_menu.addSeparator()
        file_menu.addAction(self["quit"])

        view = bar.addMenu("&View")
        self.view_menu = view
        for action_id in ("next_image", "prev_image", None, "fit", "one_to_one", "zoom_in",
                          "zoom_out", None, "invert"):
            if action_id is None:
                view.addSeparator()
            else:
                view.addAction(self[action_id])
        self.presets_menu = view.addMenu("&Presets")
        for action in self.presets:
            self.presets_menu.addAction(action)
        view.addAction(self["reset"])
        view.addSeparator()
        self.docks_menu = view.addMenu("&Panels")
        theme_menu = view.addMenu("&Theme")
        for action in self.themes.values():
            theme_menu.addAction(action)

        tools = bar.addMenu("&Tools")
        for action_id in ("measure", "delete_measurement", "clear_measurements"):
            tools.addAction(self[action_id])

        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self["shortcuts"])
        help_menu.addAction(self["about"])

    def set_recent(self, paths: list[str]) -> None:
        """Rebuild File > Open Recent from the persisted list."""
        menu = self.recent_menu
        menu.clear()
        for i, path in enumerate(paths):
            escaped = path.replace("&", "&&")
            action = menu.addAction(f"&{i + 1} {escaped}" if i < 9 else escaped)
            action.setData(path)
            action.triggered.connect(partial(_ignore_args, self.window.open_paths, [path]))
        if paths:
            menu.addSeparator()
        clear = menu.addAction("&Clear Recent")
        clear.setObjectName("action_clear_recent")
        clear.setEnabled(bool(paths))
        clear.triggered.connect(self.window.clear_recent)

    def set_presets(self, names: list[str], current: str | None) -> None:
        """Label keys F2..F9 with the current image's presets; extra keys are disabled."""
        for i, action in enumerate(self.presets):
            if i < len(names):
                action.setText(f"{names[i]}")
                action.setEnabled(True)
                action.setCheckable(True)
                action.setChecked(names[i] == current)
            else:
                action.setText(f"Preset {i + 1}")
                action.setEnabled(False)
                action.setCheckable(False)

    def all_actions(self) -> list[QAction]:
        """Every shortcut-bearing action, in menu order (for the Help dialog)."""
        return [*self.by_id.values(), *self.presets]


def shortcut_text(action: QAction) -> str:
    """Human-readable shortcuts of an action, native format, comma separated."""
    return ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText)
                     for s in action.shortcuts() if not s.isEmpty())


def plain_text(action: QAction) -> str:
    """Menu text without mnemonics and ellipses."""
    return action.text().replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip("…")


