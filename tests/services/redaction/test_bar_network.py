"""The bar network (services.redaction.bar_network, the committed model): a real phone photo's Code 128 label is
found turned and blurred, and cut by the photo's edge up to the edge (where OpenCV's detector alone misses it);
the pipeline adds its boxes; plain and noisy frames give nothing; boxes are in the frame's pixels whatever its
size; a missing or corrupt model file is a ModelError."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from services.core.errors import ConsoleError, ModelError
from services.redaction.bar_network import BarNetwork, shared_bar_network
from services.redaction.codes import _opencv_barcodes
from services.redaction.labels import LabelBox, find_labels
from tests.services.redaction.parcel import covered, parcel_photo

ZXING = Path(__file__).resolve().parents[2] / "data" / "parcels" / "zxing-code128-36.jpg"
CODE = (180, 60, 450, 208)  # its barcode, bars and digits (tests/data/parcels/README.md)


@pytest.fixture(scope="module")
def network() -> BarNetwork:
    return shared_bar_network()


def _as_labels(boxes: np.ndarray) -> list[LabelBox]:
    return [LabelBox("barcode", *map(float, b[:4]), float(b[4])) for b in boxes]


def _turned(gray: np.ndarray, angle: float, blur: float) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The photo turned ``angle`` degrees about its centre and blurred (sigma ``blur``), and CODE's box after it."""
    h, w = gray.shape
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    out = cv2.warpAffine(gray, turn, (w, h), borderMode=cv2.BORDER_REFLECT)
    out = cv2.GaussianBlur(out, (0, 0), blur) if blur else out
    x1, y1, x2, y2 = CODE
    corners = np.array([[x1, y1, 1], [x2, y1, 1], [x2, y2, 1], [x1, y2, 1]]) @ turn.T
    low, high = corners.min(axis=0), corners.max(axis=0)
    return out, (int(low[0]), int(low[1]), int(high[0]), int(high[1]))


@pytest.mark.parametrize("angle", [0, 30, 60])
@pytest.mark.parametrize("blur", [0, 2.0])
def test_a_real_label_code_is_found_turned_and_softened(network, angle, blur):
    gray, truth = _turned(cv2.imread(str(ZXING), cv2.IMREAD_GRAYSCALE), angle, blur)
    assert covered(_as_labels(network.boxes(gray)), truth, kind="barcode") >= 0.9


def test_a_real_code_cut_by_the_photos_edge_is_found_up_to_the_edge(network):
    gray = cv2.imread(str(ZXING), cv2.IMREAD_GRAYSCALE)
    assert covered(_as_labels(network.boxes(gray)), CODE, kind="barcode") >= 0.9
    x1, y1, x2, y2 = CODE
    for keep in (0.5, 0.3):  # the code's right half, then seven tenths, cut away by a new edge
        edge = int(x1 + keep * (x2 - x1))
        cut = np.ascontiguousarray(gray[:, :edge])
        assert covered(_as_labels(network.boxes(cut)), (x1, y1, edge, y2), kind="barcode") >= 0.9, keep
    opencv = [LabelBox("barcode", *map(float, b), 1.0) for b in _opencv_barcodes(cut)]
    assert covered(opencv, (x1, y1, edge, y2), kind="barcode") < 0.5  # OpenCV's detector alone misses that one


def test_the_pipeline_adds_the_networks_boxes_with_their_scores(network):
    rgb = cv2.cvtColor(cv2.imread(str(ZXING)), cv2.COLOR_BGR2RGB)
    own = network.boxes(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    found = [b for b in find_labels(rgb, kinds=("barcode",), bar_network=network) if b.score < 1.0]
    assert len(found) == len(own) >= 1  # OpenCV's codes score 1.0; the network's carry its mean probability
    assert {(round(b.x1), round(b.y1), round(b.score, 3)) for b in found} == {
        (round(float(b[0])), round(float(b[1])), round(float(b[4]), 3)) for b in own}


@pytest.mark.parametrize("size", [(480, 640), (333, 517), (1200, 900), (37, 1001)])
def test_plain_and_noisy_frames_give_nothing_and_boxes_stay_in_the_frame(network, size):
    rng = np.random.default_rng(0)
    plain = np.full(size, 200, np.uint8)
    noisy = np.clip(rng.normal(128, 30, size=size), 0, 255).astype(np.uint8)
    assert len(network.boxes(plain)) == 0
    assert len(network.boxes(noisy)) == 0
    frame, _ = parcel_photo()
    gray = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (size[1], size[0]))
    boxes = network.boxes(gray)
    assert boxes.shape[1] == 5
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= size[1]).all()
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= size[0]).all()
    assert ((boxes[:, 4] > 0) & (boxes[:, 4] <= 1)).all()


def test_a_missing_or_corrupt_model_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="cannot be loaded"):
        BarNetwork(tmp_path / "absent.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ConsoleError, match="barcode network"):
        BarNetwork(broken)
