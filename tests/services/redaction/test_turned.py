"""Text standing on its side (a label stuck sideways on a parcel, a photo taken sideways): the networks find it in
pieces, as standing lines, so the search reads the frame turned a quarter too (``labels.STANDING``)."""

from __future__ import annotations

import numpy as np
import pytest

import services.redaction.labels as labels
from services.redaction.labels import find_labels, turned_blocks
from services.redaction.text import shared_text_detector
from tests.services.redaction.parcel import covered, parcel_photo


def _turn(frame: np.ndarray, box: tuple[int, int, int, int], quarters: int) -> tuple[np.ndarray, tuple]:
    """The frame and a box turned ``quarters`` quarter turns clockwise."""
    for _ in range(quarters):
        height = frame.shape[0]
        x1, y1, x2, y2 = box
        frame, box = np.ascontiguousarray(np.rot90(frame, k=-1)), (height - y2, x1, height - y1, x2)
    return frame, box


@pytest.mark.parametrize("quarters", [1, 3])
def test_an_address_block_standing_on_its_side_is_hidden_by_the_turned_reading(quarters, monkeypatch):
    frame, truth = parcel_photo()
    frame, address = _turn(frame, truth["text"], quarters)
    assert covered(find_labels(frame, kinds=("text",)), address, kind="text") >= 0.9
    monkeypatch.setattr(labels, "STANDING", float("inf"))  # the upright reading alone
    assert covered(find_labels(frame, kinds=("text",)), address, kind="text") < 0.5


def test_turned_blocks_come_back_in_the_frames_pixels():
    frame, truth = parcel_photo()
    # the address turned a quarter back (counter-clockwise) stands upright on the frame turned a quarter clockwise,
    # and comes back where it is on the frame
    frame, address = _turn(frame, truth["text"], 3)
    blocks = turned_blocks(frame, text_detector=shared_text_detector(), threshold=0.5)
    height, width = frame.shape[:2]
    assert len(blocks) and (blocks[:, [0, 2]] <= width).all() and (blocks[:, [1, 3]] <= height).all()
    x1, y1, x2, y2 = address
    best = max((min(b[2], x2) - max(b[0], x1)) * (min(b[3], y2) - max(b[1], y1)) for b in blocks)
    assert best >= 0.8 * (x2 - x1) * (y2 - y1)


def test_an_upright_label_is_not_read_turned(monkeypatch):
    frame, _ = parcel_photo()
    calls = []
    monkeypatch.setattr(labels, "turned_blocks", lambda *a, **k: calls.append(1) or np.zeros((0, 5), np.float32))
    find_labels(frame, kinds=("text",))
    assert calls == []
