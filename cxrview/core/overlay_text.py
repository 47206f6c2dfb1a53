"""What is written over a film: corner text, orientation markers and the LOSSY badge.

Qt-free so that the viewer, the PNG export and the report say exactly the same thing.

* **Corner text** is four templates (``{Keyword}`` placeholders: DICOM keywords from
  ``XrayImage.attributes`` plus a few view values such as ``{window}`` and ``{zoom}``).
  A line whose placeholders are all empty is left out, so one template serves DICOM
  files and PNGs alike. ``anonymised=True`` drops every identifying placeholder.
* **Orientation markers** come from Patient Orientation (0020,0020) only, which names
  the patient directions of the rows (towards the right edge) and of the columns
  (towards the bottom edge); they follow the viewport's flips and rotations. A film
  without it gets no markers: guessing from View Position would be the error the
  marker exists to catch.
* **LOSSY** is shown when Lossy Image Compression (0028,2110) says 01 (with the ratio
  and method when given), when the transfer syntax can only be lossy, or for a JPEG file.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass

from cxrview.core.image import XrayImage

CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")

DEFAULT_TEMPLATES: dict[str, str] = {
    "top_left": "{PatientName}\nID {PatientID}\n{PatientBirthDate} {PatientSex} {PatientAge}",
    "top_right": "{InstitutionName}\n{StudyDate} {StudyTime}\n{StudyDescription}\nAcc {AccessionNumber}",
    "bottom_left": "{Modality} {ViewPosition} {Laterality}\n{SeriesDescription}\n"
                   "Se {SeriesNumber} Im {InstanceNumber}\n{FileName}",
    "bottom_right": "{preset}\nW {window_width} C {window_center}\nZoom {zoom}\n{rotation}",
}

# Placeholders that identify a patient (or the place / people that would): never exported
# unless the reader asks, and dropped from anonymised text.
IDENTIFYING = frozenset({"PatientName", "PatientID", "PatientBirthDate", "AccessionNumber",
                         "InstitutionName", "ReferringPhysicianName", "FileName", "StudyInstanceUID",
                         "SeriesInstanceUID", "OperatorsName", "PerformingPhysicianName"})

# Transfer syntaxes that cannot be lossless: JPEG baseline / extended, JPEG-LS near-lossless.
LOSSY_TRANSFER_SYNTAXES = {"1.2.840.10008.1.2.4.50": "JPEG baseline",
                           "1.2.840.10008.1.2.4.51": "JPEG extended",
                           "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless"}

_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "H": "F", "F": "H"}
_FIELD = re.compile(r"\{(\w+)\}")


def dicom_date(text: str) -> str:
    """``20040826`` → ``2004-08-26``; anything else as it is."""
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if re.fullmatch(r"\d{8}", text) else text


def dicom_time(text: str) -> str:
    """``093012.5`` → ``09:30``; anything else as it is."""
    return f"{text[:2]}:{text[2:4]}" if re.fullmatch(r"\d{4,6}(\.\d*)?", text) else text


def person_name(text: str) -> str:
    """``Doe^John^^Dr`` → ``Doe, John``: family name first, as on a film jacket."""
    parts = [p.strip() for p in text.split("=")[0].split("^")]
    family, given = [*parts, "", ""][:2]
    return f"{family}, {given}" if family and given else family or given


def text_fields(image: XrayImage) -> dict[str, str]:
    """The image's placeholders: its header attributes, formatted for reading, and its file name."""
    from pathlib import Path

    fields = dict(image.attributes)
    for key in ("StudyDate", "PatientBirthDate", "AcquisitionDate", "ContentDate"):
        if key in fields:
            fields[key] = dicom_date(fields[key])
    if "StudyTime" in fields:
        fields["StudyTime"] = dicom_time(fields["StudyTime"])
    for key in ("PatientName", "ReferringPhysicianName"):
        if key in fields:
            fields[key] = person_name(fields[key])
    laterality = fields.get("ImageLaterality") or fields.get("Laterality")
    if laterality:
        fields["Laterality"] = laterality
    fields["FileName"] = Path(image.path).name
    if image.format != "DICOM":
        fields.setdefault("Modality", image.format)
    return fields


def render_template(template: str, fields: Mapping[str, str], *, anonymised: bool = False) -> list[str]:
    """The template's lines with ``fields`` filled in; lines left empty are dropped."""
    lines = []
    for raw in template.splitlines():
        names = _FIELD.findall(raw)
        values = {name: ("" if anonymised and name in IDENTIFYING else str(fields.get(name, "") or ""))
                  for name in names}
        if names and not any(values.values()):
            continue
        try:
            line = string.Formatter().vformat(raw, (), values)
        except (ValueError, IndexError, KeyError):
            line = raw  # a brace the reader typed on purpose
        line = " ".join(line.split())
        if line:
            lines.append(line)
    return lines


def corner_text(image: XrayImage, view: Mapping[str, str], templates: Mapping[str, str] | None = None,
                *, anonymised: bool = False) -> dict[str, list[str]]:
    """Lines for each corner; ``view`` holds the live values (window, zoom, preset, rotation)."""
    fields = {**text_fields(image), **view}
    chosen = {**DEFAULT_TEMPLATES, **(templates or {})}
    return {corner: render_template(chosen[corner], fields, anonymised=anonymised) for corner in CORNERS}


def _opposite(direction: str) -> str:
    return "".join(_OPPOSITE.get(ch, ch) for ch in direction)


@dataclass(frozen=True)
class ViewTransform:
    """A viewport's flips (applied first, in image axes) and clockwise quarter turns."""

    rotation: int = 0  # degrees clockwise: 0, 90, 180, 270
    flip_h: bool = False
    flip_v: bool = False

    def __post_init__(self) -> None:
        if self.rotation % 90 != 0:
            raise ValueError(f"rotation must be a multiple of 90 degrees, got {self.rotation}")
        object.__setattr__(self, "rotation", self.rotation % 360)

    @property
    def is_identity(self) -> bool:
        return self.rotation == 0 and not self.flip_h and not self.flip_v

    def rotated(self, degrees: int) -> ViewTransform:
        return ViewTransform(self.rotation + degrees, self.flip_h, self.flip_v)

    def flipped(self, *, horizontal: bool) -> ViewTransform:
        """Flip as the reader sees the screen: a horizontal flip of a quarter-turned image is a
        vertical flip in image axes."""
        if self.rotation in (90, 270):
            horizontal = not horizontal
        if horizontal:
            return ViewTransform(self.rotation, not self.flip_h, self.flip_v)
        return ViewTransform(self.rotation, self.flip_h, not self.flip_v)

    def map_point(self, x: float, y: float, width: float, height: float) -> tuple[float, float]:
        """Image point → its position in the transformed picture (origin top-left)."""
        if self.flip_h:
            x = width - x
        if self.flip_v:
            y = height - y
        for _ in range(self.rotation // 90):
            x, y, width, height = height - y, x, height, width
        return x, y

    def describe(self) -> str:
        parts = [f"rotated {self.rotation}°"] if self.rotation else []
        parts += ["flipped H"] if self.flip_h else []
        parts += ["flipped V"] if self.flip_v else []
        return ", ".join(parts)


def orientation_markers(image: XrayImage, transform: ViewTransform = ViewTransform()) -> dict[str, str]:
    """Patient direction at each screen edge ("left", "right", "top", "bottom"); empty when the
    file does not say."""
    raw = image.attributes.get("PatientOrientation", "")
    parts = [p.strip().upper() for p in raw.split("\\")]
    if len(parts) != 2 or not all(p and set(p) <= set(_OPPOSITE) for p in parts):
        return {}
    row, column = parts  # towards the right edge, towards the bottom edge
    edges = {"right": row, "left": _opposite(row), "bottom": column, "top": _opposite(column)}
    if transform.flip_h:
        edges["left"], edges["right"] = edges["right"], edges["left"]
    if transform.flip_v:
        edges["top"], edges["bottom"] = edges["bottom"], edges["top"]
    for _ in range(transform.rotation // 90):  # clockwise: what was on the left is now on top
        edges = {"top": edges["left"], "right": edges["top"], "bottom": edges["right"],
                 "left": edges["bottom"]}
    return edges


def lossy_badge(image: XrayImage) -> str | None:
    """"LOSSY 10:1" (with the method when known) or None when the pixels are as acquired."""
    flag = image.attributes.get("LossyImageCompression", "").strip()
    if flag == "01":
        ratios = [r for r in image.attributes.get("LossyImageCompressionRatio", "").split("\\") if r.strip()]
        text = "LOSSY"
        if ratios:
            try:
                text += " " + " + ".join(f"{float(r):g}:1" for r in ratios)
            except ValueError:
                pass
        method = image.attributes.get("LossyImageCompressionMethod", "").strip()
        return f"{text} ({method})" if method else text
    if flag == "00" and image.transfer_syntax not in LOSSY_TRANSFER_SYNTAXES:
        return None
    if image.transfer_syntax in LOSSY_TRANSFER_SYNTAXES:
        return f"LOSSY ({LOSSY_TRANSFER_SYNTAXES[image.transfer_syntax]})"
    if image.format == "JPEG":
        return "LOSSY (JPEG file)"
    return None
