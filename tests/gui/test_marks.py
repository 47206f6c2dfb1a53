"""Reading tools that stay: drawn on the canvas, stored per user (never beside the images),
listed in the measurements panel, deletable, undoable; they survive paging and a restart."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from cxrview.core.annotation_store import AnnotationStore
from tests.gui.helpers import drag
from tests.unit.dicom_factory import make_dicom

LOAD_TIMEOUT = 15000


def open_and_wait(qtbot, window, paths: list[str]) -> None:
    with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT):
        window.open_paths(paths)


def page(qtbot, window, step: int) -> None:
    with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT):
        window.next_image() if step > 0 else window.previous_image()


@pytest.fixture
def films(tmp_path: Path) -> Path:
    folder = tmp_path / "films"
    folder.mkdir()
    pixels = np.full((200, 300), 1000, dtype=np.uint16)
    pixels[50:100, 100:200] = 3000
    make_dicom(folder / "a.dcm", pixels, bits_stored=12, PixelSpacing=[0.5, 0.5], RescaleSlope=2,
               RescaleIntercept=-1024)
    make_dicom(folder / "b.dcm", np.flipud(pixels).copy(), bits_stored=12)
    return folder


def _draw(qtbot, window, key, start: tuple[float, float], end: tuple[float, float]) -> None:
    c = window.canvas
    if isinstance(key, tuple):
        qtbot.keyClick(c, *key)
    else:
        qtbot.keyClick(c, key)
    drag(c.viewport(), Qt.MouseButton.LeftButton, c.viewport_point(start), c.viewport_point(end))


def test_every_tool_is_stored_listed_and_survives_paging_and_restart(qtbot, window, films: Path,
                                                                     tmp_path: Path) -> None:
    open_and_wait(qtbot, window, [str(films)])
    c, panel = window.canvas, window.marks.dock
    _draw(qtbot, window, Qt.Key.Key_M, (10.0, 10.0), (110.0, 10.0))  # distance: 100 px x 0.5 mm
    _draw(qtbot, window, (Qt.Key.Key_R, Qt.KeyboardModifier.ShiftModifier), (100.0, 50.0), (200.0, 100.0))
    _draw(qtbot, window, Qt.Key.Key_E, (100.0, 50.0), (200.0, 100.0))
    _draw(qtbot, window, Qt.Key.Key_W, (20.0, 150.0), (60.0, 120.0))  # arrow
    qtbot.keyClick(c, Qt.Key.Key_G)  # angle: a drag along the first arm, then a click
    drag(c.viewport(), Qt.MouseButton.LeftButton, c.viewport_point((150.0, 20.0)),
         c.viewport_point((250.0, 20.0)))
    drag(c.viewport(), Qt.MouseButton.LeftButton, c.viewport_point((250.0, 120.0)),
         c.viewport_point((250.0, 120.0)))
    qtbot.keyClick(c, Qt.Key.Key_C, Qt.KeyboardModifier.ShiftModifier)  # CTR: heart, then thorax
    drag(c.viewport(), Qt.MouseButton.LeftButton, c.viewport_point((120.0, 160.0)),
         c.viewport_point((180.0, 160.0)))
    drag(c.viewport(), Qt.MouseButton.LeftButton, c.viewport_point((60.0, 180.0)),
         c.viewport_point((260.0, 180.0)))
    c.ask_text = lambda: "nodule?"
    qtbot.keyClick(c, Qt.Key.Key_T)
    drag(c.viewport(), Qt.MouseButton.LeftButton, c.viewport_point((30.0, 30.0)),
         c.viewport_point((30.0, 30.0)))
    kinds = [m.kind for m in c.measurements()]
    assert kinds == ["distance", "rect", "ellipse", "arrow", "angle", "ctr", "text"]
    rows = panel.rows()
    assert rows[0] == ("Distance", "50.0 mm")
    # ROI statistics in modality units (slope 2, intercept -1024) and mm² (0.5 mm pixels)
    assert rows[1] == ("Rectangle ROI", "mean 4976 SD 0  1250.0 mm²")
    assert rows[2][0] == "Ellipse ROI" and rows[2][1].startswith("mean 4976 SD 0")
    assert rows[4][1] == "90.0°" and rows[5][1] == "CTR 0.30" and rows[6][1] == "nodule?"
    page(qtbot, window, +1)
    assert c.measurements() == [] and panel.rows() == []
    page(qtbot, window, -1)
    assert [m.kind for m in c.measurements()] == kinds  # back: all there
    window.close()
    # A restart: a new window (a new store connection at the same per-user place) shows them again.
    from cxrview.qt.main_window import MainWindow

    again = MainWindow()
    qtbot.addWidget(again)
    again.show()
    open_and_wait(qtbot, again, [str(films / "a.dcm")])
    assert [m.kind for m in again.canvas.measurements()] == kinds
    assert again.marks.dock.rows()[0] == ("Distance", "50.0 mm")
    again.close()
    store = AnnotationStore(tmp_path / "marks" / "annotations.sqlite")
    assert store.count() == 7
    store.close()
    assert sorted(p.name for p in films.iterdir()) == ["a.dcm", "b.dcm"]


def test_delete_undo_redo(qtbot, window, films: Path) -> None:
    open_and_wait(qtbot, window, [str(films)])
    c, panel = window.canvas, window.marks.dock
    first = c.add_measurement((10.0, 10.0), (60.0, 10.0))
    second = c.add_measurement((10.0, 40.0), (90.0, 40.0))
    panel.list.setCurrentItem(panel.list.topLevelItem(0))  # select the first in the panel
    assert c.marks_layer().selected == first.uid
    qtbot.keyClick(c, Qt.Key.Key_Delete)
    assert [m.uid for m in c.measurements()] == [second.uid]
    window.marks.undo()
    assert [m.uid for m in c.measurements()] == [first.uid, second.uid]  # back in its place
    window.marks.redo()
    assert [m.uid for m in c.measurements()] == [second.uid]
    panel.delete.click()  # nothing selected: the last one
    assert c.measurements() == [] and not panel.delete.isEnabled()
    window.actions_["clear_measurements"].trigger()  # nothing left: a no-op, not an error
    window.marks.actions["undo_mark"].trigger()
    assert [m.uid for m in c.measurements()] == [second.uid]


def test_marks_follow_the_pixels_not_the_file_name(qtbot, window, films: Path, tmp_path: Path) -> None:
    open_and_wait(qtbot, window, [str(films / "a.dcm")])
    window.canvas.add_measurement((10.0, 10.0), (60.0, 10.0))
    copy = tmp_path / "renamed.dcm"
    shutil.copy(films / "a.dcm", copy)
    open_and_wait(qtbot, window, [str(copy)])
    assert len(window.canvas.measurements()) == 1
