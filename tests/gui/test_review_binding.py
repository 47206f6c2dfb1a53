"""Issue 14, defects 1–4: every review edit lands on the image it was made on.

Each test drives the keyboard the way an annotator does and then reads the database, so an
edit stored on the wrong image (or not at all) fails it.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

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
