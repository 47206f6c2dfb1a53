"""Commands as data, and the one place that puts them into menus.

Every part of the GUI that offers commands (the window's viewer commands, the AI, review,
batch scoring and fine-tune controllers) declares them as :class:`ActionSpec` rows (id,
text, keys, menu section, what to call) and owns the :class:`ActionSet` made from them, to
update their state later. :data:`MENU_LAYOUT` is the menu bar, and :func:`build_menu_bar`
fills it from all parts' sections, so no part knows another's menus or their positions.
The Help › Keyboard Shortcuts dialog lists the same live actions, so the help can never
drift from what the keys do, and every shortcut can be remapped there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu, QMenuBar, QWidget


@dataclass(frozen=True)
class ActionSpec:
    """One command: its id (object name ``action_<id>``), menu text and section, keys, and what
    it calls: ``triggered`` when the user activates it, ``toggled(checked)`` whenever a checkable
    action's state changes (also when the program sets it)."""

    id: str
    text: str
    menu: str  # a section of MENU_LAYOUT
    triggered: Callable[[], object] | None = None
    toggled: Callable[[bool], object] | None = None
    keys: tuple[str, ...] = ()
    checkable: bool = False
    checked: bool = False
    enabled: bool = True
    group: str | None = None  # exclusive group: radio items (theme, device)
    tip: str = ""


def _call(fn: Callable[[], object], *_signal_args: object) -> None:
    """Slot for ``triggered(checked)``: the spec's callable takes no arguments."""
    fn()


class ActionSet:
    """The QActions of one part, made from its specs (owned by ``owner``), in declaration order."""

    def __init__(self, owner: QObject, specs: Iterable[ActionSpec]) -> None:
        self._owner = owner
        self._actions: dict[str, QAction] = {}
        self._entries: list[tuple[str, QAction]] = []
        self._groups: dict[str, QActionGroup] = {}
        for spec in specs:
            self._add(spec)

    def _add(self, spec: ActionSpec) -> None:
        if spec.id in self._actions:
            raise ValueError(f"two actions with the id {spec.id!r}")
        action = QAction(spec.text, self._owner)
        action.setObjectName(f"action_{spec.id}")
        action.setShortcuts([QKeySequence(k) for k in spec.keys])
        action.setCheckable(spec.checkable or spec.group is not None)
        action.setChecked(spec.checked)
        action.setEnabled(spec.enabled)
        if spec.tip:
            action.setStatusTip(spec.tip)
            action.setToolTip(spec.tip)
        if spec.group is not None:
            if spec.group not in self._groups:
                self._groups[spec.group] = QActionGroup(self._owner)
            self._groups[spec.group].addAction(action)
        if spec.triggered is not None:
            action.triggered.connect(partial(_call, spec.triggered))
        if spec.toggled is not None:
            action.toggled.connect(spec.toggled)
        self._actions[spec.id] = action
        self._entries.append((spec.menu, action))

    def adopt(self, menu: str, action: QAction) -> None:
        """Put an action made elsewhere (a dock's show/hide toggle) into one of this part's sections."""
        self._entries.append((menu, action))

    def __getitem__(self, action_id: str) -> QAction:
        return self._actions[action_id]

    def __iter__(self) -> Iterator[QAction]:
        return iter(self._actions.values())

    def entries(self) -> list[tuple[str, QAction]]:
        """(menu section, action) for every action this part puts into the menus."""
        return list(self._entries)


SEPARATOR = "-"


@dataclass(frozen=True)
class Menu:
    """A menu of the bar (or a submenu): sections, submenus and separators, in order."""

    id: str  # object name ``menu_<id>``
    title: str
    entries: tuple[str | Menu, ...]


MENU_LAYOUT: tuple[Menu, ...] = (
    Menu("file", "&File", (
        "file.open", "file.recent", Menu("workspace", "&Workspace", ("file.workspace",)), SEPARATOR,
        "file.quit")),
    Menu("edit", "&Edit", ("edit.history",)),
    Menu("view", "&View", (
        "view.navigate", SEPARATOR, "view.zoom", SEPARATOR, "view.invert",
        Menu("presets", "&Presets", ("view.presets",)), "view.reset", SEPARATOR, "view.orient", SEPARATOR,
        "view.layout", SEPARATOR, Menu("panels", "&Panels", ("view.panels",)),
        Menu("theme", "&Theme", ("view.theme",)),
        Menu("overlays", "&Overlays", ("view.overlays",)))),
    Menu("tools", "&Tools", ("tools", SEPARATOR, "tools.marks", SEPARATOR, "tools.export")),
    Menu("review", "&Review", (
        "review.step", SEPARATOR, Menu("toggle_finding", "&Toggle Finding", ("review.toggle",)),
        "review.uncertain", SEPARATOR, "review.boxes",
        Menu("box_finding", "Set Selected Box's Finding", ("review.box_finding",)), SEPARATOR,
        "review.panels")),
    Menu("model", "&Model", (
        "model.run", Menu("device", "&Device", ("model.device",)), SEPARATOR, "model.batch", SEPARATOR,
        "model.finetune")),
    Menu("help", "&Help", ("help",)),
)


def _sections(menus: Iterable[Menu]) -> Iterator[str]:
    for menu in menus:
        for entry in menu.entries:
            if isinstance(entry, Menu):
                yield from _sections([entry])
            elif entry != SEPARATOR:
                yield entry


def build_menu_bar(bar: QMenuBar, window: QWidget, entries: Iterable[tuple[str, QAction]],
                   layout: tuple[Menu, ...] = MENU_LAYOUT) -> dict[str, QMenu]:
    """Fill ``bar`` with ``layout``, each section with its actions in the order given; every action
    is also added to ``window`` so its keys work with the menu bar hidden. Returns the menus by id.
    An action for a section the layout lacks is a programming error (it would be unreachable)."""
    by_section: dict[str, list[QAction]] = {}
    for section, action in entries:
        by_section.setdefault(section, []).append(action)
    unknown = sorted(set(by_section) - set(_sections(layout)))
    if unknown:
        raise ValueError(f"actions for menu sections not in the layout: {', '.join(unknown)}")
    menus: dict[str, QMenu] = {}

    def fill(menu: QMenu, spec: Menu) -> None:
        menu.setObjectName(f"menu_{spec.id}")
        menus[spec.id] = menu
        for entry in spec.entries:
            if isinstance(entry, Menu):
                fill(menu.addMenu(entry.title), entry)
            elif entry == SEPARATOR:
                menu.addSeparator()
            else:
                for action in by_section.get(entry, []):
                    menu.addAction(action)
                    window.addAction(action)

    for top in layout:
        fill(bar.addMenu(top.title), top)
    return menus


def shortcut_text(action: QAction) -> str:
    """Human-readable shortcuts of an action, native format, comma separated."""
    return ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText)
                     for s in action.shortcuts() if not s.isEmpty())


def plain_text(action: QAction) -> str:
    """Menu text without mnemonics and ellipses."""
    return action.text().replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip("…")
