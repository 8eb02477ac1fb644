"""Following faces across looks: the writer's follower gives the same masks as linking everything at once, a face
only a tile finds stays masked until its tile comes round again, a lone weak look is dropped, and an error on the
looking thread reaches the writer."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from services.core.errors import ImageError
from services.faces.tracking import Feed, Follower, boxes_at, confirmed, link

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
