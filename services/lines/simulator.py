"""A packaging-line simulator with a known truth: what a tray detector over each line would report.

Per line, a worker fills one bin at a time: a bin holds ``bin_size`` trays (drawn per bin), trays arrive as
a Poisson process (mean ``fill_seconds`` apart, drawn per line, optionally slowed or sped up for a while
by ``rate_changes``), a full bin waits ``dwell_s`` and then a new bin is stacked on top. While it is put in
place (``occlusion_s``) the camera sees nothing (half the time) or a few trays of the old bin (partial
occlusion); then it sees the new bin, which may already hold a tray or two. The detector misses each tray
with probability ``miss_rate`` per frame, adds false detections (``extra_rate`` per frame, Poisson),
flickers to zero for single frames (``flicker_rate``, sometimes two frames), and the camera has
``outages`` (no frames at all). Several lines run at once, each with its own rate.

:func:`simulate` returns ``(streams, truth)``: ``streams[line_id]`` is a :class:`LineStream` (arrays ``ts``
and ``counts`` plus the true bin ends and, with ``boxes=True``, box confidences); ``truth[line_id]`` lists
the trays of every bin in order -- the last entry is the bin still being filled when the simulation ends
(if it has any trays) -- so ``sum(truth[line_id])`` is every tray packed. :func:`write_jsonl` and
:func:`write_csv` write the frame files ingestion reads (line_id, camera_id, ts, count, optional boxes).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from services.core.errors import InvalidInput

DEFAULT_START_TS = 1_704_092_400.0  # 2024-01-01T07:00:00Z, a shift start
Range = float | tuple[float, float]


@dataclass
class LineStream:
    """One line's simulated detector output, frames sorted by ``ts`` (epoch seconds, whole milliseconds)."""

    line_id: str
    camera_id: str
    ts: np.ndarray  # float64
    counts: np.ndarray  # int32: trays the detector reports (boxes at or above min_confidence)
    raw_counts: np.ndarray  # int32: every box, low-confidence ones included (== counts without boxes)
    visible: np.ndarray  # int16: trays truly visible in the frame (the truth behind counts)
    bin_ends: np.ndarray  # float64: when each finished bin was hidden by the next (true bin ends)
    open_trays: int  # trays in the bin still filling at the end
    fill_seconds: float  # this line's mean seconds between trays
    box_conf: np.ndarray | None = None  # float32, all boxes of all frames (boxes=True)
    box_offsets: np.ndarray | None = None  # int64, len(ts) + 1: frame i's boxes are box_conf[o[i]:o[i+1]]

    def boxes(self, i: int) -> list[dict[str, float]]:
        """Frame ``i``'s boxes as ingestion reads them ([] without boxes)."""
        if self.box_conf is None or self.box_offsets is None:
            return []
        lo, hi = self.box_offsets[i], self.box_offsets[i + 1]
        return [{"confidence": round(float(c), 3)} for c in self.box_conf[lo:hi]]


def _range(value: Range, name: str) -> tuple[float, float]:
    lo, hi = (value, value) if isinstance(value, int | float) else value
    if lo > hi or lo < 0:
        raise InvalidInput(f"{name} must be a non-negative number or a (low, high) range, not {value!r}.")
    return float(lo), float(hi)


def _warp(rate_changes: Sequence[tuple[float, float, float]], horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """Breakpoints (real time, work time) of the line's pace: work time runs at ``factor`` in each period."""
    cuts = sorted({0.0, horizon, *[float(s) for s, _, _ in rate_changes], *[float(s + d) for s, d, _ in rate_changes]})
    cuts = [c for c in cuts if 0.0 <= c <= horizon]
    pace = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        mid = (a + b) / 2
        f = 1.0
        for s, d, factor in rate_changes:
            if s <= mid < s + d:
                f *= factor
        pace.append(f * (b - a))
    return np.asarray(cuts), np.concatenate(([0.0], np.cumsum(pace)))


def _simulate_line(
    rng: np.random.Generator, *, line_id: str, seconds: float, fps: float, mean_gap: float,
    bin_size: tuple[int, int], dwell: tuple[float, float], occlusion: tuple[float, float],
    miss_rate: float, extra_rate: float, flicker_rate: float, outages: int | Sequence[tuple[float, float]],
    outage_s: tuple[float, float], start_ts: float, rate_changes: Sequence[tuple[float, float, float]],
    boxes: bool, min_confidence: float, junk_rate: float,
) -> tuple[LineStream, list[int]]:
    """One line of :func:`simulate`: (its stream, the trays of its bins). Draws from ``rng`` in a fixed order
    (bins, detector, outages, boxes), so a seed always gives the same line. Raises nothing."""
    plan = _fill_bins(rng, seconds=seconds, mean_gap=mean_gap, bin_size=bin_size, dwell=dwell, occlusion=occlusion,
                      warp=_warp(rate_changes, seconds + 86_400.0))
    tf = np.arange(int(np.ceil(seconds * fps))) / fps
    visible = plan.visible_at(tf)
    counts, junk = _detect(rng, visible, miss_rate=miss_rate, extra_rate=extra_rate, flicker_rate=flicker_rate,
                           junk_rate=junk_rate if boxes else 0.0)
    keep = _frames_kept(rng, tf, outages=outages, outage_s=outage_s, seconds=seconds)
    raw = counts + junk
    box_conf = box_offsets = None
    if boxes:
        box_conf, box_offsets = _box_confidences(rng, counts[keep], raw[keep], min_confidence=min_confidence)
    stream = LineStream(
        line_id=line_id, camera_id=f"cam-{line_id}", ts=np.round(start_ts + tf[keep], 3), counts=counts[keep],
        raw_counts=raw[keep], visible=visible[keep], bin_ends=np.round(start_ts + np.asarray(plan.places)[1:], 3),
        open_trays=plan.open_trays, fill_seconds=mean_gap, box_conf=box_conf, box_offsets=box_offsets,
    )
    return stream, plan.truth


@dataclass
class _BinPlan:
    """What the worker does on one line: when each bin is put in place and when its trays arrive."""

    places: list[float] = field(default_factory=lambda: [0.0])  # when each bin was put in place (seconds)
    occl: list[float] = field(default_factory=lambda: [0.0])  # its occlusion (the first bin is simply there)
    resid: list[int] = field(default_factory=lambda: [0])  # trays of the old bin left visible while it is placed
    arrivals: list[np.ndarray] = field(default_factory=list)  # per bin, when each of its trays arrives
    sizes: list[int] = field(default_factory=list)  # trays each bin was to hold
    truth: list[int] = field(default_factory=list)  # trays of every bin, the one filling at the end included
    open_trays: int = 0  # trays in the bin still filling at the end

    def visible_at(self, tf: np.ndarray) -> np.ndarray:
        """Trays truly visible at each instant of ``tf`` (int16): the current bin's trays so far, or the
        old bin's residue while the new one is being placed."""
        place_arr = np.asarray(self.places)
        b = np.searchsorted(place_arr, tf, side="right") - 1
        all_arr = np.concatenate(self.arrivals)
        before = np.concatenate(([0], np.cumsum(self.sizes)))
        visible = np.searchsorted(all_arr, tf, side="right") - before[b]
        hidden = tf < place_arr[b] + np.asarray(self.occl)[b]
        visible = np.where(hidden, np.asarray(self.resid)[b], visible)
        return np.clip(visible, 0, None).astype(np.int16)


def _fill_bins(rng: np.random.Generator, *, seconds: float, mean_gap: float, bin_size: tuple[int, int],
               dwell: tuple[float, float], occlusion: tuple[float, float],
               warp: tuple[np.ndarray, np.ndarray]) -> _BinPlan:
    """Bins filled one after the other until ``seconds``: trays arrive ``mean_gap`` apart on average in
    work time (``warp``: breakpoints (real time, work time) from ``_warp``)."""
    t_bp, w_bp = warp
    plan = _BinPlan()
    while True:
        n = int(rng.integers(bin_size[0], bin_size[1] + 1))
        start_work = float(np.interp(plan.places[-1], t_bp, w_bp))
        arr = np.interp(start_work + np.cumsum(rng.exponential(mean_gap, n)), w_bp, t_bp)
        plan.arrivals.append(arr)
        plan.sizes.append(n)
        if arr[-1] > seconds:  # still filling at the end
            plan.open_trays = int((arr <= seconds).sum())
            if plan.open_trays:
                plan.truth.append(plan.open_trays)
            return plan
        nxt = float(arr[-1] + rng.uniform(*dwell))
        if nxt > seconds:  # full, not yet covered
            plan.truth.append(n)
            plan.open_trays = n
            return plan
        plan.truth.append(n)
        plan.places.append(nxt)
        plan.occl.append(float(rng.uniform(*occlusion)))
        plan.resid.append(0 if rng.random() < 0.5 else int(rng.integers(1, 4)))


def _detect(rng: np.random.Generator, visible: np.ndarray, *, miss_rate: float, extra_rate: float,
            flicker_rate: float, junk_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """(trays the detector reports, low-confidence junk boxes) per frame (int32): misses, false detections
    and single or double frames flickering to zero, which drop the junk too."""
    nf = len(visible)
    counts = rng.binomial(visible, 1.0 - miss_rate).astype(np.int32) if miss_rate > 0 else visible.astype(np.int32)
    if extra_rate > 0:
        counts += rng.poisson(extra_rate, nf).astype(np.int32)
    junk = rng.poisson(junk_rate, nf).astype(np.int32) if junk_rate > 0 else np.zeros(nf, np.int32)
    if flicker_rate > 0:
        flick = np.flatnonzero(rng.random(nf) < flicker_rate)
        flick = np.concatenate((flick, flick[rng.random(len(flick)) < 0.25] + 1))
        flick = flick[flick < nf]
        counts[flick] = 0
        junk[flick] = 0
    return counts, junk


def _frames_kept(rng: np.random.Generator, tf: np.ndarray, *, outages: int | Sequence[tuple[float, float]],
                 outage_s: tuple[float, float], seconds: float) -> np.ndarray:
    """Which frames of ``tf`` the camera delivers: all but those in ``outages`` (a number placed at random,
    each lasting ``outage_s`` but at most a quarter of ``seconds``, or (offset, duration) spans)."""
    keep = np.ones(len(tf), bool)
    if isinstance(outages, int):
        spans = []
        for _ in range(outages):
            d = min(float(rng.uniform(*outage_s)), seconds / 4)  # a short simulation keeps most of its frames
            s = float(rng.uniform(0, max(seconds - d, 0.0)))
            spans.append((s, d))
    else:
        spans = [(float(s), float(d)) for s, d in outages]
    for s, d in spans:
        keep &= ~((tf >= s) & (tf < s + d))
    return keep


def _box_confidences(rng: np.random.Generator, counts: np.ndarray, raw: np.ndarray, *,
                     min_confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """(confidence of every box, float32; offsets, int64, len(frames) + 1): per frame ``raw`` boxes, the
    first ``counts`` of them at or above ``min_confidence`` and the rest below it."""
    offsets = np.concatenate(([0], np.cumsum(raw, dtype=np.int64)))
    total = int(offsets[-1])
    within = np.arange(total) - np.repeat(offsets[:-1], raw)
    good = within < np.repeat(counts, raw)
    conf = np.where(good, rng.uniform(max(min_confidence, 0.0) + 0.02, 0.99, total),
                    rng.uniform(0.05, max(min_confidence - 0.02, 0.06), total))
    return np.round(conf, 3).astype(np.float32), offsets


def simulate(
    *,
    lines: int | Sequence[str] = 3,
    hours: float = 1.0,
    fps: float = 30.0,
    seed: int = 0,
    fill_seconds: Range = (2.0, 4.0),
    bin_size: tuple[int, int] = (18, 30),
    dwell_s: Range = (1.0, 4.0),
    miss_rate: float = 0.04,
    extra_rate: float = 0.02,
    flicker_rate: float = 0.001,
    occlusion_s: Range = (0.8, 2.5),
    outages: int | Sequence[tuple[float, float]] = 1,
    outage_s: Range = (5.0, 60.0),
    start_ts: float = DEFAULT_START_TS,
    rate_changes: Mapping[str, Sequence[tuple[float, float, float]]] | None = None,
    boxes: bool = False,
    min_confidence: float = 0.5,
    junk_rate: float = 0.3,
) -> tuple[dict[str, LineStream], dict[str, list[int]]]:
    """Simulate ``lines`` packaging lines for ``hours``: (streams per line id, truth per line id).

    lines: a number (ids ``line-1`` ...) or the line ids. fill_seconds: mean seconds between trays, one
    value or a (low, high) range each line draws its own pace from. bin_size: trays per bin (inclusive
    range, drawn per bin). dwell_s / occlusion_s / outage_s: ranges in seconds. miss_rate: chance a tray
    is missed in a frame; extra_rate: mean false detections per frame; flicker_rate: chance a frame reports
    zero. outages: a number per line (placed at random) or (offset_s, duration_s) spans for every line.
    rate_changes: {line_id: [(offset_s, duration_s, factor)]}: that line's tray rate is multiplied by factor
    (> 0) for the period. boxes: also make box confidences (true and false detections at or above
    ``min_confidence``, plus ``junk_rate`` low-confidence boxes per frame, which ``counts`` leaves out).

    Raises InvalidInput for out-of-range parameters.
    """
    ids = [f"line-{i + 1}" for i in range(lines)] if isinstance(lines, int) else [str(x) for x in lines]
    if not ids or len(set(ids)) != len(ids):
        raise InvalidInput("Simulate at least one line, with distinct ids.")
    if not (hours > 0 and fps > 0):
        raise InvalidInput(f"hours and fps must be positive (got {hours}, {fps}).")
    for name, p in (("miss_rate", miss_rate), ("flicker_rate", flicker_rate)):
        if not 0.0 <= p < 1.0:
            raise InvalidInput(f"{name} must be in [0, 1), not {p}.")
    if extra_rate < 0 or junk_rate < 0:
        raise InvalidInput("extra_rate and junk_rate must be >= 0.")
    lo_b, hi_b = int(bin_size[0]), int(bin_size[1])
    if not 1 <= lo_b <= hi_b:
        raise InvalidInput(f"bin_size must be a (low, high) range of at least 1 tray, not {bin_size!r}.")
    fill = _range(fill_seconds, "fill_seconds")
    if fill[0] <= 0:
        raise InvalidInput("fill_seconds must be positive.")
    changes = dict(rate_changes or {})
    for line_id, spans in changes.items():
        if any(f <= 0 or d < 0 for _, d, f in spans):
            raise InvalidInput(f"rate_changes for {line_id}: factors must be > 0 and durations >= 0.")
    rng = np.random.default_rng(seed)
    paces = rng.uniform(*fill, len(ids))
    streams: dict[str, LineStream] = {}
    truth: dict[str, list[int]] = {}
    for k, line_id in enumerate(ids):
        streams[line_id], truth[line_id] = _simulate_line(
            np.random.default_rng([seed, k]), line_id=line_id, seconds=hours * 3600.0, fps=fps,
            mean_gap=float(paces[k]), bin_size=(lo_b, hi_b), dwell=_range(dwell_s, "dwell_s"),
            occlusion=_range(occlusion_s, "occlusion_s"), miss_rate=miss_rate, extra_rate=extra_rate,
            flicker_rate=flicker_rate, outages=outages, outage_s=_range(outage_s, "outage_s"),
            start_ts=float(start_ts), rate_changes=changes.get(line_id, ()), boxes=boxes,
            min_confidence=min_confidence, junk_rate=junk_rate,
        )
    return streams, truth


def _check(streams: Mapping[str, LineStream] | Iterable[LineStream], *, ts_format: str,
           boxes: bool | None) -> list[LineStream]:
    """The streams as a list; InvalidInput for a bad ts_format or boxes asked of streams without them."""
    items = list(streams.values()) if isinstance(streams, Mapping) else list(streams)
    if ts_format not in ("iso", "epoch"):
        raise InvalidInput(f"ts_format must be 'iso' or 'epoch', not {ts_format!r}.")
    for s in items:
        if boxes and s.box_conf is None:
            raise InvalidInput(f"Line {s.line_id} was simulated without boxes (simulate(boxes=True)).")
    return items


def _rows(
    streams: Mapping[str, LineStream] | Iterable[LineStream], *, ts_format: str, boxes: bool | None,
    since_ts: float | None, until_ts: float | None,
) -> Iterable[tuple[str, str, str | float, int, list[dict[str, float]] | None]]:
    """(line_id, camera_id, ts, count, boxes or None) for every frame, all lines merged in time order."""
    items = _check(streams, ts_format=ts_format, boxes=boxes)
    parts = []
    for k, s in enumerate(items):
        sel = np.ones(len(s.ts), bool)
        if since_ts is not None:
            sel &= s.ts >= since_ts
        if until_ts is not None:
            sel &= s.ts < until_ts
        parts.append((k, np.flatnonzero(sel)))
    ts_all = np.concatenate([items[k].ts[i] for k, i in parts]) if parts else np.zeros(0)
    owner = np.concatenate([np.full(len(i), k) for k, i in parts]) if parts else np.zeros(0, int)
    index = np.concatenate([i for _, i in parts]) if parts else np.zeros(0, int)
    order = np.argsort(ts_all, kind="stable")
    if ts_format == "iso":
        ms = np.round(ts_all * 1000).astype(np.int64).astype("datetime64[ms]")
        stamps: np.ndarray | list = np.char.add(np.datetime_as_string(ms, unit="ms"), "Z")
    else:
        stamps = ts_all.tolist()
    for j in order.tolist():
        s = items[owner[j]]
        i = int(index[j])
        with_boxes = s.box_conf is not None if boxes is None else boxes
        ts_value = str(stamps[j]) if ts_format == "iso" else round(float(stamps[j]), 3)
        if with_boxes:
            yield s.line_id, s.camera_id, ts_value, int(s.raw_counts[i]), s.boxes(i)
        else:
            yield s.line_id, s.camera_id, ts_value, int(s.counts[i]), None


def write_jsonl(
    path: str | Path,
    streams: Mapping[str, LineStream] | Iterable[LineStream],
    *,
    ts_format: str = "iso",
    boxes: bool | None = None,
    since_ts: float | None = None,
    until_ts: float | None = None,
    append: bool = False,
) -> int:
    """Write frames as JSON Lines, all lines merged in time order: {"line_id", "camera_id", "ts", "count"[,
    "boxes": [{"confidence"}]]}; with boxes, "count" is every box reported (ingestion applies the minimum
    confidence). ts_format: "iso" (UTC, milliseconds, Z) or "epoch" (seconds). since_ts/until_ts: only
    frames in [since_ts, until_ts). Returns the rows written. Raises InvalidInput for a bad ts_format or
    boxes asked of a stream simulated without them; OSError if the file cannot be written."""
    streams = _check(streams, ts_format=ts_format, boxes=boxes)
    n = 0
    with open(path, "a" if append else "w", encoding="utf-8") as f:
        for line_id, camera_id, ts, count, bx in _rows(streams, ts_format=ts_format, boxes=boxes,
                                                        since_ts=since_ts, until_ts=until_ts):
            row: dict[str, object] = {"line_id": line_id, "camera_id": camera_id, "ts": ts, "count": count}
            if bx is not None:
                row["boxes"] = bx
            f.write(json.dumps(row, separators=(",", ":")) + "\n")
            n += 1
    return n


def write_csv(
    path: str | Path,
    streams: Mapping[str, LineStream] | Iterable[LineStream],
    *,
    ts_format: str = "iso",
    boxes: bool | None = None,
    since_ts: float | None = None,
    until_ts: float | None = None,
) -> int:
    """Write frames as CSV with a header: line_id,camera_id,ts,count[,boxes] (boxes as a JSON list in one
    cell). Otherwise as :func:`write_jsonl`. Returns the rows written. Raises InvalidInput / OSError as it."""
    streams = _check(streams, ts_format=ts_format, boxes=boxes)
    n = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        header_done = False
        for line_id, camera_id, ts, count, bx in _rows(streams, ts_format=ts_format, boxes=boxes,
                                                        since_ts=since_ts, until_ts=until_ts):
            if not header_done:
                writer.writerow(["line_id", "camera_id", "ts", "count"] + (["boxes"] if bx is not None else []))
                header_done = True
            row: list[object] = [line_id, camera_id, ts, count]
            if bx is not None:
                row.append(json.dumps(bx, separators=(",", ":")))
            writer.writerow(row)
            n += 1
        if not header_done:
            writer.writerow(["line_id", "camera_id", "ts", "count"])
    return n
