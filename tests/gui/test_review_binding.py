"""Issue 14, defects 1–4: every review edit lands on the image it was made on.

Each test drives the keyboard the way an annotator does and then reads the database, so an
edit stored on the wrong image (or not at all) fails it.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPointF, Qt

from cxrview.core.findings import NIH_FINDINGS
from cxrview.core.workspace import Workspace
from tests.gui.test_review import _key, _wait_next


def _human(path: Path, name: str) -> dict[str, tuple[str, str | None]]:
    with Workspace(path) as ws:
        record = ws.image_by_file(name)
        assert record is not None
        return {f.finding: (f.human.value, f.human.reason) for f in ws.findings(record.id) if f.human}


def _record(path: Path, name: str):
    with Workspace(path) as ws:
        record = ws.image_by_file(name)
        assert record is not None
        return record


def test_enter_in_the_note_saves_it_on_this_image_and_confirms_nothing(qtbot, nih_review):
    window, path = nih_review
    review = window.review
    first = Path(window.shown_path()).name
    note = review.dock.note
    note.setFocus()
    qtbot.waitUntil(note.hasFocus)
    qtbot.keyClicks(note, "check apex")
    qtbot.keyClick(note, Qt.Key.Key_Return)
    assert Path(window.shown_path()).name == first  # Return in the note is not Confirm & Next
    stored = _record(path, first)
    assert stored.note == "check apex" and stored.review_state == "unreviewed"
    assert window.canvas.hasFocus()  # typing is over: review keys act again
    _key(qtbot, window, Qt.Key.Key_Return)
    second = Path(_wait_next(qtbot, window, str(review.ws.absolute_path(stored)))).name
    assert second != first
    assert _record(path, first).review_state == "confirmed"
    assert _record(path, second).note == "" and review.dock.note.text() == ""


def test_a_note_still_being_typed_stays_with_its_image_when_the_image_changes(qtbot, nih_review):
    window, path = nih_review
    first = window.shown_path()
    note = window.review.dock.note
    note.setFocus()
    qtbot.waitUntil(note.hasFocus)
    qtbot.keyClicks(note, "old film")
    window.next_image()  # e.g. a click in the file list while the note has focus
    second = _wait_next(qtbot, window, first)
    assert _record(path, Path(first).name).note == "old film"
    assert _record(path, Path(second).name).note == ""
    assert note.text() == ""  # the new image's (empty) note is shown
    note.clearFocus()
    qtbot.wait(10)
    assert _record(path, Path(second).name).note == ""  # losing focus moves nothing


def test_a_reason_picked_after_a_toggle_is_stored_and_not_carried_to_the_next_image(qtbot, nih_review):
    window, path = nih_review
    review = window.review
    window.canvas.setFocus()
    first = window.shown_path()
    assert NIH_FINDINGS[4] == "Effusion"
    _key(qtbot, window, Qt.Key.Key_5)
    reason = review.dock.reason
    reason.setCurrentIndex(reason.findData("not_visible"))  # picked after the toggle
    (value, stored_reason) = _human(path, Path(first).name)["Effusion"]
    assert stored_reason == "not_visible"
    _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # the reason is its own step
    assert _human(path, Path(first).name)["Effusion"] == (value, None)
    _key(qtbot, window, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    window.canvas.setFocus()
    _key(qtbot, window, Qt.Key.Key_Return)
    second = _wait_next(qtbot, window, first)
    assert reason.currentData() is None  # not sticky: each image gets its own reason
    _key(qtbot, window, Qt.Key.Key_5)
    assert _human(path, Path(second).name)["Effusion"][1] is None
    assert _human(path, Path(first).name)["Effusion"] == (value, "not_visible")


def test_return_in_the_file_filter_confirms_nothing(qtbot, nih_review):
    window, path = nih_review
    shown = Path(window.shown_path()).name
    text = window.review.worklist.text
    window.review.worklist.show()
    text.setFocus()
    qtbot.waitUntil(text.hasFocus)
    qtbot.keyClicks(text, "0003")
    qtbot.keyClick(text, Qt.Key.Key_Return)
    assert text.text() == "0003"  # the digits were typed, not taken as finding toggles
    with Workspace(path) as ws:
        assert ws.review_progress()[0] == 0
        assert _human(path, shown) == {}
    qtbot.waitUntil(lambda: all("0003" in Path(p).name for p in window.file_dock.paths()))


def test_u_acts_only_on_a_finding_selected_on_this_image(qtbot, nih_review):
    window, path = nih_review
    window.canvas.setFocus()
    first = window.shown_path()
    assert NIH_FINDINGS[11] == "Pleural_Thickening"
    _key(qtbot, window, Qt.Key.Key_2, Qt.KeyboardModifier.AltModifier)
    assert "Pleural_Thickening" in _human(path, Path(first).name)
    _key(qtbot, window, Qt.Key.Key_Return)
    second = _wait_next(qtbot, window, first)
    assert window.review.dock.selected_finding() is None
    _key(qtbot, window, Qt.Key.Key_U)
    assert _human(path, Path(second).name) == {}  # nothing selected here: U changes nothing
    _key(qtbot, window, Qt.Key.Key_3)
    _key(qtbot, window, Qt.Key.Key_U)
    assert _human(path, Path(second).name) == {"Consolidation": ("uncertain", None)}


# -- defect 7: boxes ----------------------------------------------------------------------------
def _show(qtbot, window, name: str) -> None:
    with qtbot.waitSignal(window.image_shown, timeout=20000):
        window.show_path(str(next(p for p in window.file_dock.paths() if p.endswith(name))))
    qtbot.waitUntil(lambda: window.review.record is not None and window.review.record.file == name)


def test_boxes_stay_inside_the_image_and_draw_mode_ends_with_the_box(qtbot, nih_review):
    window, path = nih_review
    review = window.review
    _show(qtbot, window, "00030183_005.png")
    width, height = window.canvas.image().width, window.canvas.image().height
    _key(qtbot, window, Qt.Key.Key_0)  # Mass
    _key(qtbot, window, Qt.Key.Key_B)
    tool = review.tool
    assert tool.press(QPointF(width - 40, 20), 2.0)
    tool.release(QPointF(width + 50, 60))  # dragged past the right edge: cut there
    (drawn,) = review.boxes.boxes()
    assert drawn.x + drawn.w <= width and not tool.draw_mode
    assert tool.press(QPointF(drawn.x + 5, drawn.y + 5), 2.0)  # move it far right and down
    tool.move(QPointF(drawn.x + 5 + 3 * width, drawn.y + 5 + 3 * height))
    tool.release(QPointF(drawn.x + 5 + 3 * width, drawn.y + 5 + 3 * height))
    (moved,) = review.boxes.boxes()
    assert (moved.w, moved.h) == (drawn.w, drawn.h)  # a move keeps the size…
    assert moved.x + moved.w <= width and moved.y + moved.h <= height  # …and stops at the edge
    with Workspace(path) as ws:
        (box,) = ws.answer_boxes(review.record.id)
        assert box.x + box.w <= 1024 + 1e-6 and box.y + box.h <= 1024 + 1e-6  # NIH's frame


class _ShownModel:
    def __init__(self, shown):
        self.shown = shown

    def output_withheld(self) -> bool:
        return False


def test_an_accepted_model_box_is_stored_as_the_models(qtbot, nih_review):
    window, path = nih_review
    review = window.review
    _show(qtbot, window, "00030183_005.png")
    review.model_output = _ShownModel({"model": "classifier@9#abc", "boxes": [
        {"finding": "Mass", "x": 30.0, "y": 40.0, "w": 50.0, "h": 60.0, "score": 0.8}]})
    _key(qtbot, window, Qt.Key.Key_0)  # Mass selected (and toggled)
    _key(qtbot, window, Qt.Key.Key_A)
    (shown,) = review.boxes.boxes()
    assert shown.source == "model"  # drawn as the model's box, not as one drawn by hand
    with Workspace(path) as ws:
        (box,) = ws.answer_boxes(review.record.id)
        assert box.accepted_from == "classifier@9#abc" and box.author == review.author
    _key(qtbot, window, Qt.Key.Key_B)
    assert review.tool.press(QPointF(100, 100), 2.0)
    review.tool.release(QPointF(140, 150))
    with Workspace(path) as ws:
        drawn = [b for b in ws.answer_boxes(review.record.id) if b.accepted_from is None]
        assert len(drawn) == 1 and drawn[0].source == "human"


# -- defect 8: what fine-tuning will learn from is visible -----------------------------------------
def test_the_review_panel_and_the_finetune_estimate_say_what_is_trainable(qtbot, nih_review):
    from cxrview.finetune_orchestration import FinetuneOptions
    from cxrview.inference.shipped import shipped_bundle

    window, _ = nih_review
    review = window.review
    records = [review.ws.image_by_file(Path(p).name) for p in window.file_dock.paths()]
    reserved = next(r for r in records if r.patient_id % 5 == 0)
    trainable = next(r for r in records if r.patient_id % 5 != 0)
    review.ws.set_meta("locked_patients", "[]")  # none locked: only the reserved rule applies
    _show(qtbot, window, reserved.file)
    assert "reserved" in review.dock.training_badge.text() and not review.dock.training_badge.isHidden()
    _show(qtbot, window, trainable.file)
    assert review.dock.training_badge.isHidden()
    if not (shipped_bundle("classifier") / "card.json").is_file():
        return
    for record in [reserved, *[r for r in records if r.id != reserved.id][:11]]:
        review.ws.set_review(record.id, "confirmed", author="ann")
    expected = review.ws.reviewed_count(excluding_patients=review.ws.locked_patients())
    assert expected < 12  # some of the 12 are reserved patients' films
    text = window.finetune.estimate_text(FinetuneOptions(epochs=1, replay=0, device="cpu"))
    assert f"12 image(s) reviewed so far, {expected} of them trainable" in text, text
    assert f"~{expected} training images" in text  # the estimate is for what will be trained on


# -- defect 10: a restart resumes where the reviewer left off ----------------------------------------
def test_a_new_window_resumes_the_workspace_sort_and_image(qtbot, nih_review):
    from cxrview.qt.main_window import MainWindow

    window, path = nih_review
    window.review.worklist.set_sort("patient")
    target = Path(window.file_dock.paths()[3]).name
    _show(qtbot, window, target)
    window.close()  # the app quits
    second = MainWindow()  # the next start (same settings)
    qtbot.addWidget(second)
    second.show()
    try:
        assert second.review.worklist.query().sort == "patient"
        assert second.resume_last_session()
        qtbot.waitUntil(lambda: second.shown_path() is not None
                        and Path(second.shown_path()).name == target, timeout=20000)
        assert second.review.ws is not None and second.review.ws.path == path
    finally:
        second.close()
