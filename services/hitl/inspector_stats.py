"""Read models for the inspector dashboard: per-inspector and team figures per UTC day, queue snapshots.

Every figure is aggregated in SQLite (GROUP BY and window functions); Python only shapes the rows.
Answers are read from the ``active_answers`` view, so an answer withdrawn by an undo never counts.

Time bounds (``since``/``until``) are ISO-8601 dates or times (or ``datetime.date`` objects), UTC:
``since`` is inclusive; ``until`` as a date includes that whole day, as a time is an exclusive instant.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

import sqlite_utils

from services.core.authz import require
from services.core.clock import now_iso, parse_time
from services.core.errors import InvalidInput

ACTIVE_SECONDS_CAP = 300.0  # an answer counts at most five minutes of active time (the rest was a break)
# a rate from fewer answers or less active time than this says little ("595.5 items/hour" from seconds of work)
MIN_RATE_ANSWERS = 10
MIN_RATE_SECONDS = 600.0
SNAPSHOT_SECONDS = 60.0  # the worker and the dashboard record a queue snapshot at most this often
INSPECTOR_KINDS = ("single", "overlap", "gold")  # adjudication is an admin step, not queue throughput


def _bound(value: str | date | None, *, upper: bool) -> str | None:
    """An ISO bound comparable with the stored timestamps; a date ``until`` becomes the next midnight."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        text = value.isoformat()
    elif isinstance(value, date):
        text = value.isoformat()
    else:
        text = str(value).strip()
    try:
        if len(text) == 10:  # a plain date
            day = date.fromisoformat(text)
            if upper:
                day += timedelta(days=1)
            return parse_time(day.isoformat())
        return parse_time(text)
    except ValueError as exc:
        raise InvalidInput(f"Not a date or time: {value!r} (use YYYY-MM-DD or ISO-8601).") from exc


def _window(since: str | date | None, until: str | date | None) -> tuple[str | None, str | None]:
    lo, hi = _bound(since, upper=False), _bound(until, upper=True)
    if lo is not None and hi is not None and hi <= lo:
        raise InvalidInput(f"The period is empty: {since} is not before {until}.")
    return lo, hi


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if not den else (num or 0) / den


_ANSWERS_CTE = """
    WITH a AS (
        SELECT a.image_id, a.inspector, a.label, a.kind, a.seconds, a.prediction_id,
               substr(a.answered_at, 1, 10) AS day
        FROM active_answers a
        WHERE a.kind IN ('single', 'overlap', 'gold')
          AND (:lo IS NULL OR a.answered_at >= :lo)
          AND (:hi IS NULL OR a.answered_at < :hi)
          AND (:inspectors IS NULL OR a.inspector IN (SELECT value FROM json_each(:inspectors)))
    )
"""
_COUNTS = ("items", "active_seconds", "overlap_answers", "overlap_agreed", "gold_answers", "gold_correct",
           "predicted_answers", "overridden")


def rate_note(items: int, *, active_seconds: float) -> str | None:
    """None when ``items`` answers over ``active_seconds`` are enough for a rate (MIN_RATE_ANSWERS and
    MIN_RATE_SECONDS), else why not, in words. Raises nothing."""
    if items >= MIN_RATE_ANSWERS and active_seconds >= MIN_RATE_SECONDS:
        return None
    spent = f"{active_seconds / 60:.0f} min" if active_seconds >= 60 else f"{active_seconds:.0f} s"
    return f"too little data: {items} answer{'' if items == 1 else 's'} in {spent}"


def _figures(inspector: str, day: str | None, t: dict[str, float], cls: dict[str, list[int]],
             secs: list[float] | None) -> dict[str, Any]:
    active = float(t["active_seconds"])
    return {
        "inspector": inspector,
        "day": day,
        "items": int(t["items"]),
        "active_seconds": active,
        "items_per_hour": t["items"] / (active / 3600) if active > 0 else None,
        "rate_note": rate_note(items=int(t["items"]), active_seconds=active),
        "median_seconds": statistics.median(secs) if secs else None,
        "overlap_answers": int(t["overlap_answers"]),
        "agreement_with_consensus": _ratio(t["overlap_agreed"], t["overlap_answers"]),
        "gold_answers": int(t["gold_answers"]),
        "gold_accuracy": _ratio(t["gold_correct"], t["gold_answers"]),
        "predicted_answers": int(t["predicted_answers"]),
        "override_rate": _ratio(t["overridden"], t["predicted_answers"]),
        "override_rate_by_class": {c: overridden / n for c, (n, overridden) in sorted(cls.items())},
    }


def inspector_stats(
    db: sqlite_utils.Database,
    *,
    actor: str,
    since: str | date | None = None,
    until: str | date | None = None,
    inspectors: Sequence[str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """``{"daily": inspector_daily rows, "totals": inspector_totals rows}`` from one pass over the answers.

    Raises PermissionDenied for an actor without a role, InvalidInput for a malformed or empty period.
    """
    require(db, actor=actor, action="stats.read")
    return _stats(db, since=since, until=until, inspectors=inspectors)


def _stats(db: sqlite_utils.Database, *, since: str | date | None, until: str | date | None,
           inspectors: Sequence[str] | None) -> dict[str, list[dict[str, Any]]]:
    lo, hi = _window(since, until)
    params = {"lo": lo, "hi": hi, "cap": ACTIVE_SECONDS_CAP,
              "inspectors": None if inspectors is None else json.dumps(list(inspectors))}
    # counts grouped by (inspector, day, predicted class) in SQLite; days and classes are summed below
    groups = db.execute(
        _ANSWERS_CTE
        + """
        SELECT a.inspector, a.day, p.label AS predicted, COUNT(*) AS items,
               SUM(MIN(MAX(COALESCE(a.seconds, 0), 0), :cap)) AS active_seconds,
               SUM(a.kind = 'overlap' AND c.label IS NOT NULL) AS overlap_answers,
               SUM(a.kind = 'overlap' AND c.label = a.label) AS overlap_agreed,
               SUM(a.kind = 'gold' AND g.label IS NOT NULL) AS gold_answers,
               SUM(a.kind = 'gold' AND g.label = a.label) AS gold_correct,
               SUM(p.label <> a.label) AS overridden
        FROM a
        LEFT JOIN consensus c ON c.image_id = a.image_id AND COALESCE(c.outcome, '') <> 'adjudication'
        LEFT JOIN gold_items g ON g.image_id = a.image_id
        LEFT JOIN predictions p ON p.id = a.prediction_id
        GROUP BY a.inspector, a.day, p.label
        """,
        params,
    ).fetchall()
    # medians in Python from one narrow fetch (measured faster than a ROW_NUMBER() window in SQLite)
    secs: dict[tuple[str, str | None], list[float]] = {}
    for insp, day, value in db.execute(_ANSWERS_CTE + "SELECT inspector, day, seconds FROM a WHERE seconds IS NOT NULL",
                                       params):
        secs.setdefault((insp, day), []).append(value)
        secs.setdefault((insp, None), []).append(value)
    sums: dict[tuple[str, str | None], dict[str, float]] = {}
    by_class: dict[tuple[str, str | None], dict[str, list[int]]] = {}
    for insp, day, predicted, items, active, ov_n, ov_ok, gold_n, gold_ok, overridden in groups:
        values = (items, active, ov_n, ov_ok, gold_n, gold_ok, items if predicted is not None else 0, overridden)
        for key in ((insp, day), (insp, None)):  # the day, and the inspector's total over the period
            total = sums.setdefault(key, dict.fromkeys(_COUNTS, 0))
            for name, value in zip(_COUNTS, values, strict=True):
                total[name] += value or 0
            if predicted is not None:
                pair = by_class.setdefault(key, {}).setdefault(predicted, [0, 0])
                pair[0] += items
                pair[1] += overridden or 0
    rows = [_figures(insp, day, t, by_class.get((insp, day), {}), secs.get((insp, day)))
            for (insp, day), t in sums.items()]
    return {
        "daily": sorted((r for r in rows if r["day"] is not None), key=lambda r: (r["day"], r["inspector"])),
        "totals": sorted((r for r in rows if r["day"] is None), key=lambda r: r["inspector"]),
    }


def inspector_daily(
    db: sqlite_utils.Database,
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    inspectors: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Per inspector and UTC day (of ``answered_at``), over active single/overlap/gold answers:

    items, active_seconds (answers' ``seconds`` capped at 300 s each), items_per_hour (None without
    time), rate_note (None, or why items_per_hour rests on too little data to show), median_seconds (None without times), agreement_with_consensus (overlap answers equal to the
    settled consensus label; pending adjudications are left out), gold_accuracy, override_rate (label
    differs from the answer's prediction, among answers with one) and override_rate_by_class
    {predicted class: rate}; plus the counts behind each share. Ratios are None when nothing counts.
    Sorted by day then inspector. Raises InvalidInput for a malformed or empty period.
    """
    return _stats(db, since=since, until=until, inspectors=inspectors)["daily"]


def inspector_totals(
    db: sqlite_utils.Database,
    *,
    since: str | date | None = None,
    until: str | date | None = None,
    inspectors: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The same figures as ``inspector_daily`` over the whole period, one row per inspector (day None).

    Raises InvalidInput for a malformed or empty period.
    """
    return _stats(db, since=since, until=until, inspectors=inspectors)["totals"]


def list_inspectors(db: sqlite_utils.Database) -> list[str]:
    """Everyone who has answered at least once (including undone answers), sorted. Raises nothing."""
    return [r[0] for r in db.execute("SELECT DISTINCT inspector FROM answers WHERE inspector IS NOT NULL ORDER BY 1")]


def team_daily(
    db: sqlite_utils.Database,
    *,
    actor: str,
    since: str | date | None = None,
    until: str | date | None = None,
) -> list[dict[str, Any]]:
    """Per UTC day: photos decided, decided automatically, auto_share, human answers.

    A photo counts once, on the day of its *first* decision; it counts as automatic when that first
    decision has source 'auto' — an audited automatic decision later confirmed or overridden by a
    person still counts as automatic (the model decided it first; the audit is quality control).
    Decisions produced by an answer that was later undone are ignored. ``human_answers`` counts every
    active answer that day, of any kind (single, overlap, gold and adjudication).
    Sorted by day. Raises InvalidInput for a malformed or empty period.
    """
    require(db, actor=actor, action="stats.read")
    lo, hi = _window(since, until)
    params = {"lo": lo, "hi": hi}
    rows: dict[str, dict[str, Any]] = {}

    def row(day: str) -> dict[str, Any]:
        return rows.setdefault(day, {"day": day, "decided": 0, "decided_automatically": 0, "auto_share": None,
                                     "human_answers": 0})

    for day, decided, auto in db.execute(
        """
        WITH withdrawn AS (
            SELECT a.decision_id FROM answers a
            JOIN queue_events e ON e.answer_id = a.id AND e.action = 'undo'
            WHERE a.decision_id IS NOT NULL
        ), first AS (
            SELECT MIN(id) AS id FROM decisions
            WHERE id NOT IN (SELECT decision_id FROM withdrawn)
            GROUP BY image_id
        )
        SELECT substr(d.decided_at, 1, 10) AS day, COUNT(*), SUM(d.source = 'auto')
        FROM first f JOIN decisions d ON d.id = f.id
        WHERE (:lo IS NULL OR d.decided_at >= :lo) AND (:hi IS NULL OR d.decided_at < :hi)
        GROUP BY day
        """,
        params,
    ):
        r = row(day)
        r["decided"], r["decided_automatically"] = decided, auto or 0
        r["auto_share"] = (auto or 0) / decided if decided else None
    for day, n in db.execute(
        """
        SELECT substr(answered_at, 1, 10) AS day, COUNT(*) FROM active_answers
        WHERE (:lo IS NULL OR answered_at >= :lo) AND (:hi IS NULL OR answered_at < :hi)
        GROUP BY day
        """,
        params,
    ):
        row(day)["human_answers"] = n
    return [rows[d] for d in sorted(rows)]


def record_queue_snapshot(db: sqlite_utils.Database) -> dict[str, Any]:
    """Append a queue_snapshots row: photos queued now, in total and by queue_reason. Returns it.

    Raises sqlite3.Error if the database cannot be written.
    """
    by_reason = {
        reason: n
        for reason, n in db.execute(
            "SELECT COALESCE(queue_reason, 'unknown'), COUNT(*) FROM images WHERE status = 'queued' "
            "GROUP BY 1 ORDER BY 1"
        )
    }
    snap = {"ts": time.time(), "at": now_iso(), "queued": sum(by_reason.values()), "by_reason": by_reason}
    db.execute(
        "INSERT OR REPLACE INTO queue_snapshots (ts, at, queued, by_reason) VALUES (?, ?, ?, ?)",
        [snap["ts"], snap["at"], snap["queued"], json.dumps(by_reason)],
    )
    return snap


def last_snapshot(db: sqlite_utils.Database) -> dict[str, Any] | None:
    """The most recent queue snapshot, or None. Raises nothing."""
    row = db.execute("SELECT ts, at, queued, by_reason FROM queue_snapshots ORDER BY ts DESC LIMIT 1").fetchone()
    if row is None:
        return None
    return {"ts": row[0], "at": row[1], "queued": row[2], "by_reason": json.loads(row[3] or "{}")}


def record_queue_snapshot_if_stale(
    db: sqlite_utils.Database, *, max_age_seconds: float = SNAPSHOT_SECONDS
) -> dict[str, Any] | None:
    """Record a snapshot unless the last one is younger than ``max_age_seconds``; the new one or None.

    Raises sqlite3.Error if the database cannot be written.
    """
    last = last_snapshot(db)
    if last is not None and time.time() - last["ts"] < max_age_seconds:
        return None
    return record_queue_snapshot(db)


def queue_size_series(
    db: sqlite_utils.Database, *, since: str | date | None = None, until: str | date | None = None
) -> list[dict[str, Any]]:
    """Queue snapshots in the period, oldest first: ts, at, queued, by_reason {reason: n}.

    Raises InvalidInput for a malformed or empty period.
    """
    lo, hi = _window(since, until)
    return [
        {"ts": ts, "at": at, "queued": queued, "by_reason": json.loads(by_reason or "{}")}
        for ts, at, queued, by_reason in db.execute(
            "SELECT ts, at, queued, by_reason FROM queue_snapshots "
            "WHERE (:lo IS NULL OR at >= :lo) AND (:hi IS NULL OR at < :hi) ORDER BY ts",
            {"lo": lo, "hi": hi},
        )
    ]


def has_activity(db: sqlite_utils.Database) -> bool:
    """Whether there is anything to chart: a photo, a decision or an answer. Raises nothing."""
    return db.execute(
        "SELECT EXISTS (SELECT 1 FROM images) OR EXISTS (SELECT 1 FROM decisions) OR EXISTS (SELECT 1 FROM answers)"
    ).fetchone()[0] == 1
