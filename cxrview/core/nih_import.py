"""Import NIH ChestX-ray14 metadata (``Data_Entry_2017``, ``BBox_List_2017``) into a workspace.

All rows are imported (112,120 for the full CSV), whether or not the image is
on this machine: images not found locally are kept with ``present = 0`` and
listed as missing, not treated as errors. Re-importing updates the metadata of
known images and never touches human decisions; a CSV that would *change* the
dataset labels or boxes already there (e.g. an export of this workspace, whose
labels are the corrected ones) is refused unless ``replace_dataset`` is given, and
every replaced dataset label is written to the audit log (before → after).

The CSVs are read as a stream and written in one transaction a few thousand rows
at a time: memory stays bounded at NIH size, and a refused or failed import
changes nothing. A malformed file (a short row, a number out of range, a
truncated .gz, a non-numeric box) stops the import with one
:class:`WorkspaceError` line naming the file, the line and the problem.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import sqlite3
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cxrview.core import audit
from cxrview.core.findings import FINDING_BIT, findings_of, mask_of, parse_finding_labels
from cxrview.core.workspace import Workspace, WorkspaceError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".tif", ".tiff")
CHUNK = 5000
MAX_INT = 2 ** 53  # anything larger is not a patient ID, age, follow-up or pixel count


class DatasetConflict(WorkspaceError):
    """The CSV would replace dataset labels or boxes the workspace already has (asked, not done)."""


@dataclass(frozen=True)
class ImportSummary:
    rows: int
    present: int
    missing: int
    boxes: int
    unknown_box_images: int
    seconds: float
    replaced_labels: int = 0  # known images whose dataset labels the CSV changed (replace_dataset)


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a CSV, with every way of failing turned into one clear line."""
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle)
            for row in reader:
                yield reader.line_num, row
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise WorkspaceError(f"{path}: the file is truncated or damaged ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise WorkspaceError(f"{path}: not a UTF-8 text CSV ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise WorkspaceError(f"{path}: not a readable CSV ({exc})") from exc
    except OSError as exc:
        raise WorkspaceError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _local_images(images: list[Path]) -> dict[str, Path]:
    """File name → path for every image under the given folders (recursively)."""
    found: dict[str, Path] = {}
    for folder in images:
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                if name.lower().endswith(IMAGE_SUFFIXES):
                    found.setdefault(name, Path(dirpath) / name)
    return found


def _int(text: str, where: str, what: str) -> int | None:
    try:
        value: float = int(text)  # the common case, fast
    except ValueError:
        text = (text or "").strip().rstrip("YyMmDd")
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            return None  # NIH's own files have a few free-text ages; they are unknown, not errors
    if not math.isfinite(value) or not 0 <= value < MAX_INT:
        raise WorkspaceError(f"{where}: {what} {text!r} is out of range")
    return int(value)


def import_nih(workspace: Workspace, data_entry: str | os.PathLike[str],
               images: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
               bbox: str | os.PathLike[str] | None = None, *, replace_dataset: bool = False,
               author: str = "import") -> ImportSummary:
    """Read the CSVs (plain or .gz) and write them in one transaction (see the module docstring)."""
    start = time.perf_counter()
    folders = [Path(images)] if isinstance(images, (str, os.PathLike)) else [Path(p) for p in images]
    for folder in folders:
        if not folder.is_dir():
            raise WorkspaceError(f"{folder}: image folder not found")
    csv_path = Path(data_entry)
    if not csv_path.is_file():
        raise WorkspaceError(f"{csv_path}: Data_Entry CSV not found")
    box_rows, unknown = _read_bboxes(Path(bbox)) if bbox else ([], 0)
    local = _local_images(folders)
    root = workspace.images_root
    total = present = changed = 0
    with workspace.transaction() as conn:
        rows = _data_entry_rows(csv_path)
        for chunk in _chunks(rows, CHUNK):
            values = []
            for name, cells in chunk:
                path = local.get(name)
                stored = name
                if path is not None:
                    resolved = path.resolve()
                    stored = str(resolved.relative_to(root)) if root and resolved.is_relative_to(root) \
                        else str(resolved)
                values.append((name, stored, int(path is not None), *cells))
                present += path is not None
            changed += _changed_labels(conn, values, replace_dataset, author)
            total += len(values)
            # Upsert: new images get everything; known ones get fresh metadata and dataset labels,
            # and their current labels keep the human decisions (human_mask bits).
            conn.executemany(
                "INSERT INTO images(file, path, present, patient_id, follow_up, age, sex, view, width, "
                "height, dataset_labelled, dataset_mask, current_mask) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?) "
                "ON CONFLICT(file) DO UPDATE SET path = excluded.path, present = excluded.present, "
                "patient_id = excluded.patient_id, follow_up = excluded.follow_up, age = excluded.age, "
                "sex = excluded.sex, view = excluded.view, width = excluded.width, height = excluded.height, "
                "dataset_labelled = 1, dataset_mask = excluded.dataset_mask, "
                "current_mask = (excluded.dataset_mask & ~images.human_mask) | "
                "(images.current_mask & images.human_mask)", [(*v, v[-1]) for v in values])
        if changed and not replace_dataset:
            raise DatasetConflict(f"{csv_path}: it would replace the dataset labels of {changed} image(s) "
                                  "this workspace already has (is it an export of this workspace?); nothing "
                                  "was changed. Import it again choosing to replace the dataset labels "
                                  "(--replace-dataset-labels) if that is what you want")
        boxes = 0
        if box_rows:
            boxes, skipped = _replace_boxes(conn, box_rows, replace_dataset, Path(bbox or ""), author)
            unknown += skipped
        conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('nih_data_entry', ?)",
                     (str(csv_path.resolve()),))
    return ImportSummary(total, present, total - present, boxes, unknown, time.perf_counter() - start,
                         changed)


def _chunks(rows: Iterator[tuple[str, tuple[object, ...]]], size: int
            ) -> Iterator[list[tuple[str, tuple[object, ...]]]]:
    chunk: list[tuple[str, tuple[object, ...]]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _data_entry_rows(path: Path) -> Iterator[tuple[str, tuple[object, ...]]]:
    """(image name, (patient, follow-up, age, sex, view, width, height, mask)) per Data_Entry row."""
    lines = _rows(path)
    first = next(lines, None)
    header = first[1] if first else None
    if not header or "Image Index" not in header or "Finding Labels" not in header:
        raise WorkspaceError(f"{path}: not a Data_Entry_2017 CSV (no 'Image Index'/'Finding Labels')")
    col = {name.strip(): i for i, name in enumerate(header)}
    image_col, labels_col = col["Image Index"], col["Finding Labels"]
    need = max(image_col, labels_col) + 1
    optional = {key: col.get(key) for key in ("Patient ID", "Follow-up #", "Patient Age", "Patient Gender",
                                               "View Position", "OriginalImage[Width", "Height]")}
    columns = [optional[key] for key in ("Patient ID", "Follow-up #", "Patient Age", "Patient Gender",
                                         "View Position", "OriginalImage[Width", "Height]")]
    seen: set[str] = set()
    for line, row in lines:
        if not row:
            continue
        n = len(row)
        if n < need:
            raise WorkspaceError(f"{path}:{line}: the row has {n} field(s), the header names {len(header)}")
        pid, follow_up, age, sex, view, width, height = (row[i] if i is not None and i < n else ""
                                                         for i in columns)
        name = row[image_col].strip()
        if not name:
            raise WorkspaceError(f"{path}:{line}: no image name")
        if name in seen:
            raise WorkspaceError(f"{path}:{line}: {name} is listed twice")
        seen.add(name)
        where = f"{path}:{line}"
        yield name, (_int(pid, where, "Patient ID"), _int(follow_up, where, "Follow-up #"),
                     _int(age, where, "Patient Age"), sex.strip() or None, view.strip() or None,
                     _int(width, where, "width"), _int(height, where, "height"),
                     mask_of(parse_finding_labels(row[labels_col])))


def _changed_labels(conn: sqlite3.Connection, values: list[tuple[object, ...]], replace: bool,
                    author: str) -> int:
    """How many known images would get other dataset labels; audited when they are replaced."""
    names = [str(v[0]) for v in values]
    marks = ",".join("?" * len(names))
    known = {file: (labelled, mask, image_id) for file, labelled, mask, image_id in conn.execute(
        f"SELECT file, dataset_labelled, dataset_mask, id FROM images WHERE file IN ({marks})", names)}
    changed = 0
    for v in values:
        old = known.get(str(v[0]))
        new_mask = int(v[-1])  # type: ignore[call-overload]
        if old is None or not old[0] or old[1] == new_mask:
            continue
        changed += 1
        if replace:
            audit.record(conn, author=author, image_id=old[2], action="dataset", target="labels",
                         before={"findings": findings_of(old[1])}, after={"findings": findings_of(new_mask)},
                         via="import")
    return changed


def _replace_boxes(conn: sqlite3.Connection, box_rows: list[tuple[str, str, float, float, float, float]],
                   replace: bool, path: Path, author: str) -> tuple[int, int]:
    """The CSV's boxes become the dataset boxes (refused when they would change the ones there)."""
    ids = dict(conn.execute("SELECT file, id FROM images"))
    new = [(ids[name], finding, x, y, w, h) for name, finding, x, y, w, h in box_rows if name in ids]
    skipped = len(box_rows) - len(new)
    old = conn.execute("SELECT image_id, finding, x, y, w, h FROM boxes WHERE source = 'dataset'").fetchall()

    def key(rows: list[tuple[int, str, float, float, float, float]]) -> list[tuple[object, ...]]:
        return sorted((r[0], r[1], *(round(float(v), 2) for v in r[2:])) for r in rows)

    if old and key(old) != key(new):
        if not replace:
            raise DatasetConflict(f"{path}: it would replace the dataset boxes this workspace already "
                                  "has (is it an export of this workspace?); nothing was changed. Import it "
                                  "again choosing to replace the dataset labels (--replace-dataset-labels) "
                                  "if that is what you want")
        audit.record(conn, author=author, image_id=None, action="dataset", target="boxes",
                     before={"boxes": len(old)}, after={"boxes": len(new)}, via="import")
    conn.execute("DELETE FROM boxes WHERE source = 'dataset'")
    now = time.time()
    conn.executemany("INSERT INTO boxes(uid, image_id, finding, x, y, w, h, source, author, created) "
                     "VALUES (lower(hex(randomblob(16))), ?, ?, ?, ?, ?, ?, 'dataset', 'dataset', ?)",
                     [(*row, now) for row in new])
    return len(new), skipped


def _read_bboxes(path: Path) -> tuple[list[tuple[str, str, float, float, float, float]], int]:
    """BBox_List_2017 rows (image, finding, x, y, w, h); 'Infiltrate' is NIH's name for Infiltration.
    Rows of an unknown finding or an empty box are skipped (counted); a non-numeric coordinate stops."""
    if not path.is_file():
        raise WorkspaceError(f"{path}: BBox_List CSV not found")
    out = []
    bad = 0
    lines = _rows(path)
    first = next(lines, None)
    if not first or not first[1] or "Image Index" not in first[1][0]:
        raise WorkspaceError(f"{path}: not a BBox_List_2017 CSV")
    for line, row in lines:
        if not row:
            continue
        if len(row) < 6:
            raise WorkspaceError(f"{path}:{line}: the row has {len(row)} field(s), a box needs 6")
        finding = row[1].strip()
        finding = "Infiltration" if finding == "Infiltrate" else finding
        try:
            x, y, w, h = (float(v) for v in row[2:6])
        except ValueError:
            raise WorkspaceError(f"{path}:{line}: box coordinates {row[2:6]} are not numbers") from None
        if not all(math.isfinite(v) and abs(v) < MAX_INT for v in (x, y, w, h)):
            raise WorkspaceError(f"{path}:{line}: box coordinates {row[2:6]} are not finite numbers")
        if finding not in FINDING_BIT or w <= 0 or h <= 0:
            bad += 1
            continue
        out.append((row[0].strip(), finding, x, y, w, h))
    return out, bad
