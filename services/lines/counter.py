"""Counting trays on a packaging line from per-frame detector counts (pure numpy: no database, no UI).

The published method: a *local counter* (the most trays seen in the bin being filled) and a *global
counter* (all trays in finished bins). A worker fills one bin at a time and stacks a new one on top, which
hides the full one, so the per-frame count climbs while a bin fills and then falls -- to zero, or to a
few trays when part of the old bin stays visible or the new bin gets its first trays quickly. When a new
bin is detected the local counter is added to the global one and reset.

Made robust to real detectors:

* **Smoothing.** Counts are median-filtered over ``window`` frames (trailing window), so a detector that
  flickers to zero (or misses/adds a tray) for fewer than ``window // 2 + 1`` frames changes nothing.
* **Hysteresis.** A bin ends when the smoothed count

  - stays at or below ``zero_level`` for ``zero_frames`` consecutive frames (reason ``"zero"``), or
  - stays at or below ``max - max(drop_margin, ceil(drop_ratio * max))`` for ``drop_frames`` consecutive
    frames (reason ``"drop"``: the new bin hides the old one but the count never reaches zero),

  and only once the bin's local counter has climbed ``min_bin_trays`` above the count at which the
  previous bin ended (its *floor*: 0 after a zero, the few trays still visible after a drop). A new bin
  showing only the trays left visible while it was being placed cannot end, so partial occlusion followed
  by an empty new bin is one bin change, not two. The bin boundary
  is the first frame of the run that confirmed it; the frames of that run belong to the new bin.
* **Outages.** Frames are looked at in order, whatever the time between them: a camera outage (a gap
  in ``ts``) neither ends nor splits a bin by itself. Gaps longer than ``max_gap_s`` are only tallied in
  the state (``gaps``, ``gap_ms``) for display.

The counter is incremental: :func:`count_frames` takes the :class:`LineState` of the previous call (JSON
round trip via :meth:`LineState.to_json` / :meth:`LineState.from_json`) and gives exactly the same bins
and state whether a stream is fed whole or in any chunking (the last ``window - 1`` raw counts and any
run in progress are carried in the state).

Speed: the median is a sorting network on whole arrays, and the bin state machine runs per *bin*, not per
frame: between two bin ends the local counter is a cumulative maximum, and the first frame that completes
a zero or drop run is found with array operations over a look-ahead block.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from services.core.errors import InvalidInput

STATE_VERSION = 1
_MIN_BLOCK = 256  # look-ahead block (frames) when searching for the next bin end; grows while none is found
_MAX_BLOCK = 1 << 17
_MAX_TABLE = 1 << 16  # drop thresholds are looked up in a table for counts up to this


@dataclass(frozen=True)
class CounterParams:
    """Tuning of the counter (frames are detector frames; at 30 fps, 8 frames are about a quarter second).

    window: median smoothing over this many frames (odd, >= 1): flicker shorter than ``window // 2 + 1``
        frames is removed before anything else looks at the counts.
    drop_frames: a fall must persist this many (smoothed) frames to end a bin.
    drop_margin: a fall is at least this many trays below the bin's running max ...
    drop_ratio: ... and at least this share of it (a full bin of 25 must fall to 15 or fewer): missed
        detections on a full bin make the count wobble a tray or two below its max for long stretches,
        which must not look like a new bin.
    zero_frames: frames at or below ``zero_level`` that end a bin: with window 5, a detector dropout of up
        to zero_frames - 1 raw frames changes nothing, and a real change (a new bin takes well over half a
        second to put in place) is caught 6 frames (0.2 s at 30 fps) after the smoothed count reaches zero.
    zero_level: counts at or below this are "zero" (0: any tray seen is a tray).
    min_bin_trays: a bin ends only once its local counter climbed this many trays above its floor (the
        smoothed count when the previous bin's end was confirmed): trays left visible while the next bin
        is placed are not a bin.
    max_gap_s: a gap between frames longer than this is an outage; it never ends a bin, it is only tallied.
    """

    window: int = 5
    drop_frames: int = 8
    drop_margin: int = 2
    drop_ratio: float = 0.4
    zero_frames: int = 6
    zero_level: int = 0
    min_bin_trays: int = 5
    max_gap_s: float = 30.0

    def check(self) -> None:
        """Raise InvalidInput if a parameter is out of range."""
        if self.window < 1 or self.window % 2 == 0:
            raise InvalidInput(f"Counter window must be an odd number of frames >= 1, not {self.window}.")
        for name in ("drop_frames", "zero_frames", "drop_margin", "min_bin_trays"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"Counter parameter {name} must be at least 1, not {getattr(self, name)}.")
        if self.zero_level < 0:
            raise InvalidInput(f"Counter zero_level must be >= 0, not {self.zero_level}.")
        if not 0.0 <= self.drop_ratio < 1.0:
            raise InvalidInput(f"Counter drop_ratio must be in [0, 1), not {self.drop_ratio}.")
        if not self.max_gap_s > 0:
            raise InvalidInput(f"Counter max_gap_s must be positive, not {self.max_gap_s}.")
        if self.min_bin_trays <= self.zero_level:
            raise InvalidInput("Counter min_bin_trays must be above zero_level.")

    def drop_threshold(self, peak: np.ndarray | int) -> np.ndarray | int:
        """The highest smoothed count that counts as a fall below a bin whose local counter is ``peak``."""
        fall = np.maximum(self.drop_margin, np.ceil(np.multiply(self.drop_ratio, peak) - 1e-9).astype(np.int64))
        out = np.subtract(peak, fall)
        return int(out) if np.ndim(out) == 0 else out


@dataclass(frozen=True)
class Bin:
    """A finished bin: it started at ``start_ts`` (the previous bin's end, or the first frame seen) and was
    hidden by the next one at ``end_ts`` (first frame of the confirming run); ``trays`` is its local counter."""

    start_ts: float
    end_ts: float
    trays: int
    reason: str  # "zero" | "drop"


@dataclass
class LineState:
    """Everything the counter needs to continue a line's stream (JSON round trip: to_json / from_json)."""

    version: int = STATE_VERSION
    frames: int = 0  # frames counted so far
    last_ts: float | None = None  # newest frame counted
    tail: list[int] = field(default_factory=list)  # last window-1 raw counts (the median's look-back)
    bin_start_ts: float | None = None  # the bin filling now started here
    bin_max: int = 0  # local counter: most trays (smoothed) seen in the bin filling now
    bin_frames: int = 0  # frames in the bin filling now
    floor: int = 0  # smoothed count when the previous bin's end was confirmed (arming: floor + min_bin_trays)
    zero_run: int = 0  # consecutive armed frames at or below zero_level, ending at the newest frame
    zero_start_ts: float | None = None
    zero_max: int = 0
    drop_run: int = 0  # consecutive armed frames below the drop threshold, ending at the newest frame
    drop_start_ts: float | None = None
    drop_max: int = 0
    total: int = 0  # global counter: trays in finished bins
    bins: int = 0  # finished bins
    gaps: int = 0  # outages seen (gaps between frames longer than max_gap_s)
    gap_ms: int = 0  # their total length, milliseconds (an integer: the same whatever the chunking)

    def to_json(self) -> str:
        """The state as a JSON object string."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes | dict[str, Any]) -> LineState:
        """A state from :meth:`to_json` output (or its parsed dict). Raises InvalidInput if it is not one."""
        try:
            data = json.loads(text) if isinstance(text, str | bytes) else dict(text)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"Line counter state is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidInput("Line counter state must be a JSON object.")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InvalidInput(f"Line counter state has unknown fields: {', '.join(sorted(unknown))}.")
        if data.get("version", STATE_VERSION) != STATE_VERSION:
            raise InvalidInput(f"Line counter state version {data.get('version')} is not {STATE_VERSION}.")
        try:
            state = cls(**data)
            state.tail = [int(x) for x in state.tail]
            for name in ("frames", "bin_max", "bin_frames", "floor", "zero_run", "zero_max", "drop_run", "drop_max",
                         "total", "bins", "gaps", "gap_ms"):
                setattr(state, name, int(getattr(state, name)))
            for name in ("last_ts", "bin_start_ts", "zero_start_ts", "drop_start_ts"):
                value = getattr(state, name)
                setattr(state, name, None if value is None else float(value))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"Line counter state has a malformed field: {exc}") from exc
        return state

    def copy(self) -> LineState:
        """An independent copy."""
        return LineState(**{**asdict(self), "tail": list(self.tail)})


def open_bin(state: LineState | None) -> tuple[float, int] | None:
    """(start_ts, trays so far) of the bin filling now, or None before the first frame."""
    if state is None or state.bin_start_ts is None:
        return None
    return state.bin_start_ts, state.bin_max


def total_trays(state: LineState | None) -> int:
    """Trays in finished bins plus the bin filling now (what the line has packed so far)."""
    if state is None:
        return 0
    return state.total + state.bin_max


def naive_count(counts: np.ndarray | list[int]) -> int:
    """The published baseline on raw counts: a new bin exactly when the count hits zero; the total is the
    sum over bins of the most trays seen (the bin still filling at the end included)."""
    c = np.asarray(counts, dtype=np.int64)
    if c.size == 0:
        return 0
    zero = c == 0
    starts = np.flatnonzero(np.concatenate(([True], zero[1:] & ~zero[:-1]))) if zero.any() else np.array([0])
    if starts[0] != 0:
        starts = np.concatenate(([0], starts))
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


def _run_lengths(cond: np.ndarray, carried: int) -> tuple[np.ndarray, np.ndarray]:
    """(length of the run of True ending at each index, index of the last False at or before it; -1: none
    in this block, so the run continues the ``carried`` one)."""
    idx = np.arange(len(cond))
    last_false = np.maximum.accumulate(np.where(cond, -1, idx))
    runs = idx - last_false
    runs = np.where(last_false < 0, runs + carried, runs)
    return runs, last_false


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
    smoothed = _smooth(raw, tail=st.tail, window=params.window)
    st.tail = smoothed.tail
    gaps, gap_ms = _outages(t, last_ts=st.last_ts, max_gap_s=params.max_gap_s)
    st.gaps += gaps
    st.gap_ms += gap_ms
    if st.bin_start_ts is None:
        st.bin_start_ts = float(t[0])
    st.frames += len(t)
    st.last_ts = float(t[-1])
    thresholds = _DropThresholds.build(params, top=max(smoothed.peak_raw, st.bin_max, st.zero_max, st.drop_max) + 1,
                                       dtype=smoothed.values.dtype)
    return _find_bins(t, smoothed.values, state=st, params=params, thresholds=thresholds), st


@dataclass(slots=True)
class _Smoothed:
    values: np.ndarray  # the trailing median per frame (int16 while counts are small, else int64)
    tail: list[int]  # the last window-1 raw counts: the next call's look-back
    peak_raw: int  # the largest raw count, look-back included


def _smooth(raw: np.ndarray, *, tail: list[int], window: int) -> _Smoothed:
    """The trailing median of ``raw`` over ``window`` frames, its look-back from ``tail`` (the raw counts
    before these; the very first frame pads it when there are too few)."""
    w = window
    back = tail[-(w - 1) :] if w > 1 else []
    if len(back) < w - 1:
        back = [back[0] if back else int(raw[0])] * (w - 1 - len(back)) + back
    ext = np.concatenate((np.asarray(back, dtype=np.int64), raw))
    peak_raw = int(ext.max())
    dtype = np.int16 if peak_raw < 2**15 - 1 else np.int64
    values = _median(ext.astype(dtype), w)
    new_tail = [int(x) for x in ext[len(ext) - (w - 1) :]] if w > 1 else []
    return _Smoothed(values=values, tail=new_tail, peak_raw=peak_raw)


def _outages(t: np.ndarray, *, last_ts: float | None, max_gap_s: float) -> tuple[int, int]:
    """(gaps longer than ``max_gap_s`` before or between the frames ``t``, their total length in ms); the
    first gap is from ``last_ts``, the newest frame counted before (None: no gap before the first frame)."""
    prev = np.concatenate(([last_ts], t[:-1])) if last_ts is not None else t[:-1]
    cur = t if last_ts is not None else t[1:]
    gaps = cur - prev
    big = gaps > max_gap_s
    return int(big.sum()), int(np.round(gaps[big] * 1000.0).astype(np.int64).sum())


@dataclass(slots=True)
class _DropThresholds:
    """The drop threshold per local-counter value: a table while counts are small (as they are), computed
    per frame above ``_MAX_TABLE``."""

    params: CounterParams
    table: np.ndarray | None  # threshold (>= -1) for local counters 0 .. len(table) - 1; None: computed

    @classmethod
    def build(cls, params: CounterParams, *, top: int, dtype: Any) -> _DropThresholds:
        """Thresholds for local counters below ``top``, in ``dtype`` (the smoothed counts' type)."""
        if top > _MAX_TABLE:
            return cls(params=params, table=None)
        table = np.maximum(params.drop_threshold(np.arange(top, dtype=np.int64)), -1).astype(dtype)
        return cls(params=params, table=table)

    def falls(self, seg: np.ndarray, peak: np.ndarray, *, arm: int) -> np.ndarray:
        """Frames of ``seg`` at or below the drop threshold of their local counter ``peak``, once that has
        reached ``arm`` (a bin not yet min_bin_trays above its floor cannot end)."""
        if self.table is None:
            return (seg <= self.params.drop_threshold(peak.astype(np.int64))) & (peak >= arm)
        thr = self.table.copy()
        thr[: min(arm, len(thr))] = -1  # not armed: no count is at or below -1
        return seg <= thr[peak]


@dataclass(slots=True)
class _Runs:
    """Zero or drop runs over a look-ahead block (see ``_run_lengths``) and the first frame completing one."""

    lengths: np.ndarray
    last_false: np.ndarray
    hit: int  # index of the first frame whose run is long enough to end the bin; -1: none


def _runs(cond: np.ndarray, *, carried: int, needed: int) -> _Runs:
    """The runs of ``cond`` continuing a run of ``carried`` frames, and where one first reaches ``needed``."""
    lengths, last_false = _run_lengths(cond, carried)
    reached = lengths >= needed
    first = int(reached.argmax())  # 0 when none is: one pass instead of any() and argmax()
    return _Runs(lengths=lengths, last_false=last_false, hit=first if reached[first] else -1)


@dataclass(slots=True)
class _Block:
    """A look-ahead block of smoothed counts starting at frame ``pos`` of the call, scanned for a bin end."""

    pos: int
    seg: np.ndarray  # the smoothed counts
    peak: np.ndarray  # the local counter at each frame
    zero: _Runs
    drop: _Runs


def _scan_block(smoothed: np.ndarray, *, pos: int, end: int, state: LineState, params: CounterParams,
                thresholds: _DropThresholds) -> _Block:
    """The zero and drop runs over frames ``pos`` .. ``end`` - 1, continuing those in ``state``."""
    arm = state.floor + params.min_bin_trays
    seg = smoothed[pos:end]
    peak = np.maximum.accumulate(seg)
    np.maximum(peak, state.bin_max, out=peak)
    zero_cond = (seg <= params.zero_level) & (peak >= arm)
    drop_cond = thresholds.falls(seg, peak, arm=arm)
    return _Block(pos=pos, seg=seg, peak=peak,
                  zero=_runs(zero_cond, carried=state.zero_run, needed=params.zero_frames),
                  drop=_runs(drop_cond, carried=state.drop_run, needed=params.drop_frames))


def _find_bins(t: np.ndarray, smoothed: np.ndarray, *, state: LineState, params: CounterParams,
               thresholds: _DropThresholds) -> list[Bin]:
    """The bins ending in these frames, advancing ``state`` over them: per bin, look-ahead blocks (doubling
    while no bin ends in one) are scanned for the first frame completing a zero or drop run."""
    bins: list[Bin] = []
    pos = 0
    block = _MIN_BLOCK
    n = len(t)
    while pos < n:
        scan = _scan_block(smoothed, pos=pos, end=min(n, pos + block), state=state, params=params,
                           thresholds=thresholds)
        if scan.zero.hit < 0 and scan.drop.hit < 0:  # no bin ends in this block: carry the runs, look further
            _carry_block(scan, t, state=state)
            pos += len(scan.seg)
            block = min(block * 2, _MAX_BLOCK)
            continue
        finished, i = _end_bin(scan, t, state=state)
        bins.append(finished)
        pos += i + 1
        block = _MIN_BLOCK
    return bins


def _carry_block(scan: _Block, t: np.ndarray, *, state: LineState) -> None:
    """Advance ``state`` over a block in which no bin ends: the local counter and both runs go on."""
    state.bin_max = int(scan.peak[-1])
    state.bin_frames += len(scan.seg)
    state.zero_run, state.zero_start_ts, state.zero_max = _carry(
        scan, scan.zero, t, run0=state.zero_run, start0=state.zero_start_ts, max0=state.zero_max)
    state.drop_run, state.drop_start_ts, state.drop_max = _carry(
        scan, scan.drop, t, run0=state.drop_run, start0=state.drop_start_ts, max0=state.drop_max)


def _end_bin(scan: _Block, t: np.ndarray, *, state: LineState) -> tuple[Bin, int]:
    """End the bin at the first frame of ``scan`` completing a run (a zero run first on a tie), add it to
    the global counter and open the next one in ``state``: (the finished bin, the frame's index in the block)."""
    if scan.zero.hit >= 0 and (scan.drop.hit < 0 or scan.zero.hit <= scan.drop.hit):
        reason, runs, run0, start0, max0 = "zero", scan.zero, state.zero_run, state.zero_start_ts, state.zero_max
    else:
        reason, runs, run0, start0, max0 = "drop", scan.drop, state.drop_run, state.drop_start_ts, state.drop_max
    i = runs.hit
    seg = scan.seg
    lf = int(runs.last_false[i])
    if lf < 0:  # the run began before this block
        start_ts = start0 if start0 is not None else float(t[scan.pos])
        run_max = max(max0, int(seg[: i + 1].max()))
        run_frames = run0 + i + 1
    else:
        start_ts = float(t[scan.pos + lf + 1])
        run_max = int(seg[lf + 1 : i + 1].max())
        run_frames = i - lf
    trays = int(scan.peak[i])
    finished = Bin(start_ts=float(state.bin_start_ts), end_ts=start_ts, trays=trays, reason=reason)
    state.total += trays
    state.bins += 1
    state.bin_start_ts = start_ts
    state.bin_max = run_max
    state.bin_frames = run_frames
    state.floor = int(seg[i])
    state.zero_run = state.drop_run = state.zero_max = state.drop_max = 0
    state.zero_start_ts = state.drop_start_ts = None
    return finished, i


def _carry(scan: _Block, runs: _Runs, t: np.ndarray, *, run0: int, start0: float | None,
           max0: int) -> tuple[int, float | None, int]:
    """(run length, run start ts, run max) at the end of a block with no bin end; ``run0``, ``start0`` and
    ``max0`` are those of the run carried into the block."""
    run = int(runs.lengths[-1])
    if run == 0:
        return 0, None, 0
    lf = int(runs.last_false[-1])
    if lf < 0:
        return run, (start0 if run0 else float(t[scan.pos])), max(max0 if run0 else 0, int(scan.seg.max()))
    return run, float(t[scan.pos + lf + 1]), int(scan.seg[lf + 1 :].max())
