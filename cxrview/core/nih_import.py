"""Import NIH ChestX-ray14 metadata (``Data_Entry_2017``, ``BBox_List_2017``) into a workspace.

All rows are imported (112,120 for the full CSV), whether or not the image is
on this machine: images not found locally are kept with ``present = 0`` and
listed as missing, not treated as errors. Re-importing updates the metadata and
dataset labels of known images and never touches human decisions.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cxrview.core.findings import mask_of, parse_finding_labels
from cxrview.core.workspace import Workspace, WorkspaceError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".tif", ".tiff")


@dataclass(frozen=True)
class ImportSummary:
    rows: int
    present: int
    missing: int
    boxes: int
    unknown_box_images: int
    seconds: float


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _local_images(images: list[Path]) -> dict[str, Path]:
    """File name → path for every image under the given folders (recursively)."""
    found: dict[str, Path] = {}
    for folder in images:
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                if name.lower().endswith(IMAGE_SUFFIXES):
                    found.setdefault(name, Path(dirpath) / name)
    return found


def _int(text: str) -> int | None:
    text = (text or "").strip().rstrip("Yy")
    try:
        return int(float(text))
    except ValueError:
        return None


def import_nih(workspace: Workspace, data_entry: str | os.PathLike[str],
               images: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
               bbox: str | os.PathLike[str] | None = None) -> ImportSummary:
    """Read the CSVs (plain or .gz) and write them in one transaction."""
    start = time.perf_counter()
    folders = [Path(images)] if isinstance(images, (str, os.PathLike)) else [Path(p) for p in images]
    for folder in folders:
        if not folder.is_dir():
            raise WorkspaceError(f"{folder}: image folder not found")
    local = _local_images(folders)
    root = workspace.images_root
    csv_path = Path(data_entry)
    if not csv_path.is_file():
        raise WorkspaceError(f"{csv_path}: Data_Entry CSV not found")
    rows = []
    with _open_text(csv_path) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or "Image Index" not in header or "Finding Labels" not in header:
            raise WorkspaceError(f"{csv_path}: not a Data_Entry_2017 CSV (no 'Image Index'/'Finding Labels')")
        col = {name.strip(): i for i, name in enumerate(header)}
        get = {key: col.get(key) for key in ("Patient ID", "Follow-up #", "Patient Age", "Patient Gender",
                                               "View Position")}
        width_col = col.get("OriginalImage[Width")
        height_col = col.get("Height]")

        def cell(row: list[str], key: str) -> str:
            i = get[key]
            return row[i] if i is not None and i < len(row) else ""

        for row in reader:
            if not row:
                continue
            name = row[col["Image Index"]].strip()
            path = local.get(name)
            if path is not None:
                resolved = path.resolve()
                stored = str(resolved.relative_to(root)) if root and resolved.is_relative_to(root) \
                    else str(resolved)
            else:
                stored = name
            mask = mask_of(parse_finding_labels(row[col["Finding Labels"]]))
            rows.append((name, stored, int(path is not None), _int(cell(row, "Patient ID")),
                         _int(cell(row, "Follow-up #")), _int(cell(row, "Patient Age")),
                         cell(row, "Patient Gender").strip() or None,
                         cell(row, "View Position").strip() or None,
                         _int(row[width_col]) if width_col is not None else None,
                         _int(row[height_col]) if height_col is not None else None, mask, mask))
    box_rows, unknown = _read_bboxes(Path(bbox)) if bbox else ([], 0)
    with workspace.transaction() as conn:
        # Upsert: new images get everything; known ones get fresh metadata and dataset labels,
        # and their current labels are recomputed below so human decisions still win.
        conn.executemany(
            "INSERT INTO images(file, path, present, patient_id, follow_up, age, sex, view, width, height, "
            "dataset_labelled, dataset_mask, current_mask) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?) "
            "ON CONFLICT(file) DO UPDATE SET path = excluded.path, present = excluded.present, "
            "patient_id = excluded.patient_id, follow_up = excluded.follow_up, age = excluded.age, "
            "sex = excluded.sex, view = excluded.view, width = excluded.width, height = excluded.height, "
            "dataset_labelled = 1, dataset_mask = excluded.dataset_mask, "
            "current_mask = (excluded.dataset_mask & ~images.human_mask) | "
            "(images.current_mask & images.human_mask)", rows)
        boxes = 0
        if box_rows:
            ids = dict(conn.execute("SELECT file, id FROM images"))
            conn.execute("DELETE FROM boxes WHERE source = 'dataset'")
            now = time.time()
            values = []
            for name, finding, x, y, w, h in box_rows:
                image_id = ids.get(name)
                if image_id is None:
                    unknown += 1
                    continue
                values.append((image_id, finding, x, y, w, h, now))
            conn.executemany("INSERT INTO boxes(image_id, finding, x, y, w, h, source, author, created) "
                             "VALUES (?, ?, ?, ?, ?, ?, 'dataset', 'dataset', ?)", values)
            boxes = len(values)
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('nih_data_entry', ?)",
                     (str(csv_path.resolve()),))
    present = sum(r[2] for r in rows)
    return ImportSummary(len(rows), present, len(rows) - present, boxes, unknown,
                         time.perf_counter() - start)


def _read_bboxes(path: Path) -> tuple[list[tuple[str, str, float, float, float, float]], int]:
    """BBox_List_2017 rows (image, finding, x, y, w, h); 'Infiltrate' is NIH's name for Infiltration."""
    if not path.is_file():
        raise WorkspaceError(f"{path}: BBox_List CSV not found")
    out = []
    bad = 0
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or "Image Index" not in header[0]:
            raise WorkspaceError(f"{path}: not a BBox_List_2017 CSV")
        for row in reader:
            if len(row) < 6:
                continue
            finding = row[1].strip()
            finding = "Infiltration" if finding == "Infiltrate" else finding
            try:
                x, y, w, h = (float(v) for v in row[2:6])
            except ValueError:
                bad += 1
                continue
            if mask_of([finding]) == 0 or w <= 0 or h <= 0:
                bad += 1
                continue
            out.append((row[0].strip(), finding, x, y, w, h))
    return out, bad
