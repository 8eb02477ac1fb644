"""Faces followed across video frames: looks joined into tracks, boxes interpolated between looks and held past a
track's ends, and the feed that lets the writer follow the looks while they are still being made (the looking
runs on a thread of its own, ``services.faces.video``). Pure apart from the feed's lock.

A weak face (scored under ``SURE``) is masked only when two *views* saw it, each box overlapping the track by
``VIEW_IOU`` as a photo's passes must agree: the whole frame and a tile are two views, and so are a part of the
frame seen upright and seen mirrored (``CenterFaceDetector.detect_turn`` mirrors every other time a part comes
round). Two looks at near-identical frames through the same view are not two votes: a texture the network takes
for a face in one is taken for one in the next. A track is held ``revisit`` frames past its ends when the look at
the whole frame saw it (it comes round every other look), else a full ``round`` (a face only a tile finds waits
for its tile).

When the looks come with the camera's offset (``services.faces.motion``), a look joins a track when their boxes
overlap in the frame or in the scene (each box less its frame's offset), whichever overlaps more: a face a tile
sees once a round is then followed across the round while the camera pans, and a face the camera follows still
joins in the frame. Held past its ends, a track is masked both where it was in the frame and where the scene
has carried it, so neither kind of motion loses it.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

import numpy as np

from services.faces.masks import consolidate
from services.faces.search import PART_INSIDE, SURE

LINK_IOU = 0.2
VIEW_IOU = 0.5  # a look's box counts as another view of a track (a vote) only when it overlaps this much
PART_IOU = 0.3  # a tile's box overlapping a whole look's box this much is the same face
CUT_EDGE = 4.0  # pixels: a tile's box this near the tile's edge shows a face the edge cuts
CUT_INSIDE = 0.5  # such a box, this much inside a whole look's box, is part of that face


NO_MOTION = np.zeros(5, dtype=np.float32)


VOTED_HOLD_ROUNDS = 2  # rounds of looks a voted face is held past its last look (tiles see its 10-20 px faces badly)


@dataclass
class Track:
    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)  # (5,) per detection frame, in frame pixels
    hold: int | None = None  # frames it is held past its ends (None: the caller's)
    offsets: list[np.ndarray] = field(default_factory=list)  # the camera offset (x, y, x, y, 0) at each detection
    shape: int | None = None  # index of the latest box a look at the whole frame gave (its shape is trusted)
    voted: bool = False  # a complete search found it: confirmed however weak and however few its looks
    views: set[str] = field(default_factory=set)  # the kinds of look that saw it (whole, tile, mirrored or not)


def _area(b: np.ndarray) -> float:
    return max(0.0, float(b[2] - b[0])) * max(0.0, float(b[3] - b[1]))


def _part_of(t: Track, box: np.ndarray, offset: np.ndarray, *, cut: bool = False) -> np.ndarray | None:
    """The box to keep for a tile's ``box`` joined to a track a look at the whole frame saw: the union of it and
    that look's box carried to ``offset``, when the two show one face (the tile's box overlaps it by
    ``PART_IOU`` or lies inside it); else None. A tile at full size sees a large face, or a half-hidden one (a
    mask, a hand), as the part it sees best: the mask must keep covering the face the whole frame showed."""
    if t.shape is None:
        return None
    ref = t.boxes[t.shape] + (offset - t.offsets[t.shape])
    x1, y1, x2, y2 = max(ref[0], box[0]), max(ref[1], box[1]), min(ref[2], box[2]), min(ref[3], box[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    inside = CUT_INSIDE if cut else PART_INSIDE
    if inter < PART_IOU * (_area(box) + _area(ref) - inter) and inter < inside * _area(box):
        return None
    return np.array([min(ref[0], box[0]), min(ref[1], box[1]), max(ref[2], box[2]), max(ref[3], box[3]), box[4]],
                    dtype=np.float32)


def _cut(box: np.ndarray, region: tuple[float, float, float, float] | None) -> bool:
    """Whether ``box`` reaches (within ``CUT_EDGE``) an edge of the tile ``region`` that saw it: the face may go on
    past that edge, so the tile saw only part of it."""
    if region is None:
        return False
    x1, y1, x2, y2 = region
    return bool(box[0] - x1 <= CUT_EDGE or box[1] - y1 <= CUT_EDGE or x2 - box[2] <= CUT_EDGE or y2 - box[3] <= CUT_EDGE)


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

    def cut(self) -> None:
        """A new shot starts: no track goes on into it."""
        self.live = []

    def add(self, frame: int, boxes: np.ndarray, offset: np.ndarray = NO_MOTION, *, whole: bool = True,
            voted: np.ndarray | None = None, view: str = "",
            region: tuple[float, float, float, float] | None = None) -> list[Track]:
        """Take the boxes of the look at ``frame`` (looks in frame order) and the camera offset there (an (x, y,
        x, y, 0) row, see ``offset_at``); ``whole``: the look saw the whole frame (else a tile: a box that is only
        part of a face the whole frame showed keeps that face's shape); ``voted``: per box, whether it is confirmed
        already (``Feed.put``). Returns the tracks it started."""
        self.live = [t for t in self.live if frame - t.frames[-1] <= self.gap]

        def overlap(t: Track, b: np.ndarray) -> float:
            last = t.boxes[-1]
            return max(_iou(last, b), _iou(last - t.offsets[-1], b - offset))

        pairs = sorted(((overlap(t, b), ti, bi) for ti, t in enumerate(self.live) for bi, b in enumerate(boxes)),
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
            t = self.live[ti]
            part = None if whole else _part_of(t, boxes[bi], offset, cut=_cut(boxes[bi], region))
            t.frames.append(frame)
            t.boxes.append(boxes[bi] if part is None else part)
            t.offsets.append(offset)
            t.voted = t.voted or (voted is not None and bool(voted[bi]))
            if score >= VIEW_IOU:
                t.views.add(view or f"look {frame}")
            if whole:
                t.shape = len(t.boxes) - 1
        started = [Track([frame], [box], offsets=[offset], shape=0 if whole else None,
                         voted=voted is not None and bool(voted[bi]), views={view or f"look {frame}"})
                   for bi, box in enumerate(boxes) if bi not in used_boxes]
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
    """The tracks seen by two views or more (``Track.views``), or scored at least ``SURE`` once, or found by a
    complete search (its passes voted): a weak box only one view saw is dropped, however often it saw it."""
    return [t for t in tracks if t.voted or len(t.views) >= 2 or max(float(b[4]) for b in t.boxes) >= SURE]


def shown_at(tracks: list[Track], frame: int, *, hold: int, cuts: list[int] | None = None) -> list[Track]:
    """The tracks alive at ``frame``: between their first and last look, or held ``hold`` frames (or the track's
    own hold) beyond them, but never across a cut (``cuts``: frames starting a shot, ascending)."""
    out = []
    cuts = cuts or []
    for t in tracks:
        first, last, held = t.frames[0], t.frames[-1], hold if t.hold is None else t.hold
        if frame < first - held or frame > last + held:
            continue
        k = bisect.bisect_right(cuts, first)
        if (k and frame < cuts[k - 1]) or (k < len(cuts) and frame >= cuts[k]):
            continue  # another shot
        out.append(t)
    return out


def boxes_at(tracks: list[Track], frame: int, *, hold: int, offset: np.ndarray | None = None,
             cuts: list[int] | None = None) -> np.ndarray:
    """The boxes of every track alive at ``frame`` (``shown_at``): interpolated between its detections, held
    beyond its ends both where it was and, given the camera ``offset`` at ``frame``, where the scene has carried
    it."""
    return _boxes_of(shown_at(tracks, frame, hold=hold, cuts=cuts), frame, offset=offset)


def _boxes_of(shown: list[Track], frame: int, *, offset: np.ndarray | None) -> np.ndarray:
    """``boxes_at`` for tracks already known to be alive at ``frame``."""
    out = []
    for t in shown:
        first, last = t.frames[0], t.frames[-1]
        if frame <= first or frame >= last:
            k = 0 if frame <= first else -1
            out.append(t.boxes[k])
            if offset is not None and t.offsets:
                moved = t.boxes[k] + (offset - t.offsets[k])
                if np.abs(moved[:4] - t.boxes[k][:4]).max() >= 1.0:
                    out.append(moved)
        else:  # between two looks: along a straight line in the scene, where the camera is at this frame
            k = int(np.searchsorted(t.frames, frame, side="right")) - 1
            f0, f1 = t.frames[k], t.frames[k + 1]
            w = (frame - f0) / (f1 - f0)
            if offset is not None and t.offsets:
                out.append((t.boxes[k] - t.offsets[k]) * (1 - w) + (t.boxes[k + 1] - t.offsets[k + 1]) * w + offset)
            else:
                out.append(t.boxes[k] * (1 - w) + t.boxes[k + 1] * w)
    return np.array(out, dtype=np.float32).reshape(-1, 5)


def offset_at(frames: list[int], offsets: list[tuple[float, float]], frame: int, *,
              cuts: list[int] | None = None) -> np.ndarray:
    """The camera offset at ``frame``, from the looks' offsets (``frames`` strictly ascending) in ``frame``'s shot
    (``cuts``: frames starting a shot, ascending): interpolated between looks; past the shot's first or last look
    carried on at the speed between its two nearest looks, for at most the spacing of those looks (the frames a
    shot has before its first look or after its last: a face held there moves on with the camera); (0, 0) when
    the shot has no look. As an (x, y, x, y, 0) row to add to boxes."""
    k = bisect.bisect_right(cuts or [], frame)
    start = (cuts or [])[k - 1] if k else None
    end = (cuts or [])[k] if cuts and k < len(cuts) else None
    lo = bisect.bisect_left(frames, start) if start is not None else 0
    hi = bisect.bisect_left(frames, end) if end is not None else len(frames)
    fs, os_ = frames[lo:hi], offsets[lo:hi]
    if not fs:
        return np.zeros(5, dtype=np.float32)
    i = int(np.searchsorted(fs, frame, side="right")) - 1
    if 0 <= i < len(fs) - 1:
        w = (frame - fs[i]) / (fs[i + 1] - fs[i])
        x = os_[i][0] * (1 - w) + os_[i + 1][0] * w
        y = os_[i][1] * (1 - w) + os_[i + 1][1] * w
    elif len(fs) == 1:
        x, y = os_[0]
    else:  # before the shot's first look or past its last: at the speed between that look and its neighbour
        near, far = (0, 1) if i < 0 else (-1, -2)
        span = abs(fs[near] - fs[far])
        beyond = float(np.clip(frame - fs[near], -span, span))
        x, y = (os_[near][j] + (os_[near][j] - os_[far][j]) / (fs[near] - fs[far]) * beyond for j in (0, 1))
    return np.array([x, y, x, y, 0.0], dtype=np.float32)


class Feed:
    """Looks handed from the looking thread to the writer. The writer asks for frame ``n`` once the looks have
    reached ``n + lead`` (or ended): by then every track that can touch frame ``n`` is known and confirmed."""

    def __init__(self, *, step: int) -> None:
        self.step = step
        self.round = step  # set by the looking side once the frame size is known
        self.detections: dict[int, np.ndarray] = {}
        self.offsets: dict[int, tuple[float, float]] = {}  # the camera's offset at each look (services.faces.motion)
        self.whole: set[int] = set()
        self.cuts: list[int] = []  # frames where a new shot starts, ascending
        self.voted: dict[int, np.ndarray] = {}
        self.motion: dict[int, tuple[float, float]] = {}  # the camera's offset at every frame, when followed
        self.views: dict[int, str] = {}  # the kind of look at each frame ("" : every look its own)
        self.regions: dict[int, tuple[float, float, float, float]] = {}  # a tile look's tile, in frame pixels
        self.upto = -1
        self.done = False
        self.error: BaseException | None = None
        self.stop = threading.Event()  # the writer gave up: the looking side stops
        self._cond = threading.Condition()

    @property
    def lead(self) -> int:
        return 2 * self.round + self.step

    def put(self, frame: int, boxes: np.ndarray, *, whole: bool, offset: tuple[float, float] = (0.0, 0.0),
            voted: np.ndarray | None = None, view: str = "",
            region: tuple[float, float, float, float] | None = None) -> None:
        """The look at ``frame``: ``whole`` when it saw the whole frame; ``voted``, per box, whether the votes of
        several passes confirmed it already (a complete search, as on a photo: one look is then enough)."""
        with self._cond:
            self.detections[frame] = boxes
            self.offsets[frame] = offset
            if whole:
                self.whole.add(frame)
            if voted is not None:
                self.voted[frame] = voted
            self.views[frame] = view
            if region is not None:
                self.regions[frame] = region
            self.upto = frame
            self._cond.notify_all()

    def moved(self, frame: int, offset: tuple[float, float]) -> None:
        """The camera's offset at ``frame`` (every frame, handed before the look at it): masks between looks
        follow it exactly, however the camera shakes, where the looks' offsets alone are interpolated."""
        with self._cond:
            self.motion[frame] = offset

    def cut(self, frame: int) -> None:
        """A new shot starts at ``frame`` (handed before any look at or after it)."""
        with self._cond:
            self.cuts.append(frame)

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
        self.look_frames: list[int] = []
        self.look_offsets: list[tuple[float, float]] = []
        self.most_at_once = 0  # the most faces (confirmed tracks) masked in one frame so far

    def boxes(self, frame: int) -> np.ndarray:
        """The boxes to mask on ``frame`` (frames asked for in order), once the looks are far enough ahead."""
        feed = self.feed
        feed.wait(frame + feed.lead)
        if self.linker is None:
            self.linker = Linker(gap=feed.round + feed.step)
        with feed._cond:
            new = [(f, feed.detections[f], feed.offsets.get(f, (0.0, 0.0)), f in feed.whole, feed.voted.get(f),
                    feed.views.get(f, ""), feed.regions.get(f))
                   for f in sorted(f for f in feed.detections if self.seen < f <= feed.upto)]
            cuts = list(feed.cuts)
            exact = feed.motion.pop(frame, None)  # asked for once: frames are asked for in order
        for f, found, offset, whole, voted, view, region in new:
            if any(self.seen < c <= f for c in cuts):
                self.linker.cut()
            self.look_frames.append(f)
            self.look_offsets.append(offset)
            row = np.array([*offset, *offset, 0.0], dtype=np.float32)  # as offset_at gives it
            self.active.extend(self.linker.add(f, found, row, whole=whole, voted=voted, view=view,
                                               region=region))
            self.seen = f
        revisit = 2 * feed.step if feed.round > feed.step else feed.step
        keep = []
        for t in self.active:
            t.hold = revisit if any(f in feed.whole for f in t.frames) else feed.round
            if t.voted:  # a complete search found it: its tiles may miss it twice over before it is gone
                t.hold = max(t.hold, VOTED_HOLD_ROUNDS * feed.round)
            if t.frames[-1] + max(t.hold, self.linker.gap) >= frame:  # else it can neither grow nor show again
                keep.append(t)
        self.active = keep
        shown = shown_at(confirmed(self.active), frame, hold=feed.step, cuts=cuts)
        self.most_at_once = max(self.most_at_once, len(shown))
        offset = (np.array([*exact, *exact, 0.0], dtype=np.float32) if exact is not None
                  else offset_at(self.look_frames, self.look_offsets, frame, cuts=cuts))
        return consolidate(_boxes_of(shown, frame, offset=offset))

    def tracks(self) -> list[Track]:
        """Every confirmed track (once the writer is done)."""
        return confirmed(self.linker.tracks) if self.linker else []
