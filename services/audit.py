"""The append-only audit log (the database refuses updates and deletes)."""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from services.clock import now_iso


def record(db: sqlite_utils.Database, *, actor: str, action: str, target: str = "", detail: Any = None) -> None:
    """Append one audit entry."""
    db.execute(
        "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
        [now_iso(), actor, action, target, json.dumps(detail) if detail is not None else None],
    )
