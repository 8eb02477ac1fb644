"""Throughput alerts: a line more than ``line_alert_pct`` % under or over its shift target for at least
``line_alert_minutes`` opens an alert; back in the band closes it. Every alert stays in the log."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlite_utils

from db.database import immediate
from services.core.clock import now_iso
from services.core.config import get_settings
from services.core.shifts import shift_of
from services.lines.stats import trailing_rate
from services.lines.targets import list_lines, targets

_ALERT_COLUMNS = ("id, line_id, shift, kind, started_ts, ended_ts, rate_per_hour, target_per_hour, message, "
                  "created_at")


def _alert_rows(db: sqlite_utils.Database, where: str, params: Sequence[Any]) -> list[dict[str, Any]]:
    cur = db.execute(f"SELECT {_ALERT_COLUMNS} FROM line_alerts {where}", list(params))
    names = [c[0] for c in cur.description]
    return [{**dict(zip(names, row)), "open": row[5] is None} for row in cur.fetchall()]


def open_alerts(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """The alerts not yet closed, oldest first. Raises nothing."""
    return _alert_rows(db, "WHERE ended_ts IS NULL ORDER BY started_ts, id", [])


def alert_log(db: sqlite_utils.Database, *, limit: int = 200) -> list[dict[str, Any]]:
    """The latest ``limit`` alerts, open or closed, newest first (each with ``open``). Raises nothing."""
    return _alert_rows(db, "ORDER BY started_ts DESC, id DESC LIMIT ?", [max(int(limit), 0)])


def _alert_changes(open_rows: list[dict[str, Any]], wanted: dict[str, dict[str, Any] | None],
                   now: float) -> list[tuple[str, Any]]:
    """("close", [ended_ts, id]) and ("open", row) steps taking the open alerts to the wanted ones."""
    steps: list[tuple[str, Any]] = []
    kept: set[str] = set()
    for row in open_rows:
        line, want = row["line_id"], wanted.get(row["line_id"])
        if want is not None and line not in kept and (want["kind"], want["shift"]) == (row["kind"], row["shift"]):
            kept.add(line)
        elif line in wanted:  # a line no longer registered keeps its alert as it was
            steps.append(("close", [max(now, row["started_ts"]), row["id"]]))
    steps.extend(("open", want) for line, want in wanted.items() if want is not None and line not in kept)
    return steps


def evaluate_alerts(db: sqlite_utils.Database, *, now_ts: float | None = None) -> list[dict[str, Any]]:
    """Open and close throughput alerts as of ``now_ts`` (default: now); return the open alerts.

    For every line with a target above zero for the shift running now, and once that shift has run for
    ``line_alert_minutes``: the rate over the trailing ``line_alert_minutes`` (trays placed per hour) more
    than ``line_alert_pct`` % under (over) the target opens an ``under`` (``over``) alert, unless the same
    one is already open; an open alert is closed (``ended_ts`` = now) when the rate is back within the band,
    the kind changes, the shift changes or the target is gone. At most one open alert per line. A silent
    feed measures as no production (its message says the feed is silent).

    Raises InvalidInput for a bad shift setting.
    """
    now = time.time() if now_ts is None else float(now_ts)
    settings = get_settings(db)
    band, minutes = float(settings["line_alert_pct"]), int(settings["line_alert_minutes"])
    window = minutes * 60.0
    current = shift_of(now, settings["shifts"])
    tg = targets(db)
    wanted: dict[str, dict[str, Any] | None] = {}
    for ln in list_lines(db):
        line = ln["line_id"]
        wanted[line] = None
        if current is None or now - current[1] < window:
            continue
        target = tg.get((line, current[0]))
        if not target or target <= 0:
            continue
        rate = trailing_rate(db, line, now - window, now)
        deviation = (rate - target) / target * 100.0
        if abs(deviation) <= band:
            continue
        kind = "under" if deviation < 0 else "over"
        last = ln["last_frame_ts"]
        silent = last is None or now - float(last) > float(settings["line_silent_seconds"])
        message = (f"{ln['name']}: {rate:.0f} trays/h over the last {minutes} min, {abs(deviation):.0f}% {kind} "
                   f"the {current[0]} shift target of {target:g} trays/h" + (" (feed silent)" if silent else ""))
        wanted[line] = {"line_id": line, "shift": current[0], "kind": kind, "started_ts": now, "ended_ts": None,
                        "rate_per_hour": round(rate, 2), "target_per_hour": target, "message": message,
                        "created_at": now_iso()}
    if _alert_changes(open_alerts(db), wanted, now):
        with immediate(db):  # read again under the write lock: another session may have evaluated meanwhile
            for action, payload in _alert_changes(open_alerts(db), wanted, now):
                if action == "close":
                    db.execute("UPDATE line_alerts SET ended_ts = ? WHERE id = ?", payload)
                else:
                    db.execute(
                        "INSERT INTO line_alerts (line_id, shift, kind, started_ts, ended_ts, rate_per_hour, "
                        "target_per_hour, message, created_at) VALUES (:line_id, :shift, :kind, :started_ts, "
                        ":ended_ts, :rate_per_hour, :target_per_hour, :message, :created_at)", payload)
    return open_alerts(db)
