"""The official Data_Entry rows of the local NIH images' patients (all their follow-ups)."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

from tests.conftest import SHARED_DATA

DATA_ENTRY = SHARED_DATA / "nih" / "Data_Entry_2017_v2020.csv.gz"


def write_patient_subset(nih_dir: Path, out: Path) -> list[str]:
    """Write the header and every row of the patients of ``nih_dir``'s PNGs to ``out``;
    return those PNGs' names, sorted."""
    present = sorted(p.name for p in nih_dir.glob("*.png"))
    patients = {str(int(name.split("_")[0])) for name in present}
    with gzip.open(DATA_ENTRY, "rt", newline="") as handle:
        rows = list(csv.reader(handle))
    with open(out, "w", newline="") as handle:
        csv.writer(handle).writerows([rows[0]] + [r for r in rows[1:] if r[3] in patients])
    return present
