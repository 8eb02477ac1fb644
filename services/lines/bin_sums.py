"""Sums over a line's finished bins (numpy, per line): trays placed before an instant (each bin's trays
spread evenly over its life), a bin's share of a window, (bins, trays) per integer key and per shift
instance, and the bins filling now from the counter's persisted state (for ``stats``: the dashboard and alerts).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlite_utils

from services.core.errors import ConsoleError
from services.core.shifts import DAY_S, Shift
from services.lines.counter import LineState, open_bin

PARTIAL_CANDIDATES = 4  # bins of one line follow each other: at most a few can straddle an instant


_BIN_COLUMNS = "start_ts, end_ts, trays, estimated, COALESCE(trays_low, trays), COALESCE(trays_high, trays)"


def bin_arrays(db: sqlite_utils.Database, line: str, lo: float, hi: float) -> np.ndarray:
    """The line's bins that end in [lo, hi) or straddle ``hi``, as rows (start, end, trays, estimated, low,
    high) sorted by end: two range reads on the (line_id, end_ts) index."""
    rows = db.execute(f"SELECT {_BIN_COLUMNS} FROM line_bins WHERE line_id = ? AND end_ts >= ? AND end_ts < ? "
                      "ORDER BY end_ts", [line, lo, hi]).fetchall()
    rows += db.execute(f"SELECT {_BIN_COLUMNS} FROM line_bins WHERE line_id = ? AND end_ts >= ? "
                       "AND start_ts < ? ORDER BY end_ts", [line, hi, hi]).fetchall()
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


def placed_until(bins: np.ndarray, at: np.ndarray) -> np.ndarray:
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


def spread(trays: float, start: float, end: float, t0: float, t1: float) -> float:
    """The share of a bin's trays placed in [t0, t1), at an even pace over [start, end]."""
    if end <= start:
        return float(trays) if t0 <= end < t1 else 0.0
    return trays * max(0.0, min(end, t1) - max(start, t0)) / (end - start)


EMPTY = (0, 0, 0, 0, 0)


def group_sums(keys: np.ndarray, rows: np.ndarray) -> dict[Any, tuple[int, int, int, int, int]]:
    """{key: (bins, trays, estimated bins, trays at the low end, at the high end)} for integer keys; ``rows``
    are ``bin_arrays`` rows, one per key."""
    if not len(keys):
        return {}
    uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    sums = [np.bincount(inverse, weights=rows[:, c], minlength=len(uniq)) for c in (2, 3, 4, 5)]
    return {int(k): (int(c), *(int(round(x[i])) for x in sums)) for i, (k, c) in enumerate(zip(uniq, counts))}


def shift_keys(ends: np.ndarray, shifts: list[Shift]) -> tuple[np.ndarray, np.ndarray]:
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


def open_bins(db: sqlite_utils.Database, line_ids: Sequence[str]) -> dict[str, tuple[float, float, int]]:
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
