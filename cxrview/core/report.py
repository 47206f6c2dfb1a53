"""The one-page findings report, as HTML that Qt prints to PDF (Qt-free: what it says is here).

Header (patient and study, or a pseudonym when anonymised), the key images, the AI findings
with their validation evidence (validated calls apart from the not-validated ones; a withheld
film says so and why), the reader's measurements, the free-text impression and the research
statement. Everything is escaped: header values and the impression come from files and people.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from cxrview.core.image import XrayImage
from cxrview.core.overlay_text import text_fields

RESEARCH_STATEMENT = ("AI output is for research and second reading, not for diagnosis. "
                      "cxrview is not a certified medical device.")


def pseudonym(image: XrayImage) -> str:
    """A stable stand-in for the patient: the same ID always gives the same pseudonym."""
    key = image.attributes.get("PatientID") or image.attributes.get("PatientName") or image.content_hash
    return "Patient " + hashlib.sha256(key.encode("utf-8")).hexdigest()[:8].upper()


def header_rows(image: XrayImage, *, anonymised: bool) -> list[tuple[str, str]]:
    fields = text_fields(image)
    rows = [("Patient", pseudonym(image))] if anonymised else [
        ("Patient", fields.get("PatientName", "") or "unknown"), ("Patient ID", fields.get("PatientID", "")),
        ("Born", fields.get("PatientBirthDate", ""))]
    rows += [("Sex", fields.get("PatientSex", "")), ("Study date", fields.get("StudyDate", "")),
             ("Study", fields.get("StudyDescription", "")),
             ("View", " ".join(p for p in (fields.get("Modality", ""), fields.get("ViewPosition", "")) if p))]
    if not anonymised:
        rows += [("Accession", fields.get("AccessionNumber", "")), ("File", fields.get("FileName", ""))]
    return [(k, v) for k, v in rows if v]


def _pct(value: Any) -> str:
    return f"{float(value):.0%}"


def _ci(values: Any) -> str:
    if not values or len(values) != 2 or values[0] is None or values[1] is None:
        return ""
    return f" (95% CI {_pct(values[0])}–{_pct(values[1])})"


def findings_rows(shown: Mapping[str, Any] | None) -> tuple[list[list[str]], list[str], str]:
    """(validated rows: finding, probability, call, sensitivity, specificity; not-validated
    names; a note: no AI run, or withheld with its reasons)."""
    if shown is None:
        return [], [], "No AI result for this image."
    if shown.get("withheld") and not shown.get("forced"):
        reasons = "; ".join(str(r) for r in (shown.get("validity") or {}).get("reasons") or [])
        return [], [], f"AI output withheld: {reasons or 'the input check refused this film'}."
    validated, other = [], []
    for name, info in (shown.get("findings") or {}).items():
        label = name.replace("_", " ")
        if not info.get("validated", False):
            other.append(label)
            continue
        call = "positive" if info.get("positive") else "below operating point"
        sens = f"{_pct(info['sensitivity'])}{_ci(info.get('sensitivity_ci'))}" if info.get(
            "sensitivity") is not None else ""
        spec = f"{_pct(info['specificity'])}{_ci(info.get('specificity_ci'))}" if info.get(
            "specificity") is not None else ""
        validated.append([label, f"{float(info.get('probability', 0.0)):.1%}", call, sens, spec])
    validated.sort(key=lambda row: (row[2] != "positive", row[0]))
    note = "Shown on request although the input check withheld it." if shown.get("forced") else ""
    return validated, other, note


@dataclass
class ReportContent:
    image: XrayImage
    anonymised: bool = True
    shown: Mapping[str, Any] | None = None  # the presented prediction (findings dock's)
    measurements: Sequence[tuple[str, str]] = ()  # (mark, value)
    impression: str = ""
    key_images: Sequence[str] = field(default_factory=list)  # resource names of the pictures
    generated: str = ""  # date/time text

    def html(self) -> str:
        out = ["<html><body style='font-family: sans-serif; font-size: 9pt;'>",
               "<h2 style='margin-bottom: 2px;'>Chest radiograph — findings report</h2>"]
        if self.generated:
            out.append(f"<p style='color: #555;'>Generated {escape(self.generated)} by cxrview</p>")
        out.append("<table cellspacing='0' cellpadding='2'>")
        for key, value in header_rows(self.image, anonymised=self.anonymised):
            out.append(f"<tr><td><b>{escape(key)}</b></td><td>{escape(value)}</td></tr>")
        out.append("</table>")
        if self.key_images:
            out.append("<p>" + " ".join(f"<img src='{escape(name)}' width='300'>" for name in self.key_images)
                       + "</p>")
        out.append("<h3>AI findings</h3>")
        rows, other, note = findings_rows(self.shown)
        if note:
            out.append(f"<p>{escape(note)}</p>")
        if rows:
            out.append("<table border='1' cellspacing='0' cellpadding='3'><tr><th>Finding</th>"
                       "<th>Probability</th><th>Call</th><th>Sensitivity</th><th>Specificity</th></tr>")
            for row in rows:
                out.append("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>")
            out.append("</table><p style='color: #555;'>Sensitivity and specificity at the operating point, "
                       "on the model's validation split.</p>")
        if other:
            out.append(f"<p>Not validated (never called positive): {escape(', '.join(other))}</p>")
        out.append("<h3>Measurements</h3>")
        if self.measurements:
            out.append("<table cellspacing='0' cellpadding='2'>")
            for mark, value in self.measurements:
                out.append(f"<tr><td>{escape(mark)}</td><td>{escape(value)}</td></tr>")
            out.append("</table>")
        else:
            out.append("<p>None.</p>")
        out.append("<h3>Impression</h3>")
        impression = escape(self.impression.strip()).replace("\n", "<br>") or "—"
        out.append(f"<p>{impression}</p>")
        out.append(f"<p style='color: #a00;'><b>{escape(RESEARCH_STATEMENT)}</b></p>")
        out.append("</body></html>")
        return "\n".join(out)
