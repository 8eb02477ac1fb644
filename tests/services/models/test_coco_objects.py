"""The COCO object detector (YOLOX-Nano): letterbox, decoding and NMS on constructed outputs, the committed model
file, and the real model on real photos (a bag found with its box, none on photos without one; a small handbag
found only on a tile of its photo)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import skimage
from PIL import Image

from services.core.errors import InvalidInput
from services.models import coco_objects as co
from services.models.coco_objects import COCO_CLASSES, CocoDetector, ObjectBox
from tests.threads import run_at_once

BAGS = ("handbag", "backpack", "suitcase")
BAG_PHOTO = "half_length/mmpose_deepfasion2_000264.jpg"  # a woman holding a brown shoulder bag at her side
NO_BAG_PHOTOS = ("half_length/ootd_vitonhd_05997_00.jpg", "full_length/ootd_dresscode_053228_0.jpg")
SMALL_BAG = Path(__file__).resolve().parents[2] / "data" / "bags" / "coco_000000456496.jpg"  # tests/data/bags
SMALL_BAG_AT = (0.40, 0.40, 0.50, 0.58)  # the handbag on the ledge by her hand: left, top, right, bottom (ratios)
MODEL_SHA256 = "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14"  # as in data/README.md


def _raw(cells: dict[int, tuple[float, float, float, float, float, int, float]], *, side: int = 416) -> np.ndarray:
    """A network output (N, 85) that is all zeros but for the given cells: index -> (dx, dy, log w, log h,
    objectness, class, class probability)."""
    raw = np.zeros((sum((side // s) ** 2 for s in co.STRIDES), 85), dtype=np.float32)
    for i, (dx, dy, lw, lh, obj, k, p) in cells.items():
        raw[i, :5] = (dx, dy, lw, lh, obj)
        raw[i, 5 + k] = p
    return raw


def test_the_grid_follows_the_strides_in_the_networks_order():
    cells, strides = co.grid(side=416)
    assert len(cells) == 52 * 52 + 26 * 26 + 13 * 13 == 3549
    assert cells[0].tolist() == [0, 0] and cells[1].tolist() == [1, 0] and cells[52].tolist() == [0, 1]  # x first
    assert strides[0, 0] == 8 and strides[52 * 52, 0] == 16 and strides[-1, 0] == 32
    assert cells[52 * 52].tolist() == [0, 0] and cells[-1].tolist() == [12, 12]


def test_decode_places_a_box_by_its_cell_stride_and_log_size_in_picture_pixels():
    i = 52 * 52 + 26 * 3 + 5  # stride 16, cell x=5, y=3
    raw = _raw({i: (0.5, 0.25, np.log(4.0), np.log(2.0), 0.8, COCO_CLASSES.index("handbag"), 0.5)})
    boxes, scores = co.decode(raw, scale=0.5)  # the picture was halved to fit the input
    cx, cy, w, h = (5 + 0.5) * 16, (3 + 0.25) * 16, 4 * 16, 2 * 16
    assert boxes[i] == pytest.approx(np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]) / 0.5)
    assert scores.shape == (3549, 80)
    assert scores[i, COCO_CLASSES.index("handbag")] == pytest.approx(0.4)  # objectness x class probability
    assert scores[i].sum() == pytest.approx(0.4) and np.count_nonzero(scores) == 1
    with pytest.raises(InvalidInput, match="does not fit a 416 px input"):
        co.decode(raw[:100], scale=1.0)


def test_nms_keeps_the_best_of_overlapping_boxes_and_every_separate_one():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 5]], dtype=np.float32)
    scores = np.array([0.6, 0.9, 0.5, 0.7], dtype=np.float32)
    assert co.nms(boxes, scores, threshold=0.45) == [1, 3, 2]  # 0 overlaps 1 (IoU 0.68); 3 overlaps 1 by 0.37
    assert co.nms(boxes, scores, threshold=0.3) == [1, 2]
    assert co.nms(boxes[:0], scores[:0]) == []
    assert co.iou(boxes[0], boxes[1:2])[0] == pytest.approx(81 / 119)


def test_objects_run_nms_per_class_and_keep_only_the_wanted_classes():
    k_bag, k_case = COCO_CLASSES.index("handbag"), COCO_CLASSES.index("suitcase")
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10]], dtype=np.float32)
    scores = np.zeros((3, 80), dtype=np.float32)
    scores[0, k_bag], scores[1, k_bag], scores[2, k_case], scores[2, 0] = 0.3, 0.2, 0.25, 0.9
    found = co.objects(boxes, scores, classes=BAGS)
    assert [(o.name, round(o.score, 2)) for o in found] == [("handbag", 0.3), ("suitcase", 0.25)]  # 0.2 suppressed
    assert [o.name for o in co.objects(boxes, scores)][0] == "person"
    assert co.objects(boxes, scores, classes=BAGS, min_score=0.5) == []
    with pytest.raises(InvalidInput, match="not a COCO class"):
        co.objects(boxes, scores, classes=("purse",))
    box = ObjectBox("handbag", 0.3, -5, 10, 50, 120)
    assert box.ratios(width=100, height=100) == {"left": 0.0, "top": 0.1, "width": 0.5, "height": 0.9}  # clipped


def test_letterbox_is_top_left_bgr_with_grey_padding():
    picture = Image.new("RGB", (200, 100), (255, 0, 0))  # red, twice as wide as high
    x, scale = co.letterbox(picture, side=64)
    assert x.shape == (3, 64, 64) and x.dtype == np.float32 and scale == pytest.approx(0.32)
    assert x[:, 0, 0].tolist() == [0, 0, 255]  # BGR, 0..255, not normalised
    assert x[:, 40, 10].tolist() == [114, 114, 114]  # below the 32 rows of picture: padding
    with pytest.raises(InvalidInput, match="empty picture"):
        co.letterbox(Image.new("RGB", (0, 10)))


def test_the_committed_model_is_the_recorded_file_not_a_pointer():
    path = co.model_path()
    data = path.read_bytes()
    assert len(data) > 3_000_000 and not data.startswith(b"version https://git-lfs")
    assert hashlib.sha256(data).hexdigest() == MODEL_SHA256
    readme = (path.parent / "README.md").read_text()
    assert MODEL_SHA256 in readme and (path.parent / "LICENSE.yolox").read_text().lstrip().startswith("Apache License")


def test_real_photos_give_sensible_coco_objects():
    data = Path(skimage.__file__).parent / "data"
    coffee = CocoDetector.shared().detect(Image.open(data / "coffee.png").convert("RGB"), min_score=0.3)
    assert coffee[0].name == "cup" and coffee[0].score > 0.8
    astronaut = CocoDetector.shared().detect(Image.open(data / "astronaut.png").convert("RGB"), classes=("person",))
    assert astronaut[0].score > 0.8 and astronaut[0].ratios(width=512, height=512)["height"] > 0.8


def test_a_real_bag_is_found_with_its_box_and_photos_without_one_give_none(samples):
    picture = Image.open(samples / BAG_PHOTO).convert("RGB")
    w, h = picture.size
    best = CocoDetector.shared().detect(picture, classes=BAGS)[0]
    assert best.name in BAGS and best.score > 0.3
    box = best.ratios(width=w, height=h)
    assert box["top"] > 0.6 and box["left"] < 0.3 and 0.1 < box["width"] < 0.4  # the bag at her lower left
    for name in NO_BAG_PHOTOS:
        found = CocoDetector.shared().detect(Image.open(samples / name).convert("RGB"), classes=BAGS)
        assert max((o.score for o in found), default=0.0) < 0.05, (name, found)


def test_tiles_cover_the_picture_column_by_column_with_overlapping_neighbours():
    boxes = co.tiles(width=640, height=426)
    assert len(boxes) == co.TILE_GRID ** 2 == 9
    assert boxes[0] == (0, 0, 256, 170) and boxes[1][0] == 0 and boxes[co.TILE_GRID][1] == 0  # down first
    assert max(r for _, _, r, _ in boxes) == 640 and max(b for _, _, _, b in boxes) == 426  # to the far edges
    x0, _, x1, _ = boxes[0]
    nx0 = boxes[co.TILE_GRID][0]
    assert x1 - nx0 == pytest.approx(co.TILE_OVERLAP * (x1 - x0), abs=1)  # neighbours share a quarter of a side
    covered = np.zeros((426, 640), dtype=bool)
    for left, top, right, bottom in boxes:
        covered[top:bottom, left:right] = True
    assert covered.all()
    assert co.tiles(width=100, height=50, grid=1, overlap=0.0) == [(0, 0, 100, 50)]
    for bad in ({"width": 0, "height": 10}, {"width": 10, "height": 10, "grid": 0},
                {"width": 10, "height": 10, "overlap": 1.0}):
        with pytest.raises(InvalidInput):
            co.tiles(**bad)


def test_a_small_handbag_missed_on_the_whole_photo_is_found_on_a_tile_with_its_box():
    """A real street photo (CC BY 2.0, tests/data/bags/README.md): the handbag beside the woman's hand is about
    30 x 50 px of 640 x 426. On the whole photo, letterboxed to 416 px, the detector scores it a few hundredths;
    on the tile that holds it (2.5 times larger at the input) it finds it, and the box maps back onto the bag."""
    picture = Image.open(SMALL_BAG).convert("RGB")
    w, h = picture.size
    detector = CocoDetector.shared()
    whole = detector.detect(picture, classes=("handbag", "backpack"))
    assert max((o.score for o in whole), default=0.0) < 0.05, whole
    found = detector.detect_tiles(picture, classes=("handbag", "backpack"))
    best = found[0]
    assert best.name == "handbag" and best.score > 0.2, found[:3]
    box = best.ratios(width=w, height=h)
    x0, y0, x1, y1 = SMALL_BAG_AT
    assert x0 < box["left"] and box["left"] + box["width"] < x1 and y0 < box["top"] and box["top"] + box["height"] < y1
    assert [o.score for o in found] == sorted((o.score for o in found), reverse=True)
    for a in found:  # merged across the overlapping tiles: no two boxes of a class overlap by more than NMS allows
        for b in found:
            if a is not b and a.name == b.name:
                ab = np.array([[b.left, b.top, b.right, b.bottom]])
                assert co.iou(np.array([a.left, a.top, a.right, a.bottom]), ab)[0] <= co.NMS_IOU


def test_one_detector_per_process_even_when_threads_ask_at_once(monkeypatch):
    monkeypatch.setattr(co, "_shared", None)  # as in a fresh process: four threads race to load it
    shared = run_at_once([CocoDetector.shared] * 4)
    assert all(d is shared[0] for d in shared) and isinstance(shared[0], CocoDetector)
