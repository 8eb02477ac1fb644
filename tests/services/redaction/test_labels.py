"""Shipping labels on a parcel photo: a real Code 128 barcode, a real QR code and an address block printed onto a
real doorstep photo are found, and the face masks drawn around them leave neither code readable; bad input gives
a clear ImageError."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from services.core.errors import ConsoleError, ImageError, InvalidInput
from services.faces.masks import anonymize
from services.redaction.labels import (
    MASK_SCALE,
    MASK_SHAPE,
    LabelBox,
    as_array,
    find_labels,
    find_labels_in_photo,
    frame_from_bytes,
    from_dicts,
)
from tests.services.redaction.parcel import QR_TEXT, covered, jpeg, parcel_photo


@pytest.fixture(scope="module")
def parcel():
    frame, truth = parcel_photo()
    return frame, truth, find_labels(frame)


def _readable(frame: np.ndarray) -> tuple[int, str]:
    """(barcodes OpenCV still sees, the QR code's payload it reads) on a frame (OpenCV decodes no Code 128, so the
    barcode is checked as found or not)."""
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    ok, points = cv2.barcode.BarcodeDetector().detect(gray)
    qr, _, _ = cv2.QRCodeDetector().detectAndDecode(gray)
    return (len(points) if ok and points is not None else 0), qr


def test_the_printed_barcode_and_qr_code_are_found_and_redacted(parcel):
    frame, truth, boxes = parcel
    assert covered(boxes, truth["barcode"], kind="barcode") >= 0.95
    assert covered(boxes, truth["qr"], kind="qr") >= 0.95
    assert _readable(frame) == (1, QR_TEXT)  # found and read before
    for mode in ("blur", "pixelate", "fill"):
        out = anonymize(frame, as_array(boxes), mode=mode, shape=MASK_SHAPE, mask_scale=MASK_SCALE)
        assert _readable(out) == (0, ""), mode  # neither found nor read after, whatever the mode
        x1, y1, x2, y2 = truth["barcode"]
        assert np.abs(out[y1:y2, x1:x2].astype(int) - frame[y1:y2, x1:x2]).mean() > 20, mode
        assert (out[:300] == frame[:300]).all()  # the top of the photo (door, bricks) is untouched


def test_the_address_block_is_found_as_one_text_block(parcel):
    _, truth, boxes = parcel
    assert covered(boxes, truth["text"], kind="text") >= 0.95
    x1, y1, x2, y2 = truth["text"]
    block = [b for b in boxes if b.kind == "text" and b.x1 <= x1 + 5 and b.y1 <= y1 + 5 and b.x2 >= x2 - 5]
    assert len(block) == 1 and block[0].y2 - block[0].y1 < 2 * (y2 - y1)  # three lines joined, not the whole label


def test_an_encoded_photo_gives_boxes_in_its_own_pixels(parcel):
    frame, truth, _ = parcel
    boxes = find_labels_in_photo(jpeg(frame), side=800)  # searched reduced, given back full size
    assert covered(boxes, truth["qr"], kind="qr") >= 0.9
    assert covered(boxes, truth["text"], kind="text") >= 0.9
    assert from_dicts([b.as_dict() for b in boxes]) == [
        LabelBox(b.kind, round(b.x1, 1), round(b.y1, 1), round(b.x2, 1), round(b.y2, 1), round(b.score, 3)) for b in boxes]


@pytest.mark.parametrize("data", [b"", b"\xff\xd8\xff\xe0 not really a jpeg", b"GIF89a", jpeg(np.zeros((20, 20, 3), np.uint8))[:40]])
def test_corrupt_or_empty_photos_give_a_clear_error(data):
    with pytest.raises(ImageError) as err:
        find_labels_in_photo(data)
    assert isinstance(err.value, ConsoleError) and str(err.value)


@pytest.mark.parametrize("frame", [np.zeros((0, 0, 3), np.uint8), np.zeros((4, 600, 3), np.uint8),
                                   np.zeros((50, 50), np.uint8), np.zeros((50, 50, 3), np.float32)])
def test_frames_that_are_not_rgb_photos_give_a_clear_error(frame):
    with pytest.raises(ImageError):
        find_labels(frame)


def test_an_empty_photo_has_no_labels_and_unknown_kinds_are_refused():
    blank = np.full((400, 300, 3), 200, np.uint8)
    assert find_labels(blank) == []
    with pytest.raises(InvalidInput):
        find_labels(blank, kinds=["faces"])
    with pytest.raises(InvalidInput):
        from_dicts([{"kind": "qr", "x1": 1}])
    assert frame_from_bytes(jpeg(blank)).shape == (400, 300, 3)
