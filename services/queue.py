"""The human queue: the next photo to inspect, and inspectors' decisions on it.

Order: audit and low-confidence photos first, then photos waiting for a first model; oldest first.
An inspector claims a photo with a lease (``claim_next``); nobody else is offered it until they
decide, skip (``release``) or the lease expires.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlite_utils

from db.database import immediate
from services.clock import now_iso
from services.decisions import decide
from services.errors import InvalidInput, NotFound

LEASE_SECONDS = 300.0

PRIORITY = "CASE i.queue_reason WHEN 'audit' THEN 0 WHEN 'low_confidence' THEN 1 ELSE 2 END"


def queue_counts(db: sqlite_utils.Database) -> dict[str, int]:
    return dict(db.execute("SELECT COALESCE(queue_reason, 'other'), COUNT(*) FROM images WHERE status = 'queued' GROUP BY 1").fetchall())


def _filters(review_type: str | None, label: str | None, band: tuple[float, float] | None) -> tuple[str, list[Any]]:
    sql, params = "", []
    if review_type:
        sql += " AND r.review_type = ?"
        params.append(review_type)
    if label:
        sql += " AND p.label = ?"
        params.append(label)
    if band:
        sql += " AND p.confidence >= ? AND p.confidence < ?"
        params += [float(band[0]), float(band[1])]
    return sql, params


def _details(db: sqlite_utils.Database, item: dict[str, Any]) -> dict[str, Any]:
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


def next_item(
    db: sqlite_utils.Database,
    *,
    skip: list[int] | tuple[int, ...] = (),
    review_type: str | None = None,
    label: str | None = None,
    band: tuple[float, float] | None = None,
    inspector: str | None = None,
) -> dict[str, Any] | None:
    """The next queued photo (not skipped, not under someone else's live lease), with its review,
    latest prediction and decision and the review's other photos; or None. Reads only: see ``claim_next``.

    ``label`` and ``band`` filter on the model's latest prediction (class, confidence in [low, high)).
    """
    not_in = f"AND i.id NOT IN ({','.join('?' * len(skip))})" if skip else ""
    extra, extra_params = _filters(review_type, label, band)
    params = [time.time(), inspector or "", *skip, *extra_params, inspector or ""]
    rows = list(
        db.query(
            f"""SELECT i.*, r.review_type, r.product, r.user_id, r.submitted_at, r.text
                FROM images i JOIN reviews r ON r.id = i.review_id
                LEFT JOIN predictions p ON p.image_id = i.id AND p.id = (SELECT MAX(id) FROM predictions WHERE image_id = i.id)
                LEFT JOIN queue_claims c ON c.image_id = i.id
                WHERE i.status = 'queued' AND (c.image_id IS NULL OR c.lease_expires < ? OR c.inspector = ?)
                {not_in} {extra}
                ORDER BY (c.inspector IS NOT NULL AND c.inspector = ?) DESC, {PRIORITY}, r.submitted_at, i.id LIMIT 1""",
            params,
        )
    )
    return _details(db, rows[0]) if rows else None


def claim_next(
    db: sqlite_utils.Database,
    *,
    inspector: str,
    skip: list[int] | tuple[int, ...] = (),
    review_type: str | None = None,
    label: str | None = None,
    band: tuple[float, float] | None = None,
    lease_seconds: float = LEASE_SECONDS,
) -> dict[str, Any] | None:
    """Claim the next photo for ``inspector`` (their own live claim first) with a lease; None when empty.

    Two inspectors are never offered the same photo while a lease lives. Raises InvalidInput for an
    empty inspector name.
    """
    if not inspector:
        raise InvalidInput("an inspector name is needed to claim from the queue")
    expires = time.time() + lease_seconds
    with immediate(db):
        item = next_item(db, skip=skip, review_type=review_type, label=label, band=band, inspector=inspector)
        if item is None:
            return None
        db.execute(
            "INSERT INTO queue_claims (image_id, inspector, claimed_at, lease_expires) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(image_id) DO UPDATE SET inspector = excluded.inspector, claimed_at = excluded.claimed_at, "
            "lease_expires = excluded.lease_expires",
            [item["id"], inspector, now_iso(), expires],
        )
    item["lease_expires"] = expires
    return item


def release(db: sqlite_utils.Database, *, image_id: int, inspector: str) -> None:
    """Give a claimed photo back to the queue (a skip). Only the holder's claim is removed."""
    db.execute("DELETE FROM queue_claims WHERE image_id = ? AND inspector = ?", [image_id, inspector])


def submit(db: sqlite_utils.Database, *, image_id: int, label: str, actor: str) -> dict[str, Any]:
    """Record an inspector's label for a queued photo (confirm or override). Raises NotFound, InvalidInput.

    The checks and the write share one write-locked transaction, so two inspectors submitting the same
    photo at once cannot both pass the checks: the second is told who decided it.
    """
    with immediate(db):
        row = db.execute("SELECT status FROM images WHERE id = ?", [image_id]).fetchone()
        if row is None:
            raise NotFound(f"image {image_id} does not exist (it may have been deleted)")
        if row[0] == "decided":
            last = db.execute("SELECT decided_by, decided_at FROM decisions WHERE id = "
                              "(SELECT decision_id FROM images WHERE id = ?)", [image_id]).fetchone()
            who = f" by {last[0]} at {last[1]}" if last else ""
            raise InvalidInput(f"image {image_id} was already decided{who}; take the next photo")
        if row[0] != "queued":
            raise InvalidInput(f"image {image_id} is {row[0]}, not waiting for a decision")
        holder = db.execute(
            "SELECT inspector FROM queue_claims WHERE image_id = ? AND lease_expires >= ?", [image_id, time.time()]
        ).fetchone()
        if holder and holder[0] != actor:
            raise InvalidInput(f"image {image_id} is being inspected by {holder[0]}; take the next photo instead")
        pred = db.execute("SELECT id, label FROM predictions WHERE image_id = ? ORDER BY id DESC LIMIT 1", [image_id]).fetchone()
        note = ""
        if pred:
            note = "inspector confirmed the model" if pred[1] == label else f"inspector overrode the model ({pred[1]})"
        decision = decide(db, image_id=image_id, label=label, actor=actor, source="human",
                          prediction_id=pred[0] if pred else None, note=note)
        db.execute("DELETE FROM queue_claims WHERE image_id = ?", [image_id])
    return decision
