"""The bar network (services.redaction.bar_network, the committed model): a real phone photo's Code 128 label is
found turned and blurred, and cut by the photo's edge up to the edge (where OpenCV's detector alone misses it);
the pipeline adds its boxes; plain and noisy frames give nothing; boxes are in the frame's pixels whatever its
size; a missing, empty, corrupt or other model file is a ModelError."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from services.core.errors import ModelError
from services.redaction.bar_network import BarNetwork, shared_bar_network
from services.redaction.codes import _opencv_barcodes
from services.redaction.labels import LabelBox, find_labels
from services.redaction.text import model_path
from tests.services.redaction.parcel import covered

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
        if keep == 0.3:  # OpenCV's detector alone misses that one
            opencv = [LabelBox("barcode", *map(float, b), 1.0) for b in _opencv_barcodes(cut)]
            assert covered(opencv, (x1, y1, edge, y2), kind="barcode") < 0.5


def test_the_pipeline_adds_the_networks_boxes_with_their_scores(network):
    rgb = cv2.cvtColor(cv2.imread(str(ZXING)), cv2.COLOR_BGR2RGB)
    own = network.boxes(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    without = find_labels(rgb, kinds=("barcode",), bar_network=_Nothing())
    found = find_labels(rgb, kinds=("barcode",), bar_network=network)
    assert len(own) >= 1 and found[:len(without)] == without  # OpenCV's and the gradient finder's first, as before
    assert [(b.x1, b.y1, b.x2, b.y2, b.score) for b in found[len(without):]] == [
        tuple(float(v) for v in b) for b in own]  # then the network's, each with its mean probability


class _Nothing:
    """A bar network that finds nothing (to see the pipeline's boxes without it)."""

    def boxes(self, gray: np.ndarray) -> np.ndarray:
        return np.zeros((0, 5), np.float32)


@pytest.mark.parametrize("factor", [0.5, 0.77, 1.9, 3.0, 4.0])
def test_boxes_are_in_the_frames_pixels_at_any_size(network, factor):
    """Smaller and larger than the network's size (SIDE: larger frames are reduced, smaller ones read as they are),
    with sides that are not multiples of 8: the box lands on the code."""
    gray = cv2.imread(str(ZXING), cv2.IMREAD_GRAYSCALE)
    resized = cv2.resize(gray, None, fx=factor, fy=factor * 1.03, interpolation=cv2.INTER_CUBIC)
    x1, y1, x2, y2 = CODE
    truth = (int(x1 * factor), int(y1 * factor * 1.03), int(x2 * factor), int(y2 * factor * 1.03))
    boxes = network.boxes(resized)
    assert covered(_as_labels(boxes), truth, kind="barcode") >= 0.9
    biggest = boxes[np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))]
    assert (biggest[2] - biggest[0]) * (biggest[3] - biggest[1]) < 2.5 * (truth[2] - truth[0]) * (truth[3] - truth[1])


@pytest.mark.parametrize("size", [(480, 640), (333, 517), (37, 1001), (1, 1), (8, 8000)])
def test_plain_and_noisy_frames_give_nothing(network, size):
    rng = np.random.default_rng(0)
    assert network.boxes(np.full(size, 200, np.uint8)).shape == (0, 5)
    assert network.boxes(np.clip(rng.normal(128, 30, size=size), 0, 255).astype(np.uint8)).shape == (0, 5)


@pytest.mark.parametrize("content", [None, b"", b"not a model"])
def test_a_missing_empty_or_corrupt_model_is_a_model_error(tmp_path, content):
    path = tmp_path / "barcode_net.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match="cannot load the barcode network"):
        BarNetwork(path)


def test_another_model_is_refused_by_its_shape():
    with pytest.raises(ModelError, match="is not the barcode network"):
        BarNetwork(model_path())  # the text detector: three colour channels in
