"""Issue 14, defect 8: which reviewed images fine-tuning will learn from is said, and counted right."""

from __future__ import annotations

from pathlib import Path

from cxrview.core.nih_import import import_nih
from cxrview.core.worklist import WorklistQuery, query_images, worklist_row
from cxrview.core.workspace import Workspace, not_trained_reason

HEADER = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n"


def test_locked_and_reserved_images_are_badged_and_not_counted_trainable(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    names = {5: "00000005_000.png", 7: "00000007_000.png", 8: "00000008_000.png", 9: "00000009_000.png"}
    for name in names.values():
        (images / name).write_bytes(b"")  # present on disk (the importer only looks at names)
    csv = tmp_path / "entry.csv"
    csv.write_text(HEADER + "".join(f"{n},No Finding,0,{pid},50,M,PA\n" for pid, n in names.items()))
    with Workspace(tmp_path / "w.sqlite", create=True) as ws:
        import_nih(ws, csv, images)
        for name in names.values():
            record = ws.image_by_file(name)
            assert record is not None
            ws.set_review(record.id, "confirmed", author="ann")
        ws.set_meta("locked_patients", "[7]")
        locked = ws.locked_patients()
        assert locked == {7}
        counts = ws.training_counts(excluding_patients=locked)
        assert counts == {"reviewed": 4, "locked": 1, "reserved": 1, "trainable": 2}
        assert counts["trainable"] == ws.reviewed_count(excluding_patients=locked)
        records = query_images(ws, WorklistQuery())
        rows = {r.patient_id: worklist_row(r, "file", locked=locked) for r in records}
        assert {pid: row["not_trained"] for pid, row in rows.items()} == \
            {5: "reserved", 7: "locked", 8: None, 9: None}
        record = ws.image_by_file(names[7])
        assert record is not None and not_trained_reason(record, locked) == "locked"
