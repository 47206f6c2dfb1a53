"""Import NIH ChestX-ray14 metadata (``Data_Entry_2017``, ``BBox_List_2017``) into a workspace.

All rows are imported (112,120 for the full CSV), whether or not the image is
on this machine: images not found locally are kept with ``present = 0`` and
listed as missing, not treated as errors. Re-importing updates the metadata of
known images and never touches human decisions.

Re-importing never silently replaces what the dataset said. When the CSVs would change the
dataset labels, patient IDs or dataset boxes of images already in the workspace (typically an
export of this very workspace, whose labels are the human answers), nothing is written and
:class:`DatasetReplaceRefused` says how many images would change; the caller asks and imports
again with ``replace_dataset_labels=True``. A box row equal to one of the image's human boxes is
never added as a dataset box unless replacing was asked for: it is the human's box coming back.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cxrview.core.findings import mask_of, parse_finding_labels
from cxrview.core.workspace import Workspace, WorkspaceError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".tif", ".tiff")


class DatasetReplaceRefused(WorkspaceError):
    """The import would replace dataset labels, patient IDs or boxes already in the workspace."""

    def __init__(self, message: str, *, labels: int, patients: int, boxes: int) -> None:
        super().__init__(message)
        self.labels, self.patients, self.boxes = labels, patients, boxes


@dataclass(frozen=True)
class ImportSummary:
    rows: int
    present: int
    missing: int
    boxes: int
    unknown_box_images: int
    seconds: float
    human_boxes_skipped: int = 0  # box rows equal to a human box of their image (not duplicated)


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
               bbox: str | os.PathLike[str] | None = None, *,
               replace_dataset_labels: bool = False) -> ImportSummary:
    """Read the CSVs (plain or .gz) and write them in one transaction.

    Raises :class:`DatasetReplaceRefused` (writing nothing) when they would change dataset
    labels, patient IDs or dataset boxes already stored, unless ``replace_dataset_labels``."""
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
    box_rows, skipped, unchanged = _check_replacements(workspace, csv_path, rows, box_rows,
                                            replace=replace_dataset_labels)
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
            # images whose dataset boxes stay the same keep their rows (and the ids human copies
            # point to); every other image's dataset boxes are replaced by the list's
            conn.execute("DELETE FROM boxes WHERE source = 'dataset' AND image_id NOT IN "
                         "(SELECT value FROM json_each(?))", (json.dumps(sorted(unchanged)),))
            now = time.time()
            values = []
            for name, finding, x, y, w, h in box_rows:
                image_id = ids.get(name)
                if image_id is None:
                    unknown += 1
                    continue
                boxes += 1
                if image_id not in unchanged:
                    values.append((image_id, finding, x, y, w, h, now))
            conn.executemany("INSERT INTO boxes(image_id, finding, x, y, w, h, source, author, created) "
                             "VALUES (?, ?, ?, ?, ?, ?, 'dataset', 'dataset', ?)", values)
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('nih_data_entry', ?)",
                     (str(csv_path.resolve()),))
    present = sum(r[2] for r in rows)
    return ImportSummary(len(rows), present, len(rows) - present, boxes, unknown,
                         time.perf_counter() - start, skipped)


BoxRow = tuple[str, str, float, float, float, float]


def _box_key(finding: str, x: float, y: float, w: float, h: float) -> tuple[str, float, float, float, float]:
    return (finding, round(x, 1), round(y, 1), round(w, 1), round(h, 1))


def _check_replacements(workspace: Workspace, csv_path: Path, rows: Sequence[tuple[object, ...]],
                        box_rows: list[BoxRow], *, replace: bool) -> tuple[list[BoxRow], int, set[int]]:
    """Refuse to overwrite stored dataset data unless ``replace``; drop human boxes coming back.

    Returns the box rows to import, how many were dropped as equal to a human box, and the
    images whose dataset boxes the rows leave exactly as stored."""
    known = {file: (labelled, mask, patient) for file, labelled, mask, patient in workspace.execute(
        "SELECT file, dataset_labelled, dataset_mask, patient_id FROM images")}
    labels = patients = 0
    example = ""
    for row in rows:
        old = known.get(str(row[0]))
        if old is None or not old[0]:
            continue
        if old[1] != row[10]:
            labels += 1
            example = example or str(row[0])
        if old[2] is not None and row[3] is not None and old[2] != row[3]:
            patients += 1
            example = example or str(row[0])
    ids = {file: image_id for file, image_id in workspace.execute("SELECT file, id FROM images")}
    stored: dict[int, dict[str, list[tuple[str, float, float, float, float]]]] = {}
    for image_id, source, finding, x, y, w, h in workspace.execute(
            "SELECT image_id, source, finding, x, y, w, h FROM boxes WHERE deleted = 0"):
        stored.setdefault(int(image_id), {}).setdefault(source, []).append(_box_key(finding, x, y, w, h))
    kept: list[BoxRow] = []
    skipped = 0
    new_by_image: dict[int, list[tuple[str, float, float, float, float]]] = {}
    for box in box_rows:
        image_id = ids.get(box[0])
        key = _box_key(*box[1:])
        if image_id is not None and not replace and key in stored.get(image_id, {}).get("human", []):
            skipped += 1
            continue
        kept.append(box)
        if image_id is not None:
            new_by_image.setdefault(image_id, []).append(key)
    boxes = 0
    unchanged: set[int] = set()
    if box_rows:  # a BBox list replaces every stored dataset box: count the images that would change
        for image_id in set(new_by_image) | {i for i, by in stored.items() if by.get("dataset")}:
            old_boxes = sorted(stored.get(image_id, {}).get("dataset", []))
            if sorted(new_by_image.get(image_id, [])) == old_boxes:
                unchanged.add(image_id)
            elif old_boxes:
                boxes += 1
    if not replace and (labels or patients or boxes):
        parts = [f"the dataset labels of {labels} image(s)" if labels else "",
                 f"the patient IDs of {patients} image(s)" if patients else "",
                 f"the dataset boxes of {boxes} image(s)" if boxes else ""]
        raise DatasetReplaceRefused(
            f"{csv_path}: importing would replace {' and '.join(p for p in parts if p)} already in this "
            f"workspace (e.g. {example or 'a boxed image'}); is it an export of this workspace? Nothing was "
            "imported. Import it into a new workspace, or confirm replacing (--replace-dataset-labels).",
            labels=labels, patients=patients, boxes=boxes)
    return kept, skipped, unchanged


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
