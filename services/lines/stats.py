"""Read models for the line throughput dashboard and its CSV export.

Sources: ``line_bins`` (every completed bin: start, end, trays), ``line_minutes`` (per-minute roll-ups of
the detector frames, used to tell "no data" from "no production"), ``line_state`` (the counter's persisted
state: the bin filling now), ``lines`` (last frame time) and ``line_targets``. Each line's bins are read
once, on the ``(line_id, end_ts)`` index, and summed per bucket, shift and day in numpy: 30 days of 10
lines (432,000 minute roll-ups, 346,000 bins) take about 0.35 s.

Times are epoch seconds, UTC. A range ``[since_ts, until_ts)`` takes the bins that *ended* in it.

Two tray figures:

* **trays** (binned): the trays of the bins completed in a period, exact and auditable (a bin counts in
  the period, shift and day of its end).
* **trays placed** (an estimate): every bin's trays spread evenly over the bin's life (its start to its
  end; the open bin's from its start to the last frame counted), summed over the period. Over any split
  of time it adds up to the binned trays plus those in the open bin, but it puts a bin's trays in the
  minutes they were placed in, so a rate over 5 or 20 minutes is meaningful even when a bin takes 10
  minutes to fill, and a bin straddling a shift change is shared by both shifts. Rates (trays per hour,
  alerts) and over/under production against target use it. A line whose feed stops places nothing
  after its last frame.

Shifts are in ``services.core.shifts``, targets in ``services.lines.targets``, alerts in ``services.lines.alerts``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlite_utils

from services.core.authz import require
from services.core.config import get_settings
from services.core.errors import ConsoleError, InvalidInput
from services.core.shifts import DAY_S, Shift, parse_shifts, shift_instances, shift_of
from services.lines.counter import LineState, open_bin
from services.lines.targets import list_lines, targets

BUCKET_MINUTES = (5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)  # the automatic bucket sizes
TARGET_POINTS = 240  # the automatic bucket gives at most about this many points per line
TYPICAL_BINS = 20  # the typical bin size is the mean of this many latest bins


# ------------------------------------------------------------------------------------------ dashboard


def choose_bucket_minutes(span_s: float) -> int:
    """The smallest bucket (5 minutes to a day) giving at most ``TARGET_POINTS`` points over ``span_s``."""
    for minutes in BUCKET_MINUTES:
        if span_s / (minutes * 60) <= TARGET_POINTS:
            return minutes
    return BUCKET_MINUTES[-1]


PARTIAL_CANDIDATES = 4  # bins of one line follow each other: at most a few can straddle an instant


def _bin_arrays(db: sqlite_utils.Database, line: str, lo: float, hi: float) -> np.ndarray:
    """The line's bins that end in [lo, hi) or straddle ``hi``, as rows (start, end, trays) sorted by end:
    two range reads on the (line_id, end_ts) index."""
    rows = db.execute("SELECT start_ts, end_ts, trays FROM line_bins WHERE line_id = ? AND end_ts >= ? AND end_ts < ? "
                      "ORDER BY end_ts", [line, lo, hi]).fetchall()
    rows += db.execute("SELECT start_ts, end_ts, trays FROM line_bins WHERE line_id = ? AND end_ts >= ? "
                       "AND start_ts < ? ORDER BY end_ts", [line, hi, hi]).fetchall()
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3)


def _placed_until(bins: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Trays placed before each instant of ``at``: every bin's trays spread evenly over start..end (a bin
    without duration counts once it has ended). Vectorised: full bins by a prefix sum over ends, the few
    bins straddling an instant by their share."""
    start, end, trays = bins[:, 0], bins[:, 1], bins[:, 2]
    timed = end > start
    out = np.zeros(len(at))
    instant = np.sort(end[~timed])
    if len(instant):
        csum = np.concatenate([[0.0], np.cumsum(trays[~timed][np.argsort(end[~timed])])])
        out += csum[np.searchsorted(instant, at, side="left")]
    s, e, n = start[timed], end[timed], trays[timed]
    if len(e):
        order = np.argsort(e, kind="stable")
        s, e, n = s[order], e[order], n[order]
        csum = np.concatenate([[0.0], np.cumsum(n)])
        idx = np.searchsorted(e, at, side="right")  # bins ended by the instant count whole
        out += csum[idx]
        for j in range(PARTIAL_CANDIDATES):  # the next bins to end may have started before the instant
            cand = np.minimum(idx + j, len(e) - 1)
            straddles = (idx + j < len(e)) & (s[cand] < at) & (e[cand] > at)
            out += np.where(straddles, n[cand] * (at - s[cand]) / np.maximum(e[cand] - s[cand], 1e-9), 0.0)
    return out


def _spread(trays: float, start: float, end: float, t0: float, t1: float) -> float:
    """The share of a bin's trays placed in [t0, t1), at an even pace over [start, end]."""
    if end <= start:
        return float(trays) if t0 <= end < t1 else 0.0
    return trays * max(0.0, min(end, t1) - max(start, t0)) / (end - start)


def _groups(keys: np.ndarray, trays: np.ndarray) -> dict[Any, tuple[int, int]]:
    """{key: (bins, trays)} for integer keys."""
    if not len(keys):
        return {}
    uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=trays)
    return {int(k): (int(c), int(round(t))) for k, c, t in zip(uniq, counts, sums)}


def _shift_keys(ends: np.ndarray, shifts: list[Shift]) -> tuple[np.ndarray, np.ndarray]:
    """(shift index or -1, shift instance start) per bin end, as ``shift_of`` would say, vectorised."""
    t = np.floor(ends).astype(np.int64)
    sec = t % DAY_S
    idx = np.full(len(t), -1, dtype=np.int64)
    start = np.zeros(len(t), dtype=np.int64)
    for shift in shifts:  # the first listed shift covering the instant wins
        covers = (idx < 0) & (((sec - shift.start_s + DAY_S) % DAY_S) < shift.length_s)
        idx[covers] = shift.index
        start[covers] = (t - sec + shift.start_s - (sec < shift.start_s) * DAY_S)[covers]
    return idx, start


def _open_bins(db: sqlite_utils.Database, line_ids: Sequence[str]) -> dict[str, tuple[float, float, int]]:
    """{line id: (start ts, last frame counted, trays so far)} of the bins filling now (from ``line_state``)."""
    out = {}
    for line, state, counted_to in db.execute(
        "SELECT line_id, state, counted_to_ts FROM line_state WHERE line_id IN (SELECT value FROM json_each(?))",
        [json.dumps(list(line_ids))],
    ):
        current = _open_bin(state)
        if current is not None:
            start, trays = current
            out[line] = (start, max(float(counted_to or start), start), trays)
    return out


def _open_bin(state_json: str | None) -> tuple[float, int] | None:
    """(start ts, trays so far) of the bin filling now, from the counter's persisted state, or None."""
    if not state_json:
        return None
    try:
        current = open_bin(LineState.from_json(state_json))
    except (ConsoleError, ValueError, TypeError, KeyError, AttributeError):  # unreadable: no open bin shown
        return None
    if current is None:
        return None
    start, trays = current
    return float(start), int(trays)


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _pct(actual: float, expected: float | None) -> float | None:
    return None if not expected else (actual - expected) / expected * 100.0


def dashboard_data(
    db: sqlite_utils.Database,
    *,
    actor: str,
    since_ts: float,
    until_ts: float,
    now_ts: float | None = None,
    bucket_minutes: int | None = None,
    line_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Everything the line dashboard shows for ``[since_ts, until_ts)``, per line (``line_ids``, default all):

    ``{"since_ts", "until_ts", "now_ts", "bucket_minutes", "settings": {alert_pct, alert_minutes,
    silent_seconds}, "silent": [line ids], "lines": [per line]}``; per line:

    * ``line_id, name, last_frame_ts, silent`` (no frame for ``line_silent_seconds`` before now, or never),
      ``silent_for_s``;
    * ``series``: per bucket (whole multiples of the bucket from the epoch, so the first one may start before
      ``since_ts``; the last one is cut at now) ``start_ts, end_ts, bins, trays_binned, trays_placed,
      minutes_observed, trays_per_hour`` (placed trays per hour; None for a bucket without any minute
      roll-up: no data, not zero production);
    * ``targets``: the target segments in range ``shift, start_ts, end_ts, trays_per_hour`` (clipped);
    * ``bins``, ``trays``: completed in range; ``typical_bin_trays``: mean of the latest 20 bins (any time);
      ``open_bin``: ``{start_ts, trays}`` of the bin filling now (from ``line_state``) or None;
    * ``shifts``: per shift instance overlapping the range up to now ``shift, start_ts, end_ts, bins, trays,
      trays_placed, target_per_hour, expected, vs_target_pct, current`` (expected = target × the hours of
      the shift inside the range and before now; vs_target_pct = (placed − expected) / expected × 100);
      bins outside every shift form a row with shift None;
    * ``days``: per UTC day ``day, start_ts, bins, trays, trays_placed``;
    * ``expected, trays_placed_targeted, vs_target_pct``: over the shifts that have a target;
    * ``now``: the rate over the trailing ``line_alert_minutes`` against the target of the current shift:
      ``shift, target_per_hour, rate_per_hour, vs_target_pct, window_minutes`` (shift None outside shifts).

    Raises InvalidInput for an empty range or a bucket under one minute.
    """
    require(db, actor=actor, action="lines.read")
    now = time.time() if now_ts is None else float(now_ts)
    since, until = float(since_ts), float(until_ts)
    if until <= since:
        raise InvalidInput("The time range is empty: its end is not after its start.")
    if bucket_minutes is not None and (isinstance(bucket_minutes, bool) or int(bucket_minutes) < 1):
        raise InvalidInput(f"A bucket must be at least one minute, got {bucket_minutes!r}.")
    settings = get_settings(db)
    shifts = parse_shifts(settings["shifts"])
    silent_s = float(settings["line_silent_seconds"])
    window_min = int(settings["line_alert_minutes"])
    end = min(until, now)  # nothing is measured after now
    bm = int(bucket_minutes) if bucket_minutes is not None else choose_bucket_minutes(until - since)
    bs = bm * 60

    lines = list_lines(db)
    if line_ids is not None:
        wanted = set(line_ids)
        lines = [ln for ln in lines if ln["line_id"] in wanted]
    ids = [ln["line_id"] for ln in lines]
    ids_json = json.dumps(ids)
    tg = targets(db)

    # the windows over which trays placed are summed: buckets, shifts and days in range, the trailing window
    buckets: list[tuple[int, float, float]] = []  # (k, start, end): whole buckets, the last one cut at now
    first = math.floor(since / bs) * bs
    if end > since:
        for k in range(math.floor(since / bs), math.ceil(end / bs)):
            b0, b1 = k * bs, min((k + 1) * bs, end)
            if b1 > b0:
                buckets.append((k, float(b0), float(b1)))
    instances = [inst for inst in shift_instances(since, until, shifts) if inst["start_ts"] < end]
    day_starts = [d * DAY_S for d in range(math.floor(since / DAY_S), math.ceil(end / DAY_S))] if end > since else []
    windows: dict[tuple[float, float], int] = {}

    def window(t0: float, t1: float) -> tuple[float, float]:
        windows.setdefault((float(t0), float(t1)), len(windows))
        return float(t0), float(t1)

    for _, b0, b1 in buckets:
        window(b0, b1)
    shift_window = {(inst["index"], inst["start_ts"]): window(max(inst["start_ts"], since), min(inst["end_ts"], end))
                    for inst in instances}
    day_window = {d: window(max(d, since), min(d + DAY_S, end)) for d in day_starts}
    trailing_window = window(now - window_min * 60, now)
    open_bins = _open_bins(db, ids)
    spans = list(windows)
    lo = min([t0 for t0, _ in spans] + [first])
    hi = max([t1 for _, t1 in spans] + [until])
    t0s = np.array([t0 for t0, _ in spans])
    t1s = np.array([t1 for _, t1 in spans])
    placed_in: dict[tuple[str, int], float] = {}
    by_bucket: dict[tuple[str, int], tuple[int, int]] = {}
    by_shift: dict[tuple[str, int | None, float | None], tuple[int, int]] = {}
    totals: dict[str, tuple[int, int]] = {}
    by_day: dict[tuple[str, int], tuple[int, int]] = {}
    for line in ids:  # one read of the line's bins; every sum below in numpy
        arr = _bin_arrays(db, line, lo, hi)
        placed = _placed_until(arr, t1s) - _placed_until(arr, t0s) if len(arr) else np.zeros(len(spans))
        for i, value in enumerate(placed):
            if value:
                placed_in[(line, i)] = float(value)
        ends, trays = arr[:, 1], arr[:, 2]
        in_buckets = (ends >= first) & (ends < until)
        for k, v in _groups(np.floor(ends[in_buckets] / bs).astype(np.int64), trays[in_buckets]).items():
            by_bucket[(line, k)] = v
        in_range = (ends >= since) & (ends < until)
        for d, v in _groups(np.floor(ends[in_range] / DAY_S).astype(np.int64), trays[in_range]).items():
            by_day[(line, d)] = v
        sidx, sstart = _shift_keys(ends[in_range], shifts)
        key = np.where(sidx >= 0, sstart * 64 + sidx, -1)  # shift index < 64: one integer per (instance, shift)
        for code, (n, t) in _groups(key, trays[in_range]).items():
            shift_key = (line, None, None) if code < 0 else (line, code % 64, float(code // 64))
            by_shift[shift_key] = (n, t)
            had = totals.get(line, (0, 0))
            totals[line] = (had[0] + n, had[1] + t)
    for line, (start, last, trays_now) in open_bins.items():
        for i, (t0, t1) in enumerate(spans):
            share = _spread(trays_now, start, last, t0, t1)
            if share:
                placed_in[(line, i)] = placed_in.get((line, i), 0.0) + share

    def placed_of(line: str, span: tuple[float, float]) -> float:
        return placed_in.get((line, windows[span]), 0.0)

    observed: dict[tuple[str, int], int] = {}  # minute roll-ups per bucket: a count per indexed range
    for line, k, n in db.execute(
        "SELECT l.value, k.value, (SELECT COUNT(*) FROM line_minutes m WHERE m.line_id = l.value "
        "AND m.minute >= k.value * :bm AND m.minute < (k.value + 1) * :bm) FROM json_each(:ids) l, json_each(:ks) k",
        {"ids": ids_json, "bm": bm, "ks": json.dumps([k for k, _, _ in buckets])},
    ):
        observed[(line, int(k))] = n
    typical = {line: avg for line, avg in db.execute(
        "SELECT l.value, (SELECT AVG(trays) FROM (SELECT trays FROM line_bins b WHERE b.line_id = l.value "
        f"ORDER BY b.end_ts DESC LIMIT {TYPICAL_BINS})) FROM json_each(?) l", [ids_json])}
    current = shift_of(now, shifts)

    out_lines = []
    for ln in lines:
        line = ln["line_id"]
        last = ln["last_frame_ts"]
        silent_for = None if last is None else max(0.0, now - float(last))
        series = []
        for k, b0, b1 in buckets:
            n, trays = by_bucket.get((line, k), (0, 0))
            placed = placed_of(line, (b0, b1))
            seen = observed.get((line, k), 0)
            series.append({
                "start_ts": b0, "end_ts": b1, "bins": n, "trays_binned": trays, "trays_placed": round(placed, 2),
                "minutes_observed": seen,
                "trays_per_hour": round(max(placed, 0.0) * 3600 / (b1 - b0), 2) if seen else None,
            })
        segments, shift_rows = [], []
        for inst in instances:
            target = tg.get((line, inst["shift"]))
            s0, s1 = max(inst["start_ts"], since), min(inst["end_ts"], until)
            if target is not None:
                segments.append({"shift": inst["shift"], "start_ts": s0, "end_ts": s1, "trays_per_hour": target})
            m1 = min(inst["end_ts"], end)
            n, trays = by_shift.pop((line, inst["index"], inst["start_ts"]), (0, 0))
            placed = placed_of(line, shift_window[(inst["index"], inst["start_ts"])])
            expected = None if target is None else target * max(m1 - s0, 0.0) / 3600
            shift_rows.append({
                "shift": inst["shift"], "start_ts": inst["start_ts"], "end_ts": inst["end_ts"], "bins": n,
                "trays": trays, "trays_placed": round(placed, 2), "target_per_hour": target,
                "expected": None if expected is None else round(expected, 2),
                "vs_target_pct": _pct(placed, expected),
                "current": current is not None and (current[0], current[1]) == (inst["shift"], inst["start_ts"]),
            })
        outside = [(n, t) for (lid, idx, _), (n, t) in by_shift.items() if lid == line and idx is None]
        if outside:
            shift_rows.append({"shift": None, "start_ts": None, "end_ts": None, "bins": sum(n for n, _ in outside),
                               "trays": sum(t for _, t in outside), "trays_placed": None, "target_per_hour": None,
                               "expected": None, "vs_target_pct": None, "current": False})
        days = []
        for d in day_starts:
            n, trays = by_day.get((line, d // DAY_S), (0, 0))
            days.append({"day": _day(d), "start_ts": float(d), "bins": n, "trays": trays,
                         "trays_placed": round(placed_of(line, day_window[d]), 2)})
        targeted = [r for r in shift_rows if r["expected"]]
        expected_total = sum(r["expected"] for r in targeted) if targeted else None
        placed_targeted = sum(r["trays_placed"] for r in targeted) if targeted else None
        rate_now = placed_of(line, trailing_window) * 60 / window_min
        target_now = tg.get((line, current[0])) if current else None
        opened = open_bins.get(line)
        out_lines.append({
            **ln,
            "silent": silent_for is None or silent_for > silent_s,
            "silent_for_s": silent_for,
            "series": series,
            "targets": segments,
            "bins": totals.get(line, (0, 0))[0],
            "trays": totals.get(line, (0, 0))[1],
            "typical_bin_trays": typical.get(line),
            "open_bin": None if opened is None else {"start_ts": opened[0], "trays": opened[2]},
            "shifts": shift_rows,
            "days": days,
            "expected": expected_total,
            "trays_placed_targeted": placed_targeted,
            "vs_target_pct": _pct(placed_targeted or 0.0, expected_total),
            "now": {"shift": current[0] if current else None, "target_per_hour": target_now,
                    "rate_per_hour": round(rate_now, 2), "vs_target_pct": _pct(rate_now, target_now),
                    "window_minutes": window_min},
        })
    return {
        "since_ts": since, "until_ts": until, "now_ts": now, "bucket_minutes": bm,
        "settings": {"alert_pct": float(settings["line_alert_pct"]), "alert_minutes": window_min,
                     "silent_seconds": silent_s},
        "silent": [ln["line_id"] for ln in out_lines if ln["silent"]],
        "lines": out_lines,
    }


def trailing_rate(db: sqlite_utils.Database, line_id: str, t0: float, t1: float) -> float:
    """Trays placed per hour over ``[t0, t1)`` (see ``_placed_until``), the open bin included."""
    arr = _bin_arrays(db, line_id, t0, t1)
    placed = float((_placed_until(arr, np.array([t1])) - _placed_until(arr, np.array([t0])))[0]) if len(arr) else 0.0
    opened = _open_bins(db, [line_id]).get(line_id)
    if opened is not None:
        placed += _spread(opened[2], opened[0], opened[1], t0, t1)
    return placed * 3600 / (t1 - t0)


# --------------------------------------------------------------------------------------------- export

CSV_COLUMNS = ("period", "line_id", "line_name", "shift", "start_utc", "end_utc", "bins", "trays", "trays_placed",
               "trays_per_hour", "target_per_hour", "expected", "vs_target_pct")


def _iso(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _csv_rows(data: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for ln in data["lines"]:
        base = {"line_id": ln["line_id"], "line_name": ln["name"]}
        for r in ln["series"]:
            yield {**base, "period": "bucket", "start_utc": _iso(r["start_ts"]), "end_utc": _iso(r["end_ts"]),
                   "bins": r["bins"], "trays": r["trays_binned"], "trays_placed": r["trays_placed"],
                   "trays_per_hour": r["trays_per_hour"]}
        for r in ln["shifts"]:
            pct = r["vs_target_pct"]
            yield {**base, "period": "shift", "shift": r["shift"] or "", "start_utc": _iso(r["start_ts"]),
                   "end_utc": _iso(r["end_ts"]), "bins": r["bins"], "trays": r["trays"],
                   "trays_placed": r["trays_placed"], "target_per_hour": r["target_per_hour"],
                   "expected": r["expected"], "vs_target_pct": None if pct is None else round(pct, 2)}
        for r in ln["days"]:
            yield {**base, "period": "day", "start_utc": r["day"], "end_utc": _iso(r["start_ts"] + DAY_S),
                   "bins": r["bins"], "trays": r["trays"], "trays_placed": r["trays_placed"]}


def csv_from_dashboard(data: dict[str, Any]) -> str:
    """CSV text of ``dashboard_data`` output: per line, one row per bucket, shift and UTC day (``period``);
    empty cells where a figure does not apply. Raises nothing."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in _csv_rows(data):
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in CSV_COLUMNS})
    return buf.getvalue()


def export_csv(db: sqlite_utils.Database, *, actor: str, since_ts: float, until_ts: float,
               line_ids: Sequence[str] | None = None, now_ts: float | None = None) -> str:
    """Per line, per bucket, shift and UTC day totals over ``[since_ts, until_ts)`` as CSV (see
    ``csv_from_dashboard``). Raises InvalidInput for an empty range."""
    return csv_from_dashboard(dashboard_data(db, actor=actor, since_ts=since_ts, until_ts=until_ts, now_ts=now_ts,
                                             line_ids=line_ids))
