"""The queue's history: every claim, answer, skip, undo and flag, with who, when and time spent.

``queue_events`` is append-only (the database refuses updates and deletes). ``item_history`` merges it
with a photo's predictions, decisions and audit entries into one timeline.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlite_utils

from services.core.clock import now_iso
from services.core.errors import NotFound

ACTIONS = ("claim", "answer", "skip", "undo", "flag", "lease_expired", "adjudicate", "requeue", "gold")


def record_event(
    db: sqlite_utils.Database,
    *,
    image_id: int,
    inspector: str,
    action: str,
    label: str | None = None,
    seconds: float | None = None,
    answer_id: int | None = None,
    detail: Any = None,
) -> int:
    """Append one queue event and return its id. Raises ValueError for an unknown action (a programming error)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown queue event '{action}'")
    cur = db.execute(
        "INSERT INTO queue_events (at, ts, image_id, inspector, action, label, seconds, answer_id, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [now_iso(), time.time(), image_id, inspector, action, label,
         None if seconds is None else round(float(seconds), 3), answer_id,
         json.dumps(detail) if detail is not None else None],
    )
    return int(cur.lastrowid)


def item_history(db: sqlite_utils.Database, *, image_id: int) -> list[dict[str, Any]]:
    """Everything that happened to one photo, oldest first: model predictions, decisions (automatic,
    inspectors', consensus, adjudication), queue events and audit entries. Raises NotFound.

    Each entry: at, who, what, label, seconds, detail.
    """
    if db.execute("SELECT 1 FROM images WHERE id = ?", [image_id]).fetchone() is None:
        raise NotFound(f"image {image_id} does not exist")
    out: list[dict[str, Any]] = []
    for p in db.query(
        "SELECT p.created_at, p.label, p.confidence, mv.name FROM predictions p "
        "LEFT JOIN model_versions mv ON mv.id = p.model_version_id WHERE p.image_id = ? ORDER BY p.id",
        [image_id],
    ):
        out.append({"at": p["created_at"], "who": f"model {p['name'] or '?'}", "what": "prediction",
                    "label": p["label"], "seconds": None, "detail": f"{(p['confidence'] or 0):.0%} confidence"})
    for d in db.query("SELECT * FROM decisions WHERE image_id = ? ORDER BY id", [image_id]):
        out.append({"at": d["decided_at"], "who": d["decided_by"], "what": f"decision ({d['source']})",
                    "label": d["label"], "seconds": None,
                    "detail": f"{'credit' if d['credit'] else 'no credit'}: {d['reason']}"})
    for e in db.query("SELECT * FROM queue_events WHERE image_id = ? ORDER BY id", [image_id]):
        out.append({"at": e["at"], "who": e["inspector"], "what": e["action"], "label": e["label"],
                    "seconds": e["seconds"], "detail": _detail_text(e["detail"])})
    for a in db.query("SELECT * FROM audit_log WHERE target = ? AND action != 'decision' ORDER BY id",
                      [f"image:{image_id}"]):
        out.append({"at": a["at"], "who": a["actor"], "what": a["action"], "label": None, "seconds": None,
                    "detail": _detail_text(a["detail"])})
    out.sort(key=lambda entry: entry["at"] or "")
    return out


def _detail_text(raw: str | None) -> str:
    if not raw:
        return ""
    value = json.loads(raw)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)
