"""Worklist queries over a workspace: filter, sort, page — fast on the full NIH index.

Filters are conjunctive. Everything a filter needs lives in indexed or
bit-mask columns of ``images`` (kept current by every edit), so a query over
112,120 images is one table scan at worst (tens of ms), never a join per row.

Filter syntax (CLI ``--filter``, repeatable; the GUI builds the same object):

* ``finding=Effusion``   current label present (``finding=Effusion:uncertain`` / ``:absent``)
* ``state=unreviewed``   review state (unreviewed, confirmed, corrected, flagged;
  ``reviewed`` = any but unreviewed)
* ``patient=123``, ``view=PA``
* ``disagreement``       human vs dataset label differ, or the model's decision differs from the label
* ``missing`` / ``present``  image file found on this machine or not (default: present only)
* ``text=0001``          file name contains
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cxrview.core.findings import FINDING_BIT, NIH_FINDINGS, REVIEW_STATES
from cxrview.core.workspace import (
    IMAGE_COLUMNS,
    ImageRecord,
    Workspace,
    WorkspaceError,
    _image,
    not_trained_reason,
)

SORTS = ("file", "triage", "mislabel", "patient")


@dataclass
class WorklistQuery:
    finding: str | None = None
    finding_value: str = "present"  # present | absent | uncertain
    state: str | None = None  # a review state, or "reviewed"
    patient: int | None = None
    view: str | None = None
    disagreement: bool = False
    presence: str = "present"  # present | missing | all
    text: str | None = None
    sort: str = "file"
    limit: int | None = None
    offset: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.presence == "present":
            clauses.append("present = 1")
        elif self.presence == "missing":
            clauses.append("present = 0")
        if self.finding is not None:
            bit = FINDING_BIT[self.finding]
            if self.finding_value == "uncertain":
                clauses.append("(uncertain_mask & ?) != 0")
                params.append(bit)
            elif self.finding_value == "absent":
                clauses.append("(current_mask & ?) = 0 AND (uncertain_mask & ?) = 0 AND "
                               "(dataset_labelled = 1 OR (human_mask & ?) != 0)")
                params += [bit, bit, bit]
            else:
                clauses.append("(current_mask & ?) != 0")
                params.append(bit)
        if self.state == "reviewed":
            clauses.append("review_state != 'unreviewed'")
        elif self.state is not None:
            clauses.append("review_state = ?")
            params.append(self.state)
        if self.patient is not None:
            clauses.append("patient_id = ?")
            params.append(self.patient)
        if self.view is not None:
            clauses.append("view = ?")
            params.append(self.view.upper())
        if self.disagreement:
            # SQLite has no XOR: a ^ b = (a | b) - (a & b)
            clauses.append("((human_mask & ((current_mask | dataset_mask) - (current_mask & dataset_mask)))"
                           " != 0 OR uncertain_mask != 0 "
                           "OR COALESCE(model_disagreements, 0) > 0)")
        if self.text:
            clauses.append("file LIKE ?")
            params.append(f"%{self.text}%")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def order(self) -> str:
        return {"file": " ORDER BY file",
                "triage": " ORDER BY triage_score IS NULL, triage_score DESC, file",
                "mislabel": " ORDER BY mislabel_score IS NULL, mislabel_score DESC, file",
                "patient": " ORDER BY patient_id, follow_up, file"}[self.sort]


def parse_filters(filters: list[str], query: WorklistQuery | None = None) -> WorklistQuery:
    """CLI filter strings → query (ValueError naming the bad filter)."""
    q = query or WorklistQuery()
    for raw in filters:
        key, _, value = raw.partition("=")
        key, value = key.strip().lower(), value.strip()
        if key == "finding":
            name, _, which = value.partition(":")
            match = next((f for f in NIH_FINDINGS if f.lower() == name.lower()), None)
            if match is None:
                raise ValueError(f"unknown finding {name!r} (use one of {', '.join(NIH_FINDINGS)})")
            if which and which not in ("present", "absent", "uncertain"):
                raise ValueError(f"finding filter value must be present, absent or uncertain, not {which!r}")
            q.finding, q.finding_value = match, which or "present"
        elif key == "state":
            if value not in (*REVIEW_STATES, "reviewed"):
                raise ValueError(f"state must be one of {', '.join((*REVIEW_STATES, 'reviewed'))}")
            q.state = value
        elif key == "patient":
            try:
                q.patient = int(value)
            except ValueError:
                raise ValueError(f"patient must be a number, not {value!r}") from None
        elif key == "view":
            q.view = value
        elif key == "disagreement" and not value:
            q.disagreement = True
        elif key in ("missing", "present", "all") and not value:
            q.presence = key
        elif key == "text":
            q.text = value
        else:
            raise ValueError(f"unknown filter {raw!r} (finding=, state=, patient=, view=, disagreement, "
                             "missing, text=)")
    return q


def _select(ws: Workspace, columns: str, query: WorklistQuery) -> Any:
    if query.sort not in SORTS:
        raise WorkspaceError(f"sort must be one of {', '.join(SORTS)}")
    where, params = query.where()
    sql = f"SELECT {columns} FROM images" + where + query.order()
    if query.limit is not None:
        sql += " LIMIT ? OFFSET ?"
        params = [*params, int(query.limit), int(query.offset)]
    return ws.execute(sql, params)


def query_ids(ws: Workspace, query: WorklistQuery) -> list[int]:
    """Image ids in worklist order (all pages when ``limit`` is None)."""
    return [row[0] for row in _select(ws, "id", query)]


def query_images(ws: Workspace, query: WorklistQuery) -> list[ImageRecord]:
    return [_image(row) for row in _select(ws, IMAGE_COLUMNS, query)]


def count(ws: Workspace, query: WorklistQuery) -> int:
    where, params = query.where()
    return int(ws.execute("SELECT COUNT(*) FROM images" + where, params).fetchone()[0])


def worklist_row(record: ImageRecord, sort: str, *, locked: set[int] | None = None) -> dict[str, Any]:
    """One CLI/JSON worklist entry: the image, its score for the chosen sort, and why; and
    ``not_trained``: "locked" / "reserved" when fine-tuning will not learn from its corrections."""
    score = record.mislabel_score if sort == "mislabel" else record.triage_score
    row: dict[str, Any] = {
        "image": record.file, "id": record.id, "score": None if score is None else round(score, 4),
        "review_state": record.review_state, "labels": record.current_findings(),
        "patient_id": record.patient_id, "view": record.view,
        "not_trained": not_trained_reason(record, locked or set()),
    }
    suspects = []
    if record.suspect_finding is not None:
        suspects.append({"finding": record.suspect_finding, "label": record.suspect_label,
                         "probability": record.suspect_probability, "why": record.suspicion()})
    row["suspected"] = suspects
    return row
