"""Exporting a review workspace: NIH CSVs, COCO JSON and a training manifest (Qt-free, torch-free).

Every export writes the *current* answer of the workspace — the human decision
where there is one, else the dataset's — and never modifies the images or the
human decisions. Files are written atomically (a crash never leaves half a file).

* :func:`export_nih_csv`: ``Data_Entry_2017.csv`` + ``BBox_List_2017.csv`` in NIH's
  own layout, so :func:`cxrview.core.nih_import.import_nih` reads them back to the
  same current labels and boxes. NIH has no "uncertain": an uncertain finding is
  written as not present.
* :func:`export_coco`: COCO detection JSON of the boxes that count.
* :func:`export_manifest`: a JSON training manifest with the three opinions side by
  side, provenance of every human decision and a seeded patient-level train/val split.

Patient privacy: NIH has no patient names. Real NIH Patient IDs are written only
when asked; otherwise a salted pseudonym (the salt lives in the workspace, so
pseudonyms are stable per workspace and cannot be recomputed without it). Note that
NIH file names themselves (``00029548_010.png``) start with the patient ID, so
``file``/``path`` fields still reveal it for NIH images, and the replacement IDs keep the
reserved class (ID mod 5), manifests say ``reserved`` and carry reviewer logins and
absolute paths: that is what local training needs, not what may be shared.

``pseudonymise=True`` (``cxrview export --pseudonymise``) makes an export to share: file
names become salted pseudonyms (``img-<hash>.png``, no patient ID in them), patients are
numbered in salted-hash order (no residue mod 5 survives), reviewers become ``annotator-<hash>``,
and no reserved flag, absolute path or workspace path is written. What remains: age, sex,
view, follow-up number, labels, boxes, decision reasons and times. The images themselves are
not exported; the mapping back to real files stays in the workspace (its salt).

Box coordinates are exported as stored: for NIH workspaces that is NIH's frame, the
1024 × 1024 pixels of the distributed PNGs (not ``OriginalImage[Width,Height]``,
which is the size before NIH resized the films).
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import io
import json
import os
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cxrview.core.export import atomic_write_bytes
from cxrview.core.findings import NIH_BOX_FRAME, NIH_FINDINGS, UNREVIEWED, format_finding_labels
from cxrview.core.workspace import BoxRecord, ImageRecord, LabelRecord, Workspace, WorkspaceError

DATA_ENTRY_NAME = "Data_Entry_2017.csv"
BBOX_LIST_NAME = "BBox_List_2017.csv"
DATA_ENTRY_HEADER = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age",
                     "Patient Gender", "View Position", "OriginalImage[Width", "Height]",
                     "OriginalImagePixelSpacing[x", "y]"]
BBOX_HEADER = ["Image Index", "Finding Label", "Bbox [x", "y", "w", "h]"]
NIH_BOX_NAMES = {"Infiltration": "Infiltrate"}  # NIH's BBox_List spelling
MANIFEST_FORMAT = "cxrview-manifest"
MANIFEST_VERSION = 1
FORMATS = ("nih-csv", "coco", "manifest")
SALT_KEY = "pseudonym_salt"


# -- helpers ----------------------------------------------------------------------------------
def _records(ws: Workspace, *, present_only: bool = False, reviewed_only: bool = False) -> list[ImageRecord]:
    """Image records in file-name order (deterministic output)."""
    where = []
    if present_only:
        where.append("present = 1")
    if reviewed_only:
        where.append(f"review_state != '{UNREVIEWED}'")
    sql = "SELECT id FROM images" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY file"
    ids = [int(row[0]) for row in ws.execute(sql).fetchall()]
    return ws.images(ids)


def _answer_boxes_by_image(ws: Workspace) -> dict[int, list[BoxRecord]]:
    """``ws.answer_boxes`` for every image that has any box (the others have none)."""
    ids = [int(r[0]) for r in ws.execute("SELECT DISTINCT image_id FROM boxes WHERE deleted = 0 "
                                         "ORDER BY image_id").fetchall()]
    out = {}
    for image_id in ids:
        boxes = ws.answer_boxes(image_id)
        if boxes:
            out[image_id] = boxes
    return out


def _latest_human_labels(ws: Workspace) -> dict[int, dict[str, LabelRecord]]:
    """image id → finding → the human decision that counts (the latest row)."""
    out: dict[int, dict[str, LabelRecord]] = {}
    for row in ws.execute("SELECT id, image_id, finding, value, author, reason, created FROM labels "
                          "ORDER BY id"):
        out.setdefault(int(row[1]), {})[row[2]] = LabelRecord(*row)
    return out


def _write_json_streamed(path: Path, doc: dict[str, Any], list_key: str) -> None:
    """``json.dumps(doc)`` written element by element of ``doc[list_key]``, atomically.

    One ``json.dumps`` of a full-NIH manifest (~135 MB) is a single C call that
    holds the GIL for seconds, freezing the GUI when run on a worker thread;
    per-element calls let other threads run in between.
    """
    head = {k: v for k, v in doc.items() if k != list_key}
    prefix = json.dumps(head)[:-1] + (", " if head else "") + json.dumps(list_key) + ": ["
    parts = [prefix]
    for i, item in enumerate(doc[list_key]):
        parts.append((", " if i else "") + json.dumps(item))
    parts.append("]}")
    _write(path, "".join(parts).encode("utf-8"))


def _write(path: Path, data: bytes) -> None:
    if path.is_dir():
        raise WorkspaceError(f"{path}: is a folder, expected a file name")
    if not path.parent.is_dir():
        raise WorkspaceError(f"{path}: cannot write, folder {path.parent} does not exist")
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise WorkspaceError(f"{path}: cannot write ({exc.strerror or exc})") from exc


def _csv_bytes(header: list[str], rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _accepted(box: BoxRecord) -> dict[str, str]:
    """``accepted_from`` (the model) for a model's box a person accepted; nothing for other boxes."""
    return {"accepted_from": box.accepted_from} if box.accepted_from else {}


def _blank(value: Any) -> Any:
    return "" if value is None else value


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def pseudonym_salt(ws: Workspace) -> str:
    """The workspace's secret pseudonym salt (created, and stored in the workspace, on first use)."""
    salt = ws.meta(SALT_KEY)
    if not salt:
        salt = secrets.token_hex(16)
        ws.set_meta(SALT_KEY, salt)
    return salt


def pseudonym(patient_id: int | str, salt: str) -> str:
    """``p-`` + the first 12 hex digits of sha256(patient ID + salt)."""
    return "p-" + hashlib.sha256(f"{patient_id}{salt}".encode()).hexdigest()[:12]


def _patient_key(record: ImageRecord) -> str:
    """Who the image belongs to, for splitting (never written out). Unknown patient: the image itself."""
    return f"nih:{record.patient_id}" if record.patient_id is not None else f"image:{record.file}"


def _is_reserved(record: ImageRecord) -> bool:
    """NIH acceptance-evaluation patients (ID divisible by 5), as in ``training.sources``."""
    return record.patient_id is not None and record.dataset_labelled and record.patient_id % 5 == 0


def patient_splits(keys: set[str], *, val_fraction: float, seed: int) -> dict[str, str]:
    """Seeded patient-level split: key → "train" | "val".

    Each patient's side depends only on (seed, patient) — a hash below
    ``val_fraction`` means validation — so adding images or patients never moves
    anyone. With two or more patients and ``val_fraction > 0`` both sides get at
    least one patient (the lowest / highest hashes are moved).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise WorkspaceError(f"val_fraction must be in [0, 1), not {val_fraction}")
    score = {k: int(hashlib.sha256(f"{seed}:{k}".encode()).hexdigest()[:16], 16) / 2.0 ** 64 for k in keys}
    val = {k for k, s in score.items() if s < val_fraction}
    if len(keys) >= 2 and val_fraction > 0:
        if not val:
            val.add(min(keys, key=lambda k: score[k]))
        if len(val) == len(keys):
            val.discard(max(keys, key=lambda k: score[k]))
    return {k: "val" if k in val else "train" for k in keys}


class _Pseudonyms:
    """Salted stand-ins for what identifies a patient or a reviewer in a shared export."""

    def __init__(self, ws: Workspace, records: list[ImageRecord]) -> None:
        self.salt = pseudonym_salt(ws)
        order = sorted({r.patient_id for r in records if r.patient_id is not None},
                       key=lambda p: hashlib.sha256(f"patient:{p}{self.salt}".encode()).hexdigest())
        self._patients = {pid: k + 1 for k, pid in enumerate(order)}  # 1…N: no residue kept

    def file(self, name: str) -> str:
        digest = hashlib.sha256(f"file:{name}{self.salt}".encode()).hexdigest()[:16]
        return f"img-{digest}{Path(name).suffix.lower()}"

    def patient_number(self, patient_id: int | None) -> int | None:
        return None if patient_id is None else self._patients[patient_id]

    def author(self, login: str | None) -> str | None:
        if login is None:
            return None
        return "annotator-" + hashlib.sha256(f"author:{login}{self.salt}".encode()).hexdigest()[:8]


# -- NIH CSV ----------------------------------------------------------------------------------
def _pseudonymous_ids(records: list[ImageRecord], salt: str) -> dict[int, int]:
    """Real Patient ID → replacement integer ID (NIH's column is an integer).

    Patients are numbered in the order of their salted hash, separately within each
    class of ID mod 5, and keep that class: ``training`` reserves IDs divisible by 5
    for acceptance evaluation, and the same patients stay reserved after export.
    """
    by_class: dict[int, list[int]] = {}
    for pid in sorted({r.patient_id for r in records if r.patient_id is not None}):
        by_class.setdefault(pid % 5, []).append(pid)
    out = {}
    for residue, pids in by_class.items():
        pids.sort(key=lambda p: hashlib.sha256(f"{p}{salt}".encode()).hexdigest())
        for k, pid in enumerate(pids):
            out[pid] = 5 * (k + 1) + residue
    return out


def export_nih_csv(ws: Workspace, out_dir: str | os.PathLike[str], *,
                   include_patient_ids: bool = True, pseudonymise: bool = False) -> dict[str, Any]:
    """Write ``Data_Entry_2017.csv`` and ``BBox_List_2017.csv`` (NIH layout) into ``out_dir``.

    Every image of the workspace gets a row (present on disk or not), with its
    current findings; an uncertain finding is written as absent (NIH has no
    uncertain), and an image nobody labelled is written "No Finding". Pixel spacing
    columns are empty (the workspace does not keep them). Boxes are the ones that
    count (:meth:`Workspace.answer_boxes`), Infiltration spelt "Infiltrate" as NIH
    does. Without ``include_patient_ids`` the Patient ID column holds replacement
    integers (see :func:`_pseudonymous_ids`) that still group a patient's films.
    ``pseudonymise``: file names and patient numbers as in the module docstring.
    Returns {"format", "images", "boxes", "uncertain_written_absent", "paths"}.
    """
    folder = Path(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkspaceError(f"{folder}: cannot create the output folder ({exc.strerror or exc})") from exc
    if not folder.is_dir():
        raise WorkspaceError(f"{folder}: not a folder")
    records = _records(ws)
    shared = _Pseudonyms(ws, records) if pseudonymise else None
    ids = _pseudonymous_ids(records, pseudonym_salt(ws)) if not include_patient_ids and not shared else None
    files = {r.id: shared.file(r.file) if shared else r.file for r in records}
    rows, uncertain = [], 0
    for r in records:
        uncertain += bin(r.uncertain_mask).count("1")
        pid = r.patient_id if ids is None or r.patient_id is None else ids[r.patient_id]
        if shared is not None:
            pid = shared.patient_number(r.patient_id)
        rows.append([files[r.id], format_finding_labels(r.current_findings()), _blank(r.follow_up),
                     _blank(pid), _blank(r.age), _blank(r.sex), _blank(r.view), _blank(r.width),
                     _blank(r.height), "", ""])
    by_image = _answer_boxes_by_image(ws)
    box_rows = [[files[image_id], NIH_BOX_NAMES.get(b.finding, b.finding), b.x, b.y, b.w, b.h]
                for image_id in sorted(by_image, key=lambda i: files[i]) for b in by_image[image_id]]
    data_entry, bbox = folder / DATA_ENTRY_NAME, folder / BBOX_LIST_NAME
    _write(data_entry, _csv_bytes(DATA_ENTRY_HEADER, rows))
    _write(bbox, _csv_bytes(BBOX_HEADER, box_rows))
    return {"format": "nih-csv", "images": len(rows), "boxes": len(box_rows),
            "uncertain_written_absent": uncertain,
            "patient_ids": "pseudonymised" if shared else "nih" if include_patient_ids else "replaced",
            "paths": [str(data_entry), str(bbox)]}


# -- COCO -------------------------------------------------------------------------------------
def export_coco(ws: Workspace, out_path: str | os.PathLike[str], *,
                present_only: bool = True, pseudonymise: bool = False) -> dict[str, Any]:
    """COCO detection JSON of the boxes that count.

    ``images``: id (the workspace image id), file_name, width, height — the size of
    the frame the boxes are drawn in: 1024 × 1024 for NIH images (whatever the size
    of the local copy), else the recorded size, or 0 when unknown; NIH's
    ``OriginalImage[Width,Height]`` (the size before NIH resized the film) goes in
    ``original_width`` / ``original_height`` when known. ``categories``: the 14 NIH
    findings, ids 1..14 in NIH order. ``annotations``: bbox [x, y, w, h], area
    (w·h), category_id, iscrowd 0, and ``source``: "human" or "dataset".
    ``present_only`` leaves out images not found on this machine.
    Returns {"format", "images", "annotations", "categories", "paths"}.
    """
    path = Path(out_path)
    records = _records(ws, present_only=present_only)
    shared = _Pseudonyms(ws, records) if pseudonymise else None
    category = {name: i + 1 for i, name in enumerate(NIH_FINDINGS)}
    by_image = _answer_boxes_by_image(ws)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for r in records:
        frame = (NIH_BOX_FRAME, NIH_BOX_FRAME)
        width, height = frame if r.dataset_labelled else (r.width or 0, r.height or 0)
        entry: dict[str, Any] = {"id": r.id, "file_name": shared.file(r.file) if shared else r.file,
                                 "width": width, "height": height}
        if r.dataset_labelled and r.width and r.height:
            entry["original_width"], entry["original_height"] = r.width, r.height
        images.append(entry)
        for b in by_image.get(r.id, []):
            annotations.append({"id": len(annotations) + 1, "image_id": r.id,
                                "category_id": category[b.finding], "bbox": [b.x, b.y, b.w, b.h],
                                "area": b.w * b.h, "iscrowd": 0, "source": b.source, **_accepted(b)})
    described = "cxrview workspace (pseudonymised)" if shared else f"cxrview workspace {ws.path}"
    doc = {"info": {"description": described, "version": "1.0",
                    "date_created": datetime.now(UTC).isoformat(timespec="seconds")},
           "licenses": [], "images": images,
           "categories": [{"id": i, "name": name, "supercategory": "finding"}
                          for name, i in category.items()],
           "annotations": annotations}
    _write(path, json.dumps(doc).encode("utf-8"))
    return {"format": "coco", "images": len(images), "annotations": len(annotations),
            "categories": len(category), "paths": [str(path)]}


# -- training manifest ------------------------------------------------------------------------
def export_manifest(ws: Workspace, out_path: str | os.PathLike[str], *, val_fraction: float = 0.15,
                    seed: int = 0, reviewed_only: bool = False,
                    include_patient_ids: bool = False,
                    locked_patients: set[int] | None = None, present_only: bool = False,
                    pseudonymise: bool = False) -> dict[str, Any]:
    """A JSON training manifest (``format`` "cxrview-manifest", ``version`` 1).

    Per image: file, path (absolute for images found on disk), present, patient
    (salted pseudonym ``p-…``, or the NIH Patient ID with ``include_patient_ids``),
    view, review_state, reserved (an NIH acceptance-evaluation patient, ID divisible
    by 5: training leaves them out), labels (per finding: ``value`` the current
    label present/absent/uncertain/null, ``dataset`` the dataset's, ``human`` the
    deciding human row {value, author, reason, created} or null), boxes (the ones
    that count, with their source) and split ("train" | "val", patient-level, see
    :func:`patient_splits`). ``reviewed_only`` keeps reviewed images only.
    Images of ``locked_patients`` (NIH Patient IDs) get split "locked": the locked
    evaluation set that model comparisons use and fine-tuning never trains on.
    ``pseudonymise`` (an export to share, see the module docstring): file names and reviewers
    become pseudonyms, ``path`` is the pseudonymous file name, and ``reserved`` and the
    workspace's path are left out.
    Returns {"format", "images", "patients", "train", "val", "locked", "human_labels", "paths"}.
    """
    path = Path(out_path)
    records = _records(ws, reviewed_only=reviewed_only, present_only=present_only)
    locked = locked_patients or set()
    splits = patient_splits({_patient_key(r) for r in records if r.patient_id not in locked},
                            val_fraction=val_fraction, seed=seed)
    splits.update({f"nih:{pid}": "locked" for pid in locked})
    salt = pseudonym_salt(ws)
    shared = _Pseudonyms(ws, records) if pseudonymise else None
    humans = _latest_human_labels(ws)
    by_image = _answer_boxes_by_image(ws)
    images = []
    human_count = 0
    for r in records:
        if r.patient_id is None:
            patient: int | str = pseudonym(f"image:{r.file}", salt)
        else:
            patient = r.patient_id if include_patient_ids and not shared else pseudonym(r.patient_id, salt)
        decided = humans.get(r.id, {})
        human_count += len(decided)
        labels = {}
        for name in NIH_FINDINGS:
            h = decided.get(name)
            labels[name] = {"value": r.current_value(name), "dataset": r.dataset_value(name),
                            "human": None if h is None else {
                                "value": h.value, "author": shared.author(h.author) if shared else h.author,
                                "reason": h.reason, "created": _iso(h.created)}}
        image: dict[str, Any] = {
            "file": shared.file(r.file) if shared else r.file,
            "path": shared.file(r.file) if shared else str(ws.absolute_path(r)), "present": r.present,
            "patient": patient, "view": r.view, "review_state": r.review_state,
            "reserved": _is_reserved(r), "labels": labels,
            "boxes": [{"finding": b.finding, "x": b.x, "y": b.y, "w": b.w, "h": b.h,
                       "source": b.source, **_accepted(b)} for b in by_image.get(r.id, [])],
            "split": splits[_patient_key(r)]}
        if shared is not None:
            del image["reserved"]
        images.append(image)
    doc = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION,
           "created": datetime.now(UTC).isoformat(timespec="seconds"),
           "workspace": None if shared else str(ws.path), "findings": list(NIH_FINDINGS),
           "patient_ids": "pseudonymised" if shared else "nih" if include_patient_ids else "pseudonym",
           "split": {"by": "patient", "val_fraction": val_fraction, "seed": seed},
           "reviewed_only": reviewed_only, "images": images}
    _write_json_streamed(path, doc, "images")
    sides = [img["split"] for img in images]
    return {"format": "manifest", "images": len(images), "patients": len(splits),
            "train": sides.count("train"), "val": sides.count("val"), "locked": sides.count("locked"),
            "human_labels": human_count,
            "paths": [str(path)]}


# -- dispatch ---------------------------------------------------------------------------------
EXPORTERS: dict[str, Callable[..., dict[str, Any]]] = {
    "nih-csv": export_nih_csv, "coco": export_coco, "manifest": export_manifest,
}


def export_workspace(ws: Workspace, fmt: str, out: str | os.PathLike[str], **opts: Any) -> dict[str, Any]:
    """Export in ``fmt`` ("nih-csv": ``out`` is a folder; "coco", "manifest": ``out`` is a file).

    Returns the exporter's summary (counts and the paths written). Unknown formats or
    options and outputs that cannot be written raise :class:`WorkspaceError`.
    """
    exporter = EXPORTERS.get(fmt)
    if exporter is None:
        raise WorkspaceError(f"unknown export format {fmt!r} (use {', '.join(FORMATS)})")
    accepted = [name for name, p in inspect.signature(exporter).parameters.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(opts) - set(accepted))
    if unknown:
        raise WorkspaceError(f"{fmt} export has no option {', '.join(unknown)} "
                             f"(options: {', '.join(accepted) or 'none'})")
    return exporter(ws, out, **opts)
