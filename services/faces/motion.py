"""The camera's motion across video frames, so that faces seen on looks several frames apart can be followed
while the camera pans or shakes (a face seen by one tile is looked at again only a round of looks later).

``CameraPath.update`` takes each looked-at frame and returns where the scene has moved since the first one: the
translation between consecutive looks by phase correlation on a small grey copy (about a millisecond), summed.
A cut, a blank frame or a scene with too little texture to tell (a weak correlation peak) counts as no motion,
so tracks are then joined by overlap in the frame, as without this. ``CutDetector`` tells a cut from one frame
to the next (every frame is compared, so the cut's frame is known exactly): no face is followed or held across
it. Pure apart from OpenCV.
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

SCALE = 4  # the grey copy is this many times smaller on each side
MIN_RESPONSE = 0.15  # weaker correlation peaks (cuts, flat or changing scenes) are not trusted as motion
MIN_SIDE = 32  # frames smaller than this after scaling are too small to tell motion
CUT_SIDE = 32  # the tiny grey copy a cut is told on
CUT_FLOOR = 5.0  # grey levels of mean change from one frame to the next a cut exceeds
CUT_RATIO = 6.0  # and this many times the usual change of the last CUT_WINDOW frames
CUT_WINDOW = 12
# A picture that fills under FRAMED of the frame, the rest black in each of the last CUT_WINDOW frames (a small
# picture in a black frame), has its cuts told on the change of the picture alone: over the whole frame a cut
# between two such pictures moved the mean too little (at 1080p, 42 of the evaluation clip's 71 cuts were missed,
# and masks slid toward the next shot's faces). A frame pictured over FRAMED or more (letterboxing included) is
# told as before, over the whole frame: on the Hamilton clip (dark stage, 57-86% picture) the change over the
# picture alone lost 2 of its 3 cuts.
DARK = 16.0  # grey levels at or under this are black (video black is 16)
FRAMED = 0.5
MIN_PICTURE = 0.02  # under this share there is too little picture to tell anything by
# The change is measured after moving the last frame by the whole pixels (of a MOTION_SIDE square copy, up to
# MOTION_REACH each way) that best explain the new one: a pan of 8 px a frame at 720p, or the edge of a small
# picture panning over black, changed a shot as much as a fifth of a cut, and the ratio to the usual change missed
# 9 of the tuning clip's 27 cuts (24 at 16 px a frame). One pixel of the copy is a tenth of a 1280-px frame's side.
MOTION_SIDE = 128  # a multiple of CUT_SIDE
MOTION_REACH = 2
INNER = np.pad(np.ones((CUT_SIDE - 2, CUT_SIDE - 2), dtype=bool), 1)  # the tiny copy less its edge, which the
# move may have brought in from outside the frame


def small_grey(frame: np.ndarray) -> np.ndarray:
    """``frame`` (H, W, 3 uint8 RGB) as float32 grey, ``SCALE`` times smaller. Raises nothing for a valid frame."""
    h, w = frame.shape[:2]
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    size = (max(1, w // SCALE), max(1, h // SCALE))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)


class CutDetector:
    """Tells cuts from one frame to the next: the mean absolute difference of tiny grey copies (``CUT_SIDE``
    square, 0-255), the last one moved by the camera's motion between them (``_followed``), jumps above ``CUT_FLOOR``
    and ``CUT_RATIO`` times its median over the last ``CUT_WINDOW`` frames. Noise moves it a little and steadily,
    a pan hardly at all once followed; a new shot, or a cut to or from black, at once. Chosen on the tuning clip
    (every cut found, none within its shots, at pans of 2, 8 and 16 px a frame) and the sample videos (the
    Hamilton clip's 3 cuts found; a whip pan onto a close-up also counts as cuts, which only restarts its tracks)."""

    def __init__(self) -> None:
        self._last: np.ndarray | None = None
        self._last_mid: np.ndarray | None = None
        self._recent: deque[float] = deque(maxlen=CUT_WINDOW)
        self._dark = np.zeros((CUT_SIDE, CUT_SIDE), np.int32)  # frames each tiny pixel has been black in a row

    def update(self, frame: np.ndarray) -> bool:
        """Whether ``frame`` (the next frame: H x W x 3 RGB, or H x W grey at any size, e.g. a small copy the
        decoder made) starts a new shot. Raises nothing for a valid frame."""
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
        tiny = cv2.resize(grey, (CUT_SIDE, CUT_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
        mid = cv2.resize(grey, (MOTION_SIDE, MOTION_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
        last, self._last = self._last, tiny
        last_mid, self._last_mid = self._last_mid, mid
        if last is None or last_mid is None:
            self._dark = np.where(tiny <= DARK, 1, 0)
            return False
        scene = self._dark < CUT_WINDOW  # black in each of the last CUT_WINDOW frames: a border, not the scene
        self._dark = np.where(tiny <= DARK, self._dark + 1, 0)
        diff = _followed(last_mid, tiny)
        framed = MIN_PICTURE <= scene.mean() < FRAMED  # a picture small in a black frame: its change, not the frame's
        counted = (scene & INNER) if framed else INNER
        change = float(diff[counted].mean()) if counted.any() else float(diff.mean())
        usual = float(np.median(self._recent)) if self._recent else 0.0
        self._recent.append(change)
        return change > max(CUT_FLOOR, CUT_RATIO * usual)


def _followed(last_mid: np.ndarray, tiny: np.ndarray) -> np.ndarray:
    """|tiny - last| per tiny pixel, ``last`` (a MOTION_SIDE copy) moved first by the shift that leaves the least
    change inside the edge: the best whole-pixel one within MOTION_REACH (the frame's edge repeated outwards),
    refined to a fraction of a pixel by a parabola through its neighbours' changes, one pixel further out at the
    reach's end (no shift explains a cut)."""
    reach, side = MOTION_REACH, MOTION_SIDE
    padded = np.pad(last_mid, reach + 1, mode="edge")
    left: dict[tuple[int, int], np.ndarray] = {}
    score: dict[tuple[int, int], float] = {}

    def scored(dx: int, dy: int) -> float:
        if (dx, dy) not in score:
            moved = padded[reach + 1 - dy : reach + 1 - dy + side, reach + 1 - dx : reach + 1 - dx + side]
            left[dx, dy] = np.abs(tiny - cv2.resize(moved, (CUT_SIDE, CUT_SIDE), interpolation=cv2.INTER_AREA))
            score[dx, dy] = float(left[dx, dy][1:-1, 1:-1].mean())
        return score[dx, dy]

    bx, by = min(((dx, dy) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)),
                 key=lambda k: scored(*k))

    def vertex(a: float, b: float, c: float) -> float:
        return float(np.clip((a - c) / (2 * (a + c - 2 * b)), -0.5, 0.5)) if a + c - 2 * b > 1e-6 else 0.0

    fx = bx + vertex(scored(bx - 1, by), score[bx, by], scored(bx + 1, by))
    fy = by + vertex(scored(bx, by - 1), score[bx, by], scored(bx, by + 1))
    fine = cv2.warpAffine(last_mid, np.array([[1, 0, fx], [0, 1, fy]], dtype=np.float32), (side, side),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fine_left = np.abs(tiny - cv2.resize(fine, (CUT_SIDE, CUT_SIDE), interpolation=cv2.INTER_AREA))
    return fine_left if float(fine_left[1:-1, 1:-1].mean()) < score[bx, by] else left[bx, by]


class CameraPath:
    """The scene's offset (x, y in frame pixels) at each frame, from the first one (0, 0).

    Each frame is compared with a key frame, not with the one before, so the small error of each measure does not
    add up over a pan; the key moves on once the scene has moved an eighth of the frame, or at a cut."""

    REKEY = 1 / 8

    def __init__(self) -> None:
        self.offset = (0.0, 0.0)
        self._key: np.ndarray | None = None
        self._key_offset = (0.0, 0.0)
        self._window: np.ndarray | None = None

    def _rekey(self, grey: np.ndarray) -> tuple[float, float]:
        self._key, self._key_offset = grey, self.offset
        return self.offset

    def cut(self) -> None:
        """A new shot starts: the next frame is not compared with the last shot's (two photos on one black canvas
        can correlate), it becomes the key, at the offset reached."""
        self._key = None

    def update(self, frame: np.ndarray) -> tuple[float, float]:
        """The offset of ``frame`` (the next frame, H x W x 3 RGB). Raises nothing for a valid frame."""
        return self.update_grey(small_grey(frame), scale=(SCALE, SCALE))

    def update_grey(self, grey: np.ndarray, *, scale: tuple[float, float]) -> tuple[float, float]:
        """The offset of the next frame given as a grey copy (H x W, 0-255), ``scale`` (x, y) times smaller than
        the frame: e.g. the quarter-size copy the decoder makes of every frame, so that each one is followed for
        a fraction of a millisecond. Raises nothing for a valid copy."""
        grey = grey.astype(np.float32, copy=False)
        key = self._key
        if key is None or key.shape != grey.shape or min(grey.shape) < MIN_SIDE:
            return self._rekey(grey)
        if self._window is None or self._window.shape != grey.shape:
            self._window = cv2.createHanningWindow((grey.shape[1], grey.shape[0]), cv2.CV_32F)
        (dx, dy), response = cv2.phaseCorrelate(key, grey, self._window)
        if not (response >= MIN_RESPONSE and np.isfinite(dx) and np.isfinite(dy)):
            return self._rekey(grey)  # a cut or nothing to follow: no motion, and the next frame compares with this
        self.offset = (self._key_offset[0] + dx * scale[0], self._key_offset[1] + dy * scale[1])
        if abs(dx) > self.REKEY * grey.shape[1] or abs(dy) > self.REKEY * grey.shape[0]:
            self._rekey(grey)
        return self.offset
