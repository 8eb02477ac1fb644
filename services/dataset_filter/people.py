"""People in a photo, for the dataset filter's "person" label and for shoes on feet.

The console's own person models, weights committed or shipped in a package (``services.models``):

- BlazePose's pose detector (``body_cues.BodyPoseModel``) on the photo and on its mirror image (it leans on the
  head: a half-hidden face or a small person is often found in one orientation only); each person found gives a
  score (0.5..1) and a body box (the square around the detector's body circle, clipped to the photo);
- CenterFace (``person_cues.FaceDetector``, the picture letterboxed to FACE_SIDE: at the 320 px the classifier's
  cues use, the faces of a group photo are too small to be found) for faces (score 0.5..1); a face outside every
  body box adds a box of its own;
- the pose landmarks of the FEET_PEOPLE most prominent people, for the crops around their feet and for how
  clearly their feet are in view (people in photos wear shoes far more often than not);

``find_people`` returns the raw person score (the best of those scores, 0 when nobody is found), the boxes
and the feet crops. Calibration (``services.dataset_filter.calibration``) turns the score into a confidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from services.models.body_cues import BodyPoseModel, Roi
from services.models.person_cues import FaceDetector

FEET = (27, 28, 29, 30, 31, 32)  # ankles, heels, toe tips
FOOT_TIPS = (31, 32)
FEET_VISIBLE = 0.3  # landmark visibility from which a foot point counts
BODY_RADIUS = 1 / 2.5  # the detector's crop is 1.25 x the body circle's diameter
FACE_SIDE = 640  # CenterFace's letterbox (a multiple of 32)
FEET_PEOPLE = 3  # people whose feet are looked at, largest first


@dataclass
class People:
    """Who is in one photo: ``score`` 0 when nobody; boxes are ratios of the photo (left, top, width, height,
    confidence, part: "body" or "face"); ``feet`` are crops (left, top, right, bottom in pixels) to look for shoes."""

    score: float = 0.0
    boxes: list[dict[str, float | str]] = field(default_factory=list)
    feet: list[tuple[int, int, int, int]] = field(default_factory=list)
    feet_shown: float = 0.0  # best (visibility of a heel or toe tip inside the photo x that person's detector score)


def _ratio_box(x0: float, y0: float, x1: float, y1: float, w: int, h: int, score: float,
               part: str) -> dict[str, float | str] | None:
    x0, x1 = max(0.0, x0 / w), min(1.0, x1 / w)
    y0, y1 = max(0.0, y0 / h), min(1.0, y1 / h)
    if x1 <= x0 or y1 <= y0:
        return None
    return {"left": round(x0, 4), "top": round(y0, 4), "width": round(x1 - x0, 4), "height": round(y1 - y0, 4),
            "confidence": round(float(score), 4), "part": part}


def _body_box(roi: Roi, w: int, h: int, score: float, *, mirrored: bool) -> dict[str, float | str] | None:
    r = roi.size * BODY_RADIUS
    cx = w - roi.cx if mirrored else roi.cx
    return _ratio_box(cx - r, roi.cy - r, cx + r, roi.cy + r, w, h, score, "body")


def _inside(face: dict[str, float | str], body: dict[str, float | str]) -> bool:
    fx, fy = float(face["left"]) + float(face["width"]) / 2, float(face["top"]) + float(face["height"]) / 2
    bx, by = float(body["left"]), float(body["top"])
    return bx <= fx <= bx + float(body["width"]) and by <= fy <= by + float(body["height"])


def _overlaps(a: dict[str, float | str], b: dict[str, float | str]) -> float:
    ax1, ay1 = float(a["left"]) + float(a["width"]), float(a["top"]) + float(a["height"])
    bx1, by1 = float(b["left"]) + float(b["width"]), float(b["top"]) + float(b["height"])
    iw = max(0.0, min(ax1, bx1) - max(float(a["left"]), float(b["left"])))
    ih = max(0.0, min(ay1, by1) - max(float(a["top"]), float(b["top"])))
    inter = iw * ih
    union = float(a["width"]) * float(a["height"]) + float(b["width"]) * float(b["height"]) - inter
    return inter / union if union > 0 else 0.0


def _square(cx: float, cy: float, side: float, *, width: int, height: int) -> tuple[int, int, int, int] | None:
    s = max(side, 16.0)
    box = (int(max(0, cx - s / 2)), int(max(0, cy - s / 2)), int(min(width, cx + s / 2)), int(min(height, cy + s / 2)))
    return box if box[2] - box[0] >= 8 and box[3] - box[1] >= 8 else None


def feet_shown(landmarks: np.ndarray) -> float:
    """The largest visibility among the heels and toe tips (29-32) that lie inside the photo (0 when none)."""
    x, y, vis = landmarks[:, 0], landmarks[:, 1], landmarks[:, 2]
    inside = [i for i in FEET[2:] if 0 <= x[i] <= 1 and 0 <= y[i] <= 1]
    return float(max((vis[i] for i in inside), default=0.0))


def feet_crops(landmarks: np.ndarray, *, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Square crops (pixels) around the visible foot points of one person's landmarks (33, 4) [x, y, vis, presence]
    as ratios: one around both feet, one around each toe tip; none when no foot point is in frame."""
    w, h = width, height
    x, y, vis = landmarks[:, 0] * w, landmarks[:, 1] * h, landmarks[:, 2]
    body = max(float(y[list(FEET)].max() - y.min()), 1.0)
    shown = [i for i in FEET if 0 <= x[i] < w and 0 <= y[i] < h and vis[i] >= FEET_VISIBLE]
    if not shown:
        return []
    fx, fy = x[shown], y[shown]
    side = max(float(fx.max() - fx.min()), float(fy.max() - fy.min())) * 1.3 + 0.12 * body
    centres = [(float(fx.mean()), float(fy.mean()), side)]
    centres += [(float(x[i]), float(y[i]), 0.18 * body) for i in FOOT_TIPS if i in shown]
    out = []
    for cx, cy, s in centres:
        box = _square(cx, cy, s, width=w, height=h)
        if box is not None:
            out.append(box)
    return out


def face_input(picture: Image.Image, *, side: int = FACE_SIDE) -> tuple[np.ndarray, float]:
    """The picture letterboxed (top-left anchored, black) into a ``side`` square: CHW float32 and the scale."""
    w, h = picture.size
    scale = side / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = np.zeros((side, side, 3), dtype=np.float32)
    canvas[:nh, :nw] = np.asarray(picture.convert("RGB").resize((nw, nh), Image.Resampling.BILINEAR), dtype=np.float32)
    return canvas.transpose(2, 0, 1), scale


def find_people(picture: Image.Image, *, feet: bool = False) -> People:
    """People in an RGB picture (decoded at a few hundred pixels; larger only costs time). ``feet``: also the
    crops around the feet of the FEET_PEOPLE most prominent people. Raises ModelError when a model cannot load."""
    image = np.ascontiguousarray(np.asarray(picture.convert("RGB"), dtype=np.uint8))
    h, w = image.shape[:2]
    pose = BodyPoseModel.shared()
    direct = pose.detect(image)
    mirrored = pose.detect(np.ascontiguousarray(image[:, ::-1]))
    out = People()
    bodies: list[dict[str, float | str]] = []
    for found, flip in ((direct, False), (mirrored, True)):
        for roi, score in found:
            box = _body_box(roi, w, h, score, mirrored=flip)
            if box is not None and not any(_overlaps(box, b) > 0.5 for b in bodies):
                bodies.append(box)
            out.score = max(out.score, float(score))
    batch, scale = face_input(picture)
    faces = FaceDetector.shared().detect(batch[None], [scale])[0]
    extra = []
    for x0, y0, x1, y1, score in faces.tolist():
        out.score = max(out.score, float(score))
        face = _ratio_box(x0, y0, x1, y1, w, h, score, "face")
        if face is not None and not any(_inside(face, b) for b in bodies):
            extra.append(face)
    out.boxes = sorted(bodies + extra, key=lambda b: -float(b["confidence"]))
    if feet and (direct or mirrored):
        flip = not direct
        src = np.ascontiguousarray(image[:, ::-1]) if flip else image
        for roi, score in (mirrored if flip else direct)[:FEET_PEOPLE]:
            landmarks = pose.landmarks(src, roi, score).landmarks.copy()
            if flip:
                landmarks[:, 0] = 1.0 - landmarks[:, 0]
            out.feet += feet_crops(landmarks, width=w, height=h)
            out.feet_shown = max(out.feet_shown, feet_shown(landmarks) * float(score))
    return out


__all__ = ["People", "feet_crops", "find_people"]
