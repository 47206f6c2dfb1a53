"""The study index: folder trees, DICOMDIR (pydicom FileSet), NIH names, priors, PA + lateral."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cxrview.core import study
from tests.unit.study_factory import write_cd, write_tree


def _tree(entries: list[study.ImageEntry]) -> list[tuple[str, str, str, int]]:
    """(patient, study, series, images) in browser order."""
    out: list[tuple[str, str, str, int]] = []
    for e in study.sort_entries(entries):
        row = (e.patient_label, e.study_label, e.series_label)
        if out and out[-1][:3] == row:
            out[-1] = (*row, out[-1][3] + 1)
        else:
            out.append((*row, 1))
    return out


EXPECTED = [
    ("Alpha, Ann (ID A1)", "2024-03-01 Chest 2024", "CR #1 PA", 1),
    ("Alpha, Ann (ID A1)", "2024-03-01 Chest 2024", "CR #2 LL", 1),
    ("Alpha, Ann (ID A1)", "2023-01-10 Chest 2023", "CR #1 PA", 1),
    ("Alpha, Ann (ID A1)", "2022-05-05 Chest 2022", "CR #1 AP", 1),
    ("Beta, Bob (ID B2)", "2024-01-15 Chest", "CR #3 PA", 2),
]


def test_recursive_scan_groups_by_dicom_headers(tmp_path: Path) -> None:
    write_tree(tmp_path / "films")
    (tmp_path / "films" / "notes.txt").write_text("not an image")
    progress: list[tuple[int, int]] = []
    batches: list[int] = []
    entries = study.scan(tmp_path / "films", progress=lambda d, t: progress.append((d, t)),
                         batch=lambda b: batches.append(len(b)), batch_size=2)
    assert _tree(entries) == EXPECTED
    assert progress[-1] == (7, 7) and sum(batches) == 6 == len(entries)
    # Instances in instance-number order, not file-name order.
    b2 = [e for e in study.sort_entries(entries) if e.patient_key == "id:B2"]
    assert [e.instance_number for e in b2] == [1, 2]


def test_dicomdir_cd_folder_and_file(tmp_path: Path) -> None:
    write_tree(tmp_path / "src")
    dicomdir = write_cd(tmp_path / "cd", tmp_path / "src")
    for target in (tmp_path / "cd", dicomdir):  # the CD's folder, or its DICOMDIR opened
        entries = study.scan(target)
        assert _tree(entries) == EXPECTED
        assert {e.source for e in entries} == {"dicomdir"}
        assert all(Path(e.path).name.startswith("IM") for e in entries)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the damaged DICOMDIR
def test_damaged_dicomdir_still_finds_the_files(tmp_path: Path) -> None:
    write_tree(tmp_path / "src")
    write_cd(tmp_path / "cd", tmp_path / "src")
    (tmp_path / "cd" / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 40)
    assert _tree(study.scan(tmp_path / "cd")) == EXPECTED


def test_non_dicom_files_group_by_nih_patient_then_folder(tmp_path: Path, nih_dir: Path) -> None:
    pngs = sorted(nih_dir.glob("*.png"))
    (tmp_path / "x" / "y").mkdir(parents=True)
    for src in pngs[:3]:
        shutil.copy(src, tmp_path / "x" / src.name)
    shutil.copy(pngs[0], tmp_path / "x" / "y" / "scan.png")
    entries = study.scan(tmp_path / "x")
    nih = [e for e in entries if e.patient_key.startswith("nih:")]
    assert len(nih) == 3 and all(e.patient_label.startswith("NIH patient ") for e in nih)
    assert len({e.patient_key for e in nih}) == len({p.name[:8] for p in pngs[:3]})
    (folder,) = [e for e in entries if e.patient_key.startswith("folder:")]
    assert folder.patient_label == "Folder y" and folder.source == "file"


def test_prior_and_pa_lateral(tmp_path: Path) -> None:
    write_tree(tmp_path / "films")
    entries = study.scan(tmp_path / "films")
    by_view = {(e.patient_key, e.study_date, e.view_position): e for e in entries}
    current = by_view[("id:A1", "20240301", "PA")]
    prior = study.find_prior(entries, current)
    assert prior is not None and prior.study_date == "20230110" and prior.view_position == "PA"
    assert study.find_prior(entries, prior) == by_view[("id:A1", "20220505", "AP")]
    assert study.find_prior(entries, by_view[("id:A1", "20220505", "AP")]) is None
    # another patient's films never count
    assert study.find_prior(entries, by_view[("id:B2", "20240115", "PA")]) is None
    lateral = by_view[("id:A1", "20240301", "LL")]
    assert study.find_pa_lateral(entries, current) == (current, lateral)
    assert study.find_pa_lateral(entries, lateral) == (current, lateral)
    # The same patient: by DICOM PatientID, whatever the folders or file names say.
    same = study.same_patient(entries, current)
    assert [e.study_date for e in same] == ["20240301", "20240301", "20230110", "20220505"]


def test_scan_stops_when_cancelled(tmp_path: Path) -> None:
    write_tree(tmp_path / "films")
    seen: list[int] = []

    def batch(items: list[study.ImageEntry]) -> None:
        seen.append(len(items))

    entries = study.scan(tmp_path / "films", cancelled=lambda: len(seen) >= 1, batch=batch, batch_size=2)
    assert len(entries) == 2 and seen == [2]
