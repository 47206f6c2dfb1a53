"""Viewports: compare with prior (current right, prior left) with linked zoom, pan and window;
PA + lateral; rotate/flip per viewport never touch the AI input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrview.core import Window
from tests.unit.study_factory import write_tree

LOAD_TIMEOUT = 15000


@pytest.fixture
def opened(qtbot, window, tmp_path: Path):
    write_tree(tmp_path / "films")
    with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT):
        window.open_paths([str(tmp_path / "films")])
    current = next(e for e in window.studies.entries
                   if e.study_date == "20240301" and e.view_position == "PA")
    if window.shown_path() != current.path:
        with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT):
            window.show_path(current.path)
    return current


def test_compare_with_prior_opens_the_right_two_films_linked(qtbot, window, opened) -> None:
    grid = window.viewport_grid
    with qtbot.waitSignal(window.viewports.side_loaded, timeout=LOAD_TIMEOUT) as loaded:
        window.viewports.actions["compare_prior"].trigger()
    side, prior_path = loaded.args
    assert Path(prior_path).name == "A1_20230110_1_1.dcm"  # the previous study's PA, not the 2022 AP
    assert grid.layout_name() == "1x2" and grid.visible_canvases() == [side, window.canvas]  # prior left
    assert side.isVisible() and grid.is_linked() and window.viewports.actions["link_views"].isChecked()
    main = window.canvas
    main.zoom_by(2.0)
    relative = main.zoom_factor() / main.fit_zoom()
    assert side.zoom_factor() / side.fit_zoom() == pytest.approx(relative, rel=1e-3)
    main.pan_by(30, 10)
    centre = main.image_point(main.viewport().rect().center())
    other = side.image_point(side.viewport().rect().center())
    assert (other.x(), other.y()) == pytest.approx((centre.x(), centre.y()), abs=1.5)
    main.set_window(Window(1500.0, 900.0))
    assert side.window() == Window(1500.0, 900.0)
    main.toggle_invert()
    assert side.is_inverted()
    # Rotation is per viewport, and never reaches the stored pixels or the AI input.
    shown, stored = main.display_pixels().copy(), main.image().stored.copy()
    window.actions_["rotate_cw"].trigger()
    assert main.view_transform().rotation == 90 and side.view_transform().is_identity
    assert np.array_equal(main.display_pixels(), shown) and np.array_equal(main.image().stored, stored)
    # Unlinked: each viewport on its own.
    window.viewports.actions["link_views"].trigger()
    main.set_window(Window(100.0, 50.0))
    assert side.window() == Window(1500.0, 900.0)
    window.viewports.actions["layout_1x1"].trigger()
    assert grid.visible_canvases() == [main] and not side.isVisible()


def test_pa_lateral_and_no_prior(qtbot, window, opened) -> None:
    with qtbot.waitSignal(window.viewports.side_loaded, timeout=LOAD_TIMEOUT) as loaded:
        window.viewports.actions["pa_lateral"].trigger()
    side, path = loaded.args
    assert Path(path).name == "A1_20240301_2_1.dcm"
    assert window.viewport_grid.visible_canvases() == [window.canvas, side]  # PA left, lateral right
    oldest = next(e for e in window.studies.entries if e.study_date == "20220505")
    with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT):
        window.show_path(oldest.path)
    assert not window.viewports.compare_with_prior()
    assert "No earlier frontal film" in window.status.currentMessage()


def test_layouts_2x2(qtbot, window, opened) -> None:
    window.viewports.actions["layout_2x2"].trigger()
    grid = window.viewport_grid
    assert len(grid.visible_canvases()) == 4 and all(c.isVisible() for c in grid.visible_canvases())
    with qtbot.waitSignal(window.viewports.side_loaded, timeout=LOAD_TIMEOUT):
        window.viewports.load_into(grid.sides[2], window.studies.entries[0].path)
    assert grid.sides[2].image() is not None


def test_side_by_side_viewports_share_the_width(qtbot, window, opened) -> None:
    with qtbot.waitSignal(window.viewports.side_loaded, timeout=LOAD_TIMEOUT):
        window.viewports.compare_with_prior()
    left, right = window.viewport_grid.visible_canvases()
    qtbot.waitUntil(lambda: abs(left.width() - right.width()) <= 2, timeout=3000)


def test_a_series_dragged_from_the_browser_opens_in_a_side_viewport(qtbot, window, opened) -> None:
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtGui import QDropEvent

    window.viewports.actions["layout_1x2"].trigger()
    dock = window.studies.dock
    series = dock.tree.topLevelItem(0).child(0).child(1)  # A1 2024, the lateral
    mime = dock.tree.mimeData([series])
    side = window.viewport_grid.sides[0]
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.viewports.side_loaded, timeout=LOAD_TIMEOUT) as loaded:
        side.dropEvent(event)
    assert loaded.args[0] is side and Path(loaded.args[1]).name == "A1_20240301_2_1.dcm"
    assert side.image() is not None and side.path == loaded.args[1]
