"""Face blurring on real street photos with several faces, at their own size and shrunk so that faces are 10-20
pixels wide: every annotated face of 10 px or more loses its detail (``services.faces.quality``) through the same
function the blur job runs on each photo, with the job's defaults.

The photos and their Pascal VOC boxes (``tests/data/crowd_faces``, CC0 1.0, origin in its README) are the four
Face Mask Detection photos of the *tuning* part of ``benchmarks/faces_eval`` with the most annotated faces; the
evaluation part is not used here. Unlike the mmpose faces of ``test_job.py`` (12 faces, 60 px and up), half of
the 35 faces scored here are under 25 px.

Planted bugs this catches: a detection threshold of 0.4 or 0.5 instead of 0.1, the image plan without its 2x tile
pass, a single pass at native size (the pipeline before the multi-pass search), a blur of fixed 0.5 px sigma, an
ellipse inscribed in the box (corners left). Not caught: a threshold of 0.3, a mask scale of 0.8, a fixed 1 px
sigma (the halved-Laplacian measure counts any real blur of a face as removing its detail).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from services.faces import job as face_blur
from services.faces.detection import make_detector
from services.faces.quality import REMOVED_BELOW, detail_ratios

DATA = Path(__file__).resolve().parents[2] / "data" / "crowd_faces"
SCALES = (1.0, 0.5, 0.33, 0.25)  # shrunk, most faces are 10-20 px wide (photos about 130 and 100 px wide)
MIN_WIDTH = 10  # as benchmarks/faces_eval scores: narrower faces are neither scored nor counted


def voc_boxes(xml: str) -> np.ndarray:
    """[x1, y1, x2, y2] of every annotated face in a Pascal VOC file."""
    return np.array([[float(re.search(rf"<{k}>(.*?)</{k}>", obj).group(1)) for k in ("xmin", "ymin", "xmax", "ymax")]
                     for obj in re.findall(r"<object>(.*?)</object>", xml, re.S)], dtype=np.float32)


def crowd_photos() -> list[tuple[str, bytes, np.ndarray, np.ndarray]]:
    """(name@scale, PNG bytes, RGB pixels, face boxes of 10 px and more) for every photo at every scale."""
    out = []
    for png in sorted(DATA.glob("*.png")):
        rgb = np.asarray(Image.open(png).convert("RGB"))
        boxes = voc_boxes(png.with_suffix(".xml").read_text())
        for scale in SCALES:
            if scale == 1.0:
                small, data, scaled = rgb, png.read_bytes(), boxes
            else:
                size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
                small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
                buf = io.BytesIO()
                Image.fromarray(small).save(buf, "PNG")
                data, scaled = buf.getvalue(), boxes * np.float32(size[0] / rgb.shape[1])
            keep = scaled[(scaled[:, 2] - scaled[:, 0]) >= MIN_WIDTH]
            out.append((f"{png.stem}@{scale}", data, small, keep))
    return out


# The one face whose detail measure stays above half although it is found and masked: an out-of-focus face behind
# another, whose annotated box takes in the sharp edge where the front face's blurred ellipse meets its own (the
# measure reads that edge as detail; on the photo the face is a smooth blob). At 0.5 and 0.33 it is removed.
EDGE_OF_ANOTHER_MASK = {"maksssksksss249@1.0 [223, 89, 266, 146]"}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return float(w * h / union) if union > 0 else 0.0


def test_the_crowd_photos_hold_small_faces():
    """What the test below covers: 10 faces of 24-126 px at full size, 10 of 12-63 px at 0.5, 8 of 10-42 px at 0.33,
    7 of 10-32 px at 0.25 (narrower ones are not scored): 35 faces, 13 of them 10-20 px."""
    w = np.array([b[2] - b[0] for *_, boxes in crowd_photos() for b in boxes])
    assert len(w) == 35 and int(((w >= 10) & (w < 20)).sum()) == 13 and int((w < 25).sum()) == 17, sorted(w.round())


def test_every_face_of_10_px_and_more_is_found_and_loses_its_detail_in_real_crowd_photos_at_every_size():
    detector = make_detector("local")
    params = dict(face_blur.DEFAULTS)  # what a job gets when nothing is chosen (threshold, mode, shape, scale)
    widths, missed, left = [], [], {}
    for name, data, rgb, boxes in crowd_photos():
        blurred, report = face_blur.anonymize_image(data, detector=detector, params=params, max_pixels=10**8)
        out = np.asarray(Image.open(io.BytesIO(blurred)).convert("RGB"))
        assert out.shape == rgb.shape, name
        found = [np.array([f["x1"], f["y1"], f["x2"], f["y2"]]) for f in report["faces"]]
        for box, ratio in zip(boxes, detail_ratios(rgb, out, boxes)):
            key = f"{name} {[round(float(v)) for v in box]}"
            widths.append(float(box[2] - box[0]))
            if max((iou(box, f) for f in found), default=0.0) < 0.3:
                missed.append(key)
            if ratio >= REMOVED_BELOW:
                left[key] = round(float(ratio), 2)
    assert len(widths) == sum(len(boxes) for *_, boxes in crowd_photos())
    assert not missed, f"annotated faces no detection overlaps (IoU 0.3): {missed}"
    assert set(left) <= EDGE_OF_ANOTHER_MASK, f"faces with detail left (after/before >= {REMOVED_BELOW}): {left}"
