"""The review state follows the decisions: a reviewed image is "corrected" while it differs from
the dataset (a changed or uncertain label, edited boxes) and "confirmed" when it agrees again.

Run inside the transaction of every label or box change, so a confirmed image that is edited
later never stays "confirmed". The change is derived, not a decision of its own: the image's
row version (undo's optimistic check on someone's review decision) is left alone.
"""

from __future__ import annotations

import sqlite3

from cxrview.core import audit
from cxrview.core.findings import CONFIRMED, CORRECTED


def image_differs(conn: sqlite3.Connection, image_id: int) -> bool:
    row = conn.execute("SELECT dataset_mask, current_mask, uncertain_mask, human_mask, boxes_edited "
                       "FROM images WHERE id = ?", (image_id,)).fetchone()
    dataset, current, uncertain, human, boxes_edited = row
    return bool(human & (current ^ dataset)) or bool(uncertain) or bool(boxes_edited)


def follow_review_state(conn: sqlite3.Connection, image_id: int, *, author: str, command: str | None,
                        via: str) -> None:
    state, note = conn.execute("SELECT review_state, note FROM images WHERE id = ?", (image_id,)).fetchone()
    if state not in (CONFIRMED, CORRECTED):
        return
    follow = CORRECTED if image_differs(conn, image_id) else CONFIRMED
    if follow != state:
        conn.execute("UPDATE images SET review_state = ? WHERE id = ?", (follow, image_id))
        audit.record(conn, author=author or "unknown", image_id=image_id, action="review",
                     before={"state": state, "note": note}, after={"state": follow, "note": note},
                     note="follows the labels and boxes", command=command, via=via)
