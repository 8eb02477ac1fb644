"""Searching a frame for faces: passes and tiles, the merge that keeps crowd neighbours apart and drops lone weak
boxes, and the real detector finding faces 10 to 16 pixels wide in real photos."""

from __future__ import annotations

import numpy as np
import pytest

from services.faces.detection import DEFAULT_THRESHOLD, CenterFaceDetector, clamp_boxes
from services.faces.search import MERGE_IOU, Pass, Plan, fine_passes, first_passes, iou, merge, nms, to_frame
from tests.services.faces.test_job import FACES, annotated
from tests.services.faces.test_masks import _scaled

needs_faces = pytest.mark.skipif(not (FACES / "annotations").is_dir(), reason="../shared/samples/faces not found (a fresh clone)")


def test_a_web_photo_is_searched_whole_at_its_size_twice_it_and_half_mirrored_too():
    plan = Plan()
    first = first_passes(1024, 768, plan)
    assert [(p.group, p.size, p.mirror) for p in first] == [
        ("base", (1024, 768), False), ("base-mirror", (1024, 768), True), ("coarse", (512, 384), False)]
    fine = fine_passes(1024, 768, plan, np.zeros((0, 5), np.float32))  # small enough: whole, whatever was seen
    assert [(p.group, p.size, p.region) for p in fine] == [("fine", (2048, 1536), (0, 0, 1024, 768)),
                                                            ("fine-mirror", (2048, 1536), (0, 0, 1024, 768))]
    assert [p.group for p in first_passes(200, 150, plan)] == ["base", "base-mirror"]  # no coarse pass of 100 px


def test_a_large_photo_is_tiled_where_the_base_passes_saw_something_within_the_budget():
    plan = Plan()
    none = fine_passes(4032, 3024, plan, np.zeros((0, 5), np.float32))
    assert none == []
    crowd = np.array([[100, 2500, 130, 2530, 0.06], [3900, 100, 3930, 130, 0.5]], dtype=np.float32)
    tiles = fine_passes(4032, 3024, plan, crowd)
    assert {p.group for p in tiles} == {"fine", "fine-mirror"} and 4 <= len(tiles) <= 8
    for p in tiles:
        assert plan.tile - 64 <= p.size[0] <= plan.tile + 32 and plan.tile - 64 <= p.size[1] <= plan.tile + 32
        x1, y1, x2, y2 = p.region
        assert any(x1 <= (c[0] + c[2]) / 2 < x2 and y1 <= (c[1] + c[3]) / 2 < y2 for c in crowd)
    everywhere = np.array([[x, y, x + 20, y + 20, 0.1] for x in range(0, 4000, 200) for y in range(0, 3000, 200)],
                          dtype=np.float32)
    budgeted = fine_passes(4032, 3024, plan, everywhere)
    assert sum(p.size[0] * p.size[1] for p in budgeted if not p.mirror) <= plan.budget


def test_boxes_of_a_mirrored_tile_come_back_to_the_frame():
    p = Pass("fine-mirror", (200, 100), (50, 20, 150, 70), True)  # 100 x 50 frame pixels at 2x, mirrored
    boxes = np.array([[20, 10, 60, 50, 0.9]], dtype=np.float32)  # in the mirrored input
    back = to_frame(boxes, p)
    assert back[0, :4].tolist() == pytest.approx([50 + (200 - 60) / 2, 20 + 5, 50 + (200 - 20) / 2, 20 + 25])


def test_the_merge_keeps_neighbours_and_agreement_and_drops_a_lone_weak_box():
    left = np.array([[100, 100, 120, 124, 0.9]], dtype=np.float32)
    right = np.array([[114, 100, 134, 124, 0.8]], dtype=np.float32)  # touching heads in a crowd: IoU about 0.27
    weak = np.array([[300, 300, 312, 314, 0.12]], dtype=np.float32)
    weak_again = weak + np.array([[1, 0, 1, 0, 0.02]], dtype=np.float32)
    lone = np.array([[500, 500, 512, 514, 0.15]], dtype=np.float32)
    got = merge([("base", np.concatenate([left, right, weak, lone])), ("fine", np.concatenate([weak_again, left]))],
                threshold=DEFAULT_THRESHOLD)
    centres = sorted(((b[0] + b[2]) / 2).round().tolist() for b in got)
    assert centres == [110, 124, 307]  # both neighbours, the weak face two passes saw; not the lone weak box
    assert len(nms(np.concatenate([left, left + 1]), 0.4)) == 1
    assert iou(left, right)[0, 0] < MERGE_IOU
    assert clamp_boxes(np.array([[-5, -5, 3, 3, 0.5]], np.float32), 10, 10).tolist() == [[0, 0, 3, 3, 0.5]]


@needs_faces
def test_faces_ten_to_sixteen_pixels_wide_are_found_in_real_photos():
    detector = CenterFaceDetector.shared()
    faces = [(name, box) for name, boxes in sorted(annotated().items()) for box in boxes]
    for width in (10, 12, 16):
        found = 0
        for name, box in faces:
            photo, truth = _scaled(name, box, width)
            canvas = np.full((480, 640, 3), 118, dtype=np.uint8)  # the photo small in a larger frame
            h, w = min(380, photo.shape[0]), min(440, photo.shape[1])
            canvas[100:100 + h, 200:200 + w] = photo[:h, :w]
            got = detector.detect(canvas)
            truth = truth + np.array([[200, 100, 200, 100, 0]], dtype=np.float32)
            found += bool(len(got)) and bool(iou(truth, got).max() > 0.2)
        assert found >= len(faces) - 1, (width, found, len(faces))


@needs_faces
def test_video_looks_run_the_8_bit_network_which_finds_the_small_faces_the_float_one_finds():
    from services.faces.detection import Int8Model

    detector = CenterFaceDetector.shared()
    video = detector.for_video()
    assert video is detector.for_video() and isinstance(video.model, Int8Model)  # loaded once, not the float one
    faces = [(name, box) for name, boxes in sorted(annotated().items()) for box in boxes]
    for width in (12, 16, 40):
        found = {"float": 0, "8-bit": 0}
        for name, box in faces:
            photo, truth = _scaled(name, box, width)
            canvas = np.full((720, 1280, 3), 118, dtype=np.uint8)  # a 720p frame, the face somewhere in a tile
            h, w = min(500, photo.shape[0]), min(900, photo.shape[1])
            canvas[150:150 + h, 300:300 + w] = photo[:h, :w]
            truth = truth + np.array([[300, 150, 300, 150, 0]], dtype=np.float32)
            for kind, d in (("float", detector), ("8-bit", video)):
                got, _ = d.detect_complete(canvas, threshold=DEFAULT_THRESHOLD)
                found[kind] += bool(len(got)) and bool(iou(truth, got).max() > 0.2)
        assert found["8-bit"] >= min(found["float"], len(faces) - 1), (width, found, len(faces))


def test_video_looks_see_each_part_of_the_frame_upright_and_mirrored_in_turn():
    """A 720p frame has four tiles: whole and tile looks alternate, and each part of the frame is seen mirrored
    every other time it comes round, so two looks at one face are two views of it (``services.faces.tracking``)."""
    views = [CenterFaceDetector.turn_view(turn, 1280, 720) for turn in range(18)]
    assert views[0::2] == ["whole", "whole-mirror"] * 4 + ["whole"]
    assert views[1::2] == ["tile"] * 4 + ["tile-mirror"] * 4 + ["tile"]
    regions = [CenterFaceDetector.turn_region(turn, 1280, 720) for turn in range(10)]
    assert regions[0::2] == [None] * 5  # the whole frame
    assert regions[1::2] == [(0, 0, 704, 416), (576, 0, 1280, 416), (0, 304, 704, 720), (576, 304, 1280, 720),
                             (0, 0, 704, 416)]  # native-size tiles overlapping by 128 px, round robin


@needs_faces
def test_a_mirrored_video_look_finds_the_faces_the_upright_one_finds_in_place():
    detector = CenterFaceDetector.shared().for_video()
    faces = [(name, box) for name, boxes in sorted(annotated().items()) for box in boxes]
    found = {"upright": 0, "mirrored": 0}
    for name, box in faces:
        photo, truth = _scaled(name, box, 60)
        canvas = np.full((720, 1280, 3), 118, dtype=np.uint8)
        h, w = min(500, photo.shape[0]), min(900, photo.shape[1])
        canvas[150:150 + h, 300:300 + w] = photo[:h, :w]
        truth = truth + np.array([[300, 150, 300, 150, 0]], dtype=np.float32)
        for kind, turn in (("upright", 0), ("mirrored", 2)):  # turn 2: the whole frame, mirrored
            got = detector.detect_turn(canvas, threshold=DEFAULT_THRESHOLD, turn=turn)
            found[kind] += bool(len(got)) and bool(iou(truth, got).max() > 0.5)  # back in the frame's own pixels
    assert found["upright"] >= len(faces) - 1 and found["mirrored"] >= len(faces) - 1, (found, len(faces))


def test_parts_of_a_larger_stronger_face_are_not_faces_of_their_own():
    from services.faces.search import drop_parts

    face = [100, 100, 400, 460, 0.95]
    eye, mouth = [150, 180, 260, 300, 0.4], [200, 330, 330, 450, 0.35]
    small_face_in_a_weak_box = [[500, 100, 800, 460, 0.2], [560, 160, 600, 210, 0.8]]  # the stronger one stays
    neighbour = [380, 100, 520, 260, 0.5]  # overlaps the face, mostly outside it
    boxes = np.array([face, eye, mouth, *small_face_in_a_weak_box, neighbour], dtype=np.float32)
    kept = drop_parts(boxes[np.argsort(-boxes[:, 4])])
    assert sorted(kept[:, 0].tolist()) == [100, 380, 500, 560]


@pytest.mark.skipif(not (FACES / "deepface_couple.jpg").is_file(), reason="../shared/samples/faces not found (a fresh clone)")
def test_a_couple_photographed_close_is_two_faces_not_eight():
    """Faces of 560-690 px: the tiles at twice the size saw eyes and mouths as six more faces inside them."""
    from PIL import Image

    photo = np.asarray(Image.open(FACES / "deepface_couple.jpg").convert("RGB"))
    found = CenterFaceDetector.shared().detect(photo, threshold=DEFAULT_THRESHOLD)
    assert len(found) == 2 and ((found[:, 2] - found[:, 0]) > 500).all()
