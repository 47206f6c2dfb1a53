"""Issue 14, defect 5: re-importing an export never silently replaces the dataset's labels or boxes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cxrview.core.dataset_export import BBOX_LIST_NAME, DATA_ENTRY_NAME, export_nih_csv
from cxrview.core.nih_import import DatasetReplaceRefused, import_nih
from cxrview.core.workspace import Workspace
from tests.conftest import REPO_ROOT
from tests.unit.nih_subset import write_patient_subset


@pytest.fixture()
def reviewed(nih_dir: Path, tmp_path: Path):
    """The 52 images' patients (all their films), one dataset box, label and box edits."""
    subset = tmp_path / "subset.csv"
    present = write_patient_subset(nih_dir, subset)
    bbox = tmp_path / "bbox.csv"
    bbox.write_text("Image Index,Finding Label,Bbox [x,y,w,h]\n"
                    f"{present[0]},Mass,100.0,200.0,50.0,60.0\n")
    ws = Workspace(tmp_path / "w.sqlite", create=True)
    import_nih(ws, subset, nih_dir, bbox)
    a, b = (ws.image_by_file(name) for name in present[:2])
    assert a is not None and b is not None
    ws.set_label(a.id, "Effusion", "absent" if a.current_value("Effusion") == "present" else "present",
                 author="dr.a")
    (copy,) = ws.take_over_boxes(a.id, author="dr.a")
    ws.update_box(copy, rect=(110.0, 210.0, 50.0, 60.0))
    ws.add_box(b.id, "Nodule", (300.0, 300.0, 20.0, 20.0), author="dr.a")
    yield ws, subset, bbox, a.id, b.id
    ws.close()


def _snapshot(ws: Workspace) -> tuple[list[tuple], list[tuple]]:
    images = ws.execute("SELECT file, dataset_mask, current_mask, patient_id FROM images "
                        "ORDER BY file").fetchall()
    boxes = ws.execute("SELECT image_id, finding, x, y, w, h, source, deleted FROM boxes "
                       "ORDER BY id").fetchall()
    return images, boxes


def test_reimporting_an_export_refuses_and_changes_nothing(reviewed, nih_dir: Path, tmp_path: Path) -> None:
    ws, subset, bbox, a_id, b_id = reviewed
    out = tmp_path / "export"
    export_nih_csv(ws, out)
    before = _snapshot(ws)
    with pytest.raises(DatasetReplaceRefused) as refused:
        import_nih(ws, out / DATA_ENTRY_NAME, nih_dir, out / BBOX_LIST_NAME)
    assert refused.value.labels == 1 and refused.value.boxes == 1
    assert "dataset labels of 1 image" in str(refused.value)
    assert _snapshot(ws) == before  # nothing written: labels, patients and boxes as they were
    # the Data_Entry alone: its labels are the human answers, refused as well
    with pytest.raises(DatasetReplaceRefused):
        import_nih(ws, out / DATA_ENTRY_NAME, nih_dir)
    assert _snapshot(ws) == before
    # the original CSVs again: nothing to replace, nothing duplicated
    again = import_nih(ws, subset, nih_dir, bbox)
    assert again.boxes == 1
    assert _snapshot(ws) == before
    # a box list holding the human boxes (b had no dataset box): they are not added as dataset boxes
    human = tmp_path / "human_boxes.csv"
    name_b = ws.image(b_id).file
    human.write_text("Image Index,Finding Label,Bbox [x,y,w,h]\n"
                     f"{ws.image(a_id).file},Mass,100.0,200.0,50.0,60.0\n{name_b},Nodule,300.0,300.0,20.0,20.0\n")
    summary = import_nih(ws, subset, nih_dir, human)
    assert summary.human_boxes_skipped == 1 and summary.boxes == 1
    assert [b.source for b in ws.boxes(b_id)] == ["human"]
    # asked for explicitly: the export's labels become the dataset labels
    import_nih(ws, out / DATA_ENTRY_NAME, nih_dir, out / BBOX_LIST_NAME, replace_dataset_labels=True)
    a = ws.image(a_id)
    assert a.dataset_mask == a.current_mask


def test_cli_reimport_of_an_export_is_one_clean_line(reviewed, nih_dir: Path, tmp_path: Path) -> None:
    ws, *_ = reviewed
    out = tmp_path / "export"
    export_nih_csv(ws, out)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run([sys.executable, "-m", "cxrview", "import-nih", "--images", str(nih_dir),
                           "--data-entry", str(out / DATA_ENTRY_NAME), "--workspace", str(ws.path)],
                          capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--replace-dataset-labels" in lines[0] and "Traceback" not in done.stderr
