"""The human queue: the next photo to inspect, and inspectors' decisions on it.

Order: audit and low-confidence photos first, then photos waiting for a first model; oldest first.
"""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from services.decisions import decide
from services.errors import InvalidInput, NotFound

PRIORITY = "CASE i.queue_reason WHEN 'audit' THEN 0 WHEN 'low_confidence' THEN 1 ELSE 2 END"


def queue_counts(db: sqlite_utils.Database) -> dict[str, int]:
    return dict(db.execute("SELECT COALESCE(queue_reason, 'other'), COUNT(*) FROM images WHERE status = 'queued' GROUP BY 1").fetchall())


def next_item(db: sqlite_utils.Database, *, skip: list[int] | tuple[int, ...] = ()) -> dict[str, Any] | None:
    """The next queued photo with its review, latest prediction and latest decision, or None."""
    params: list[Any] = list(skip)
    not_in = f"AND i.id NOT IN ({','.join('?' * len(skip))})" if skip else ""
    rows = list(
        db.query(
            f"""SELECT i.*, r.review_type, r.product, r.user_id, r.submitted_at, r.text
                FROM images i JOIN reviews r ON r.id = i.review_id
                WHERE i.status = 'queued' {not_in}
                ORDER BY {PRIORITY}, r.submitted_at, i.id LIMIT 1""",
            params,
        )
    )
    if not rows:
        return None
    item = rows[0]
    pred = list(db.query("SELECT * FROM predictions WHERE image_id = ? ORDER BY id DESC LIMIT 1", [item["id"]]))
    item["prediction"] = pred[0] if pred else None
    if item["prediction"]:
        item["prediction"]["probabilities"] = json.loads(item["prediction"]["probabilities"])
    last = list(db.query("SELECT * FROM decisions WHERE image_id = ? ORDER BY id DESC LIMIT 1", [item["id"]]))
    item["decision"] = last[0] if last else None
    item["other_photos"] = list(
        db.query("SELECT id, uri, sha256, status FROM images WHERE review_id = ? AND id != ? ORDER BY id", [item["review_id"], item["id"]])
    )
    return item


def submit(db: sqlite_utils.Database, *, image_id: int, label: str, actor: str) -> dict[str, Any]:
    """Record an inspector's label for a queued photo (confirm or override). Raises NotFound, InvalidInput."""
    row = db.execute("SELECT status FROM images WHERE id = ?", [image_id]).fetchone()
    if row is None:
        raise NotFound(f"image {image_id} does not exist")
    if row[0] not in ("queued", "decided"):
        raise InvalidInput(f"image {image_id} is {row[0]}, not waiting for a decision")
    pred = db.execute("SELECT id, label FROM predictions WHERE image_id = ? ORDER BY id DESC LIMIT 1", [image_id]).fetchone()
    note = ""
    if pred:
        note = "inspector confirmed the model" if pred[1] == label else f"inspector overrode the model ({pred[1]})"
    return decide(db, image_id=image_id, label=label, actor=actor, source="human", prediction_id=pred[0] if pred else None, note=note)
