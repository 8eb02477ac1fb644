"""Linear barcodes found by their gradients (``find_bar_regions``): a real Code 128 printed small and tilted on a
label in a real doorstep photo, as parcels are seen from a step away, is found (OpenCV's own detector misses it)
with the tracking number printed under it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from services.faces.masks import regions
from services.redaction.codes import find_bar_regions, find_barcodes
from services.redaction.labels import MASK_SCALE, MASK_SHAPE
from tests.services.redaction.parcel import PHOTO, TRACKING, _barcode


def _covered_by_all(boxes: np.ndarray, truth: np.ndarray) -> float:
    """The share of the pixels of ``truth`` (a boolean frame) inside any of ``boxes`` (a tilted code may come in
    two pieces)."""
    hit = np.zeros_like(truth)
    for bx1, by1, bx2, by2 in np.asarray(boxes)[:, :4].astype(int):
        hit[max(0, by1):max(0, by2), max(0, bx1):max(0, bx2)] = True
    return float(hit[truth].mean())


def _doorstep(angle: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grey frame, the bars' pixels, the printed digits' pixels; boolean frames): a 150 x 70 label with a 120-pixel Code 128 (modules
    about a pixel wide) and its number under it, turned by ``angle`` degrees and pasted on the box."""
    photo = Image.open(PHOTO).convert("RGB")
    label = Image.new("RGB", (150, 70), (245, 245, 240))
    bars = _barcode()
    bars = bars.crop(bars.convert("L").point(lambda v: 255 - v).getbbox())  # the bars without the white margins
    bars = bars.resize((120, 34), Image.Resampling.LANCZOS)
    label.paste(bars, (15, 10))
    draw = ImageDraw.Draw(label)
    draw.text((22, 44), TRACKING, fill=(30, 30, 30), font=ImageFont.load_default(size=8))
    truth_label = np.zeros((70, 150), np.uint8)
    truth_label[10:44, 15:135] = 1
    ink = np.asarray(label.convert("L"))[44:, :] < 128  # the digits' own pixels, under the bars
    truth_label[44:][ink] = 2
    big = Image.new("RGB", (220, 220), (0, 0, 0))
    mask = Image.new("L", (220, 220), 0)
    big.paste(label, (35, 75))
    mask.paste(255, (35, 75, 185, 145))
    where = Image.new("L", (220, 220), 0)
    where.paste(Image.fromarray(truth_label * 100), (35, 75))
    big, mask, where = (im.rotate(angle, resample=Image.Resampling.BILINEAR) for im in (big, mask, where))
    ox, oy = 150, 700
    photo.paste(big, (ox, oy), mask)
    frame = cv2.GaussianBlur(cv2.cvtColor(np.asarray(photo), cv2.COLOR_RGB2GRAY), (0, 0), 0.6)
    marks = np.asarray(where)

    def pixels(value: int) -> np.ndarray:
        out = np.zeros(frame.shape, bool)
        out[oy:oy + 220, ox:ox + 220] = np.abs(marks.astype(int) - value) < 20
        return out

    return frame, pixels(100), pixels(200)


@pytest.mark.parametrize("angle", [0, 30, -60])
def test_a_small_tilted_barcode_is_found_with_its_number(angle):
    frame, bars, digits = _doorstep(angle)
    boxes = find_bar_regions(frame)
    masked = regions(boxes, shape=MASK_SHAPE, scale=MASK_SCALE, width=frame.shape[1], height=frame.shape[0])
    assert _covered_by_all(masked, bars) >= 0.9
    assert _covered_by_all(masked, digits) >= 0.9  # the tracking number printed under the bars goes with them
    ys, xs = np.nonzero(digits)
    printing = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    assert _covered_by_all(find_barcodes(frame, text=printing), bars) >= 0.9


def test_bars_away_from_any_printing_are_not_taken_for_a_barcode():
    """The bare photo's brick wall and railing look like bars to the gradients; no line of text is near them."""
    frame = cv2.cvtColor(np.asarray(Image.open(PHOTO).convert("RGB")), cv2.COLOR_RGB2GRAY)
    assert len(find_bar_regions(frame))  # the wall's mortar lines look like bars...
    assert len(find_barcodes(frame, text=np.zeros((0, 4), np.float32))) == 0  # ...with no printing near them


def test_opencv_alone_misses_the_small_upright_one():
    frame, bars, _ = _doorstep(0)
    ok, points = cv2.barcode.BarcodeDetector().detect(frame)
    assert not ok or _covered_by_all(np.concatenate([points.min(axis=1), points.max(axis=1)], axis=1), bars) < 0.9
