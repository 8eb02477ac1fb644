"""Faces followed across video frames: looks joined into tracks, boxes interpolated between looks and held past a
track's ends, and the feed that lets the writer follow the looks while they are still being made (the looking
runs on a thread of its own, ``services.faces.video``). Pure apart from the feed's lock.

A weak face (scored under ``SURE``) seen on one look only is dropped: time votes as the mirror and scale passes
vote on photos. A track is held ``revisit`` frames past its ends when the look at the whole frame saw it (it
comes round every other look), else a full ``round`` (a face only a tile finds waits for its tile).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from services.faces.masks import consolidate
from services.faces.search import SURE

LINK_IOU = 0.2


@dataclass
class Track:
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)  # (5,) per detection frame
    hold: int | None = None  # frames it is held past its ends (None: the caller's)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class Linker:
    """Joins each look's boxes to the live tracks greedily by overlap; a track waits at most ``gap`` frames."""

    def __init__(self, *, gap: int) -> None:
        self.gap = gap
        self.tracks: list[Track] = []
        self.live: list[Track] = []

    def add(self, frame: int, boxes: np.ndarray) -> list[Track]:
        """Take the boxes of the look at ``frame`` (looks in frame order); returns the tracks it started."""
        self.live = [t for t in self.live if frame - t.frames[-1] <= self.gap]
        pairs = sorted(((_iou(t.boxes[-1], b), ti, bi) for ti, t in enumerate(self.live) for bi, b in enumerate(boxes)),
                       reverse=True)
        used_tracks: set[int] = set()
        used_boxes: set[int] = set()
        for score, ti, bi in pairs:
            if score < LINK_IOU:
                break
            if ti in used_tracks or bi in used_boxes:
                continue
            used_tracks.add(ti)
            used_boxes.add(bi)
            self.live[ti].frames.append(frame)
            self.live[ti].boxes.append(boxes[bi])
        started = [Track([frame], [box]) for bi, box in enumerate(boxes) if bi not in used_boxes]
        self.tracks.extend(started)
        self.live.extend(started)
        return started


def link(detections: dict[int, np.ndarray], *, step: int, gap: int | None = None) -> list[Track]:
    """Tracks from per-frame detections (frame index -> (N, 5)), joined greedily by overlap between
    consecutive detection frames (a track waits at most ``gap`` frames, by default 2 * step, for its next one)."""
    linker = Linker(gap=2 * step if gap is None else gap)
    for frame in sorted(detections):
        linker.add(frame, detections[frame])
    return linker.tracks


def confirmed(tracks: list[Track]) -> list[Track]:
    """The tracks seen on two looks or more, or scored at least ``SURE`` once: a lone weak box is dropped."""
    return [t for t in tracks if len(t.frames) >= 2 or max(float(b[4]) for b in t.boxes) >= SURE]


def boxes_at(tracks: list[Track], frame: int, *, hold: int) -> np.ndarray:
    """The boxes of every track alive at ``frame``: interpolated between its detections, held ``hold`` frames (or
    the track's own hold) beyond its ends."""
    out = []
    for t in tracks:
        first, last, held = t.frames[0], t.frames[-1], hold if t.hold is None else t.hold
        if frame < first - held or frame > last + held:
            continue
        if frame <= first:
            out.append(t.boxes[0])
        elif frame >= last:
            out.append(t.boxes[-1])
        else:
            k = int(np.searchsorted(t.frames, frame, side="right")) - 1
            f0, f1 = t.frames[k], t.frames[k + 1]
            w = (frame - f0) / (f1 - f0)
            out.append(t.boxes[k] * (1 - w) + t.boxes[k + 1] * w)
    return np.array(out, dtype=np.float32).reshape(-1, 5)


class Feed:
    """Looks handed from the looking thread to the writer. The writer asks for frame ``n`` once the looks have
    reached ``n + lead`` (or ended): by then every track that can touch frame ``n`` is known and confirmed."""

    def __init__(self, *, step: int) -> None:
        self.step = step
        self.round = step  # set by the looking side once the frame size is known
        self.detections: dict[int, np.ndarray] = {}
        self.whole: set[int] = set()
        self.upto = -1
        self.done = False
        self.error: BaseException | None = None
        self.stop = threading.Event()  # the writer gave up: the looking side stops
        self._cond = threading.Condition()

    @property
    def lead(self) -> int:
        return 2 * self.round + self.step

    def put(self, frame: int, boxes: np.ndarray, *, whole: bool) -> None:
        with self._cond:
            self.detections[frame] = boxes
            if whole:
                self.whole.add(frame)
            self.upto = frame
            self._cond.notify_all()

    def close(self, error: BaseException | None = None) -> None:
        with self._cond:
            self.done, self.error = True, error
            self._cond.notify_all()

    def fill(self, detections: dict[int, np.ndarray]) -> Feed:
        """Looks made beforehand (e.g. by Rekognition): all of them at once, every one at the whole frame."""
        for frame in sorted(detections):
            self.put(frame, detections[frame], whole=True)
        self.close()
        return self

    def wait(self, frame: int) -> None:
        """Block until the looks reach ``frame`` or end. Raises what the looking side raised."""
        with self._cond:
            while not self.done and self.upto < frame:
                self._cond.wait()
            if self.error is not None:
                raise self.error


class Follower:
    """The writer's side of a ``Feed``: the boxes to mask on each frame, tracks linked as the looks arrive."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed
        self.linker: Linker | None = None
        self.seen = -1
        self.active: list[Track] = []

    def boxes(self, frame: int) -> np.ndarray:
        feed = self.feed
        feed.wait(frame + feed.lead)
        if self.linker is None:
            self.linker = Linker(gap=feed.round + feed.step)
        with feed._cond:
            new = sorted(f for f in feed.detections if self.seen < f <= feed.upto)
        for f in new:
            self.active.extend(self.linker.add(f, feed.detections[f]))
            self.seen = f
        revisit = 2 * feed.step if feed.round > feed.step else feed.step
        keep = []
        for t in self.active:
            t.hold = revisit if any(f in feed.whole for f in t.frames) else feed.round
            if t.frames[-1] + max(t.hold, self.linker.gap) >= frame:  # else it can neither grow nor show again
                keep.append(t)
        self.active = keep
        return consolidate(boxes_at(confirmed(self.active), frame, hold=feed.step))

    def tracks(self) -> list[Track]:
        """Every confirmed track (once the writer is done)."""
        return confirmed(self.linker.tracks) if self.linker else []
