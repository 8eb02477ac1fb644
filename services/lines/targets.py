"""Packaging lines and their per-shift targets (trays per hour), set by ops and audited."""

from __future__ import annotations

import math
from typing import Any

import sqlite_utils

from services.core.audit import record
from services.core.authz import require
from services.core.clock import now_iso
from services.core.config import get_settings
from services.core.errors import InvalidInput, NotFound


def set_target(db: sqlite_utils.Database, *, line_id: str, shift: str, trays_per_hour: float,
               actor: str) -> dict[str, Any]:
    """Set the target of ``line_id`` during ``shift`` (trays per hour, 0 = not planned to run); audited
    as ``line.target``. Returns the stored row.

    Raises InvalidInput for a shift not in the settings or a negative or non-numeric target,
    NotFound for an unknown line.
    """
    require(db, actor=actor, action="lines.targets")
    names = [s["name"] for s in get_settings(db)["shifts"]]
    if shift not in names:
        raise InvalidInput(f"Unknown shift '{shift}': the shifts are {', '.join(names)}.")
    if isinstance(trays_per_hour, bool) or not isinstance(trays_per_hour, int | float) \
            or not math.isfinite(trays_per_hour):
        raise InvalidInput(f"A target must be a number of trays per hour, got {trays_per_hour!r}.")
    if trays_per_hour < 0:
        raise InvalidInput(f"A target cannot be negative, got {trays_per_hour:g} trays per hour.")
    if not db.execute("SELECT 1 FROM lines WHERE id = ?", [line_id]).fetchone():
        raise NotFound(f"No line '{line_id}': lines appear once their first frames are ingested.")
    row = {"line_id": line_id, "shift": shift, "trays_per_hour": float(trays_per_hour), "updated_by": actor,
           "updated_at": now_iso()}
    with db.atomic():
        before = db.execute("SELECT trays_per_hour FROM line_targets WHERE line_id = ? AND shift = ?",
                            [line_id, shift]).fetchone()
        db.execute(
            "INSERT INTO line_targets (line_id, shift, trays_per_hour, updated_by, updated_at) "
            "VALUES (:line_id, :shift, :trays_per_hour, :updated_by, :updated_at) "
            "ON CONFLICT(line_id, shift) DO UPDATE SET trays_per_hour = excluded.trays_per_hour, "
            "updated_by = excluded.updated_by, updated_at = excluded.updated_at",
            row,
        )
        record(db, actor=actor, action="line.target", target=f"{line_id}/{shift}",
               detail={"trays_per_hour": row["trays_per_hour"], "before": before[0] if before else None})
    return row


def clear_target(db: sqlite_utils.Database, *, line_id: str, shift: str, actor: str) -> bool:
    """Remove the target of ``line_id`` during ``shift`` (audited as ``line.target``); False if there was none.
    Raises nothing."""
    require(db, actor=actor, action="lines.targets")
    with db.atomic():
        before = db.execute("SELECT trays_per_hour FROM line_targets WHERE line_id = ? AND shift = ?",
                            [line_id, shift]).fetchone()
        if not before:
            return False
        db.execute("DELETE FROM line_targets WHERE line_id = ? AND shift = ?", [line_id, shift])
        record(db, actor=actor, action="line.target", target=f"{line_id}/{shift}",
               detail={"trays_per_hour": None, "before": before[0]})
    return True


def targets(db: sqlite_utils.Database) -> dict[tuple[str, str], float]:
    """Every target: {(line id, shift): trays per hour}. Raises nothing."""
    return {(r[0], r[1]): float(r[2]) for r in db.execute("SELECT line_id, shift, trays_per_hour FROM line_targets")}


def list_lines(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Every registered line: {line_id, name, last_frame_ts}, by id. Raises nothing."""
    return [{"line_id": r[0], "name": r[1] or r[0], "last_frame_ts": r[2]}
            for r in db.execute("SELECT id, name, last_frame_ts FROM lines ORDER BY id")]
