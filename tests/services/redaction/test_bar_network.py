"""The bar network (services.redaction.bar_network, the committed model): a real phone photo's Code 128 label is
found turned and blurred, and cut by the photo's edge up to the edge (where OpenCV's detector alone misses it);
the pipeline adds its boxes; plain and noisy frames give nothing; boxes are in the frame's pixels whatever its
size; a code photographed large or small is found by the second reading at half or twice the size; a missing,
empty, corrupt or other model file is a ModelError."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pystrich.datamatrix import DataMatrixEncoder

from services.core.errors import ModelError
from services.redaction import bar_network
from services.redaction.bar_network import BarNetwork, shared_bar_network
from services.redaction.codes import _opencv_barcodes, find_qr_codes
from services.redaction.labels import LabelBox, find_labels
from services.redaction.text import model_path
from tests.services.redaction.parcel import covered, parcel_photo

ZXING = Path(__file__).resolve().parents[2] / "data" / "parcels" / "zxing-code128-36.jpg"
CODE = (180, 60, 450, 208)  # its barcode, bars and digits (tests/data/parcels/README.md)
DOORSTEP = Path(__file__).resolve().parents[2] / "data" / "parcels" / "doorstep-small-code.jpg"
DOORSTEP_CODE = (520, 962, 633, 992)  # the carton's printed code, bars one to three pixels wide


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
    assert covered(_as_labels(network.codes(gray)[0]), truth, kind="barcode") >= 0.9


def test_a_real_code_cut_by_the_photos_edge_is_found_up_to_the_edge(network):
    gray = cv2.imread(str(ZXING), cv2.IMREAD_GRAYSCALE)
    assert covered(_as_labels(network.codes(gray)[0]), CODE, kind="barcode") >= 0.9
    x1, y1, x2, y2 = CODE
    for keep in (0.5, 0.3):  # the code's right half, then seven tenths, cut away by a new edge
        edge = int(x1 + keep * (x2 - x1))
        cut = np.ascontiguousarray(gray[:, :edge])
        assert covered(_as_labels(network.codes(cut)[0]), (x1, y1, edge, y2), kind="barcode") >= 0.9, keep
        if keep == 0.3:  # OpenCV's detector alone misses that one
            opencv = [LabelBox("barcode", *map(float, b), 1.0) for b in _opencv_barcodes(cut)]
            assert covered(opencv, (x1, y1, edge, y2), kind="barcode") < 0.5


def test_the_pipeline_adds_the_networks_boxes_with_their_scores(network):
    rgb = cv2.cvtColor(cv2.imread(str(ZXING)), cv2.COLOR_BGR2RGB)
    own, _ = network.codes(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    without = find_labels(rgb, kinds=("barcode",), bar_network=_Nothing())
    found = find_labels(rgb, kinds=("barcode",), bar_network=network)
    assert len(own) >= 1 and found[:len(without)] == without  # OpenCV's and the gradient finder's first, as before
    assert [(b.x1, b.y1, b.x2, b.y2, b.score) for b in found[len(without):]] == [
        tuple(float(v) for v in b) for b in own]  # then the network's, each with its mean probability


class _Nothing:
    """A bar network that finds nothing (to see the pipeline's boxes without it)."""

    def codes(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((0, 5), np.float32), np.zeros((0, 5), np.float32)

    def codes_and_candidates(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (*self.codes(gray), np.zeros((0, 5), np.float32))


@pytest.mark.parametrize("factor", [0.5, 0.77, 1.9, 3.0, 4.0])
def test_boxes_are_in_the_frames_pixels_at_any_size(network, factor):
    """Smaller and larger than the network's size (SIDE: larger frames are reduced, smaller ones read as they are
    and at half or twice the size), with sides that are not multiples of 8: the box lands on the code."""
    gray = cv2.imread(str(ZXING), cv2.IMREAD_GRAYSCALE)
    resized = cv2.resize(gray, None, fx=factor, fy=factor * 1.03, interpolation=cv2.INTER_CUBIC)
    x1, y1, x2, y2 = CODE
    truth = (int(x1 * factor), int(y1 * factor * 1.03), int(x2 * factor), int(y2 * factor * 1.03))
    boxes = network.codes(resized)[0]
    assert covered(_as_labels(boxes), truth, kind="barcode") >= 0.9
    biggest = boxes[np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))]
    assert (biggest[2] - biggest[0]) * (biggest[3] - biggest[1]) < 2.5 * (truth[2] - truth[0]) * (truth[3] - truth[1])


def _found_with_and_without(network, gray, truth, monkeypatch, **off) -> tuple[float, float]:
    """How much of ``truth`` the network's linear boxes cover, as it reads, and with the settings in ``off``; both
    without the core rule (``CORE_CELLS``), which alone also finds these codes: the second reading is tested apart."""
    monkeypatch.setattr(bar_network, "CORE_CELLS", 10 ** 9)
    with_it = covered(_as_labels(network.codes(gray)[0]), truth, kind="barcode")
    for name, value in off.items():
        monkeypatch.setattr(bar_network, name, value)
    return with_it, covered(_as_labels(network.codes(gray)[0]), truth, kind="barcode")


def test_a_code_photographed_large_is_found_by_the_reading_at_half_size(network, monkeypatch):
    """The label photographed close: its code about 1,050 px wide on a 1400-px frame. Its bars are too wide for the
    network's field, and one reading finds nothing; the second, at half the size, finds it whole."""
    gray = cv2.imread(str(ZXING), cv2.IMREAD_GRAYSCALE)
    left, top = 140, 30
    factor = 1400 / 360
    close = cv2.resize(gray[top:240, left:500], None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    x1, y1, x2, y2 = CODE
    truth = tuple(int((v - o) * factor) for v, o in ((x1, left), (y1, top), (x2, left), (y2, top)))
    found, alone = _found_with_and_without(network, close, truth, monkeypatch, HALF_FROM=10 ** 9)
    assert found >= 0.9 and alone < 0.5


def test_a_code_photographed_small_is_found_by_the_reading_at_twice_the_size(network, monkeypatch):
    """The photo at 0.35 of its size (224 x 168, the code 95 px wide): one reading misses it, the second, at twice
    the size, finds it."""
    gray = cv2.imread(str(ZXING), cv2.IMREAD_GRAYSCALE)
    small = cv2.resize(gray, None, fx=0.35, fy=0.35, interpolation=cv2.INTER_AREA)
    truth = tuple(int(v * 0.35) for v in CODE)
    found, alone = _found_with_and_without(network, small, truth, monkeypatch, DOUBLE_BELOW=0,
                                           DOUBLE_BARS_BELOW=0)
    assert found >= 0.9 and alone < 0.5


def test_fine_bars_on_a_photo_read_at_its_own_size_are_found_by_the_bar_map_at_twice_the_size(network, monkeypatch):
    """A doorstep photo (900 x 1200, read at its own size): the carton's code is 113 px wide, its bars one to three
    pixels. The reading at its size and the one at half miss it; the bar map at twice the size finds it (its cells'
    mean under MIN_SCORE, with a core), in a box about its own size."""
    gray = cv2.imread(str(DOORSTEP), cv2.IMREAD_GRAYSCALE)
    linear = network.codes(gray)[0]
    monkeypatch.setattr(bar_network, "DOUBLE_BARS_BELOW", 0)
    assert covered(_as_labels(network.codes(gray)[0]), DOORSTEP_CODE, kind="barcode") < 0.5
    assert covered(_as_labels(linear), DOORSTEP_CODE, kind="barcode") >= 0.9
    x1, y1, x2, y2 = DOORSTEP_CODE
    near = [b for b in linear if b[0] < x2 and b[2] > x1 and b[1] < y2 and b[3] > y1]
    assert len(near) == 1 and (near[0][2] - near[0][0]) * (near[0][3] - near[0][1]) < 4 * (x2 - x1) * (y2 - y1)


def test_the_twice_size_reading_of_a_larger_frame_adds_nothing_to_the_2d_map(network, monkeypatch):
    """Above DOUBLE_BELOW the second reading at twice the size feeds the bar map only: the 2-D map is the same with
    and without it."""
    gray = cv2.imread(str(DOORSTEP), cv2.IMREAD_GRAYSCALE)
    with_it = network.probability(gray)[0]
    monkeypatch.setattr(bar_network, "DOUBLE_BARS_BELOW", 0)
    without = network.probability(gray)[0]
    assert np.array_equal(with_it[bar_network.MATRIX], without[bar_network.MATRIX])
    assert (with_it[bar_network.BARS] >= without[bar_network.BARS]).all()
    assert (with_it[bar_network.BARS] > without[bar_network.BARS] + 0.5).any()


@pytest.mark.parametrize("size", [(480, 640), (333, 517), (37, 1001), (1, 1), (8, 8000)])
def test_plain_and_noisy_frames_give_nothing(network, size):
    rng = np.random.default_rng(0)
    for frame in (np.full(size, 200, np.uint8), np.clip(rng.normal(128, 30, size=size), 0, 255).astype(np.uint8)):
        linear, matrices = network.codes(frame)
        assert linear.shape == matrices.shape == (0, 5)


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


def _cut_qr() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The parcel photo cut through its QR code's middle both ways (tests/services/redaction/parcel.py): the code's
    lower right quarter shows at the crop's top left corner, none of its three finder patterns. Its visible box."""
    frame, truth = parcel_photo()
    x1, y1, x2, y2 = truth["qr"]
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    crop = np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[cy:cy + 400, cx:cx + 400])
    return crop, (0, 0, x2 - cx, y2 - cy)


def test_a_2d_code_without_its_finder_patterns_is_found_as_a_2d_code(network):
    gray, visible = _cut_qr()
    assert len(find_qr_codes(gray)) == 0  # OpenCV's QR detectors need a finder pattern
    linear, matrices = network.codes(gray)
    assert covered([LabelBox("qr", *map(float, b[:4]), float(b[4])) for b in matrices], visible, kind="qr") >= 0.9
    assert covered(_as_labels(linear), visible, kind="barcode") < 0.5  # not taken for bars


def test_a_data_matrix_on_a_label_is_hidden_as_a_2d_code(network):
    frame, truth = parcel_photo()
    cells = np.array(DataMatrixEncoder("1Z999AA10123456784 JANE Q CUSTOMER").matrix, dtype=bool)
    n = cells.shape[0]
    symbol = np.zeros((n + 2, n + 2), bool)
    symbol[1:-1, 1:-1] = cells
    symbol[:, 0] = symbol[-1, :] = True  # the L-shaped finder
    symbol[0, 0::2] = symbol[-1::-2, -1] = True  # the clock track
    code = cv2.resize(np.where(symbol, 0, 255).astype(np.uint8), None, fx=5, fy=5, interpolation=cv2.INTER_NEAREST)
    x1, y1, x2, y2 = truth["qr"]  # printed where the QR code was, on white
    frame = frame.copy()
    frame[y1 - 20:y2 + 20, x1 - 20:x2 + 20] = 250
    frame[y1:y1 + code.shape[0], x1:x1 + code.shape[1]] = code[..., None]
    where = (x1, y1, x1 + code.shape[1], y1 + code.shape[0])
    assert covered([b for b in find_labels(frame, kinds=("qr",), bar_network=_Nothing())], where, kind="qr") < 0.5
    assert covered(find_labels(frame, kinds=("qr",), bar_network=network), where, kind="qr") >= 0.9


def _map_with_a_group(mean_low: float, core: int) -> np.ndarray:
    """A 40 x 40 map with one 10 x 10 group of cells: ``core`` of them at 0.99, the rest at ``mean_low``."""
    prob = np.zeros((40, 40), np.float32)
    cells = np.full(100, mean_low, np.float32)
    cells[:core] = 0.99
    prob[10:20, 10:20] = cells.reshape(10, 10)
    return prob


@pytest.mark.parametrize(("cored", "core_cells", "found"),
                         [(True, bar_network.CORE_CELLS, 1), (True, bar_network.CORE_CELLS - 1, 0),
                          (False, bar_network.CORE_CELLS, 0)])
def test_a_group_under_the_minimum_score_counts_for_bars_only_with_a_core(cored, core_cells, found):
    # stacked codes seen at a slant: one group whose gaps pull its mean (here about 0.6-0.7) under MIN_SCORE
    prob = _map_with_a_group(0.55, core_cells)
    assert prob[prob > 0].mean() < bar_network.MIN_SCORE
    boxes = bar_network._groups(prob, 4.0, 4.0, (160, 160), threshold=bar_network.THRESHOLD,
                                min_score=bar_network.MIN_SCORE, core=cored)
    assert len(boxes) == found
    if found:
        assert boxes[0, :4].tolist() == [40.0, 40.0, 80.0, 80.0]
