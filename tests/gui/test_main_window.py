"""End-to-end behaviour of the main window on the shared radiographs."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from cxrview.core import find_images
from tests.gui.helpers import drag

LOAD_TIMEOUT = 15000


def open_and_wait(qtbot, window, paths: list[str]) -> None:
    with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT):
        window.open_paths(paths)


def test_open_folder_and_page(qtbot, window, nih_dir: Path) -> None:
    files = [str(p) for p in find_images(nih_dir)]
    open_and_wait(qtbot, window, [str(nih_dir)])
    assert window.file_dock.count() == len(files) == 52
    assert window.shown_path() == files[0]
    assert window.canvas.image() is not None
    assert window.metadata_dock.model.rowCount() > 0

    with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT) as blocker:
        qtbot.keyClick(window.canvas, Qt.Key.Key_PageDown)
    assert blocker.args == [files[1]]
    assert window.file_dock.current_row() == 1
    with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT) as blocker:
        qtbot.keyClick(window.canvas, Qt.Key.Key_PageUp)
    assert blocker.args == [files[0]]
    # Arrow keys inside the list move through it natively.
    window.file_dock.list.setFocus()
    with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT) as blocker:
        qtbot.keyClick(window.file_dock.list, Qt.Key.Key_Down)
    assert blocker.args == [files[1]]
    with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT):
        window.next_image()
    assert window.windowTitle().startswith(Path(files[2]).name)
    # At the first image "previous" is a no-op.
    window.file_dock.set_current_row(0)
    qtbot.waitUntil(lambda: window.shown_path() == files[0], timeout=LOAD_TIMEOUT)
    window.previous_image()
    assert window.current_path() == files[0]


def test_next_image_is_prefetched(qtbot, window, nih_dir: Path) -> None:
    files = [str(p) for p in find_images(nih_dir)]
    open_and_wait(qtbot, window, [str(nih_dir)])
    qtbot.waitUntil(lambda: files[1] in window.cache, timeout=LOAD_TIMEOUT)
    window.next_image()  # served from the cache: shown synchronously
    assert window.shown_path() == files[1]


def test_keys_zoom_invert_presets_reset(qtbot, window, dicom_dir: Path) -> None:
    open_and_wait(qtbot, window, [str(dicom_dir / "chest_cr_mono2_8bit_jpeg_baseline.dcm")])
    canvas = window.canvas
    img = canvas.image()
    fit_zoom = canvas.zoom_factor()
    qtbot.keyClick(canvas, Qt.Key.Key_0, Qt.KeyboardModifier.ControlModifier)
    assert canvas.zoom_factor() == pytest.approx(1.0)
    qtbot.keyClick(canvas, Qt.Key.Key_F)
    assert canvas.zoom_factor() == pytest.approx(fit_zoom)
    qtbot.keyClick(canvas, Qt.Key.Key_Plus)
    assert canvas.zoom_factor() == pytest.approx(fit_zoom * 1.25)

    px = canvas.display_pixels().astype(np.int16)
    qtbot.keyClick(canvas, Qt.Key.Key_I)
    assert canvas.is_inverted() and window.actions_["invert"].isChecked()
    assert np.array_equal(canvas.display_pixels().astype(np.int16), 255 - px)

    names = list(img.presets)
    qtbot.keyClick(canvas, Qt.Key.Key_F3)  # keys F2..F9 -> presets in order
    assert canvas.current_preset() == names[1]
    assert canvas.window() == img.presets[names[1]]
    assert window.status.window_label.text().startswith("C ")
    assert window.actions_.presets[1].text() == names[1]
    assert not window.actions_.presets[len(names)].isEnabled()

    # Esc only resets zoom and pan: the reader's window and inversion stay (issue 15).
    window_before = canvas.window()
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    assert canvas.zoom_factor() == pytest.approx(fit_zoom)
    assert canvas.is_inverted() and canvas.window() == window_before
    # The window has its own key.
    qtbot.keyClick(canvas, Qt.Key.Key_R)
    assert not canvas.is_inverted()
    assert canvas.current_preset() == img.default_preset
    assert canvas.zoom_factor() == pytest.approx(fit_zoom)


def test_right_drag_window_level_in_window(qtbot, window, nih_dir: Path) -> None:
    open_and_wait(qtbot, window, [str(nih_dir)])
    before = window.canvas.window()
    centre = window.canvas.viewport().rect().center()
    drag(window.canvas.viewport(), Qt.MouseButton.RightButton, centre, centre + QPoint(80, -40))
    after = window.canvas.window()
    assert after.width > before.width and after.center < before.center
    assert window.status.window_label.text() == (
        f"C {after.center:.6g}  W {after.width:.6g}")


def test_measure_calibrated_and_uncalibrated(qtbot, window, dicom_dir: Path,
                                             nih_dir: Path) -> None:
    open_and_wait(qtbot, window, [str(dicom_dir / "chest_cr_mono2_8bit_jpeg_baseline.dcm")])
    assert "0.168 mm/px" in window.status.calibration.text()
    qtbot.keyClick(window.canvas, Qt.Key.Key_M)
    assert window.canvas.is_measure_mode() and window.actions_["measure"].isChecked()
    c = window.canvas
    drag(c.viewport(), Qt.MouseButton.LeftButton, c.viewport_point((100.0, 500.0)),
         c.viewport_point((700.0, 500.0)))
    (m,) = c.measurements()
    assert c.measured(m).label.endswith(" mm")
    assert c.measured(m).values["length"] == pytest.approx(600 * 0.168, rel=0.02)
    qtbot.keyClick(c, Qt.Key.Key_Delete)
    assert c.measurements() == []

    open_and_wait(qtbot, window, [str(nih_dir / "00000001_000.png")])
    assert window.status.calibration.text().startswith("uncalibrated")
    m = c.add_measurement((0.0, 0.0), (30.0, 40.0))
    assert c.measured(m).label == "50 px (uncalibrated)"


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the garbage
def test_corrupt_file_shows_error_and_app_keeps_working(qtbot, window, nih_dir: Path,
                                                         tmp_path: Path) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    good = sorted(nih_dir.glob("*.png"))[:2]
    shutil.copy(good[0], folder / "01_good.png")
    (folder / "02_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    (folder / "03_broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 64)
    shutil.copy(good[1], folder / "04_good.png")
    open_and_wait(qtbot, window, [str(folder)])
    assert window.file_dock.count() == 4
    for name in ("02_broken.png", "03_broken.dcm"):
        with qtbot.waitSignal(window.load_failed, timeout=LOAD_TIMEOUT,
                              check_params_cb=lambda p, _m, n=name: p.endswith(n)) as blocker:
            window.next_image()
        path, message = blocker.args
        qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=LOAD_TIMEOUT)
        assert path in window.banner.text() and message.startswith(path)
        assert window.file_dock.error_for(path)  # stays in the list, marked as failed
        assert window.canvas.image() is None
    assert window.file_dock.count() == 4
    with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT) as blocker:
        window.next_image()
    assert blocker.args == [str(folder / "04_good.png")]
    assert not window.banner.isVisible()
    window.canvas.zoom_by(2.0)  # still fully usable


def test_recent_files_persist(qtbot, window, nih_dir: Path) -> None:
    from cxrview.qt.main_window import MainWindow

    open_and_wait(qtbot, window, [str(nih_dir)])
    window.close()
    second = MainWindow()
    qtbot.addWidget(second)
    assert second.settings.recent_files()[0] == str(nih_dir)
    labels = [a.data() for a in second.actions_.recent_menu.actions() if a.data()]
    assert labels[0] == str(nih_dir)
    second.clear_recent()
    assert MainWindow().settings.recent_files() == []
    second.close()


def test_stale_loads_are_dropped_when_paging_fast(qtbot, window, nih_dir: Path) -> None:
    files = [str(p) for p in find_images(nih_dir)]
    open_and_wait(qtbot, window, [str(nih_dir)])
    shown: list[tuple[str, str | None]] = []
    window.image_shown.connect(lambda p: shown.append((p, window.current_path())))
    window.cache.clear()
    for _ in range(8):
        window.next_image()
    qtbot.waitUntil(lambda: window.shown_path() == files[8], timeout=LOAD_TIMEOUT)
    qtbot.waitUntil(lambda: window.runner.current("load") is None, timeout=LOAD_TIMEOUT)
    # Only the image requested last was displayed; superseded results never reached it.
    assert shown == [(files[8], files[8])]


@pytest.mark.perf
def test_gui_stays_responsive_while_decoding_big_jpeg2000(qtbot, window, dicom_dir: Path,
                                                          app_heap: None) -> None:
    """Decoding runs on a worker thread; the decoders release the GIL, so the GUI ticks."""
    path = dicom_dir / "chest_cr_mono1_15bit_jpeg2000_lossy.dcm"
    # Show a small image first so imports and first-use costs are paid before measuring.
    open_and_wait(qtbot, window, [str(dicom_dir / "chest_cr_mono1_10bit_acrnema_no_header.dcm")])
    stamps: list[float] = []
    probe = QTimer()
    probe.setInterval(5)
    probe.timeout.connect(lambda: stamps.append(time.perf_counter()))
    decoded: list[float] = []
    window.image_decoded.connect(lambda _p: decoded.append(time.perf_counter()))
    probe.start()
    start = time.perf_counter()
    with qtbot.waitSignal(window.first_paint, timeout=LOAD_TIMEOUT,
                          check_params_cb=lambda p, _ms: p == str(path)):
        window.open_paths([str(path)])
    probe.stop()
    assert decoded, "the image must arrive through the worker"
    during = [t for t in stamps if t <= decoded[0]]
    assert decoded[0] - start > 0.05, "decoding was suspiciously fast; probe measured nothing"
    assert len(during) >= 3, "the GUI never ticked while decoding: decoded on the GUI thread?"
    # The first interval also holds open_paths() itself and the GUI-thread work it queues
    # (file list, relayout, the QSettings write for "recent files"): bounded, not decoding.
    opening = (during[0] - start) * 1000
    assert opening < 150, f"opening blocked the GUI thread for {opening:.0f} ms"
    gaps = np.diff([*during, decoded[0]]) * 1000
    assert gaps.max() < 50, f"GUI thread blocked for {gaps.max():.0f} ms while decoding"
    assert sorted(window.canvas.image().stored.shape) == [1841, 1955]
    assert window.last_load_ms is not None and window.last_load_ms > 0
    # MONOCHROME1: high stored values mean low attenuation (air, lungs) and must be
    # displayed dark, low stored values (bone) bright -> the display is inverted vs stored.
    img = window.canvas.image()
    px = window.canvas.display_pixels()
    hi = img.stored > np.percentile(img.stored, 95)
    lo = img.stored < np.percentile(img.stored, 5)
    assert px[hi].mean() < px[lo].mean()


def test_metadata_filter(qtbot, window, dicom_dir: Path) -> None:
    open_and_wait(qtbot, window, [str(dicom_dir / "chest_cr_mono2_8bit_jpeg_baseline.dcm")])
    dock = window.metadata_dock
    total = len(dock.visible_rows())
    qtbot.keyClicks(dock.filter_edit, "spacing")
    rows = dock.visible_rows()
    assert 0 < len(rows) < total
    assert all("spacing" in " ".join(r).lower() for r in rows)
    dock.filter_edit.setText("(0028,0030)")
    assert any(r[0] == "(0028,0030)" for r in dock.visible_rows())


def test_shortcuts_dialog_lists_every_action(qtbot, window) -> None:
    from cxrview.qt.actions import shortcut_text

    dialog = window.show_shortcuts()
    qtbot.addWidget(dialog)
    keys = {k for k, _ in dialog.rows()}
    for action in window.actions_.all_actions():
        if shortcut_text(action):
            assert shortcut_text(action) in keys
    assert "Right-drag" in keys
    dialog.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # PySide flags the QPoint ctor
def test_drop_folder_opens_it(qtbot, window, nih_dir: Path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(nih_dir))])
    # QApplication only routes drop events inside a real drag session, so call the
    # handlers the way the drag manager would.
    enter = QDragEnterEvent(QPoint(50, 50), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT):
        window.dropEvent(event)
    assert window.file_dock.count() == 52


def test_unexpected_exception_is_reported_not_fatal(qtbot, window) -> None:
    try:
        raise ZeroDivisionError("oops")
    except ZeroDivisionError as exc:
        window.report_exception(type(exc), exc, exc.__traceback__)
    assert "ZeroDivisionError" in window.banner.text()


def test_theme_switch_persists(qtbot, window) -> None:
    from cxrview.qt.theme import current_theme

    window.actions_.themes["light"].trigger()
    assert current_theme(QApplication.instance()) == "light"
    assert window.settings.theme() == "light"
    window.set_theme("dark")
    assert window.settings.theme() == "dark"


def test_excepthook_routes_to_window_and_restores(window) -> None:
    import sys

    from cxrview.qt.app import install_excepthook

    previous = install_excepthook(window.report_exception)
    try:
        try:
            raise KeyError("missing")
        except KeyError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
    finally:
        sys.excepthook = previous
    assert "KeyError" in window.banner.text()


def test_metadata_values_visible_on_first_start(qtbot, window, dicom_dir: Path) -> None:
    """With no saved layout the metadata dock is wide enough to show the Value column."""
    open_and_wait(qtbot, window, [str(dicom_dir / "chest_cr_mono2_8bit_jpeg_baseline.dcm")])
    window.metadata_dock.raise_()  # tabbed with Findings, which is in front on first start
    qtbot.waitUntil(lambda: window.metadata_dock.isVisible())
    table = window.metadata_dock.table
    value_x = table.columnViewportPosition(3)
    assert 0 <= value_x < table.viewport().width() - 80, (value_x, table.viewport().width())
    assert window.file_dock.width() >= 200


def test_shortcuts_can_be_remapped_and_persist(qtbot, window) -> None:
    from PySide6.QtGui import QKeySequence

    from cxrview.qt.dialogs import apply_saved_shortcuts, assign_shortcut

    actions = window.all_actions()
    confirm = window.review.actions["confirm"]
    flag = window.review.actions["flag"]
    # a clash is refused and changes nothing
    assert assign_shortcut(confirm, QKeySequence("Shift+F"), actions, window.settings.qs) is flag
    assert confirm.shortcut().toString() == "Return"
    assert assign_shortcut(confirm, QKeySequence("Ctrl+K"), actions, window.settings.qs) is None
    assert confirm.shortcut() == QKeySequence("Ctrl+K")
    confirm.setShortcuts([QKeySequence("Return")])  # as a new session would start…
    apply_saved_shortcuts(actions, window.settings.qs)  # …and the saved keys win
    assert confirm.shortcut() == QKeySequence("Ctrl+K")
    dialog = window.show_shortcuts()
    qtbot.addWidget(dialog)
    assert any("Confirm" in text and keys for keys, text in dialog.rows())
    dialog.close()


def test_every_shortcut_in_the_window_is_listed_and_can_be_remapped(qtbot, window) -> None:
    """Every QAction under the window that has keys, whichever part made it (viewer, AI, review,
    batch scoring, fine-tuning), is in Help › Keyboard Shortcuts, and the dialog gives it new keys
    that a new window starts with."""
    from PySide6.QtGui import QAction, QKeySequence

    from cxrview.qt.actions import shortcut_text
    from cxrview.qt.main_window import MainWindow

    with_keys = [a for a in window.findChildren(QAction) if shortcut_text(a)]
    names = [a.objectName() for a in with_keys]
    assert "action_score_all" in names and "action_confirm" in names and "action_fit" in names
    assert len(set(names)) == len(names) and all(names)  # a remapping is saved under the object name
    dialog = window.show_shortcuts()
    qtbot.addWidget(dialog)
    rows = {id(a): r for r, a in enumerate(dialog.row_actions) if a is not None}
    assert [a.objectName() for a in with_keys if id(a) not in rows] == []
    keys = iter(QKeySequence(f"{mods}+{k}") for mods in ("Ctrl+Alt", "Ctrl+Alt+Shift")
                for k in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    assigned = {}
    for action in with_keys:
        sequence = next(keys)
        dialog.table.setCurrentCell(rows[id(action)], 0)
        dialog.editor.setKeySequence(sequence)
        dialog.assign.click()
        assert action.shortcuts() == [sequence], (action.objectName(), dialog.message.text())
        assert dialog.rows()[rows[id(action)]][0] == shortcut_text(action)
        assigned[action.objectName()] = sequence
    dialog.close()
    again = MainWindow()
    qtbot.addWidget(again)
    try:
        restored = {a.objectName(): a.shortcuts() for a in again.findChildren(QAction)
                    if a.objectName() in assigned}
        assert restored == {name: [sequence] for name, sequence in assigned.items()}
    finally:
        again.close()


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_viewing_a_writable_folder_leaves_it_byte_for_byte_unchanged(
        qtbot, window, nih_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 15: no workspace (nor -wal/-shm), no marks store beside the images; the review data
    of a merely viewed folder lives in the user data directory."""
    monkeypatch.delenv("CXRVIEW_WORKSPACE_DIR")  # the real default, not the tests' redirect
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    folder = tmp_path / "films"
    (folder / "sub").mkdir(parents=True)
    for src in sorted(nih_dir.glob("*.png"))[:2]:
        shutil.copy(src, folder / src.name)
    shutil.copy(sorted(nih_dir.glob("*.png"))[2], folder / "sub" / "x.png")
    before = _snapshot(folder)
    open_and_wait(qtbot, window, [str(folder)])
    with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT):
        window.next_image()
    window.canvas.add_measurement((1.0, 1.0), (50.0, 1.0))
    assert window.review.workspace_path() is not None
    assert str(window.review.workspace_path()).startswith(str(tmp_path / "data-home"))
    window.close()
    assert _snapshot(folder) == before
