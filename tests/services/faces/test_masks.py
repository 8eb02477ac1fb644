"""Masks remove a face's detail at every size: real annotated faces, scaled so the face is 10 to 200 pixels wide,
lose more than half of their detail (variance of the Laplacian in the face box) in every mode and shape, and
nothing outside the mask changes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from services.faces.masks import ELLIPSE_COVER, anonymize, grow, mask, mask_scale_for
from services.faces.quality import REMOVED_BELOW, detail_ratios
from tests.services.faces.test_job import FACES, annotated

WIDTHS = (10, 12, 15, 20, 30, 50, 100, 200)
needs_faces = pytest.mark.skipif(not (FACES / "annotations").is_dir(), reason="../shared/samples/faces not found (a fresh clone)")


def _scaled(name: str, box: list[float], width: int) -> tuple[np.ndarray, np.ndarray]:
    """The photo scaled so the face box is ``width`` pixels wide, and the box [x1, y1, x2, y2, score] there."""
    img = Image.open(FACES / name).convert("RGB")
    x, y, w, h = box
    f = width / w
    size = (max(1, round(img.width * f)), max(1, round(img.height * f)))
    frame = np.asarray(img.resize(size, Image.Resampling.LANCZOS if f < 1 else Image.Resampling.BICUBIC))
    return frame, np.array([[x * f, y * f, (x + w) * f, (y + h) * f, 0.9]], dtype=np.float32)


@needs_faces
@pytest.mark.parametrize("mode", ["blur", "pixelate", "fill"])
def test_every_mode_removes_detail_from_faces_of_every_size(mode):
    faces = [(name, box) for name, boxes in sorted(annotated().items()) for box in boxes]
    assert len(faces) >= 10
    worst: dict[tuple[str, int], float] = {}
    for shape in ("ellipse", "box"):
        for width in WIDTHS:
            for name, box in faces:
                frame, boxes = _scaled(name, box, width)
                out = anonymize(frame, boxes, mode=mode, shape=shape, mask_scale=1.3)
                ratio = float(detail_ratios(frame, out, boxes)[0])
                worst[(shape, width)] = max(worst.get((shape, width), 0.0), ratio)
                covered = mask(boxes, width=frame.shape[1], height=frame.shape[0], shape=shape, scale=1.3) > 0
                assert (out[~covered] == frame[~covered]).all(), (name, width, shape)
    assert all(r < REMOVED_BELOW for r in worst.values()), {k: round(v, 2) for k, v in worst.items()}


def test_an_ellipse_reaches_the_corners_of_the_detected_box():
    boxes = np.array([[40, 30, 80, 70, 0.9]], dtype=np.float32)
    m = mask(boxes, width=160, height=100, shape="ellipse", scale=1.0) > 0
    assert m[30:70, 40:80].all()  # the whole box, corners included
    assert mask_scale_for("ellipse", 1.0) == ELLIPSE_COVER and mask_scale_for("ellipse", 2.0) == 2.0
    assert mask_scale_for("box", 1.0) == 1.0
    assert grow(boxes, scale=1.5, width=160, height=100).tolist() == [[30, 20, 90, 80]]


def test_a_ten_pixel_face_of_noise_is_flattened_by_blur_and_pixelate():
    frame = np.random.default_rng(3).integers(0, 256, (60, 60, 3), dtype=np.uint8)
    frame = cv2.GaussianBlur(frame, (3, 3), 0)  # noise with some correlation, like a tiny face
    boxes = np.array([[25, 25, 35, 35, 0.5]], dtype=np.float32)
    for mode in ("blur", "pixelate", "fill"):
        out = anonymize(frame, boxes, mode=mode)
        assert detail_ratios(frame, out, boxes)[0] < 0.2, mode


def test_consolidate_merges_overlapping_and_nested_boxes_and_keeps_apart_ones():
    from services.faces.masks import consolidate

    boxes = np.array([[0, 0, 10, 10, 0.3],     # overlaps the next by IoU 0.67: their union, the higher score
                      [0, 0, 10, 15, 0.9],
                      [100, 100, 140, 140, 0.5],
                      [110, 110, 120, 120, 0.8],  # inside the one above: goes, its score kept
                      [300, 0, 310, 10, 0.2]], dtype=np.float32)  # apart: kept as it is
    got = consolidate(boxes)
    assert got.tolist() == [[100, 100, 140, 140, 0.800000011920929], [0, 0, 10, 15, 0.8999999761581421],
                            [300, 0, 310, 10, 0.20000000298023224]]
    assert consolidate(np.zeros((0, 5), np.float32)).shape == (0, 5)


def test_consolidate_a_crowd_of_held_pairs_leaves_one_box_a_face():
    from services.faces.masks import consolidate

    rng = np.random.default_rng(3)
    corners = np.stack(np.meshgrid(np.arange(20) * 60.0, np.arange(15) * 45.0), -1).reshape(-1, 2)  # 300 faces
    faces = np.c_[corners, corners + 20, np.ones(len(corners))].astype(np.float32)
    held = faces + np.c_[rng.uniform(-2, 2, (len(faces), 4)), np.zeros(len(faces))].astype(np.float32)
    got = consolidate(np.r_[faces, held])
    assert len(got) == 300
    assert np.all(got[:, :2] <= np.minimum(faces, held)[[np.argmin(np.abs(faces[:, :2] - g[:2]).sum(1)) for g in got], :2])
