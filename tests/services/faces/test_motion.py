"""The camera's offset between looked-at frames, by phase correlation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from services.faces.motion import CUT_SIDE, MOTION_SIDE, CameraPath, CutDetector, _followed


def scene(seed: int, size: tuple[int, int] = (1600, 900)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = (rng.random((size[1] // 8, size[0] // 8, 3)) * 255).astype(np.uint8)
    return cv2.resize(noise, size, interpolation=cv2.INTER_CUBIC)


def view(world: np.ndarray, x: int, y: int) -> np.ndarray:
    """A 1280x720 camera view whose left edge is at ``x``: the scene appears moved by -x."""
    return np.ascontiguousarray(world[y : y + 720, x : x + 1280])


def test_a_pan_is_summed_look_by_look():
    world, path = scene(1), CameraPath()
    offsets = [path.update(view(world, 200 - 6 * k, 50 + 2 * k)) for k in range(20)]
    assert offsets[0] == (0.0, 0.0)
    for k, (x, y) in enumerate(offsets):  # the camera moves left and up: the scene right and down
        assert x == pytest.approx(6 * k, abs=1.5) and y == pytest.approx(-2 * k, abs=1.5)


def test_a_cut_or_a_blank_frame_is_no_motion():
    path = CameraPath()
    path.update(view(scene(1), 100, 100))
    moved = path.update(view(scene(1), 90, 100))
    assert moved[0] == pytest.approx(10, abs=1.0)
    assert path.update(view(scene(2), 100, 100)) == moved  # another shot
    assert path.update(np.zeros((720, 1280, 3), np.uint8)) == moved  # nothing to follow
    assert path.update(np.zeros((40, 60, 3), np.uint8)) == moved  # too small to tell


def blobs(seed: int, grid: tuple[int, int] = (9, 16)) -> np.ndarray:
    """A 1600x900 scene of soft patches of colour, ``grid`` rows by columns of them (large ones: what a tiny copy
    of a real shot keeps)."""
    rng = np.random.default_rng(seed)
    return cv2.resize((rng.random((*grid, 3)) * 255).astype(np.uint8), (1600, 900), interpolation=cv2.INTER_CUBIC)


def test_cuts_are_told_from_pans_noise_and_slow_fades():
    world, other = blobs(1), blobs(2)
    rng = np.random.default_rng(0)
    frames = [view(world, 200 - 8 * k, 50 + k) for k in range(15)]  # a pan, 8 px a frame
    frames += [np.clip(view(other, 0, 0).astype(np.int16) + rng.integers(-12, 13, (720, 1280, 3)), 0, 255)
               .astype(np.uint8) for _ in range(10)]  # a cut to another shot, with sensor noise
    frames += [(view(other, 0, 0) * (1 - k / 50)).astype(np.uint8) for k in range(1, 51)]  # a 2 s fade to black
    frames += [np.zeros((720, 1280, 3), np.uint8)] * 3 + [view(world, 0, 0)] * 3  # black, then a cut from black
    detector = CutDetector()
    assert [n for n, f in enumerate(frames) if detector.update(f)] == [15, 78]


def framed(picture: np.ndarray, *, dx: int = 0) -> np.ndarray:
    """A 1920x1080 frame, black but for a 400x300 ``picture`` near its middle (moved ``dx`` px right)."""
    frame = np.zeros((1080, 1920, 3), np.uint8)
    frame[390:690, 760 + dx : 1160 + dx] = picture
    return frame


def test_cuts_between_small_pictures_in_a_black_frame_are_told_and_their_pans_are_not():
    # a photo shown small in a large black frame, panning 2 px a frame, then another: over the whole frame the
    # cut moves the mean by under the floor; over the picture it is a cut like any other
    first, second = blobs(3)[:300, :400], blobs(4)[:300, :400]
    frames = [framed(first, dx=2 * k) for k in range(20)] + [framed(second, dx=2 * k) for k in range(20)]
    frames += [framed(first, dx=40 + 2 * k) for k in range(6)]
    detector = CutDetector()
    assert [n for n, f in enumerate(frames) if detector.update(f)] == [20, 40]
    whole = np.full((1080, 1920, 3), 90, np.uint8)  # a picture that fills the frame is told as before
    whole[390:690, 760:1160] = first
    assert not any(CutDetector().update(f) for f in [whole] * 5)


def test_cuts_are_told_while_the_camera_pans_fast():
    # three shots of a textured scene (50-px patches), the camera panning 16 px a frame: unfollowed, the pan
    # changed the tiny copy as much as a fifth of a cut and the cuts drowned in it; followed, only the cuts are left
    frames = [view(blobs(seed, (18, 32)), 300 - 16 * k, 90 + k) for seed in (5, 6, 7) for k in range(8)]
    detector = CutDetector()
    assert [n for n, f in enumerate(frames) if detector.update(f)] == [8, 16]


@pytest.mark.parametrize("shift", [(0.6, -0.3), (2.4, 1.5)])
def test_the_change_is_measured_with_the_motion_followed_to_a_fraction_of_a_pixel(shift):
    # a copy moved by a fraction of a pixel, within the search and past its end: what is left once followed is
    # less than the best whole-pixel shift leaves, and far less than not following
    world = cv2.cvtColor(blobs(8, (18, 32)), cv2.COLOR_RGB2GRAY)[:720, :1280]
    last = cv2.resize(world, (MOTION_SIDE, MOTION_SIDE), interpolation=cv2.INTER_AREA).astype(np.float32)
    moved = cv2.warpAffine(last, np.array([[1, 0, shift[0]], [0, 1, shift[1]]], dtype=np.float32),
                           (MOTION_SIDE, MOTION_SIDE), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    tiny = cv2.resize(moved, (CUT_SIDE, CUT_SIDE), interpolation=cv2.INTER_AREA)
    whole = np.roll(last, (round(shift[1]), round(shift[0])), axis=(0, 1))
    left = float(_followed(last, tiny)[1:-1, 1:-1].mean())
    whole_left = float(np.abs(tiny - cv2.resize(whole, (CUT_SIDE, CUT_SIDE), interpolation=cv2.INTER_AREA))[2:-2, 2:-2].mean())
    still = float(np.abs(tiny - cv2.resize(last, (CUT_SIDE, CUT_SIDE), interpolation=cv2.INTER_AREA))[1:-1, 1:-1].mean())
    assert left < 0.6 * whole_left and left < 0.2 * still


def test_a_small_grey_copy_gives_the_offsets_the_whole_frame_gives():
    # every frame is followed on a grey copy the decoder makes a quarter of the size: the same offsets, in frame
    # pixels, as the looks' whole RGB frames gave
    world = blobs(9, (18, 32))
    frames = [view(world, 200 - 5 * k, 50 + 3 * k) for k in range(12)]
    whole, small = CameraPath(), CameraPath()
    for f in frames:
        grey = cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (320, 180), interpolation=cv2.INTER_AREA)
        assert small.update_grey(grey, scale=(4.0, 4.0)) == pytest.approx(whole.update(f), abs=0.01)
    assert small.offset == pytest.approx((55, -33), abs=1.5)
