"""A family of packaging-line behaviours with a known truth, to measure the counter on lines it was not tuned on.

:mod:`services.lines.simulator` is one line model (bins stacked quickly, a short occlusion). Real lines differ:
the next bin may slide over the full one for several seconds, with the visible count shrinking step by step;
the view may stay empty while the worker fetches trays, or never reach zero; bins may be changed before they
are full; a worker may take a tray out; trays at the bottom of the pile get harder to see; the camera shakes,
runs at 5 or 30 frames a second with irregular timing, drops out, or two cameras watch one line. A
:class:`Behaviour` states one such line; :func:`generate` draws its detector stream and truth from a seed.

Pure numpy: no database, no UI.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from services.core.errors import InvalidInput

Span = tuple[float, float]


@dataclass(frozen=True)
class Noise:
    """What the detector gets wrong, per frame."""

    miss_rate: float = 0.0  # chance each visible tray is missed
    extra_rate: float = 0.0  # mean false detections (Poisson)
    flicker_rate: float = 0.0  # chance a frame reports zero (a quarter of the time, two frames)
    pile_miss: float = 0.0  # added miss chance per tray already in view (occlusion grows with the pile)
    jitter_per_h: float = 0.0  # camera shakes an hour: 0.2-1.5 s in which each tray is missed with chance 0.6


NONE = Noise()
MILD = Noise(miss_rate=0.02, extra_rate=0.02, flicker_rate=0.002)
HARSH = Noise(miss_rate=0.08, extra_rate=0.08, flicker_rate=0.01, jitter_per_h=20.0)


@dataclass(frozen=True)
class Behaviour:
    """One line's behaviour. Spans are (low, high) seconds or counts drawn uniformly per event."""

    fps: float = 30.0
    fill_s: Span = (2.0, 4.0)  # this line's mean seconds between trays (drawn once per line)
    bin_size: tuple[int, int] = (18, 30)
    early_change: float = 0.0  # chance a bin is changed before it is full (at 50-90% of its size)
    dwell_s: Span = (1.0, 4.0)  # a full bin waits this long before the next one slides over it
    slide_s: Span = (0.3, 1.0)  # the slide: the visible count shrinks step by step over this long
    empty_s: Span = (0.5, 2.0)  # then the view stays empty (or at the residue) this long
    residue: float = 0.0  # chance 1-3 old trays stay visible until the new bin's first tray covers them
    quick_first: float = 0.0  # chance the new bin's first tray lands during the slide (the view never empties)
    removal: float = 0.0  # chance a worker takes one tray out of a full bin (it is not in the bin's count)
    noise: Noise = NONE
    outages_per_h: float = 0.0
    outage_s: Span = (5.0, 90.0)
    timing_jitter: float = 0.0  # frame times wander by this share of a frame interval (normal, sd)
    frame_drop: float = 0.0  # chance a single frame is lost
    cameras: int = 1  # 2: two cameras watch the same bin, their frames interleaved, each with its own noise


@dataclass
class LineRun:
    """A generated line: frames (``ts`` sorted, ``counts``), the true trays of every bin (the last one
    possibly still filling), the true change times and outage spans."""

    ts: np.ndarray
    counts: np.ndarray
    truth: list[int]
    changes: np.ndarray
    outages: list[Span]
    camera: np.ndarray  # which camera (0, 1) reported each frame


def _u(rng: np.random.Generator, span: Span) -> float:
    return float(rng.uniform(span[0], span[1])) if span[1] > span[0] else float(span[0])


def _visible(rng: np.random.Generator, b: Behaviour, grid: np.ndarray, seconds: float) -> tuple[np.ndarray, list[int],
                                                                                                 list[float]]:
    """(trays truly visible at each time of ``grid``, the trays of every bin, when each change began)."""
    visible = np.zeros(len(grid), np.int64)
    truth: list[int] = []
    changes: list[float] = []
    pace = _u(rng, b.fill_s)
    start, first_at = 0.0, 0.0  # the bin is in place; its first tray may come at first_at
    while start < seconds:
        size = int(rng.integers(b.bin_size[0], b.bin_size[1] + 1))
        if rng.random() < b.early_change:
            size = max(1, int(round(size * rng.uniform(0.5, 0.9))))
        arrivals = first_at + np.concatenate(([0.0], np.cumsum(rng.exponential(pace, size - 1))))
        full = float(arrivals[-1])
        change = full + _u(rng, b.dwell_s)
        removed_at = full + rng.uniform(0, change - full) if rng.random() < b.removal else np.inf
        lo, hi = np.searchsorted(grid, start), np.searchsorted(grid, min(change, seconds))
        seg = grid[lo:hi]
        visible[lo:hi] += np.searchsorted(arrivals, seg, side="right") - (seg >= removed_at)
        in_bin = int(np.searchsorted(arrivals, min(change, seconds), side="right")) - int(removed_at < change)
        if change >= seconds:
            if in_bin:
                truth.append(in_bin)
            break
        truth.append(size - int(removed_at < change))
        changes.append(change)
        # the slide: the old bin shrinks step by step, maybe leaving a residue until the next bin's first tray
        slide, empty = _u(rng, b.slide_s), _u(rng, b.empty_s)
        old = truth[-1]
        quick = rng.random() < b.quick_first
        nxt_first = change + (rng.uniform(0.1, 0.9) * slide if quick else slide + empty)
        rest = int(rng.integers(1, 4)) if rng.random() < b.residue else 0
        lo, hi = np.searchsorted(grid, change), np.searchsorted(grid, max(nxt_first, change + slide))
        seg = grid[lo:hi]
        frac = np.clip((seg - change) / slide, 0.0, 1.0)
        shrink = np.ceil(old * (1.0 - frac)).astype(np.int64)
        shrink = np.maximum(shrink, np.where(seg < nxt_first, min(rest, old), 0))
        visible[lo:hi] += np.where((seg < nxt_first) | (seg < change + slide), shrink, 0)
        start, first_at = change, nxt_first
    return visible, truth, changes


def _detect(rng: np.random.Generator, visible: np.ndarray, t: np.ndarray, noise: Noise, seconds: float) -> np.ndarray:
    """What a detector reports for ``visible`` trays at times ``t``."""
    miss = np.clip(noise.miss_rate + noise.pile_miss * visible, 0.0, 0.95)
    shakes = rng.poisson(noise.jitter_per_h * seconds / 3600.0)
    for s in rng.uniform(0, seconds, shakes):
        miss = np.where((t >= s) & (t < s + rng.uniform(0.2, 1.5)), 0.6, miss)
    counts = rng.binomial(visible, 1.0 - miss)
    if noise.extra_rate > 0:
        counts = counts + rng.poisson(noise.extra_rate, len(t))
    if noise.flicker_rate > 0:
        flick = np.flatnonzero(rng.random(len(t)) < noise.flicker_rate)
        flick = np.concatenate((flick, flick[rng.random(len(flick)) < 0.25] + 1))
        counts[flick[flick < len(t)]] = 0
    return counts.astype(np.int64)


def generate(b: Behaviour, *, hours: float, seed: int) -> LineRun:
    """One line of behaviour ``b`` for ``hours``, drawn from ``seed``. Raises InvalidInput for bad values."""
    if not (hours > 0 and b.fps > 0 and b.cameras in (1, 2) and 1 <= b.bin_size[0] <= b.bin_size[1]):
        raise InvalidInput(f"Bad line behaviour or duration: {b!r}, {hours} h.")
    rng = np.random.default_rng(seed)
    seconds = hours * 3600.0
    step = 1.0 / b.fps
    fine = np.arange(0.0, seconds, step / 4)  # the truth on a fine grid; frames sample it
    visible_fine, truth, changes = _visible(rng, b, fine, seconds)
    outages = []
    for _ in range(rng.poisson(b.outages_per_h * hours)):
        d = _u(rng, b.outage_s)
        outages.append((float(rng.uniform(0, max(seconds - d, 0.0))), d))
    ts_all, counts_all, cams = [], [], []
    for cam in range(b.cameras):
        t = np.arange(0.0, seconds, step) + cam * step / 2
        if b.timing_jitter > 0:
            t = np.sort(t + rng.normal(0, b.timing_jitter * step, len(t)))
        keep = rng.random(len(t)) >= b.frame_drop
        for s, d in outages:
            keep &= ~((t >= s) & (t < s + d))
        t = t[keep & (t >= 0) & (t < seconds)]
        vis = visible_fine[np.clip(np.searchsorted(fine, t, side="right") - 1, 0, len(fine) - 1)]
        ts_all.append(t)
        counts_all.append(_detect(rng, vis, t, b.noise, seconds))
        cams.append(np.full(len(t), cam))
    t, c, cam = np.concatenate(ts_all), np.concatenate(counts_all), np.concatenate(cams)
    order = np.argsort(t, kind="stable")
    return LineRun(ts=np.round(1_704_092_400.0 + t[order], 3), counts=c[order], truth=truth,
                   changes=np.asarray(changes), outages=outages, camera=cam[order])


# the description of a line that broke the old counter: 5 fps, the next bin slid over the full one
# in 2-4 s, then 3-10 s of an empty view while the worker fetches trays
SLIDING = Behaviour(fps=5.0, slide_s=(2.0, 4.0), empty_s=(3.0, 10.0))

# name: (behaviour, used to tune the counter?)
SCENARIOS: dict[str, tuple[Behaviour, bool]] = {
    "quick-stack-30fps-mild": (Behaviour(noise=MILD, residue=0.5, slide_s=(0.3, 1.0), empty_s=(0.0, 1.5)), True),
    "sliding-5fps-none": (SLIDING, True),
    "sliding-10fps-harsh-outages": (replace(SLIDING, fps=10.0, noise=HARSH, outages_per_h=1.0), True),
    "sliding-5fps-mild": (replace(SLIDING, noise=MILD), False),
    "sliding-5fps-harsh": (replace(SLIDING, noise=HARSH), False),
    "sliding-5fps-harsh-outages": (replace(SLIDING, noise=HARSH, outages_per_h=1.5), False),
    "slow-slide-5s-15fps": (Behaviour(fps=15.0, slide_s=(4.0, 5.0), empty_s=(1.0, 6.0), noise=MILD), False),
    "never-empty-30fps": (Behaviour(residue=0.6, quick_first=0.6, slide_s=(0.5, 3.0), empty_s=(0.0, 0.5),
                                    noise=MILD), False),
    "early-change-12fps": (replace(SLIDING, fps=12.0, early_change=0.3, noise=MILD), False),
    "pile-occlusion-5fps": (replace(SLIDING, noise=replace(MILD, pile_miss=0.004)), False),
    "camera-jitter-25fps": (Behaviour(fps=25.0, slide_s=(0.5, 3.0), noise=replace(MILD, jitter_per_h=120.0)), False),
    "tray-removed-8fps": (replace(SLIDING, fps=8.0, removal=0.3, noise=MILD), False),
    "two-cameras-5fps": (replace(SLIDING, cameras=2, noise=MILD), False),
    "irregular-timing-7fps": (replace(SLIDING, fps=7.0, timing_jitter=0.3, frame_drop=0.05, noise=MILD), False),
    "busy-line-30fps": (Behaviour(fill_s=(0.6, 1.0), bin_size=(10, 16), slide_s=(0.3, 1.5), noise=MILD), False),
    "slow-line-5fps": (replace(SLIDING, fill_s=(6.0, 10.0), bin_size=(30, 40), noise=MILD, outages_per_h=1.0), False),
}
