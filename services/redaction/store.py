"""The label boxes of review photos in the database (``label_boxes``, ``label_redactions``; migration m019)."""

from __future__ import annotations

from typing import Any

import sqlite_utils

from db.database import immediate
from services.core.authz import require
from services.core.clock import now_iso
from services.redaction.labels import LabelBox


def save_found(db: sqlite_utils.Database, *, image_id: int, boxes: list[LabelBox], error: str | None = None,
               now: str | None = None) -> None:
    """Replace a photo's automatically found boxes with ``boxes`` and record that it was looked at (with the
    detector's error, if it failed), all in one transaction (the caller's, when one is open). Raises nothing of
    its own (sqlite3 errors pass through)."""
    now = now or now_iso()
    with immediate(db):
        db.execute("DELETE FROM label_boxes WHERE image_id = ? AND source = 'auto'", [image_id])
        db.conn.executemany(
            "INSERT INTO label_boxes (image_id, kind, x1, y1, x2, y2, score, source, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'auto', ?)",
            [(image_id, b.kind, b.x1, b.y1, b.x2, b.y2, b.score, now) for b in boxes])
        db.execute("INSERT INTO label_redactions (image_id, boxes, error, created_at) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT(image_id) DO UPDATE SET boxes = excluded.boxes, error = excluded.error, "
                   "created_at = excluded.created_at", [image_id, len(boxes), error, now])


def label_boxes(db: sqlite_utils.Database, *, image_id: int, actor: str) -> dict[str, Any]:
    """A photo's label boxes: ``{"looked": bool, "error": str | None, "boxes": [LabelBox.as_dict(), ...]}``.
    Raises PermissionDenied when ``actor`` may not see reviews."""
    require(db, actor=actor, action="reviews.read")
    looked = db.execute("SELECT error FROM label_redactions WHERE image_id = ?", [image_id]).fetchone()
    rows = db.execute("SELECT kind, x1, y1, x2, y2, score FROM label_boxes WHERE image_id = ? ORDER BY id",
                      [image_id]).fetchall()
    return {"looked": looked is not None, "error": looked[0] if looked else None,
            "boxes": [LabelBox(str(k), x1, y1, x2, y2, s if s is not None else 1.0).as_dict()
                      for k, x1, y1, x2, y2, s in rows]}
