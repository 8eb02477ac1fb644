"""Throughput alerts: a line more than ``line_alert_pct`` % under or over its shift target for at least
``line_alert_minutes`` opens an alert, and so does a feed silent for ``line_silent_seconds``; an alert closes
as soon as its cause is gone (back in the band, frames again, another shift or another target). Every alert
stays in the log."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
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


def _same_cause(row: dict[str, Any], want: dict[str, Any]) -> bool:
    """An open alert stands for ``want`` when kind, shift and target are the same (a new target is a new cause)."""
    return (row["kind"], row["shift"], row["target_per_hour"]) == (want["kind"], want["shift"], want["target_per_hour"])


def _alert_changes(open_rows: list[dict[str, Any]], wanted: dict[str, dict[str, Any] | None],
                   now: float) -> list[tuple[str, Any]]:
    """("close", [ended_ts, id]) and ("open", row) steps taking the open alerts to the wanted ones."""
    steps: list[tuple[str, Any]] = []
    kept: set[str] = set()
    for row in open_rows:
        line, want = row["line_id"], wanted.get(row["line_id"])
        if want is not None and line not in kept and _same_cause(row, want):
            kept.add(line)
        elif line in wanted:  # a line no longer registered keeps its alert as it was
            steps.append(("close", [max(now, row["started_ts"]), row["id"]]))
    steps.extend(("open", want) for line, want in wanted.items() if want is not None and line not in kept)
    return steps


def _live_since(db: sqlite_utils.Database, line_id: str, *, now: float, lookback_s: float,
                silent_s: float) -> float | None:
    """When the line's feed came back, if it did within ``lookback_s`` before ``now``: the first minute with
    frames after at least ``silent_s`` without any (from the per-minute roll-ups, so at minute resolution).
    None when the feed ran throughout, or when no roll-up tells either way."""
    first = math.floor((now - lookback_s - silent_s) / 60)
    minutes = [r[0] for r in db.execute("SELECT minute FROM line_minutes WHERE line_id = ? AND minute >= ? "
                                        "AND minute <= ? ORDER BY minute", [line_id, first, math.floor(now / 60)])]
    back, previous = None, first - 1
    for minute in minutes:
        if (minute - previous - 1) * 60 >= silent_s:
            back = minute * 60.0
        previous = minute
    return back


def _wanted_alert(db: sqlite_utils.Database, ln: dict[str, Any], *, now: float, shift: str, target: float,
                  settings: dict[str, Any]) -> dict[str, Any] | None:
    """The alert the line calls for now in ``shift`` with ``target`` (above zero), or None."""
    band, minutes = float(settings["line_alert_pct"]), int(settings["line_alert_minutes"])
    window, silent_s = minutes * 60.0, float(settings["line_silent_seconds"])
    line, last = ln["line_id"], ln["last_frame_ts"]
    alert = {"line_id": line, "shift": shift, "started_ts": now, "ended_ts": None, "target_per_hour": target,
             "created_at": now_iso()}
    if last is None or now - float(last) > silent_s:  # nothing is placed after the last frame: no need to wait
        since = "yet" if last is None else f"since {datetime.fromtimestamp(float(last), UTC):%H:%M} UTC"
        return {**alert, "kind": "silent", "rate_per_hour": 0.0,
                "message": f"{ln['name']}: feed silent, no frame {since}: nothing placed against the {shift} "
                           f"shift target of {target:g} trays/h"}
    back = _live_since(db, line, now=now, lookback_s=window, silent_s=silent_s)
    if back is not None and now - back < window:  # the window would measure the silence already alerted on
        return None
    rate = trailing_rate(db, line, now - window, now)
    deviation = (rate - target) / target * 100.0
    if abs(deviation) <= band:
        return None
    kind = "under" if deviation < 0 else "over"
    return {**alert, "kind": kind, "rate_per_hour": round(rate, 2),
            "message": f"{ln['name']}: {rate:.0f} trays/h over the last {minutes} min, {abs(deviation):.0f}% "
                       f"{kind} the {shift} shift target of {target:g} trays/h"}


def evaluate_alerts(db: sqlite_utils.Database, *, now_ts: float | None = None) -> list[dict[str, Any]]:
    """Open and close line alerts as of ``now_ts`` (default: now); return the open alerts.

    For every line with a target above zero for the shift running now, once that shift has run for
    ``line_alert_minutes``:

    * a feed without a frame for ``line_silent_seconds`` (or never) opens a ``silent`` alert at once;
    * otherwise the rate over the trailing ``line_alert_minutes`` (trays placed per hour) more than
      ``line_alert_pct`` % under (over) the target opens an ``under`` (``over``) alert; after a silence the feed
      must have run for ``line_alert_minutes`` again first, so the window does not judge the silence twice.

    An open alert stays while the line calls for the same kind of alert in the same shift against the same
    target; otherwise it is closed (``ended_ts`` = now) and the new one, if any, opened: back in the band,
    frames again, a silent feed, another shift, a target changed or gone. At most one open alert per line.

    Raises InvalidInput for a bad shift setting.
    """
    now = time.time() if now_ts is None else float(now_ts)
    settings = get_settings(db)
    window = int(settings["line_alert_minutes"]) * 60.0
    current = shift_of(now, settings["shifts"])
    tg = targets(db)
    wanted: dict[str, dict[str, Any] | None] = {}
    for ln in list_lines(db):
        wanted[ln["line_id"]] = None
        if current is None or now - current[1] < window:
            continue
        target = tg.get((ln["line_id"], current[0]))
        if target and target > 0:
            wanted[ln["line_id"]] = _wanted_alert(db, ln, now=now, shift=current[0], target=target,
                                                  settings=settings)
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
