"""Gold items: photos whose answer an admin knows, mixed into inspectors' queues to measure accuracy.

Only active answers of kind 'gold' (served as a gold check, not withdrawn by an undo) are scored.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlite_utils

from db.database import immediate
from services.core.audit import record
from services.core.authz import require
from services.core.clock import now_iso
from services.core.config import CLASSES
from services.core.errors import InvalidInput, NotFound
from services.reviews.decisions import decide


def _event(db: sqlite_utils.Database, *, image_id: int, actor: str, label: str | None, detail: dict[str, Any]) -> None:
    db.execute(
        "INSERT INTO queue_events (at, ts, image_id, inspector, action, label, seconds, answer_id, detail) "
        "VALUES (?, ?, ?, ?, 'gold', ?, NULL, NULL, ?)",
        [now_iso(), time.time(), image_id, actor, label, json.dumps(detail)],
    )


def mark_gold(db: sqlite_utils.Database, *, image_id: int, label: str, actor: str) -> dict[str, Any]:
    """Mark a photo as a gold item with its known label (marking again changes the label).

    A photo still in the queue (for any reason but adjudication) is decided with that label. Writes an
    audit entry ('gold.mark') and a queue event ('gold'). Returns the gold row plus ``decision_id``
    (None when nothing was decided). Raises InvalidInput for an unknown label or missing actor,
    NotFound for an unknown photo.
    """
    require(db, actor=actor, action="quality.manage")
    if label not in CLASSES:
        raise InvalidInput(f"unknown label '{label}'; expected one of {', '.join(CLASSES)}")
    if not actor or not actor.strip():
        raise InvalidInput("marking a gold item needs the admin's name")
    with immediate(db):
        row = db.execute("SELECT status, queue_reason FROM images WHERE id = ?", [image_id]).fetchone()
        if row is None:
            raise NotFound(f"image {image_id} does not exist")
        status, reason = row
        now = now_iso()
        db.execute(
            "INSERT INTO gold_items (image_id, label, created_by, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(image_id) DO UPDATE SET label = excluded.label, created_by = excluded.created_by, "
            "created_at = excluded.created_at",
            [image_id, label, actor, now],
        )
        decision_id = None
        if status == "queued" and reason != "adjudication":
            pred = db.execute("SELECT MAX(id) FROM predictions WHERE image_id = ?", [image_id]).fetchone()[0]
            decision_id = decide(
                db, image_id=image_id, label=label, actor=actor, source="human", prediction_id=pred, note="gold item"
            )["id"]
            db.execute("DELETE FROM queue_claims WHERE image_id = ? AND kind = 'queue'", [image_id])
        record(db, actor=actor, action="gold.mark", target=f"image:{image_id}",
               detail={"label": label, "decision_id": decision_id})
        _event(db, image_id=image_id, actor=actor, label=label, detail={"marked": True, "decision_id": decision_id})
    return {"image_id": image_id, "label": label, "created_by": actor, "created_at": now, "decision_id": decision_id}


def unmark_gold(db: sqlite_utils.Database, *, image_id: int, actor: str) -> dict[str, Any]:
    """Stop using a photo as a gold item (its decision stays). Audit 'gold.unmark', queue event 'gold'.
    Returns the removed gold row. Raises NotFound when the photo is not a gold item."""
    require(db, actor=actor, action="quality.manage")
    with immediate(db):
        rows = list(db.query("SELECT * FROM gold_items WHERE image_id = ?", [image_id]))
        if not rows:
            raise NotFound(f"image {image_id} is not a gold item")
        db.execute("DELETE FROM gold_items WHERE image_id = ?", [image_id])
        record(db, actor=actor, action="gold.unmark", target=f"image:{image_id}", detail={"label": rows[0]["label"]})
        _event(db, image_id=image_id, actor=actor, label=None, detail={"unmarked": True, "label": rows[0]["label"]})
    return rows[0]


def gold_items(db: sqlite_utils.Database, *, limit: int = 200) -> list[dict[str, Any]]:
    """Gold items, newest first, with the photo's uri, sha256 and status and how many active gold answers
    it received (``answers``) and how many were right (``correct``)."""
    return list(
        db.query(
            "SELECT g.image_id, g.label, g.created_by, g.created_at, i.uri, i.sha256, i.status, "
            "COUNT(a.id) AS answers, COALESCE(SUM(a.label = g.label), 0) AS correct "
            "FROM gold_items g JOIN images i ON i.id = g.image_id "
            "LEFT JOIN active_answers a ON a.image_id = g.image_id AND a.kind = 'gold' "
            "GROUP BY g.image_id ORDER BY g.created_at DESC, g.image_id DESC LIMIT ?",
            [int(limit)],
        )
    )


def gold_accuracy(db: sqlite_utils.Database) -> dict[str, dict[str, Any]]:
    """Per inspector: {answers, correct, accuracy} over active 'gold' answers on current gold items."""
    out = {}
    for inspector, n, ok in db.execute(
        "SELECT a.inspector, COUNT(*), COALESCE(SUM(a.label = g.label), 0) FROM active_answers a "
        "JOIN gold_items g ON g.image_id = a.image_id WHERE a.kind = 'gold' GROUP BY a.inspector ORDER BY a.inspector"
    ).fetchall():
        out[inspector] = {"answers": int(n), "correct": int(ok), "accuracy": ok / n if n else None}
    return out
