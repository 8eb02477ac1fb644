"""A label small in a large photo (a phone's photo of a whole parcel): the search reads the photo again at its own
resolution around what its first, reduced reading found or half saw (``labels.zoom_regions``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import services.redaction.labels as labels
from services.redaction import bar_network
from services.redaction.labels import LabelBox, find_labels, zoom_regions
from tests.services.redaction.parcel import PHOTO, covered

CODE_PHOTO = Path(__file__).resolve().parents[2] / "data" / "parcels" / "zxing-upca5-33.jpg"
CODE = (109, 72, 439, 366)  # the UPC-A with its digits in the 480 x 480 photo (benchmarks/label_redaction, tune2)


def _in_a_large_photo() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The code photo at its own size, on the doorstep photo enlarged to 4032 x 3024 (a phone's 12 megapixels)."""
    scene = np.asarray(Image.open(PHOTO).convert("RGB").resize((4032, 3024), Image.Resampling.BILINEAR)).copy()
    code = np.asarray(Image.open(CODE_PHOTO).convert("RGB"))
    ox, oy = 2600, 1500
    scene[oy:oy + code.shape[0], ox:ox + code.shape[1]] = code
    x1, y1, x2, y2 = CODE
    return scene, (x1 + ox, y1 + oy, x2 + ox, y2 + oy)


def test_a_code_small_in_a_large_photo_is_found_by_the_closer_reading(monkeypatch):
    frame, truth = _in_a_large_photo()
    # without the bar network's core rule, which alone finds this code in the first reading (tested apart)
    monkeypatch.setattr(bar_network, "CORE_CELLS", 10 ** 9)
    boxes = find_labels(frame, kinds=("barcode",))
    assert covered(boxes, truth, kind="barcode") >= 0.9
    assert all(b.kind == "barcode" for b in boxes)
    assert len({(b.kind, round(b.x1), round(b.y1), round(b.x2), round(b.y2)) for b in boxes}) == len(boxes)
    monkeypatch.setattr(labels, "ZOOM_FROM", 10 ** 6)  # the first reading alone
    assert covered(find_labels(frame, kinds=("barcode",)), truth, kind="barcode") < 0.5


def _box(x1: float, y1: float, x2: float, y2: float, kind: str = "text") -> LabelBox:
    return LabelBox(kind, x1, y1, x2, y2, 1.0)


def test_zoom_regions_grow_join_and_stay_within_the_frame():
    found = [_box(1000, 1000, 1040, 1010), _box(1100, 1000, 1140, 1010), _box(3000, 100, 3040, 110)]
    regions = zoom_regions(found, width=4032, height=3024)
    # the two near boxes (grown by ZOOM_PAD, more than 1.5 times their side) join; the far one stays apart
    assert regions.tolist() == [[1000 - labels.ZOOM_PAD, 1000 - labels.ZOOM_PAD, 1140 + labels.ZOOM_PAD,
                                 1010 + labels.ZOOM_PAD], [3000 - labels.ZOOM_PAD, 100 - labels.ZOOM_PAD,
                                                           3040 + labels.ZOOM_PAD, 110 + labels.ZOOM_PAD]]
    edge = zoom_regions([_box(0, 0, 200, 20)], width=4032, height=3024)
    assert edge.tolist() == [[0, 0, 200 + 300, 20 + 300]]  # grown by 1.5 x 200, clamped at the frame's corner


@pytest.mark.parametrize(("side", "regions"), [(200, 1), (600, 0)])
def test_regions_too_large_to_gain_are_not_read_again(side, regions):
    # a box grows by 1.5 times its longer side on every side: 200 px -> 800 px across, 600 px -> 2,400 (> ZOOM_SIDE)
    assert len(zoom_regions([_box(1500, 1500, 1500 + side, 1600)], width=4032, height=3024)) == regions
    # joined regions stop growing at ZOOM_SIDE: a row of boxes gives several regions, none longer than it
    row = [_box(x, 1000, x + 60, 1020) for x in range(0, 4000, 150)]
    regions = zoom_regions(row, width=4032, height=3024)
    assert len(regions) > 1 and (np.maximum(regions[:, 2] - regions[:, 0], regions[:, 3] - regions[:, 1])
                                 <= labels.ZOOM_SIDE).all()


def test_repeats_of_one_kind_are_joined_into_their_union_and_other_kinds_kept():
    first = [_box(100, 100, 300, 140), _box(100, 100, 300, 140, "barcode")]
    closer = [_box(110, 102, 320, 138),  # the same line, read closer: joined, the union
              _box(150, 110, 200, 130),  # a piece inside it: joined
              _box(1000, 100, 1100, 140)]  # another line: kept
    out = labels._unique(closer + first)
    assert [(b.kind, b.x1, b.y1, b.x2, b.y2) for b in out] == [
        ("text", 100, 100, 320, 140), ("text", 1000, 100, 1100, 140), ("barcode", 100, 100, 300, 140)]
    assert all(type(v) is float for b in out for v in (b.x1, b.y1, b.x2, b.y2, b.score))


class _CandidateOnly:
    """A bar network that sees no code but half sees one where the test puts it (a candidate), to show that the
    closer reading goes where the network points even when nothing else was found there."""

    def __init__(self, where: tuple[int, int, int, int]) -> None:
        self.where = where
        self.read: list[tuple[int, int]] = []

    def codes_and_candidates(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.read.append(gray.shape)
        none = np.zeros((0, 5), np.float32)
        return none, none, (np.array([[*self.where, 0.6]], np.float32) if len(self.read) == 1 else none)


def test_the_closer_reading_goes_where_the_network_half_sees_a_code():
    frame = np.full((2400, 3200, 3), 235, np.uint8)  # blank paper: the first reading finds nothing
    network = _CandidateOnly((2000, 1500, 2100, 1560))
    assert find_labels(frame, kinds=("barcode",), bar_network=network) == []
    grown = 1.5 * 100
    assert network.read == [(2400, 3200), (int(60 + 2 * grown), int(100 + 2 * grown))]  # the photo, then the region
