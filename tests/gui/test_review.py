"""Review mode: 20 images reviewed with the keyboard only, boxes with the mouse tool, undo/redo."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPointF, Qt

from cxrview.core.findings import NIH_FINDINGS
from cxrview.core.workspace import Workspace
from tests.conftest import SHARED_DATA

DATA_ENTRY = SHARED_DATA / "nih" / "Data_Entry_2017_v2020.csv.gz"
BBOX = SHARED_DATA / "nih" / "BBox_List_2017.csv.gz"
SHOW_TIMEOUT_MS = 20000


def _key(qtbot, window, key: Qt.Key, modifier: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier):
    qtbot.keyClick(window.canvas, key, modifier)


def _wait_next(qtbot, window, before: str | None) -> str:
    qtbot.waitUntil(lambda: window.shown_path() not in (None, before)
                    and window.review.record is not None
                    and window.review.record.file == Path(window.shown_path()).name, timeout=SHOW_TIMEOUT_MS)
    return window.shown_path()


def test_keyboard_only_review_of_20_images(qtbot, nih_review):
    window, path = nih_review
    window.canvas.setFocus()
    effusion_key = Qt.Key.Key_5  # findings 1–10 are keys 1…9, 0
    assert NIH_FINDINGS[4] == "Effusion"
    expected: dict[str, tuple[str, dict[str, str]]] = {}
    shown = window.shown_path()
    for i in range(20):
        name = Path(shown).name
        record = window.review.record
        assert record is not None and record.file == name
        kind = i % 5
        if kind == 0:  # toggle Effusion, confirm → corrected
            before = record.current_value("Effusion")
            _key(qtbot, window, effusion_key)
            after = "absent" if before in ("present", "uncertain") else "present"
            expected[name] = ("corrected", {"Effusion": after})
            _key(qtbot, window, Qt.Key.Key_Return)
        elif kind == 1:  # flag
            expected[name] = ("flagged", {})
            _key(qtbot, window, Qt.Key.Key_F, Qt.KeyboardModifier.ShiftModifier)
        elif kind == 2:  # select Cardiomegaly, mark uncertain, confirm → corrected
            _key(qtbot, window, Qt.Key.Key_2)
            _key(qtbot, window, Qt.Key.Key_U)
            expected[name] = ("corrected", {"Cardiomegaly": "uncertain"})
            _key(qtbot, window, Qt.Key.Key_Return)
        elif kind == 3:  # toggle and undo: nothing changed → confirmed
            _key(qtbot, window, Qt.Key.Key_1)
            _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
            expected[name] = ("confirmed", {})
            _key(qtbot, window, Qt.Key.Key_Return)
        else:  # plain confirm
            expected[name] = ("confirmed", {})
            _key(qtbot, window, Qt.Key.Key_Return)
        shown = _wait_next(qtbot, window, shown)
        assert "•" not in window.windowTitle()  # every edit is already saved

    assert window.review.worklist.progress.value() == 20
    with Workspace(path) as ws:
        assert ws.review_progress()[0] == 20
        for name, (state, labels) in expected.items():
            record = ws.image_by_file(name)
            assert record is not None
            assert record.review_state == state, name
            assert record.reviewed_by == window.review.author
            human = {f.finding: f.human.value for f in ws.findings(record.id) if f.human is not None}
            assert human == labels, name
            for finding, value in labels.items():
                assert record.current_value(finding) == value
                assert record.dataset_value(finding) is not None  # the original stays beside it

    # N jumps to the next unreviewed image, [ ] walk the patient's films
    _key(qtbot, window, Qt.Key.Key_N)
    qtbot.waitUntil(lambda: window.review.record is not None
                    and window.review.record.review_state == "unreviewed", timeout=SHOW_TIMEOUT_MS)


def test_boxes_with_the_mouse_tool_and_undo(qtbot, nih_review):
    window, path = nih_review
    review = window.review
    target = "00030183_005.png"  # NIH boxes exist for none of the 52; draw our own
    with qtbot.waitSignal(window.image_shown, timeout=SHOW_TIMEOUT_MS):
        window.show_path(str(next(p for p in window.file_dock.paths() if p.endswith(target))))
    qtbot.waitUntil(lambda: review.record is not None and review.record.file == target)
    record_id = review.record.id
    _key(qtbot, window, Qt.Key.Key_0)  # select (and toggle) Mass
    _key(qtbot, window, Qt.Key.Key_B)  # draw mode
    tool = review.tool
    assert tool.draw_mode
    assert tool.press(QPointF(40, 50), 2.0)
    tool.move(QPointF(90, 80))
    assert "•" in window.windowTitle()  # a drag in progress is the only unsaved state
    tool.release(QPointF(100, 110))
    assert "•" not in window.windowTitle()
    boxes = review.boxes.boxes()
    assert len(boxes) == 1 and boxes[0].finding == "Mass" and boxes[0].source == "human"
    assert (boxes[0].x, boxes[0].y, boxes[0].w, boxes[0].h) == (40, 50, 60, 60)
    assert not tool.draw_mode  # drawing a box ends draw mode (issue 14, 7): select/move again
    assert tool.press(QPointF(70, 80), 2.0)  # inside: select + move
    tool.move(QPointF(75, 85))
    tool.move(QPointF(80, 90))
    tool.release(QPointF(80, 90))
    moved = review.boxes.boxes()[0]
    assert (moved.x, moved.y) == (50, 60)
    assert tool.press(QPointF(moved.x + moved.w, moved.y + moved.h), 2.0)  # bottom-right handle
    tool.release(QPointF(moved.x + moved.w + 20, moved.y + moved.h + 10))
    assert (review.boxes.boxes()[0].w, review.boxes.boxes()[0].h) == (80, 70)
    review.set_box_finding("Nodule")
    assert review.boxes.boxes()[0].finding == "Nodule"
    _key(qtbot, window, Qt.Key.Key_Delete)
    assert review.boxes.boxes() == []
    with Workspace(path) as ws:
        assert ws.answer_boxes(record_id) == []
    for _ in range(4):  # delete, finding, resize, move: each one step
        _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert [(b.x, b.y, b.w, b.h) for b in review.boxes.boxes()] == [(40, 50, 60, 60)]
    _key(qtbot, window, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    assert [(b.x, b.y) for b in review.boxes.boxes()] == [(50, 60)]
    scale = 1024 / window.canvas.image().width  # stored in NIH's 1024-px box frame
    with Workspace(path) as ws:
        (box,) = ws.answer_boxes(record_id)
        assert (box.x, box.y, box.finding) == (50 * scale, 60 * scale, "Mass")


def test_worklist_filter_drives_the_file_list(qtbot, nih_review):
    window, _ = nih_review
    worklist = window.review.worklist
    worklist.finding.setCurrentIndex(worklist.finding.findData("Effusion"))
    paths = window.file_dock.paths()
    assert paths and all(window.review.ws.image_by_file(p).current_value("Effusion") == "present"
                         for p in paths)
    assert "match" in worklist.count_label.text()
    worklist.finding.setCurrentIndex(0)
    assert len(window.file_dock.paths()) == 52
