"""Generated study trees for the study index and the browser: patients, studies, series,
frontal and lateral films, a DICOMDIR written by pydicom's FileSet, NIH-named PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from tests.unit.dicom_factory import make_dicom

# (patient id, name, study date, study description, [(series number, view, [instance numbers])])
TREE = [
    ("A1", "Alpha^Ann", "20230110", "Chest 2023", [(1, "PA", [1])]),
    ("A1", "Alpha^Ann", "20240301", "Chest 2024", [(1, "PA", [1]), (2, "LL", [1])]),
    ("A1", "Alpha^Ann", "20220505", "Chest 2022", [(1, "AP", [1])]),
    ("B2", "Beta^Bob", "20240115", "Chest", [(3, "PA", [2, 1])]),
]


def film(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).integers(0, 4000, (24, 32))).astype(np.uint16)


def write_tree(root: Path, *, nested: bool = True) -> list[Path]:
    """The DICOM files of :data:`TREE` under ``root`` (patient/study/series folders when nested)."""
    written = []
    seed = 0
    for patient_id, name, date, description, series in TREE:
        study_uid = generate_uid()
        for number, view, instances in series:
            series_uid = generate_uid()
            for instance in instances:
                seed += 1
                folder = root / patient_id / date / f"se{number}" if nested else root
                folder.mkdir(parents=True, exist_ok=True)
                path = make_dicom(
                    folder / f"{patient_id}_{date}_{number}_{instance}.dcm", film(seed),
                    bits_stored=12, PatientID=patient_id, PatientName=name, StudyDate=date,
                    StudyTime="101500", StudyDescription=description, StudyInstanceUID=study_uid,
                    StudyID="1", AccessionNumber=f"ACC{seed}", SeriesInstanceUID=series_uid,
                    SeriesNumber=number, ViewPosition=view, InstanceNumber=instance)
                written.append(path)
    return written


def write_cd(root: Path, source: Path) -> Path:
    """A CD as a hospital burns it: a DICOMDIR (pydicom FileSet) and its files, no extensions."""
    from pydicom.fileset import FileSet

    fs = FileSet()
    for path in sorted(source.rglob("*.dcm")):
        fs.add(str(path))
    fs.write(str(root))
    return root / "DICOMDIR"
