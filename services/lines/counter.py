"""Counting trays on a packaging line from per-frame detector counts (pure numpy and numba: no database, no UI).

The published method: a *local counter* (the most trays seen in the bin being filled) and a *global counter*
(all trays in finished bins). A worker fills one bin at a time and then slides the next, empty bin over the
full one: the visible count climbs while a bin fills, then shrinks (in a fraction of a second or step by step
over several seconds), and the view may stay empty while the worker fetches trays, or never reach zero when
part of the old bin stays visible or the new bin gets its first trays quickly.

This counter:

* **Smooths** counts with a trailing median over ``window`` frames, so a detector that flickers for a frame or
  two (or misses or adds a tray) changes nothing.
* **Never counts a shrinking tail as a new bin.** A new bin counts only what is seen after the view has
  settled at its low point, and it exists only once it climbs ``min_bin_trays`` above that low point (see
  :mod:`services.lines.bin_machine` for the rules). Rules are stated in seconds, not frames, so the same
  settings hold from 5 to 30 frames a second.
* **Says when it is unsure.** A bin whose change an outage hid is *estimated* (``Bin.estimated``), with a
  range (``low`` .. ``high``) from the line's usual bin and pace; the state sums the ranges
  (``total_low``, ``total_high``).

The counter is incremental: :func:`count_frames` takes the :class:`LineState` of the previous call (JSON round
trip via :meth:`LineState.to_json` / :meth:`LineState.from_json`) and gives exactly the same bins and state
whether a stream is fed whole or in any chunking (the median's look-back and the last seconds of smoothed
counts travel in the state).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from services.core.errors import InvalidInput
from services.lines import bin_machine as machine

STATE_VERSION = 2


@dataclass(frozen=True)
class CounterParams:
    """Tuning of the counter. Every duration is in seconds, so the same settings hold at any frame rate.

    window: median smoothing over this many frames (odd, >= 1): flicker shorter than ``window // 2 + 1``
        frames is removed before anything else looks at the counts.
    fall_s: a fall below the drop threshold must last this long to start a bin change.
    drop_margin: a fall is at least this many trays below the bin's local counter ...
    drop_ratio: ... and at least this share of it (a full bin of 25 must fall to 15 or fewer): missed
        detections on a full bin make the count wobble a tray or two below its max for long stretches.
    resume_s: if the count comes back to the old bin's level within this long of a fall, the fall was an
        occlusion (an arm, camera jitter), not a change; a new bin is armed only after it.
    resume_ratio: "the old bin's level" is within this share of it (and ``drop_margin``).
    final_s: the most trays seen (smoothed) in this long before a fall are the full bin's top ...
    plateau_s: ... and its count is the mean raw count over this long before the slide left the top,
        corrected for the detector's miss rate (measured on the line as it runs). A tray taken out of a
        full bin is not counted.
    min_bin_trays: a new bin exists once the count climbs this many trays above the change's low point.
    zero_level: counts at or below this are "zero" (a change whose low point is here has reason "zero").
    max_gap_s: a gap between frames longer than this is an outage, tallied for display (``gaps``, ``gap_ms``).
    blind_s: a gap longer than this may hide a change: bins it touches may be estimated.
    prior_rate: trays a second assumed before the line has finished a bin (to size what a gap may hide).
    """

    window: int = 5
    fall_s: float = 0.6
    drop_margin: int = 2
    drop_ratio: float = 0.4
    resume_s: float = 2.5
    resume_ratio: float = 0.15
    final_s: float = 6.0
    min_bin_trays: int = 5
    zero_level: int = 0
    max_gap_s: float = 30.0
    blind_s: float = 2.0
    prior_rate: float = 0.5
    plateau_s: float = 1.2

    def check(self) -> None:
        """Raise InvalidInput if a parameter is out of range."""
        if self.window < 1 or self.window % 2 == 0:
            raise InvalidInput(f"Counter window must be an odd number of frames >= 1, not {self.window}.")
        for name in ("drop_margin", "min_bin_trays"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"Counter parameter {name} must be at least 1, not {getattr(self, name)}.")
        for name in ("fall_s", "resume_s", "final_s", "plateau_s", "max_gap_s", "blind_s", "prior_rate"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InvalidInput(f"Counter parameter {name} must be a positive number of seconds, not {value!r}.")
        if self.zero_level < 0:
            raise InvalidInput(f"Counter zero_level must be >= 0, not {self.zero_level}.")
        for name in ("drop_ratio", "resume_ratio"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InvalidInput(f"Counter {name} must be in [0, 1), not {getattr(self, name)}.")
        if self.min_bin_trays <= self.zero_level:
            raise InvalidInput("Counter min_bin_trays must be above zero_level.")

    def as_array(self) -> np.ndarray:
        """The machine's parameter vector (see ``bin_machine.P_*``)."""
        return np.array([self.fall_s, self.drop_margin, self.drop_ratio, self.resume_s, self.resume_ratio,
                         self.final_s, self.min_bin_trays, self.zero_level, self.max_gap_s, self.blind_s,
                         self.prior_rate, self.plateau_s, self.window // 2], dtype=np.float64)


@dataclass(frozen=True)
class Bin:
    """A finished bin: it started at ``start_ts`` (the previous bin's change, or the first frame seen) and was
    hidden by the next one at ``end_ts`` (when the count began to fall); ``trays`` is its count. ``estimated``:
    an outage hid its change or could have; its true count lies in ``low`` .. ``high``."""

    start_ts: float
    end_ts: float
    trays: int
    reason: str  # "zero" | "drop": whether the view was empty by the time the bin was finished
    estimated: bool = False
    low: int | None = None
    high: int | None = None

    def __post_init__(self) -> None:
        if self.low is None:
            object.__setattr__(self, "low", self.trays)
        if self.high is None:
            object.__setattr__(self, "high", self.trays)


# LineState fields in the machine's float and integer vectors, in order
_F_FIELDS = ("last_ts", "bin_start_ts", "run_start_ts", "fall_ts", "typical_trays", "pace", "bin_gap_s", "gap_ms",
             "empty_sum", "empty_frames")
_I_FIELDS = ("phase", "bin_max", "floor", "run_min", "run_since", "pending", "low", "since_low", "hidden",
             "gap_before", "gap_extra", "bin_outage", "total", "bins", "gaps", "estimated_bins", "total_low",
             "total_high", "v_after", "after_gap", "done")
_OPTIONAL = {"last_ts", "bin_start_ts", "run_start_ts", "fall_ts"}


@dataclass
class LineState:
    """Everything the counter needs to continue a line's stream (JSON round trip: to_json / from_json)."""

    version: int = STATE_VERSION
    frames: int = 0  # frames counted so far
    last_ts: float | None = None  # newest frame counted
    tail: list[int] = field(default_factory=list)  # last window-1 raw counts (the median's look-back)
    hist_ts: list[float] = field(default_factory=list)  # the last seconds of frames (for a bin's final count)
    hist_v: list[int] = field(default_factory=list)  # their smoothed counts
    hist_raw: list[int] = field(default_factory=list)  # and raw counts
    phase: int = 0  # 0: a bin is filling; 1: a change is under way (settling at its low point)
    bin_start_ts: float | None = None  # the bin filling now started here
    bin_max: int = 0  # local counter: most trays (smoothed) seen in the bin filling now
    floor: int = 0  # the low point the bin filling now started from
    run_start_ts: float | None = None  # a fall in progress began here
    run_min: int = 0
    run_since: int = 0
    fall_ts: float | None = None  # the change under way began here
    pending: int = 0  # the trays of the bin being hidden (finished once the next one fills)
    low: int = 0  # the change's low point so far
    since_low: int = 0  # most trays seen since the low point (the new bin so far)
    hidden: int = 0  # the fall began right after an outage
    gap_before: int = 0  # trays seen before the bin's first outage
    gap_extra: int = 0  # trays the line's pace could have added during the bin's outages
    bin_outage: int = 0  # an outage fell in the bin filling now
    v_after: int = 0  # the count right after the outage that hid a change
    after_gap: int = 1_000_000  # frames since the last outage (capped)
    done: int = 0  # during a change: the hidden bin is finished (the next one is not filling yet)
    typical_trays: float = 0.0  # the line's usual bin (moving average of bins seen whole)
    pace: float = 0.0  # its trays a second, idle time included
    bin_gap_s: float = 0.0  # outage seconds in the bin filling now
    empty_sum: float = 0.0  # raw counts while the view is empty: false detections ...
    empty_frames: float = 0.0  # ... over this many frames
    level_noise: list[list[float]] = field(default_factory=list)  # per smoothed count: half the squared frame-to-
    # frame changes on steady levels, their counts and pairs (bin_machine.L_*): the ratio is the miss rate
    total: int = 0  # global counter: trays in finished bins
    total_low: int = 0  # ... at the low end of the estimated bins' ranges
    total_high: int = 0  # ... at the high end
    bins: int = 0  # finished bins
    estimated_bins: int = 0  # of which estimated
    gaps: int = 0  # outages seen (gaps between frames longer than max_gap_s)
    gap_ms: int = 0  # their total length, milliseconds

    def to_json(self) -> str:
        """The state as a JSON object string."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes | dict[str, Any]) -> LineState:
        """A state from :meth:`to_json` output (or its parsed dict); a version-1 state (the counter before
        bins settled at their low point) is carried over. Raises InvalidInput if it is not one."""
        try:
            data = json.loads(text) if isinstance(text, str | bytes) else dict(text)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"Line counter state is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidInput("Line counter state must be a JSON object.")
        if data.get("version") == 1:
            data = _from_version_1(data)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidInput(f"Line counter state has unknown fields: {', '.join(sorted(unknown))}.")
        if data.get("version", STATE_VERSION) != STATE_VERSION:
            raise InvalidInput(f"Line counter state version {data.get('version')} is not {STATE_VERSION}.")
        try:
            state = cls(**data)
            state.tail = [int(x) for x in state.tail]
            state.hist_v = [int(x) for x in state.hist_v]
            state.hist_raw = [int(x) for x in state.hist_raw]
            state.level_noise = [[float(x) for x in row] for row in state.level_noise]
            if state.level_noise and np.shape(state.level_noise) != (3, machine.LEVELS):
                raise ValueError(f"level_noise must be 3 x {machine.LEVELS} numbers")
            state.hist_ts = [float(x) for x in state.hist_ts]
            state.frames = int(state.frames)
            for name in _I_FIELDS:
                setattr(state, name, int(getattr(state, name)))
            for name in _F_FIELDS:
                value = getattr(state, name)
                if name == "gap_ms":
                    state.gap_ms = int(value)
                else:
                    setattr(state, name, None if value is None and name in _OPTIONAL else float(value))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"Line counter state has a malformed field: {exc}") from exc
        return state

    def copy(self) -> LineState:
        """An independent copy."""
        return LineState(**{**asdict(self), "tail": list(self.tail), "hist_ts": list(self.hist_ts),
                            "hist_v": list(self.hist_v), "hist_raw": list(self.hist_raw),
                            "level_noise": [list(row) for row in self.level_noise]})

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """The machine's float and integer state."""
        f = np.array([np.nan if getattr(self, k) is None else float(getattr(self, k)) for k in _F_FIELDS])
        return f, np.array([getattr(self, k) for k in _I_FIELDS], dtype=np.int64)

    def set_vectors(self, f: np.ndarray, i: np.ndarray) -> None:
        """Take the machine's state back."""
        for k, value in zip(_F_FIELDS, f.tolist()):
            if k == "gap_ms":
                self.gap_ms = int(value)
            else:
                setattr(self, k, None if k in _OPTIONAL and math.isnan(value) else float(value))
        for k, value in zip(_I_FIELDS, i.tolist()):
            setattr(self, k, int(value))


def _from_version_1(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 state as version 2: the bin filling, its local counter and floor, and the totals."""
    keep = {k: data[k] for k in ("frames", "last_ts", "tail", "bin_start_ts", "bin_max", "floor", "total", "bins",
                                 "gaps", "gap_ms") if k in data}
    total = int(keep.get("total", 0))
    return {**keep, "version": STATE_VERSION, "total_low": total, "total_high": total}


def open_bin(state: LineState | None) -> tuple[float, int] | None:
    """(start_ts, trays so far) of the bin filling now, or None before the first frame. During a change:
    the bin being hidden until it is finished, then the next one, empty until it fills."""
    if state is None or state.bin_start_ts is None:
        return None
    if state.phase == machine.SETTLING:
        return (state.fall_ts or state.bin_start_ts, 0) if state.done else (state.bin_start_ts, state.pending)
    return state.bin_start_ts, state.bin_max


def total_trays(state: LineState | None) -> int:
    """Trays in finished bins plus the bin filling now (what the line has packed so far)."""
    current = open_bin(state)
    return 0 if state is None else state.total + (current[1] if current else 0)


def naive_count(counts: np.ndarray | list[int]) -> int:
    """The published baseline on raw counts: a new bin exactly when the count hits zero; the total is the
    sum over bins of the most trays seen (the bin still filling at the end included)."""
    c = np.asarray(counts, dtype=np.int64)
    if c.size == 0:
        return 0
    zero = c == 0
    starts = np.flatnonzero(np.concatenate(([True], zero[1:] & ~zero[:-1])))  # the first frame, then each new zero
    return int(np.maximum.reduceat(c, starts).sum())


def _median(ext: np.ndarray, window: int) -> np.ndarray:
    """Trailing median of ``ext`` over ``window`` frames: len(ext) - window + 1 values."""
    if window == 1:
        return ext.copy()
    n = len(ext) - window + 1
    if window == 3:
        a, b, c = ext[:n], ext[1 : n + 1], ext[2 : n + 2]
        return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
    if window == 5:  # median of 5 = median of (e, max of the pair minima, min of the pair maxima)
        a, b, c, d, e = (ext[i : i + n] for i in range(5))
        j = np.maximum(np.minimum(a, b), np.minimum(c, d))
        k = np.minimum(np.maximum(a, b), np.maximum(c, d))
        return np.maximum(np.minimum(j, k), np.minimum(np.maximum(j, k), e))
    return np.sort(sliding_window_view(ext, window), axis=1)[:, window // 2]


def _validate(ts: Any, counts: Any, state: LineState) -> tuple[np.ndarray, np.ndarray]:
    try:
        t = np.asarray(ts, dtype=np.float64).reshape(-1)
        c_in = np.asarray(counts)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"Frame timestamps must be numbers: {exc}") from exc
    c_in = c_in.reshape(-1)
    if t.shape != c_in.shape:
        raise InvalidInput(f"{len(t)} timestamps but {len(c_in)} counts: every frame needs both.")
    if c_in.dtype.kind not in "iub":
        try:
            as_float = c_in.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"Frame counts must be whole numbers: {exc}") from exc
        bad = ~np.isfinite(as_float) | (as_float != np.round(as_float))
        if bad.any():
            i = int(np.argmax(bad))
            raise InvalidInput(f"Frame count {as_float[i]} at frame {i} is not a whole number.")
        c_in = as_float
    c = c_in.astype(np.int64)
    if len(t) == 0:
        return t, c
    if not np.isfinite(t).all():
        i = int(np.argmax(~np.isfinite(t)))
        raise InvalidInput(f"Frame timestamp at frame {i} is not a finite number ({t[i]}).")
    if (c < 0).any():
        i = int(np.argmax(c < 0))
        raise InvalidInput(f"Frame count {int(c[i])} at frame {i} (ts {t[i]}) is negative.")
    if len(t) > 1 and (np.diff(t) < 0).any():
        i = int(np.argmax(np.diff(t) < 0)) + 1
        raise InvalidInput(
            f"Frame timestamps must be sorted: frame {i} (ts {t[i]}) is older than the frame before it ({t[i - 1]}).")
    if state.last_ts is not None and t[0] < state.last_ts:
        raise InvalidInput(
            f"Frames must be newer than the ones already counted: ts {t[0]} is before {state.last_ts}.")
    return t, c


def count_frames(
    ts: np.ndarray,
    counts: np.ndarray,
    *,
    state: LineState | None = None,
    params: CounterParams | None = None,
) -> tuple[list[Bin], LineState]:
    """Count a line's next frames: (bins finished in them, the state to continue from).

    ``ts`` (epoch seconds) must be sorted and not older than the state's newest frame; ``counts`` are the
    trays seen per frame (after the confidence filter). ``state`` is not modified. Feeding a stream in any
    chunking gives the same bins and the same final state as feeding it whole (with the same params).

    Raises InvalidInput for mismatched lengths, negative or non-integer counts, non-finite or unsorted
    timestamps, frames older than the state's newest, or bad params.
    """
    params = params or CounterParams()
    params.check()
    st = state.copy() if state is not None else LineState()
    t, raw = _validate(ts, counts, st)
    if len(t) == 0:
        return [], st
    smoothed, st.tail = _smooth(raw, tail=st.tail, window=params.window)
    hist_t = np.asarray(st.hist_ts, dtype=np.float64)
    all_t = np.concatenate((hist_t, t))
    all_v = np.concatenate((np.asarray(st.hist_v, dtype=np.int64), smoothed))
    all_r = np.concatenate((np.asarray(st.hist_raw, dtype=np.int64), raw))
    f, i = st.vectors()
    lv = np.array(st.level_noise, dtype=np.float64) if st.level_noise else machine.new_levels()
    rows = machine.run(all_t, all_v, all_r, len(hist_t), f, i, lv, params.as_array())
    st.set_vectors(f, i)
    st.level_noise = lv.tolist()
    st.frames += len(t)
    # a bin's final count looks back final_s from its fall for the top, then plateau_s (and the median's lag) before
    # the last frame near the top: all of that stays, or a stream fed in chunks could count a slow slide otherwise
    keep_from = (st.run_start_ts if st.run_start_ts is not None else float(t[-1])) - params.final_s - params.plateau_s
    first = max(0, int(np.searchsorted(all_t, keep_from, side="left")) - params.window // 2 - 1)
    # the noise measures look a few frames back: at least that many frames stay, whatever the frame rate
    first = max(0, min(first, len(all_t) - (4 * (params.window // 2) + 4)))
    st.hist_ts, st.hist_v = all_t[first:].tolist(), [int(x) for x in all_v[first:]]
    st.hist_raw = [int(x) for x in all_r[first:]]
    bins = [Bin(start_ts=float(r[machine.B_START]), end_ts=float(r[machine.B_END]), trays=int(r[machine.B_TRAYS]),
                reason="zero" if r[machine.B_ZERO] else "drop", estimated=bool(r[machine.B_EST]),
                low=int(r[machine.B_LOW]), high=int(r[machine.B_HIGH])) for r in rows]
    return bins, st


def _smooth(raw: np.ndarray, *, tail: list[int], window: int) -> tuple[np.ndarray, list[int]]:
    """(the trailing median of ``raw`` over ``window`` frames, the last window-1 raw counts), its look-back
    from ``tail`` (the raw counts before these; the very first frame pads it when there are too few)."""
    w = window
    back = tail[-(w - 1) :] if w > 1 else []
    if len(back) < w - 1:
        back = [back[0] if back else int(raw[0])] * (w - 1 - len(back)) + back
    ext = np.concatenate((np.asarray(back, dtype=np.int64), raw))
    new_tail = [int(x) for x in ext[len(ext) - (w - 1) :]] if w > 1 else []
    return _median(ext, w).astype(np.int64), new_tail
