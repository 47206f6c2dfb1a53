"""Data sources → lists of samples with labels, known-label masks and patient IDs.

Every source maps onto the label list of the model being trained. A source that
says nothing about a finding marks it *unknown* (mask 0) so it is left out of
the loss, instead of being taught as a negative (multi-source training the
torchxrayvision way).

NIH patients whose Patient ID is divisible by 5 are reserved for acceptance
evaluation; ``exclude_reserved`` removes them before any split is made.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cxrview.core import findings as _findings

NIH_FINDINGS = list(_findings.NIH_FINDINGS)
SEGMENTATION_STRUCTURES = ["heart", "left_lung", "right_lung"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm")


@dataclass
class Sample:
    """One training image: where it is, what is known about it, and whose it is."""

    path: str
    patient: str
    source: str
    labels: np.ndarray  # float32 (L,), 0/1 for classification
    known: np.ndarray  # float32 (L,), 1 where the label is known
    masks: dict[str, str] = field(default_factory=dict)  # structure -> mask file (segmentation)
    view: str | None = None
    group: str | None = None  # class folder name for single-label (folder-per-class) sources
    train_only: bool = False  # extra sources that must never enter validation or test
    split: str | None = None  # the split a source assigned (a manifest's "train"/"val"), else None


@dataclass
class NihEntry:
    image: str
    findings: list[str]
    patient_id: int
    age: int | None
    sex: str
    view: str
    follow_up: int


def is_reserved_patient(patient_id: int) -> bool:
    """NIH acceptance-evaluation patients: never train or tune on them."""
    return patient_id % 5 == 0


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_data_entry(csv_path: str | Path) -> dict[str, NihEntry]:
    """Data_Entry_2017(.csv|.csv.gz) → {image file name: entry}."""
    entries: dict[str, NihEntry] = {}
    with _open_text(Path(csv_path)) as handle:
        reader = csv.reader(handle)
        header = next(reader)
        col = {name: i for i, name in enumerate(header)}
        for row in reader:
            if not row:
                continue
            labels = row[col["Finding Labels"]]
            age = row[col["Patient Age"]].rstrip("Y")
            entries[row[col["Image Index"]]] = NihEntry(
                image=row[col["Image Index"]],
                findings=[] if labels == "No Finding" else labels.split("|"),
                patient_id=int(row[col["Patient ID"]]),
                age=int(age) if age.isdigit() else None,
                sex=row[col["Patient Gender"]],
                view=row[col["View Position"]],
                follow_up=int(row[col["Follow-up #"]]),
            )
    return entries


def read_bbox_list(csv_path: str | Path) -> dict[str, list[tuple[str, float, float, float, float]]]:
    """BBox_List_2017 → {image: [(finding, x, y, w, h) in original 1024² pixels]}."""
    boxes: dict[str, list[tuple[str, float, float, float, float]]] = {}
    with _open_text(Path(csv_path)) as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            if len(row) < 6:
                continue
            finding = "Infiltration" if row[1] == "Infiltrate" else row[1]
            x, y, w, h = map(float, row[2:6])
            boxes.setdefault(row[0], []).append((finding, x, y, w, h))
    return boxes


def _image_files(folders: list[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                found.setdefault(path.name, path)  # first folder wins on duplicates
    return found


def nih_samples(image_dirs: list[str | Path], data_entry: str | Path, labels: list[str], *,
                exclude_reserved: bool = True, only_reserved: bool = False) -> list[Sample]:
    """NIH images found under ``image_dirs`` (recursively) with their Data_Entry labels."""
    entries = read_data_entry(data_entry)
    samples = []
    for name, path in _image_files([Path(d) for d in image_dirs]).items():
        entry = entries.get(name)
        if entry is None:
            continue
        reserved = is_reserved_patient(entry.patient_id)
        if (exclude_reserved and reserved) or (only_reserved and not reserved):
            continue
        vector = np.array([1.0 if label in entry.findings else 0.0 for label in labels], np.float32)
        samples.append(Sample(path=str(path), patient=f"nih:{entry.patient_id}", source="nih",
                              labels=vector, known=np.ones(len(labels), np.float32), view=entry.view))
    return samples


def folder_samples(root: str | Path, labels: list[str], mapping: dict[str, dict[str, int]],
                   *, source: str = "folders", max_per_class: int | None = None,
                   seed: int = 0) -> list[Sample]:
    """Folder-per-class layouts (``root/CLASS/*.png``).

    ``mapping`` says what each class folder means for our labels, e.g.
    ``{"PNEUMONIA": {"Pneumonia": 1}, "NORMAL": {"*": 0}}``; ``"*": 0`` marks all
    labels known negative (a normal film), anything unmentioned stays unknown.
    Without patient IDs, each image is its own patient. ``max_per_class`` keeps
    a seeded random subset of each class folder (to balance an extra source
    against the main one).
    """
    samples = []
    for class_dir in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        meaning = mapping.get(class_dir.name)
        if meaning is None:
            continue
        vector = np.zeros(len(labels), np.float32)
        known = np.zeros(len(labels), np.float32)
        if meaning.get("*") == 0:
            known[:] = 1.0
        for label, value in meaning.items():
            if label in labels:
                vector[labels.index(label)] = float(value)
                known[labels.index(label)] = 1.0
        paths = [p for p in sorted(class_dir.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
        if max_per_class is not None and len(paths) > max_per_class:
            keep = np.random.default_rng(seed).choice(len(paths), max_per_class, replace=False)
            paths = [paths[i] for i in sorted(keep)]
        samples += [Sample(path=str(path), patient=f"{source}:{path.stem}", source=source,
                           labels=vector.copy(), known=known.copy(), group=class_dir.name)
                    for path in paths]
    return samples


def list_samples(list_file: str | Path, labels: list[str], *, key: str = "train",
                 meaning: dict[str, int] | None = None, source: str = "list") -> list[Sample]:
    """Images named in a JSON file (``{key: [paths]}``), all with the same labels: ``meaning``
    as in :func:`folder_samples` (``{"*": 0}`` = every finding known absent, a normal film).

    For curated sets such as the RSNA "Normal" films, de-duplicated against every local NIH
    image and with a held-out part under another key. Each image is its own patient.
    """
    data = json.loads(Path(list_file).expanduser().read_text(encoding="utf-8"))
    if key not in data:
        raise ValueError(f"{list_file}: no list {key!r} (has {', '.join(sorted(data))})")
    meaning = meaning or {"*": 0}
    vector = np.zeros(len(labels), np.float32)
    known = np.zeros(len(labels), np.float32)
    if meaning.get("*") == 0:
        known[:] = 1.0
    for label, value in meaning.items():
        if label in labels:
            vector[labels.index(label)] = float(value)
            known[labels.index(label)] = 1.0
    samples = []
    for raw in data[key]:
        path = Path(raw).expanduser()
        samples.append(Sample(path=str(path), patient=f"{source}:{path.stem}", source=source,
                              labels=vector.copy(), known=known.copy()))
    return samples


def manifest_samples(manifest_path: str | Path, labels: list[str], *, include_uncertain: bool = False,
                     reviewed_only: bool = False, exclude_reserved: bool = True,
                     splits: tuple[str, ...] = ("train", "val"), replay: int = 0,
                     seed: int = 0) -> list[Sample]:
    """A cxrview workspace manifest (``cxrview.core.dataset_export.export_manifest``) → samples.

    Each label's current value: present → 1 (known), absent → 0 (known),
    uncertain → unknown (mask 0), or 1 (known) with ``include_uncertain``, null or a
    label the manifest does not have → unknown. Images not present when exported or
    whose file is missing now are skipped; so are unreviewed images with
    ``reviewed_only`` and NIH acceptance-evaluation patients (``reserved``) unless
    ``exclude_reserved`` is False. Relative paths are taken from the manifest's folder.
    Samples keep the manifest's split in ``Sample.split``; only images whose split
    is in ``splits`` are used (the "locked" evaluation images are not, unless asked).
    ``reviewed_only`` keeps only reviewed images of the training split (validation
    images are all kept). With it, ``replay`` adds up to that many unreviewed training
    images (seeded choice) so a small correction set does not make the model
    forget what the original labels taught it.
    """
    path = Path(manifest_path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != "cxrview-manifest":
        raise ValueError(f"{path}: not a cxrview manifest")
    if int(doc.get("version", 0)) > 1:
        raise ValueError(f"{path}: manifest version {doc.get('version')} is newer than this code reads")
    chosen = []
    unreviewed = []
    for image in doc.get("images", []):
        if not image.get("present", False) or image.get("split") not in splits:
            continue
        if exclude_reserved and image.get("reserved", False):
            continue
        # reviewed_only limits what is *trained* on; validation keeps every labelled image so
        # thresholds are re-chosen on a realistic sample, not only on the corrected ones.
        if reviewed_only and image.get("split") == "train" \
                and image.get("review_state", "unreviewed") == "unreviewed":
            if replay:
                unreviewed.append(image)
            continue
        chosen.append(image)
    if replay and unreviewed:
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(unreviewed), min(replay, len(unreviewed)), replace=False)
        chosen += [unreviewed[i] for i in sorted(picks)]
    samples = []
    for image in chosen:
        file = Path(image["path"])
        if not file.is_absolute():
            file = path.parent / file
        if not file.is_file():
            continue
        vector = np.zeros(len(labels), np.float32)
        known = np.zeros(len(labels), np.float32)
        per_label = image.get("labels", {})
        for i, label in enumerate(labels):
            value = (per_label.get(label) or {}).get("value")
            if value == "present" or (value == "uncertain" and include_uncertain):
                vector[i], known[i] = 1.0, 1.0
            elif value == "absent":
                known[i] = 1.0
        samples.append(Sample(path=str(file), patient=f"manifest:{image['patient']}", source="manifest",
                              labels=vector, known=known, view=image.get("view"), split=image.get("split")))
    return samples


def _mask_stem(name: str) -> str:
    """Name without its extension and JSRT's ``.IMG`` (``JPCLN001.IMG.png`` ↔ ``JPCLN001.gif``);
    dotted names such as Wingspan's DICOM UIDs (``1.2.156….12600.png``) keep their dots."""
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return stem[:-4] if stem.upper().endswith(".IMG") else stem


def reserved_by_position(names: list[str], every: int) -> set[str]:
    """Names at sorted positions 0, every, 2·every, … (the Wingspan rule: every third is reserved)."""
    return {name for i, name in enumerate(sorted(names)) if i % every == 0}


def mask_samples(images_dir: str | Path, masks_dir: str | Path,
                 structures: list[str] | None = None, *, source: str = "jsrt",
                 reserved_every: int | None = None, only_reserved: bool = False) -> list[Sample]:
    """Image + per-structure mask folders (JSRT/SCR layout: masks/<structure>/<stem>.gif|png).

    An image is used only when every structure has a mask; file stems are
    matched without the extension (and JSRT's ``.IMG``). ``reserved_every``: the
    images at sorted positions 0, n, 2n, … are reserved for acceptance evaluation
    and left out (``only_reserved``: only they are returned), as for the reserved
    NIH patients. Masks are binarised at > 127 when loaded (anti-aliased edges).
    """
    structures = structures or SEGMENTATION_STRUCTURES
    masks_root = Path(masks_dir)
    index = {s: {_mask_stem(p.name): p for p in (masks_root / s).glob("*") if p.is_file()}
             for s in structures}
    images = [p for p in sorted(Path(images_dir).glob("*")) if p.is_file() and not p.name.startswith(".")]
    reserved = reserved_by_position([p.name for p in images], reserved_every) if reserved_every else set()
    samples = []
    for image in images:
        if (image.name in reserved) != only_reserved:
            continue
        stem = _mask_stem(image.name)
        found = {s: index[s].get(stem) for s in structures}
        if any(v is None for v in found.values()):
            continue
        samples.append(Sample(path=str(image), patient=f"{source}:{stem}", source=source,
                              labels=np.ones(len(structures), np.float32),
                              known=np.ones(len(structures), np.float32),
                              masks={s: str(p) for s, p in found.items() if p is not None}))
    return samples


def patient_split(samples: list[Sample], *, val_fraction: float, test_fraction: float,
                  seed: int) -> dict[str, list[str]]:
    """Seeded patient-level split: no patient appears in two splits."""
    patients = sorted({s.patient for s in samples})
    rng = np.random.default_rng(seed)
    order = [patients[i] for i in rng.permutation(len(patients))]
    n_test = round(len(order) * test_fraction)
    n_val = round(len(order) * val_fraction)
    if len(order) >= 3:
        n_val = max(n_val, 1) if val_fraction > 0 else 0
        n_test = max(n_test, 1) if test_fraction > 0 else 0
    return {"test": sorted(order[:n_test]), "val": sorted(order[n_test:n_test + n_val]),
            "train": sorted(order[n_test + n_val:])}


def apply_split(samples: list[Sample], split: dict[str, list[str]]) -> dict[str, list[Sample]]:
    where = {patient: name for name, patients in split.items() for patient in patients}
    out: dict[str, list[Sample]] = {name: [] for name in split}
    for sample in samples:
        name = where.get(sample.patient)
        if name is not None:
            out[name].append(sample)
    return out
