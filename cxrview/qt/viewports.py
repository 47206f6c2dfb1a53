"""The viewport controller: layouts, linking, "compare with prior" and "PA + lateral".

It is built from the viewport grid, the task runner (side films load off the GUI thread,
latest wins per viewport), the study index and a notifier, and offers its commands as action
specs (ADR 0010). Hanging: the current film on the right and the prior on the left, as chest
readers expect (``prior_left``, a setting); PA left and lateral right.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from PySide6.QtCore import QObject, Signal

from cxrview.core import ImageLoadError
from cxrview.qt.actions import ActionSet, ActionSpec
from cxrview.qt.compat import emit
from cxrview.qt.loading import LoadedImage, load_task
from cxrview.qt.notify import Notifier
from cxrview.qt.study import StudyController
from cxrview.qt.viewer.canvas import ImageCanvas
from cxrview.qt.viewer.viewports import LAYOUTS, SideCanvas, ViewportGrid
from cxrview.qt.workers import TaskCancelled, TaskRunner


class ViewportController(QObject):
    side_loaded = Signal(object, str)  # (side canvas, path)

    def __init__(self, grid: ViewportGrid, runner: TaskRunner, studies: StudyController,
                 notifier: Notifier, *, current_path: Callable[[], str | None], prior_left: bool = True,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.grid = grid
        self.runner = runner
        self.studies = studies
        self.notifier = notifier
        self.current_path = current_path
        self.prior_left = prior_left
        for side in grid.sides:
            side.path_dropped.connect(self._on_dropped)
        specs = [ActionSpec(f"layout_{name}", f"Layout {name.replace('x', '×')}", "view.layout",
                            partial(self.set_layout, name), keys=(key,), checkable=True, group="layout")
                 for name, key in zip(LAYOUTS, ("Ctrl+1", "Ctrl+2", "Ctrl+4"), strict=True)]
        specs += [
            ActionSpec("link_views", "&Link Zoom, Pan and Window", "view.layout", self._on_link_toggled,
                       keys=("L",), checkable=True),
            ActionSpec("compare_prior", "Compare with &Prior", "view.layout", self.compare_with_prior,
                       keys=("P",), tip="The same patient's previous frontal film beside this one"),
            ActionSpec("pa_lateral", "PA + &Lateral", "view.layout", self.show_pa_lateral, keys=("Shift+L",)),
        ]
        self.actions = ActionSet(self, specs)
        self.actions["layout_1x1"].setChecked(True)
        grid.layout_changed.connect(lambda name: self.actions[f"layout_{name}"].setChecked(True))

    # -- layouts and linking --------------------------------------------------------------------
    def set_layout(self, name: str) -> None:
        self.grid.set_layout(name)
        if self.grid.is_linked():
            self.grid.sync_from(self.grid.main)

    def set_linked(self, linked: bool) -> None:
        self.actions["link_views"].setChecked(linked)
        self.grid.set_linked(linked)

    def _on_link_toggled(self) -> None:
        self.grid.set_linked(self.actions["link_views"].isChecked())

    # -- what goes beside the current film ---------------------------------------------------------
    def compare_with_prior(self) -> bool:
        """The patient's previous frontal film beside the current one, linked (False: none)."""
        path = self.current_path()
        prior = self.studies.prior_of(path) if path else None
        if path is None or prior is None:
            known = path is not None and self.studies.entry(path) is not None
            self.notifier.status("No earlier frontal film of this patient in the study browser." if known else
                                 "Open the patient's folder (or CD) to find the prior film.")
            return False
        self.grid.main_first = not self.prior_left
        self._show_beside(prior.path)
        self.notifier.status(f"Prior: {prior.study_label} ({prior.view_position or 'view unknown'})")
        return True

    def show_pa_lateral(self) -> bool:
        path = self.current_path()
        pair = self.studies.pa_lateral_of(path) if path else None
        if path is None or pair is None:
            self.notifier.status("This study has no frontal + lateral pair in the study browser.")
            return False
        frontal, lateral = pair
        current_is_frontal = frontal.path == path
        self.grid.main_first = current_is_frontal  # the frontal film on the left
        self._show_beside(lateral.path if current_is_frontal else frontal.path)
        return True

    def _show_beside(self, path: str) -> None:
        self.grid.set_layout("1x2")
        self.set_linked(True)
        self.load_into(self.grid.sides[0], path)

    def load_into(self, canvas: ImageCanvas, path: str) -> None:
        index = self.grid.sides.index(canvas) if isinstance(canvas, SideCanvas) else 0
        handle = self.runner.submit(load_task, path, slot=f"viewport-{index + 1}", name=path)
        handle.returned.connect(partial(self._on_loaded, canvas, path))
        handle.errored.connect(partial(self._on_error, path))

    def _on_loaded(self, canvas: ImageCanvas, path: str, result: LoadedImage) -> None:
        canvas.set_image(result.image, result.pixels)
        if isinstance(canvas, SideCanvas):
            canvas.path = path
        if self.grid.is_linked():
            self.grid.sync_from(self.grid.main)
        emit(self.side_loaded, canvas, path)

    def _on_error(self, path: str, exc: BaseException) -> None:
        if not isinstance(exc, TaskCancelled):
            self.notifier.error(str(exc) if isinstance(exc, ImageLoadError) else f"{path}: {exc}")

    def _on_dropped(self, canvas: object, path: str) -> None:
        if isinstance(canvas, SideCanvas):
            self.load_into(canvas, path)
