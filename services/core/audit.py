"""The append-only audit log (the database refuses updates and deletes)."""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from services.core.authz import require
from services.core.clock import now_iso


def record(db: sqlite_utils.Database, *, actor: str, action: str, target: str = "", detail: Any = None) -> None:
    """Append one audit entry."""
    db.execute(
        "INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
        [now_iso(), actor, action, target, json.dumps(detail) if detail is not None else None],
    )


def entries(db: sqlite_utils.Database, *, actor: str, who: str = "", action: str = "", since: str = "",
            until: str = "", limit: int = 500) -> list[dict[str, Any]]:
    """Audit entries, newest first, filtered by who acted, action prefix and an ISO time range [since, until).
    Raises PermissionDenied unless ``actor`` (the reader) may read the audit log."""
    require(db, actor=actor, action="audit.read")
    where, params = [], []
    if who:
        where.append("actor = ?")
        params.append(who)
    if action:
        where.append("action LIKE ?")
        params.append(action.replace("%", "") + "%")
    if since:
        where.append("at >= ?")
        params.append(since)
    if until:
        where.append("at < ?")
        params.append(until)
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    return list(db.query(f"SELECT id, at, actor, action, target, detail FROM audit_log {clause} ORDER BY id DESC LIMIT ?",
                         [*params, int(limit)]))


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The entries as CSV text (id, at, actor, action, target, detail); text a spreadsheet would run as a
    formula is neutralised (services.core.csvsafe). Raises nothing."""
    import csv
    import io

    from services.core.csvsafe import safe_row

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["id", "at", "actor", "action", "target", "detail"])
    writer.writeheader()
    writer.writerows(safe_row(row=row) for row in rows)
    return out.getvalue()
