"""Canvas behaviour on real radiographs: zoom anchoring, window/level, invert, measure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QImage, QPainter

from cxrview.core import Window, load_image
from cxrview.qt.viewer.canvas import ImageCanvas
from cxrview.qt.viewer.layers import OverlayLayer
from tests.gui.helpers import drag, wheel


@pytest.fixture
def canvas(qtbot) -> ImageCanvas:
    view = ImageCanvas()
    qtbot.addWidget(view)
    view.resize(800, 600)
    view.show()
    qtbot.waitExposed(view)
    return view


@pytest.fixture(scope="module")
def png_image(nih_dir: Path):
    return load_image(sorted(nih_dir.glob("*.png"))[0])


@pytest.fixture(scope="module")
def calibrated_dicom(dicom_dir: Path):
    return load_image(dicom_dir / "chest_cr_mono2_8bit_jpeg_baseline.dcm")


def test_wheel_zoom_keeps_point_under_cursor(canvas: ImageCanvas, png_image) -> None:
    canvas.set_image(png_image)
    cursor = QPointF(250.0, 180.0)
    before = canvas.image_point(cursor)
    zoom0 = canvas.zoom_factor()
    for notches in (1, 1, 2, -1, 3):
        wheel(canvas.viewport(), cursor, notches)
        after = canvas.image_point(cursor)
        # Within one screen pixel, and no creep over successive notches.
        assert abs(after.x() - before.x()) * canvas.zoom_factor() <= 1.0
        assert abs(after.y() - before.y()) * canvas.zoom_factor() <= 1.0
    assert canvas.zoom_factor() == pytest.approx(zoom0 * 1.25 ** 6, rel=1e-6)
    # A point elsewhere under the cursor: that one stays put instead.
    other = QPointF(600.0, 420.0)
    before = canvas.image_point(other)
    wheel(canvas.viewport(), other, -2)
    after = canvas.image_point(other)
    assert abs(after.x() - before.x()) * canvas.zoom_factor() <= 1.0
    assert abs(after.y() - before.y()) * canvas.zoom_factor() <= 1.0


def test_fit_and_one_to_one(canvas: ImageCanvas, calibrated_dicom) -> None:
    canvas.set_image(calibrated_dicom)  # 1024x1024 in an 800x600 view
    assert canvas.zoom_factor() < 0.6
    top_left = canvas.viewport_point((0.0, 0.0))
    bottom_right = canvas.viewport_point((1024.0, 1024.0))
    assert top_left.y() >= 0 and bottom_right.y() <= canvas.viewport().height()
    canvas.one_to_one()
    assert canvas.zoom_factor() == pytest.approx(1.0)
    canvas.zoom_by(2.0)
    canvas.fit()
    assert canvas.zoom_factor() < 0.6


def test_right_drag_changes_window_and_pixels(canvas: ImageCanvas, png_image) -> None:
    canvas.set_image(png_image)
    w0 = canvas.window()
    px0 = canvas.display_pixels().copy()
    drag(canvas.viewport(), Qt.MouseButton.RightButton, QPointF(400, 300), QPointF(300, 340))
    w1 = canvas.window()
    assert w1.width < w0.width  # dragged left: narrower window, more contrast
    assert w1.center > w0.center  # dragged down: higher center
    span = png_image.modality_range()[1] - png_image.modality_range()[0]
    assert w0.width - w1.width == pytest.approx(100 * span / 400, rel=0.05)
    assert not np.array_equal(canvas.display_pixels(), px0)
    canvas.reset_view()
    assert canvas.window() == w0
    assert np.array_equal(canvas.display_pixels(), px0)


def test_invert_toggles_pixels(canvas: ImageCanvas, png_image) -> None:
    canvas.set_image(png_image)
    px0 = canvas.display_pixels().astype(np.int16)
    canvas.toggle_invert()
    assert canvas.is_inverted()
    assert np.array_equal(canvas.display_pixels().astype(np.int16), 255 - px0)
    canvas.toggle_invert()
    assert np.array_equal(canvas.display_pixels().astype(np.int16), px0)


def test_presets_and_set_window(canvas: ImageCanvas, calibrated_dicom) -> None:
    canvas.set_image(calibrated_dicom)
    assert canvas.apply_preset("bone")
    assert canvas.window() == calibrated_dicom.presets["bone"]
    assert canvas.current_preset() == "bone"
    assert not canvas.apply_preset("no such preset")
    canvas.set_window(Window(100.0, 50.0))
    assert canvas.window() == Window(100.0, 50.0) and canvas.current_preset() is None


def test_measure_mm_on_calibrated_dicom(canvas: ImageCanvas, calibrated_dicom) -> None:
    canvas.set_image(calibrated_dicom)
    m = canvas.add_measurement((100.0, 100.0), (400.0, 500.0))
    assert canvas.measured(m).values["length"] == pytest.approx(500 * 0.168)
    assert canvas.measured(m).label == "84.0 mm"
    # Drawing with the mouse in Measure mode gives the same kind of label.
    canvas.set_measure_mode(True)
    start = canvas.viewport_point((200.0, 200.0))
    end = canvas.viewport_point((200.0, 700.0))
    drag(canvas.viewport(), Qt.MouseButton.LeftButton, start, end)
    drawn = canvas.measurements()[-1]
    assert canvas.measured(drawn).label.endswith(" mm")
    assert canvas.measured(drawn).values["length"] == pytest.approx(
        500 * 0.168, abs=3 * 0.168 / canvas.zoom_factor())
    assert len(canvas.measurements()) == 2
    canvas.delete_measurement()
    assert canvas.measurements() == [m]
    canvas.clear_measurements()
    assert canvas.measurements() == []


def test_measure_uncalibrated_png(canvas: ImageCanvas, png_image) -> None:
    canvas.set_image(png_image)
    m = canvas.add_measurement((10.0, 10.0), (40.0, 50.0))
    assert canvas.measured(m).unit == "px"
    assert canvas.measured(m).label == "50 px (uncalibrated)"


def test_cursor_signal_reports_raw_value(canvas: ImageCanvas, qtbot, png_image) -> None:
    canvas.set_image(png_image)
    target = canvas.viewport_point((20.5, 30.5))
    from PySide6.QtCore import QEvent

    from tests.gui.helpers import send_mouse

    with qtbot.waitSignal(canvas.cursor_moved, timeout=1000) as blocker:
        send_mouse(canvas.viewport(), QEvent.Type.MouseMove, target, Qt.MouseButton.NoButton)
    info = blocker.args[0]
    assert (info.x, info.y) == (20, 30)
    assert info.raw == png_image.modality_value_at(20, 30)


class _Broken(OverlayLayer):
    def paint_overlay(self, painter: QPainter, image_rect: QRectF) -> None:
        raise RuntimeError("boom")


def test_layers_order_visibility_and_safe_paint(canvas: ImageCanvas, png_image) -> None:
    canvas.set_image(png_image)
    broken = canvas.add_layer(_Broken("broken", z=5, opacity=0.5))
    heat = canvas.add_layer(OverlayLayer("heatmap", z=2))
    names = [layer.name for layer in canvas.layers()]
    assert names == ["heatmap", "broken", "measurements"]
    assert canvas.layer("broken") is broken and broken.opacity() == 0.5
    assert broken.boundingRect() == QRectF(0, 0, png_image.width, png_image.height)
    assert heat.parentItem() is not None  # child of the image item: zoom/pan apply
    target = QImage(200, 200, QImage.Format.Format_ARGB32)
    painter = QPainter(target)
    canvas.scene().render(painter)  # must not raise although one layer's paint fails
    painter.end()
    canvas.remove_layer("broken")
    assert canvas.layer("broken") is None


def test_rotate_and_flip_change_the_view_only(canvas: ImageCanvas, calibrated_dicom) -> None:
    """Issue 15: a quarter turn / flip moves the picture on screen; the stored pixels, the
    rendering (and so the AI input, taken from ``canvas.image()``) never change."""
    canvas.set_image(calibrated_dicom)
    stored = calibrated_dicom.stored.copy()
    shown = canvas.display_pixels().copy()
    corner = canvas.viewport_point((10.0, 10.0))  # near the image's top-left
    canvas.rotate_view(90)
    assert canvas.view_transform().rotation == 90
    turned = canvas.viewport_point((10.0, 10.0))
    assert turned.x() > canvas.viewport().width() / 2 and turned.y() < canvas.viewport().height() / 2
    p = canvas.image_point(turned)  # the round trip still lands on the same image pixel
    assert (p.x(), p.y()) == pytest.approx((10.0, 10.0), abs=0.5)
    canvas.rotate_view(-90)
    canvas.flip(horizontal=True)
    flipped = canvas.viewport_point((10.0, 10.0))
    assert flipped.x() > canvas.viewport().width() / 2 and flipped.y() == pytest.approx(corner.y(), abs=1)
    canvas.flip(horizontal=False)
    assert canvas.view_transform().flip_v
    assert np.array_equal(canvas.display_pixels(), shown)
    assert canvas.image() is calibrated_dicom and np.array_equal(calibrated_dicom.stored, stored)
    canvas.set_image(calibrated_dicom)  # another image (or the same again): upright
    assert canvas.view_transform().is_identity


def test_hud_corner_text_markers_and_lossy_badge(canvas: ImageCanvas, dicom_dir: Path,
                                                 tmp_path: Path) -> None:
    lossy = load_image(dicom_dir / "chest_cr_mono1_15bit_jpeg2000_lossy.dcm")
    canvas.set_image(lossy)
    content = canvas.hud_content()
    assert content.badge is not None and content.badge.startswith("LOSSY")
    assert any(line.startswith("W ") for line in content.corners["bottom_right"])
    shown_with_text = canvas.grab().toImage()
    canvas.toggle_hud()  # one key (C) hides the corner text; the LOSSY warning stays
    hidden = canvas.hud_content()
    assert not canvas.is_hud_visible() and hidden.corners == {} and hidden.badge == content.badge
    assert canvas.grab().toImage() != shown_with_text  # the text was really painted
    canvas.toggle_hud()
    from tests.unit.dicom_factory import make_dicom

    pixels = np.tile(np.arange(64, dtype=np.uint16) * 50, (48, 1))
    oriented = load_image(make_dicom(tmp_path / "o.dcm", pixels, PatientOrientation=["L", "F"],
                                     PatientID="P1", StudyDate="20240102"))
    canvas.set_image(oriented)
    hud = canvas.hud_content()
    assert hud.markers == {"right": "L", "left": "R", "bottom": "F", "top": "H"} and hud.badge is None
    assert "ID P1" in hud.corners["top_left"] and "2024-01-02" in " ".join(hud.corners["top_right"])
    canvas.flip(horizontal=True)
    assert canvas.hud_content().markers["right"] == "R"
    anonymous = canvas.hud_content(anonymised=True).corners.values()
    assert "P1" not in " ".join(line for lines in anonymous for line in lines)


def test_presentation_lut_inverse_is_shown_inverted(canvas: ImageCanvas, tmp_path: Path) -> None:
    from tests.unit.dicom_factory import make_dicom

    pixels = np.tile(np.arange(64, dtype=np.uint16) * 50, (48, 1))
    plain = load_image(make_dicom(tmp_path / "p.dcm", pixels))
    inverse = load_image(make_dicom(tmp_path / "i.dcm", pixels, PresentationLUTShape="INVERSE"))
    canvas.set_image(plain)
    identity = canvas.display_pixels().astype(np.int16)
    canvas.set_image(inverse)
    assert np.array_equal(canvas.display_pixels().astype(np.int16), 255 - identity)


def test_escape_cancels_a_half_drawn_angle_then_fits(canvas: ImageCanvas, png_image) -> None:
    canvas.set_image(png_image)
    canvas.set_reading_tool("angle")
    a, b = canvas.viewport_point((20.0, 20.0)), canvas.viewport_point((60.0, 60.0))
    drag(canvas.viewport(), Qt.MouseButton.LeftButton, a, b)  # the first arm; the second is pending
    assert canvas.marks_layer().preview is not None
    canvas.zoom_by(2.0)
    window = canvas.window()
    canvas.escape()
    assert canvas.marks_layer().preview is None and canvas.measurements() == []
    zoomed = canvas.zoom_factor()
    canvas.escape()
    assert canvas.zoom_factor() < zoomed and canvas.window() == window
