"""The viewer's own commands (File, View, Tools, Help), the preset keys, the themes and
File › Open Recent, as action specs like every other part's (:mod:`cxrview.qt.actions`).

They call what :class:`ViewerCommands` names, so this module needs neither the window nor
the canvas, only the callables the window hands it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QWidget

from cxrview.qt.actions import ActionSet, ActionSpec

N_PRESET_KEYS = 8  # F2..F9 -> the image's presets in order (number keys toggle findings in review)
THEMES = ("dark", "light")


@dataclass(frozen=True)
class ViewerCommands:
    """What the window's commands call."""

    open_file: Callable[[], object]
    open_folder: Callable[[], object]
    quit: Callable[[], object]
    next_image: Callable[[], object]
    previous_image: Callable[[], object]
    fit: Callable[[], object]
    one_to_one: Callable[[], object]
    zoom_in: Callable[[], object]
    zoom_out: Callable[[], object]
    toggle_invert: Callable[[], object]
    reset_window: Callable[[], object]
    reset_zoom: Callable[[], object]
    rotate: Callable[[int], object]  # degrees clockwise
    flip: Callable[[bool], object]  # horizontal?
    toggle_hud: Callable[[], object]
    toggle_measure: Callable[[], object]
    delete_selection: Callable[[], object]
    clear_measurements: Callable[[], object]
    show_shortcuts: Callable[[], object]
    show_about: Callable[[], object]
    apply_preset: Callable[[int], object]  # index into the shown image's presets
    set_theme: Callable[[str], object]
    open_recent: Callable[[list[str]], object]
    clear_recent: Callable[[], object]


def viewer_specs(c: ViewerCommands) -> list[ActionSpec]:
    specs = [
        ActionSpec("open_file", "&Open File…", "file.open", c.open_file, keys=("Ctrl+O",)),
        ActionSpec("open_folder", "Open &Folder…", "file.open", c.open_folder, keys=("Ctrl+Shift+O",)),
        ActionSpec("quit", "&Quit", "file.quit", c.quit, keys=("Ctrl+Q",)),
        ActionSpec("next_image", "&Next Image", "view.navigate", c.next_image, keys=("PgDown",)),
        ActionSpec("prev_image", "&Previous Image", "view.navigate", c.previous_image, keys=("PgUp",)),
        ActionSpec("fit", "&Fit to Window", "view.zoom", c.fit, keys=("F",)),
        ActionSpec("one_to_one", "&1:1 (Actual Pixels)", "view.zoom", c.one_to_one, keys=("Ctrl+0",)),
        ActionSpec("zoom_in", "Zoom &In", "view.zoom", c.zoom_in, keys=("Ctrl++", "+", "=")),
        ActionSpec("zoom_out", "Zoom &Out", "view.zoom", c.zoom_out, keys=("Ctrl+-", "-")),
        ActionSpec("invert", "&Invert", "view.invert", c.toggle_invert, keys=("I",), checkable=True),
        ActionSpec("reset", "&Reset Window", "view.reset", c.reset_window, keys=("R",),
                   tip="The file's default window, no inversion (zoom, rotation and marks stay)"),
        ActionSpec("reset_zoom", "Reset &Zoom", "view.reset", c.reset_zoom, keys=("Esc",),
                   tip="Drop a half-drawn mark, else fit the image; the window is kept"),
        ActionSpec("rotate_cw", "Rotate 90° &Clockwise", "view.orient", partial(c.rotate, 90),
                   keys=("Ctrl+R",)),
        ActionSpec("rotate_ccw", "Rotate 90° Counter-clockwise", "view.orient", partial(c.rotate, -90),
                   keys=("Ctrl+Shift+R",)),
        ActionSpec("flip_h", "Flip &Horizontally", "view.orient", partial(c.flip, True), keys=("H",)),
        ActionSpec("flip_v", "Flip &Vertically", "view.orient", partial(c.flip, False), keys=("V",)),
        ActionSpec("toggle_hud", "Corner &Text", "view.orient", c.toggle_hud, keys=("C",), checkable=True,
                   tip="Show or hide the patient / study / window text in the corners"),
        ActionSpec("measure", "&Measure Distance", "tools", c.toggle_measure, keys=("M",), checkable=True),
        ActionSpec("delete_measurement", "&Delete Selected", "tools", c.delete_selection,
                   keys=("Del", "Backspace"),
                   tip="The selected box, else the selected (or last) measurement"),
        ActionSpec("clear_measurements", "&Clear Measurements", "tools", c.clear_measurements,
                   keys=("Ctrl+Del",)),
        ActionSpec("shortcuts", "&Keyboard Shortcuts", "help", c.show_shortcuts, keys=("F1",)),
        ActionSpec("about", "&About cxrview", "help", c.show_about),
    ]
    specs += [ActionSpec(f"preset_{i + 1}", f"Preset {i + 1}", "view.presets", partial(c.apply_preset, i),
                         keys=(f"F{i + 2}",), enabled=False) for i in range(N_PRESET_KEYS)]
    specs += [ActionSpec(f"theme_{name}", f"{name.capitalize()} Theme", "view.theme",
                         partial(c.set_theme, name), group="theme") for name in THEMES]
    return specs


class WindowActions(ActionSet):
    """The window's actions, with the two menus whose entries change: presets and recent files."""

    def __init__(self, window: QWidget, commands: ViewerCommands) -> None:
        super().__init__(window, viewer_specs(commands))
        self._commands = commands
        self.presets = [self[f"preset_{i + 1}"] for i in range(N_PRESET_KEYS)]
        self.themes = {name: self[f"theme_{name}"] for name in THEMES}
        self.recent_menu = QMenu("Open &Recent", window)
        self.recent_menu.setObjectName("menu_recent")
        self.adopt("file.recent", self.recent_menu.menuAction())

    def set_recent(self, paths: list[str]) -> None:
        """Rebuild File > Open Recent from the persisted list."""
        menu = self.recent_menu
        menu.clear()
        for i, path in enumerate(paths):
            escaped = path.replace("&", "&&")
            action = menu.addAction(f"&{i + 1} {escaped}" if i < 9 else escaped)
            action.setData(path)
            action.triggered.connect(partial(_open_recent, self._commands.open_recent, path))
        if paths:
            menu.addSeparator()
        clear = menu.addAction("&Clear Recent")
        clear.setObjectName("action_clear_recent")
        clear.setEnabled(bool(paths))
        clear.triggered.connect(partial(_call, self._commands.clear_recent))

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
        """The window's own shortcut-bearing actions (File, View, Tools, Help, presets)."""
        return [a for a in self if not a.objectName().startswith("action_theme_")]


def _open_recent(open_paths: Callable[[list[str]], object], path: str, *_signal_args: object) -> None:
    open_paths([path])


def _call(fn: Callable[[], object], *_signal_args: object) -> None:
    fn()
