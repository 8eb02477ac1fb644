"""Following faces across looks: the writer's follower gives the same masks as linking everything at once, a face
only a tile finds stays masked until its tile comes round again, a lone weak look is dropped, and an error on the
looking thread reaches the writer."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from services.core.errors import ImageError
from services.faces.tracking import Feed, Follower, Linker, boxes_at, confirmed, link, offset_at

FACE = np.array([[100, 100, 130, 136, 0.9]], dtype=np.float32)
NONE = np.zeros((0, 5), dtype=np.float32)


def _moving(frame: int) -> np.ndarray:
    return FACE + np.array([[frame, 0, frame, 0, 0]], dtype=np.float32)


def test_the_follower_masks_what_linking_all_looks_at_once_masks():
    looks = {f: (_moving(f) if f % 6 == 0 else NONE) for f in range(0, 60, 3)}  # whole-frame looks see it
    feed = Feed(step=3)
    feed.round = 12
    for f, boxes in looks.items():
        feed.put(f, boxes, whole=(f // 3) % 2 == 0)
    feed.close()
    follower = Follower(feed)
    got = {f: follower.boxes(f) for f in range(60)}
    tracks = confirmed(link(looks, step=3, gap=15))
    for t in tracks:
        t.hold = 6
    for f in range(60):
        assert np.allclose(got[f][:, :4], boxes_at(tracks, f, hold=3)[:, :4]), f
    assert len(follower.tracks()) == 1 and all(len(got[f]) == 1 for f in range(0, 61 - 6))


def test_a_face_only_a_tile_finds_stays_masked_until_its_tile_comes_round():
    feed = Feed(step=3)
    feed.round = 24  # four tiles: a tile look every other look, each tile every 8 looks
    for f in range(0, 120, 3):
        seen = f in (27, 51)  # odd looks (tiles), 24 frames apart
        feed.put(f, FACE.copy() if seen else NONE, whole=(f // 3) % 2 == 0)
    feed.close()
    follower = Follower(feed)
    masked = [f for f in range(120) if len(follower.boxes(f))]
    assert masked == list(range(27 - 24, 51 + 24 + 1))  # held a round before and after, no gap between


def test_a_weak_face_seen_once_is_dropped_and_seen_twice_is_kept():
    weak = FACE.copy()
    weak[0, 4] = 0.15
    once = confirmed(link({0: weak, 3: NONE, 6: NONE}, step=3))
    twice = confirmed(link({0: weak, 3: weak + 1, 6: NONE}, step=3))
    sure = confirmed(link({0: FACE, 3: NONE}, step=3))
    assert (len(once), len(twice), len(sure)) == (0, 1, 1)


def test_an_error_on_the_looking_thread_reaches_the_writer():
    feed = Feed(step=3)
    looker = threading.Thread(target=lambda: (feed.put(0, FACE, whole=True),
                                              feed.close(ImageError("the video stops being readable at frame 3"))))
    looker.start()
    looker.join()
    with pytest.raises(ImageError, match="stops being readable"):
        Follower(feed).boxes(0)


def _panning_tile_looks(*, with_offsets: bool) -> tuple[dict[int, np.ndarray], Follower]:
    """A small weak face that only one tile finds, looked at every 24 frames while the camera pans 2 px a frame
    to the left (the scene, and the face with it, moves 2 px a frame to the right): what the writer masks, and
    the writer's follower."""
    feed = Feed(step=3)
    feed.round = 24
    weak = np.array([[100, 200, 114, 216, 0.15]], dtype=np.float32)
    for f in range(0, 120, 3):
        seen = f in (27, 51, 75)
        boxes = weak + np.array([[2 * f, 0, 2 * f, 0, 0]], dtype=np.float32) if seen else NONE
        feed.put(f, boxes, whole=(f // 3) % 2 == 0, offset=(2.0 * f, 0.0) if with_offsets else (0.0, 0.0))
    feed.close()
    follower = Follower(feed)
    return {f: follower.boxes(f) for f in range(120)}, follower


def test_a_face_a_tile_sees_once_a_round_is_followed_while_the_camera_pans():
    got, follower = _panning_tile_looks(with_offsets=True)
    for f in range(27, 76):  # between the looks the mask is where the face is
        assert len(got[f]) == 1, f
        assert got[f][0, 0] == pytest.approx(100 + 2 * f, abs=0.5) and got[f][0, 1] == pytest.approx(200)
    # held a round before its first look: where the scene carried it, and where it was first seen
    assert sorted(np.round(got[3][:, 0]).tolist()) == [106, 154]
    assert follower.most_at_once == 1  # two masks there, one face
    # without the camera's motion the looks, 48 px apart, do not overlap: three lone weak boxes, all dropped
    got, follower = _panning_tile_looks(with_offsets=False)
    assert not any(len(b) for b in got.values()) and follower.most_at_once == 0


def test_a_face_the_camera_follows_still_joins_in_the_frame():
    # the camera follows a walking person: the scene moves 2 px a frame, the face stays put in the frame
    links = Linker(gap=27)
    weak = np.array([[600, 200, 614, 216, 0.15]], dtype=np.float32)
    for f in (27, 51):
        links.add(f, weak.copy(), offset_at([f], [(2.0 * f, 0.0)], f))
    assert [len(t.frames) for t in links.tracks] == [2]


def test_a_tile_that_sees_part_of_a_face_the_whole_frame_showed_does_not_shrink_its_mask():
    # a masked face: the whole frame shows all of it; a tile at full size finds only the eyes, 2 px further on
    whole = np.array([[500, 300, 620, 480, 0.85]], dtype=np.float32)
    eyes = np.array([[508, 300, 622, 400, 0.6]], dtype=np.float32)
    pan = np.array([2, 0, 2, 0, 0], dtype=np.float32)
    linker = Linker(gap=12)
    linker.add(0, whole, whole=True)
    linker.add(3, eyes, pan, whole=False)
    (track,) = linker.tracks
    assert track.boxes[1][:4].tolist() == [502, 300, 622, 480]  # the whole face, carried by the pan, and the tile's
    assert track.boxes[1][4] == pytest.approx(0.6)
    mid = boxes_at([track], 1, hold=3)
    assert mid[0, 3] == pytest.approx(480)  # in between, the chin stays covered
    # the same box from a whole look is the face's new shape (it turned or moved away)
    again = Linker(gap=12)
    again.add(0, whole, whole=True)
    again.add(3, eyes, pan, whole=True)
    assert again.tracks[0].boxes[1][:4].tolist() == eyes[0, :4].tolist()


def test_a_face_only_tiles_see_keeps_the_tiles_boxes():
    small = np.array([[40, 40, 52, 54, 0.5]], dtype=np.float32)
    linker = Linker(gap=24)
    linker.add(0, small, whole=False)
    linker.add(12, small + np.array([[1, 0, 1, 0, 0]], dtype=np.float32), whole=False)
    assert [b[:4].tolist() for b in linker.tracks[0].boxes] == [[40, 40, 52, 54], [41, 40, 53, 54]]


def test_no_face_is_followed_or_held_across_a_cut():
    feed = Feed(step=3)
    feed.round = 12
    for f in range(0, 30, 3):
        if f == 12:
            feed.cut(11)  # a new shot from frame 11, handed before the first look in it
        feed.put(f, FACE if f < 12 else FACE + 4, whole=True)  # the next shot has a face about where this one was
    feed.close()
    follower = Follower(feed)
    got = {f: follower.boxes(f) for f in range(30)}
    assert [len(got[f]) for f in (9, 10)] == [1, 1] and np.allclose(got[10][0, :4], FACE[0, :4])
    assert np.allclose(got[11][:, :4], FACE[:, :4] + 4)  # only the new shot's face, held back to the cut
    assert len(follower.tracks()) == 2  # two tracks, not one linked across the cut
    tracks = follower.tracks()
    assert len(boxes_at(tracks, 11, hold=6, cuts=[11])) == 1 and len(boxes_at(tracks, 11, hold=6)) == 2


def test_a_weak_face_only_one_view_sees_is_dropped_however_often_it_sees_it():
    """Looks at near-identical frames through one view repeat one texture's mistake: a weak box needs two views
    (upright and mirrored, whole frame and tile), each overlapping the track by VIEW_IOU, as a photo's passes vote."""
    weak = FACE.copy()
    weak[0, 4] = 0.15
    one_view = Linker(gap=12)
    for f in (0, 6, 12):
        one_view.add(f, weak, view="whole")
    two_views = Linker(gap=12)
    two_views.add(0, weak, view="whole")
    two_views.add(6, weak + 1, view="whole-mirror")
    loose = Linker(gap=12)
    loose.add(0, weak, view="whole")
    loose.add(6, weak + np.array([[12, 0, 12, 0, 0]], dtype=np.float32), view="whole-mirror")  # overlap 0.43
    assert [len(link.tracks) for link in (one_view, two_views, loose)] == [1, 1, 1]  # each followed as one track
    assert [len(confirmed(link.tracks)) for link in (one_view, two_views, loose)] == [0, 1, 0]


def test_a_weak_face_a_complete_search_voted_for_is_kept_from_its_one_look():
    weak = np.array([[10, 10, 22, 24, 0.12], [60, 10, 72, 24, 0.12]], dtype=np.float32)
    linker = Linker(gap=12)
    linker.add(0, weak, whole=True, voted=np.array([True, False]))
    kept = confirmed(linker.tracks)
    assert [t.boxes[0][0] for t in kept] == [10]  # the voted one; the other weak box waits for a second look


def test_a_face_the_complete_first_look_voted_for_is_held_two_rounds_when_the_tiles_miss_it():
    """A 10-20 px face the shot's first look found at twice the native size: the native-size tiles that come round
    later may miss it, so it is held two rounds of looks (not one) past its last look."""
    feed = Feed(step=3)
    feed.round = 24
    small = np.array([[100, 100, 112, 114, 0.15]], dtype=np.float32)
    for f in range(0, 120, 3):
        if f == 0:
            feed.put(f, small.copy(), whole=True, voted=np.array([True]))
        else:
            feed.put(f, NONE, whole=(f // 3) % 2 == 0)
    feed.close()
    follower = Follower(feed)
    masked = [f for f in range(120) if len(follower.boxes(f))]
    assert masked == list(range(0, 2 * 24 + 1))


def test_a_tile_whose_edge_cuts_a_large_face_leaves_the_whole_face_masked():
    """A native-size tile ending across a large face sees its upper half (a box reaching the tile's edge): that
    is part of the face the whole frame showed, not the face's new shape, so the chin stays under the mask. The
    same box from a tile that goes on below it is the face as that tile saw it."""
    face = np.array([[596, 363, 704, 510, 0.9]], dtype=np.float32)
    top = np.array([[590, 350, 694, 413, 0.4]], dtype=np.float32)  # overlaps the face by 0.28, 75% inside it
    kept = {}
    for name, region in (("cut", (576, 0, 1280, 416)), ("whole tile", (576, 0, 1280, 720))):
        linker = Linker(gap=12)
        linker.add(0, face, whole=True, view="whole")
        linker.add(3, top, whole=False, view="tile", region=region)
        (track,) = linker.tracks
        kept[name] = [round(float(v)) for v in track.boxes[-1][:4]]
    assert kept == {"cut": [590, 350, 704, 510], "whole tile": [590, 350, 694, 413]}


def test_the_camera_offset_carries_on_past_a_shots_last_look_but_not_across_a_cut():
    frames, offsets = [0, 3, 6, 9], [(0.0, 0.0), (24.0, -3.0), (24.0, -3.0), (36.0, -3.0)]  # a new shot at 6
    at = lambda f, **kw: offset_at(frames, offsets, f, **kw)[:2].tolist()  # noqa: E731
    assert at(2, cuts=[6]) == pytest.approx([16, -2])  # between two looks of the shot
    assert at(4, cuts=[6]) == pytest.approx([32, -4]) and at(5, cuts=[6]) == pytest.approx([40, -5])
    assert at(7, cuts=[6]) == pytest.approx([28, -3])  # the next shot's own looks
    assert offset_at([7, 10], [(0.0, 0.0), (24.0, 0.0)], 6, cuts=[6])[:2].tolist() == pytest.approx([-8, 0])
    assert offset_at([7, 10], [(0.0, 0.0), (24.0, 0.0)], 1)[:2].tolist() == pytest.approx([-24, 0])  # back too
    assert at(15, cuts=[6]) == pytest.approx([48, -3])  # carried on at most one spacing of looks
    assert at(5) == pytest.approx([24, -3])  # without the cut the two shots' looks are one path
    assert offset_at([6], [(5.0, 5.0)], 2, cuts=[6])[:2].tolist() == [0, 0]  # no look in the frame's shot


def test_a_face_held_to_the_end_of_a_shot_moves_on_with_the_camera():
    # 6-frame shots, a look every 3 frames, the camera panning 8 px a frame: the shot's first look finds a small
    # face, the look at frame 3 (a tile elsewhere) does not; on frames 4 and 5 the mask must have moved on with
    # the scene, not stopped where the look at frame 3 left it
    feed = Feed(step=3)
    feed.round = 12
    feed.put(0, FACE, whole=True, offset=(0.0, 0.0), voted=np.array([True]))
    feed.put(3, NONE, whole=False, offset=(24.0, 0.0))
    feed.cut(6)
    for f in (6, 9):
        feed.put(f, NONE, whole=True, offset=(24.0, 0.0), voted=np.zeros(0, dtype=bool))
    feed.close()
    follower = Follower(feed)
    for f in range(6):
        face = FACE[0, :4] + [8 * f, 0, 8 * f, 0]
        got = follower.boxes(f)
        covered = (got[:, 0] <= face[0] + 0.5) & (got[:, 1] <= face[1]) & (got[:, 2] >= face[2] - 0.5) & (got[:, 3] >= face[3])
        assert covered.any(), (f, got)


def test_masks_between_looks_follow_a_shaking_camera_frame_by_frame():
    # a hand-held camera: the scene jumps a few pixels each way every frame; a face is seen at frames 0 and 6 only.
    # With the camera's offset at every frame the mask follows each jump; from the looks alone it would slide
    # along a straight line between them and miss the small face on the frames in between
    shake = [(0, 0), (6, -5), (-5, 6), (7, 4), (-6, -6), (5, 7), (0, 0), (-7, 5), (6, -6)]
    small = np.array([[300, 200, 312, 214, 0.9]], dtype=np.float32)
    feed = Feed(step=3)
    feed.round = 12
    for f, (x, y) in enumerate(shake):
        feed.moved(f, (float(x), float(y)))
        if f % 3 == 0:
            seen = f in (0, 6)
            feed.put(f, small + np.array([[x, y, x, y, 0]], dtype=np.float32) if seen else NONE, whole=True,
                     offset=(float(x), float(y)), voted=np.array([True]) if seen else np.zeros(0, dtype=bool))
    feed.close()
    follower = Follower(feed)
    for f, (x, y) in enumerate(shake):
        got = follower.boxes(f)
        face = small[0, :4] + [x, y, x, y]
        covered = ((got[:, 0] <= face[0] + 0.01) & (got[:, 1] <= face[1] + 0.01) & (got[:, 2] >= face[2] - 0.01)
                   & (got[:, 3] >= face[3] - 0.01))
        assert covered.any(), (f, got)
