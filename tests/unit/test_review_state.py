"""Issue 14, defect 6: the review state and the suspect text follow edits made after review."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxrview.core.commands import SetLabel, UndoStack
from cxrview.core.findings import NIH_FINDINGS
from cxrview.core.mislabel import refresh_scores, rescore
from cxrview.core.nih_import import import_nih
from cxrview.core.workspace import Workspace

HEADER = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n"


@pytest.fixture()
def ws(tmp_path: Path):
    csv = tmp_path / "entry.csv"
    csv.write_text(HEADER + "00000001_000.png,Effusion,0,1,50,M,PA\n00000002_000.png,No Finding,0,2,60,F,PA\n"
                   "00000003_000.png,Mass,0,3,70,F,PA\n")
    (tmp_path / "images").mkdir()
    with Workspace(tmp_path / "w.sqlite", create=True) as workspace:
        import_nih(workspace, csv, tmp_path / "images")
        yield workspace


def _state(ws: Workspace, file: str) -> str:
    record = ws.image_by_file(file)
    assert record is not None
    return record.review_state


def test_an_edit_after_review_changes_the_state_and_undo_brings_it_back(ws: Workspace) -> None:
    one = ws.image_by_file("00000001_000.png")
    assert one is not None
    ws.set_review(one.id, "confirmed", author="ann")
    stack = UndoStack(ws)
    stack.push(SetLabel(one.id, "Effusion", "absent", "ann"))
    assert _state(ws, "00000001_000.png") == "corrected"  # not "confirmed" with a changed label
    stack.push(SetLabel(one.id, "Effusion", "present", "ann"))  # back to the dataset's label
    assert _state(ws, "00000001_000.png") == "confirmed"
    stack.undo()
    assert _state(ws, "00000001_000.png") == "corrected"
    stack.undo()
    assert _state(ws, "00000001_000.png") == "confirmed"
    # a box edit differs from the dataset too
    ws.add_box(one.id, "Effusion", (1, 2, 30, 40), author="ann")
    assert _state(ws, "00000001_000.png") == "corrected"
    # an edit is not a review; a flag stays a flag
    two = ws.image_by_file("00000002_000.png")
    assert two is not None
    ws.set_label(two.id, "Mass", "present", author="ann")
    assert _state(ws, "00000002_000.png") == "unreviewed"
    ws.set_review(two.id, "flagged", author="ann")
    ws.set_label(two.id, "Mass", "absent", author="ann")
    assert _state(ws, "00000002_000.png") == "flagged"


def test_the_suspect_follows_a_correction(ws: Workspace) -> None:
    ids = {ws.image_by_file(f"0000000{i}_000.png").id: i for i in (1, 2, 3)}  # type: ignore[union-attr]
    k_eff, k_mass = NIH_FINDINGS.index("Effusion"), NIH_FINDINGS.index("Mass")
    probs = {}
    for image_id, i in ids.items():
        p = [0.05] * len(NIH_FINDINGS)
        if i == 1:
            p[k_eff] = 0.02  # labelled Effusion, the model sees none: the suspect
        if i == 3:
            p[k_mass] = 0.9
        probs[image_id] = p
    ws.store_predictions("m", probs, {i: True for i in probs})
    thresholds = {name: 0.5 for name in NIH_FINDINGS}
    assert rescore(ws, "m", thresholds) == 3
    one = next(i for i, n in ids.items() if n == 1)
    before = ws.image(one)
    assert before.suspect_finding == "Effusion" and before.suspicion() == "labelled Effusion, model 0.02"
    ws.set_label(one, "Effusion", "absent", author="ann", reason="not_visible")
    assert ws.image(one).suspicion() is None  # the stored text no longer describes this image
    assert refresh_scores(ws, one)
    after = ws.image(one)
    assert after.mislabel_score is not None and before.mislabel_score is not None
    assert after.mislabel_score < before.mislabel_score  # the correction agrees with the model
    assert after.suspicion() is None or not after.suspicion().startswith("labelled Effusion")
