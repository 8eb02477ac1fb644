"""Body-extent cues for the full- versus half-length decision: which of hips, knees, ankles and feet are in frame.

A full-length photo shows the person down to the ankles and feet; a half-length one is cut at the waist,
thighs or knees, often with no face in frame. The cues come from BlazePose (MediaPipe Pose, the "full"
landmark model, ``model_complexity=1``), converted to ONNX once and committed under ``data/`` (Apache-2.0,
see ``data/README.md``), run in ONNX Runtime:

1. the pose detector (224 px letterbox) finds people: a box, the hip centre and a point giving the body's
   size and tilt; the largest person is kept;
2. the landmark model (256 px crop around that person, rotated upright, 1.25x the body circle) gives 33 body
   landmarks, each with a position relative to the image (outside [0, 1] when the model places it beyond
   the frame, e.g. the ankles of a half-length shot), a visibility and a presence, and a pose-presence score;
3. when the detector finds no one it runs once more on the mirrored image: it leans on the head, and a face
   half hidden or cut by the frame (headless crops, a phone in front of the face) or a small person is
   often found in one orientation only. (Running the landmark model on the whole frame instead was tried and
   dropped: its pose-presence score is high on many garment and parcel photos, and it places the ankles of a
   headless half-length crop inside the frame.)

``body_cues(image)`` gives the BODY_CUE_NAMES vector for one RGB uint8 image (H, W, 3):

- ``has_person``: 1 if the detector found a person (score >= DETECTION_THRESHOLD), else 0.
- ``person_score``: the detector's score for that person (0.5..1); 0 without a person.
- ``hips_visible``, ``knees_visible``, ``ankles_visible``, ``feet_visible``: the largest visibility (0..1, the
  model's confidence that the point is in view and not occluded) among the left/right hips (23, 24), knees
  (25, 26), ankles (27, 28) and heels and toe tips (29-32).
- ``hips_in_frame``, ``knees_in_frame``, ``ankles_in_frame``, ``feet_in_frame``: the same, counting only the
  points that lie inside the image (with a margin of IN_FRAME_MARGIN of its size): a point placed below the
  bottom edge counts 0 however visible the model thinks it is.
- ``lowest_visible``: the height (0 = top, 1 = bottom) of the lowest of the 33 landmarks that is in frame
  with visibility >= VISIBLE; 0 when there is none.
- ``ankle_height``: the height of the lower ankle relative to the image, where the model puts it even beyond
  the frame (> 1 below the bottom edge), clipped to [-0.5, 2]: about 0.7-0.95 for full-length shots, above 1.1
  for half-length ones; 0 without a person.
- ``body_in_frame``: the share of the body's height (from the highest landmark to the lowest foot point, as
  predicted) that lies inside the frame (0..1); 0 without a person.

Without a person every cue is 0 (NO_PERSON). Functions are pure except those of ``BodyPoseModel``, which
holds the two ONNX Runtime sessions, loaded once per process (``BodyPoseModel.shared``, thread-safe).
About 25 ms a photo at 448 px on 2 cores; on the sample photos one threshold on
max(ankles_in_frame, feet_in_frame) puts 26 of 27 full/half-length photos right (benchmarks/body_cues.py).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from services.core.errors import ModelError
from services.core.onnx_session import cpu_session
from services.models.boxes import iou

DATA_DIR = Path(__file__).resolve().parent / "data"
DETECTOR_FILE = "blazepose_detector.onnx"
LANDMARK_FILE = "blazepose_landmark_full.onnx"
DETECTOR_SIDE = 224
LANDMARK_SIDE = 256
DETECTION_THRESHOLD = 0.5  # MediaPipe's min_detection_confidence
NMS_IOU = 0.3
ROI_SCALE = 1.25  # MediaPipe's pose_detection_to_roi: 1.25 x the body circle's diameter
VISIBLE = 0.5
IN_FRAME_MARGIN = 0.02
HIPS, KNEES, ANKLES, FEET = (23, 24), (25, 26), (27, 28), (29, 30, 31, 32)
BODY_CUE_NAMES = [
    "has_person",
    "person_score",
    "hips_visible",
    "knees_visible",
    "ankles_visible",
    "feet_visible",
    "hips_in_frame",
    "knees_in_frame",
    "ankles_in_frame",
    "feet_in_frame",
    "lowest_visible",
    "ankle_height",
    "body_in_frame",
]
NO_PERSON = [0.0] * len(BODY_CUE_NAMES)


@dataclass(frozen=True)
class Roi:
    """A square crop of the image: centre and side in pixels, rotation in radians (clockwise on screen)."""

    cx: float
    cy: float
    size: float
    rotation: float = 0.0


@dataclass(frozen=True)
class Pose:
    """One person's landmarks: (33, 4) [x, y, visibility, presence], x and y relative to the image's width and
    height; ``score`` is the detector's, ``presence`` the landmark model's pose-presence score, ``mirrored``
    True when the person was found in the mirrored image only."""

    landmarks: np.ndarray
    score: float
    presence: float
    mirrored: bool = False


def _anchors() -> np.ndarray:
    """Centres (x, y) of the detector's 2,254 SSD anchors (MediaPipe's SsdAnchorsCalculator for pose_detection:
    strides 8, 16, 32, 32, 32, two anchors a cell, the three stride-32 layers merged, fixed unit size)."""
    out = []
    for stride, per_cell in ((8, 2), (16, 2), (32, 6)):
        n = math.ceil(DETECTOR_SIDE / stride)
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        out.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], axis=1), per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


ANCHORS = _anchors()


def model_paths() -> tuple[Path, Path]:
    """The committed detector and landmark ONNX files. Raises ModelError if either is missing."""
    paths = DATA_DIR / DETECTOR_FILE, DATA_DIR / LANDMARK_FILE
    for path in paths:
        if not path.is_file():
            raise ModelError(f"body-pose model not found at {path} (see services/models/data/README.md)")
    return paths


_shared: BodyPoseModel | None = None
_shared_lock = threading.Lock()


class BodyPoseModel:
    """BlazePose detector and landmark model in ONNX Runtime; ``pose`` finds the most prominent person."""

    def __init__(self, *, threads: int | None = None) -> None:
        detector, landmark = model_paths()
        self.detector = cpu_session(detector, what="body-pose detector", threads=threads)
        self.landmarker = cpu_session(landmark, what="body-pose landmark model", threads=threads)
        self._lock = threading.Lock()

    @classmethod
    def shared(cls) -> BodyPoseModel:
        """The process-wide model (loaded on first use)."""
        with _shared_lock:
            global _shared
            if _shared is None:
                _shared = cls()
            return _shared

    def detect(self, image: np.ndarray) -> list[tuple[Roi, float]]:
        """People found by the detector: (landmark crop, score), largest crop first."""
        h, w = image.shape[:2]
        scale = DETECTOR_SIDE / max(h, w)
        shift = np.array([(DETECTOR_SIDE - w * scale) / 2, (DETECTOR_SIDE - h * scale) / 2], np.float32)
        m = np.array([[scale, 0, shift[0]], [0, scale, shift[1]]], np.float32)  # centred letterbox, black bars
        x = cv2.warpAffine(image, m, (DETECTOR_SIDE, DETECTOR_SIDE), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT)
        x = (x.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
        with self._lock:
            boxes, scores = self.detector.run(None, {"input": x})
        found = decode_detections(boxes[0], scores[0, :, 0])
        rois = [(roi_from_keypoints((kps * DETECTOR_SIDE - shift) / scale), score) for kps, score in found]
        return sorted(rois, key=lambda r: -r[0].size)

    def landmarks(self, image: np.ndarray, roi: Roi, score: float = 1.0) -> Pose:
        """The landmark model on one crop, its output mapped back to the image."""
        affine = crop_affine(roi)
        # edges replicated where the crop leaves the photo, as MediaPipe does: black borders instead change the
        # ankles' visibility on half-length shots by up to 0.5
        crop = cv2.warpAffine(image, affine, (LANDMARK_SIDE, LANDMARK_SIDE),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        x = (crop.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        with self._lock:
            raw, presence = self.landmarker.run(None, {"input": x})
        return Pose(project_landmarks(raw[0], affine, image.shape[1], image.shape[0]), score, float(presence.ravel()[0]))

    def pose(self, image: np.ndarray) -> Pose | None:
        """The most prominent person's landmarks, or None. ``image``: RGB uint8 (H, W, 3)."""
        image = _check_image(image)
        found = self.detect(image)
        if found:
            return self.landmarks(image, *found[0])
        mirrored = np.ascontiguousarray(image[:, ::-1])
        found = self.detect(mirrored)
        if not found:
            return None
        pose = self.landmarks(mirrored, *found[0])
        landmarks = pose.landmarks.copy()
        landmarks[:, 0] = 1.0 - landmarks[:, 0]  # back to the photo's orientation (left and right swap: no matter)
        return Pose(landmarks, pose.score, pose.presence, mirrored=True)

    def cues(self, images: list[np.ndarray]) -> np.ndarray:
        """(N, len(BODY_CUE_NAMES)) float32 body cues."""
        return np.array([cues_from_pose(self.pose(img)) for img in images], dtype=np.float32).reshape(
            len(images), len(BODY_CUE_NAMES)
        )


def body_cues(image: np.ndarray) -> np.ndarray:
    """The BODY_CUE_NAMES vector (float32) of one RGB uint8 image, with the shared model. Raises ModelError."""
    return np.asarray(cues_from_pose(BodyPoseModel.shared().pose(image)), dtype=np.float32)


def _check_image(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
    return np.ascontiguousarray(image, dtype=np.uint8)


def decode_detections(boxes: np.ndarray, scores: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """The detector's raw output (2254, 12) and (2254,) logits -> [(keypoints (4, 2) in letterbox units 0..1,
    score)], overlaps merged by weighted non-maximum suppression as MediaPipe does."""
    score = 1.0 / (1.0 + np.exp(-np.clip(scores, -80.0, 80.0)))  # MediaPipe clips at 100 (exp overflows float32)
    keep = score >= DETECTION_THRESHOLD
    if not keep.any():
        return []
    raw, anchors, score = boxes[keep] / DETECTOR_SIDE, ANCHORS[keep], score[keep]
    cx, cy = raw[:, 0] + anchors[:, 0], raw[:, 1] + anchors[:, 1]
    half_w, half_h = raw[:, 2] / 2, raw[:, 3] / 2
    rects = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
    kps = raw[:, 4:12].reshape(-1, 4, 2) + anchors[:, None, :]
    order = np.argsort(-score)
    out = []
    while len(order):
        overlap = iou(rects[order[0]], rects[order])
        group = order[overlap > NMS_IOU]
        weights = score[group] / score[group].sum()
        out.append(((kps[group] * weights[:, None, None]).sum(axis=0), float(score[order[0]])))
        order = order[overlap <= NMS_IOU]
    return out


def roi_from_keypoints(kps: np.ndarray) -> Roi:
    """The landmark crop from the detector's keypoints in pixels: centred on the hips (0), side 1.25 x the
    diameter of the body circle through point 1, rotated so that hips -> point 1 points up."""
    (x0, y0), (x1, y1) = (float(v) for v in kps[0]), (float(v) for v in kps[1])
    rotation = math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0)
    rotation -= 2 * math.pi * math.floor((rotation + math.pi) / (2 * math.pi))
    return Roi(x0, y0, 2 * math.hypot(x1 - x0, y1 - y0) * ROI_SCALE, rotation)


def crop_affine(roi: Roi) -> np.ndarray:
    """2x3 affine from landmark-crop pixels to image pixels."""
    k = roi.size / LANDMARK_SIDE
    c, s = math.cos(roi.rotation) * k, math.sin(roi.rotation) * k
    half = LANDMARK_SIDE / 2
    return np.array([[c, -s, roi.cx - c * half + s * half], [s, c, roi.cy - s * half - c * half]], np.float64)


def project_landmarks(raw: np.ndarray, affine: np.ndarray, width: int, height: int) -> np.ndarray:
    """(195,) raw landmark output (39 x [x, y, z, visibility logit, presence logit] in crop pixels) -> the 33
    body landmarks as (33, 4) [x / width, y / height, visibility, presence]."""
    lm = raw.reshape(39, 5)[:33].astype(np.float64)
    x = affine[0, 0] * lm[:, 0] + affine[0, 1] * lm[:, 1] + affine[0, 2]
    y = affine[1, 0] * lm[:, 0] + affine[1, 1] * lm[:, 1] + affine[1, 2]
    sig = 1.0 / (1.0 + np.exp(-lm[:, 3:5]))
    return np.stack([x / width, y / height, sig[:, 0], sig[:, 1]], axis=1).astype(np.float32)


def cues_from_pose(pose: Pose | None) -> list[float]:
    """The BODY_CUE_NAMES vector for one image from its most prominent person (pure function)."""
    if pose is None:
        return list(NO_PERSON)
    lm = pose.landmarks.astype(np.float64)
    x, y, vis = lm[:, 0], lm[:, 1], lm[:, 2]
    inside = (x >= -IN_FRAME_MARGIN) & (x <= 1 + IN_FRAME_MARGIN) & (y >= -IN_FRAME_MARGIN) & (y <= 1 + IN_FRAME_MARGIN)
    groups = (HIPS, KNEES, ANKLES, FEET)
    visible = [float(vis[list(g)].max()) for g in groups]
    in_frame = [float((vis * inside)[list(g)].max()) for g in groups]
    shown = inside & (vis >= VISIBLE)
    lowest = float(np.clip(y[shown].max(), 0.0, 1.0)) if shown.any() else 0.0
    ankle = float(np.clip(y[list(ANKLES)].max(), -0.5, 2.0))
    top, bottom = float(y.min()), float(y[list(ANKLES + FEET)].max())
    span = max(bottom - top, 1e-6)
    in_view = float(np.clip((min(bottom, 1.0) - max(top, 0.0)) / span, 0.0, 1.0))
    return [1.0, float(pose.score), *visible, *in_frame, lowest, ankle, in_view]
