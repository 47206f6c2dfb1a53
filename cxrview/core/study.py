"""The study index: patients → studies → series → images, from DICOM headers, a DICOMDIR
or file names; and the hanging questions a reader asks of it (the prior, the lateral).

Qt-free. :func:`scan` walks a folder tree (or a CD with its DICOMDIR) reading only headers
(``stop_before_pixels``, a handful of tags), reporting progress and batches to callbacks and
stopping when asked, so the GUI can run it on a worker and stay responsive with thousands of
files. Non-DICOM images are grouped by NIH patient when their names say so
(``00000013_005.png``: patient 13, follow-up 5) and by folder otherwise.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cxrview.core.loader import IMAGE_SUFFIXES, has_dicom_preamble, looks_like_dicom

FRONTAL_VIEWS = ("PA", "AP", "")
LATERAL_VIEWS = ("LL", "RL", "LAT", "LATERAL", "RLD", "LLD")
NIH_NAME = re.compile(r"^(\d{8})_(\d{3})\.(png|jpe?g|tiff?)$", re.IGNORECASE)
HEADER_TAGS = ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription",
               "SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "Modality", "ViewPosition",
               "ImageLaterality", "Laterality", "InstanceNumber", "SOPClassUID", "Rows", "AccessionNumber")
_DIRECTORY_SOP = "1.2.840.10008.1.3.10"


@dataclass(frozen=True)
class ImageEntry:
    """One image file as the index sees it."""

    path: str
    patient_key: str
    patient_label: str
    study_key: str
    study_label: str
    series_key: str
    series_label: str
    order: str = ""  # sorts a patient's studies in time ("" when unknown)
    study_date: str = ""
    modality: str = ""
    view_position: str = ""
    laterality: str = ""
    series_number: int | None = None
    instance_number: int | None = None
    source: str = "dicom"  # "dicom", "dicomdir" or "file"

    @property
    def is_lateral(self) -> bool:
        return self.view_position.upper() in LATERAL_VIEWS

    @property
    def is_frontal(self) -> bool:
        return self.view_position.upper() in FRONTAL_VIEWS


def _get(ds: Any, keyword: str) -> Any:
    """A value from a dataset or a DICOMDIR FileInstance (which has no ``get``); None if unreadable."""
    try:
        if hasattr(ds, "get"):
            return ds.get(keyword)
        return ds[keyword].value if keyword in ds else None
    except Exception:
        return None


def _text(ds: Any, keyword: str) -> str:
    value = _get(ds, keyword)
    try:
        return " ".join(str(value).split()) if value is not None else ""
    except Exception:
        return ""


def _int(ds: Any, keyword: str) -> int | None:
    value = _get(ds, keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _patient(patient_id: str, name: str) -> tuple[str, str]:
    from cxrview.core.overlay_text import person_name

    shown = person_name(name) if name else ""
    if patient_id:
        return f"id:{patient_id}", f"{shown} (ID {patient_id})" if shown else f"ID {patient_id}"
    if shown:
        return f"name:{name}", shown
    return "unknown", "Unknown patient"


def entry_from_dataset(path: str, ds: Any, *, source: str = "dicom") -> ImageEntry:
    """An entry from header elements (a dataset read without pixels, or DICOMDIR records)."""
    from cxrview.core.overlay_text import dicom_date

    patient_key, patient_label = _patient(_text(ds, "PatientID"), _text(ds, "PatientName"))
    study_uid, date, time_ = _text(ds, "StudyInstanceUID"), _text(ds, "StudyDate"), _text(ds, "StudyTime")
    study_desc = _text(ds, "StudyDescription")
    series_uid, series_desc = _text(ds, "SeriesInstanceUID"), _text(ds, "SeriesDescription")
    series_number, modality = _int(ds, "SeriesNumber"), _text(ds, "Modality")
    folder = str(Path(path).parent)
    study_key = f"{patient_key}/study:{study_uid or date + time_ or folder}"
    series_key = f"{study_key}/series:{series_uid or series_number or folder}"
    study_label = " ".join(p for p in (dicom_date(date) if date else "date unknown", study_desc) if p)
    series_label = " ".join(p for p in (modality, f"#{series_number}" if series_number is not None else "",
                                        series_desc or _text(ds, "ViewPosition")) if p) or "series"
    return ImageEntry(
        path=path, patient_key=patient_key, patient_label=patient_label, study_key=study_key,
        study_label=study_label, series_key=series_key, series_label=series_label,
        order=(date + time_.split(".")[0].ljust(6, "0")) if date else "", study_date=date, modality=modality,
        view_position=_text(ds, "ViewPosition").upper(),
        laterality=(_text(ds, "ImageLaterality") or _text(ds, "Laterality")).upper(),
        series_number=series_number, instance_number=_int(ds, "InstanceNumber"), source=source)


def entry_from_name(path: str) -> ImageEntry:
    """A non-DICOM image: its NIH patient and follow-up from the name, else its folder."""
    p = Path(path)
    match = NIH_NAME.match(p.name)
    if match:
        patient, follow_up = match.group(1), int(match.group(2))
        key = f"nih:{patient}"
        study_key = f"{key}/follow-up:{follow_up}"
        return ImageEntry(path=path, patient_key=key, patient_label=f"NIH patient {int(patient)}",
                          study_key=study_key, study_label=f"follow-up {follow_up}",
                          series_key=f"{study_key}/image", series_label=p.name, order=f"{follow_up:06d}",
                          modality=p.suffix.lstrip(".").upper(), source="file")
    folder = str(p.parent)
    key = f"folder:{folder}"
    return ImageEntry(path=path, patient_key=key, patient_label=f"Folder {p.parent.name or folder}",
                      study_key=f"{key}/study", study_label=folder, series_key=f"{key}/series",
                      series_label=f"{p.suffix.lstrip('.').upper() or 'images'} files",
                      modality=p.suffix.lstrip(".").upper(), source="file")


def read_entry(path: str) -> ImageEntry | None:
    """The entry for one file (None: not an image, a DICOMDIR, or unreadable)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return None
    suffix = Path(path).suffix.lower()
    if not looks_like_dicom(head):
        return entry_from_name(path) if suffix in IMAGE_SUFFIXES and suffix not in (
            ".dcm", ".dicom", ".dic", ".ima") else None
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True, specific_tags=list(HEADER_TAGS))
    except Exception:
        return None
    meta = getattr(ds, "file_meta", None)
    sop = _text(ds, "SOPClassUID") or (_text(meta, "MediaStorageSOPClassUID") if meta is not None else "")
    if sop == _DIRECTORY_SOP or (not has_dicom_preamble(head) and "Rows" not in ds):
        return None
    if "Rows" not in ds:
        return None  # a report, a presentation state, a structured document: nothing to show
    return entry_from_dataset(path, ds)


def _walk(root: Path, cancelled: Callable[[], bool]) -> Iterator[str]:
    """Regular files under ``root`` (hidden names skipped), depth first, in name order."""
    stack = [root]
    while stack and not cancelled():
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append(Path(entry.path))
                elif entry.is_file():
                    yield entry.path
            except OSError:
                continue
        stack.extend(reversed(subfolders))


def dicomdir_files(dicomdir: str | os.PathLike[str]) -> list[tuple[str, Any]]:
    """(path, record-derived header) for every image a DICOMDIR lists, via pydicom's FileSet."""
    import pydicom
    from pydicom.fileset import FileSet

    fs = FileSet(pydicom.dcmread(str(dicomdir)))
    out = []
    for instance in fs:
        if instance.node.record_type not in ("IMAGE", "PRIVATE"):
            continue
        out.append((str(instance.path), instance))
    return out


def find_dicomdir(folder: Path) -> Path | None:
    for name in ("DICOMDIR", "dicomdir"):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def scan(root: str | os.PathLike[str], *, cancelled: Callable[[], bool] = lambda: False,
         progress: Callable[[int, int], None] | None = None,
         batch: Callable[[list[ImageEntry]], None] | None = None, batch_size: int = 250) -> list[ImageEntry]:
    """Every image under ``root`` (a folder, or a DICOMDIR file), headers only.

    A DICOMDIR found at the top (a CD) gives the hierarchy of the files it lists; their
    headers are still read for what directory records seldom carry (view position,
    laterality). ``progress(done, total)`` and ``batch(entries)`` are called as it goes.
    """
    start = Path(root)
    dicomdir = start if start.is_file() else find_dicomdir(start)
    folder = start.parent if start.is_file() else start
    listed: dict[str, Any] = {}
    if dicomdir is not None:
        try:
            listed = {os.path.normcase(os.path.abspath(p)): record for p, record in dicomdir_files(dicomdir)}
        except Exception:
            listed = {}  # a damaged DICOMDIR: the folder scan below still finds the files
    paths = [p for p in _walk(folder, cancelled) if Path(p).name.upper() != "DICOMDIR"]
    known = {os.path.normcase(os.path.abspath(p)) for p in paths}
    paths += [p for p in listed if p not in known and os.path.isfile(p)]
    total = len(paths)
    found: list[ImageEntry] = []
    pending: list[ImageEntry] = []
    for done, path in enumerate(paths, 1):
        if cancelled():
            break
        entry = read_entry(path)
        record = listed.get(os.path.normcase(os.path.abspath(path)))
        if record is not None:
            entry = _with_record(path, entry, record)
        if entry is not None:
            found.append(entry)
            pending.append(entry)
        if batch is not None and len(pending) >= batch_size:
            batch(pending)
            pending = []
        if progress is not None and (done % 50 == 0 or done == total):
            progress(done, total)
    if batch is not None and pending and not cancelled():
        batch(pending)
    return found


def _with_record(path: str, entry: ImageEntry | None, record: Any) -> ImageEntry | None:
    """The DICOMDIR's hierarchy (patient, study, series), the file's own details."""
    listed = entry_from_dataset(path, record, source="dicomdir")
    if entry is None:
        return listed
    return replace(entry, patient_key=listed.patient_key, patient_label=listed.patient_label,
                   study_key=listed.study_key, source="dicomdir",
                   series_key=listed.series_key, study_label=listed.study_label or entry.study_label)


# -- the tree ------------------------------------------------------------------------------------------
def sort_entries(entries: Iterable[ImageEntry]) -> list[ImageEntry]:
    """Patients by label; studies newest first (as a reader wants the current on top); series
    by number; images by instance number, then path."""
    items = list(entries)
    newest: dict[str, str] = {}
    for e in items:
        newest[e.study_key] = max(newest.get(e.study_key, ""), e.order)

    def key(e: ImageEntry) -> tuple[Any, ...]:
        order = newest[e.study_key]
        return (e.patient_label.lower(), e.patient_key, _descending(order), e.study_key,
                e.series_number if e.series_number is not None else 1 << 30, e.series_key,
                e.instance_number if e.instance_number is not None else 1 << 30, _natural(e.path))

    return sorted(items, key=key)


def level_keys(e: ImageEntry) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]:
    """Sort keys of the entry's patient, study, series and image among their siblings — the
    order of :func:`sort_entries`, so a browser can insert each entry in place as it arrives."""
    return ((e.patient_label.lower(), e.patient_key), (_descending(e.order), e.study_key),
            (e.series_number if e.series_number is not None else 1 << 30, e.series_key),
            (e.instance_number if e.instance_number is not None else 1 << 30, _natural(e.path)))


def _descending(order: str) -> tuple[int, ...]:
    return (*(-ord(ch) for ch in order), 0) if order else (1,)


def _natural(path: str) -> list[Any]:
    return [(0, int(part)) if part.isdigit() else (1, part.lower()) for part in re.split(r"(\d+)", path)]


def entry_for(entries: Iterable[ImageEntry], path: str) -> ImageEntry | None:
    target = os.path.normcase(os.path.abspath(path))
    return next((e for e in entries if os.path.normcase(os.path.abspath(e.path)) == target), None)


def _view_rank(entry: ImageEntry) -> int:
    return {"PA": 0, "AP": 1}.get(entry.view_position.upper(), 2)


def find_prior(entries: Iterable[ImageEntry], current: ImageEntry) -> ImageEntry | None:
    """The same patient's previous frontal film: the latest earlier study (PA before AP).

    None when there is none, or when the current study's time is unknown (no order to go by).
    """
    if not current.order:
        return None
    earlier = [e for e in entries if e.patient_key == current.patient_key and e.order
               and e.order < current.order and e.study_key != current.study_key and e.is_frontal]
    if not earlier:
        return None
    latest = max(e.order for e in earlier)
    return min((e for e in earlier if e.order == latest), key=lambda e: (_view_rank(e), _natural(e.path)))


def find_pa_lateral(entries: Iterable[ImageEntry],
                    current: ImageEntry) -> tuple[ImageEntry, ImageEntry] | None:
    """(frontal, lateral) of the current image's study, or None when it lacks one of them."""
    same = [e for e in entries if e.study_key == current.study_key]
    laterals = [e for e in same if e.is_lateral]
    frontals = [e for e in same if e.is_frontal and not e.is_lateral and e.view_position]
    if current.is_lateral:
        laterals = [current]
    elif current.view_position:
        frontals = [current]
    if not laterals or not frontals:
        return None
    return min(frontals, key=_view_rank), laterals[0]


def same_patient(entries: Iterable[ImageEntry], current: ImageEntry) -> list[ImageEntry]:
    """Every image of the current image's patient (by DICOM PatientID, NIH patient or folder),
    newest study first, as the browser lists them."""
    return sort_entries(e for e in entries if e.patient_key == current.patient_key)
