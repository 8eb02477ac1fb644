"""``near_copies.compare`` and its rules case by case (issue 22: the near-copy decisions' mutants that the
end-to-end tests could not see): what a comparison reports (how it was settled, the hash distance, the keypoints,
the agreement), a mirrored copy found by keypoints, hints taken closest first, and the confirmation's bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from services.reuse import near_copies as nc
from services.reuse.alignment import Agreement

LOOKALIKES = Path(__file__).resolve().parents[2] / "data" / "lookalikes"  # CC0 photos; origin in its README
PHOTO = LOOKALIKES / "0386a2d3-d7c2-42d4-b348-2525e6659743.jpg"
TEES = ("544332ea-24e3-430d-83e4-870e427bca95.jpg", "ac433ea3-8c45-4ca3-9a90-32eb4b7438a7.jpg")  # 4 bits apart


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.open(PHOTO).convert("RGB")


def _tilted(im: Image.Image, degrees: float) -> Image.Image:
    """Turned a little and cropped to its middle: no hash stays close, keypoints still meet."""
    turned = im.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=False)
    w, h = turned.size
    return turned.crop((w // 8, h // 8, w * 7 // 8, h * 7 // 8))


def test_a_resized_copy_is_settled_by_its_hash_and_says_so(photo):
    copy = photo.resize((photo.width // 2, photo.height // 2))
    hints = nc.hints_between(photo, copy)
    assert hints and hints[0].bits <= 2 and not hints[0].mirrored
    found = nc.compare(photo, copy)
    assert found == nc.Comparison(True, hints[0].bits, None, "hash", found.agreement)
    assert found.agreement >= nc.AGREE


def test_a_mirrored_and_tilted_copy_is_found_by_keypoints_the_right_way_round(photo):
    for mirrored in (False, True):
        copy = _tilted(photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirrored else photo, 9)
        found, hints = nc.compare(photo, copy), nc.hints_between(photo, copy)
        assert found.near and found.how == "keypoints", (mirrored, found)
        assert found.hash_distance == (hints[0].bits if hints else None)
        assert found.inliers is not None and found.inliers >= nc.MIN_INLIERS
        assert found.agreement >= nc.AGREE_MANY_KEYPOINTS


def test_two_different_t_shirts_a_close_hash_apart_are_different_and_say_how_close(photo):
    a, b = (Image.open(LOOKALIKES / name).convert("RGB") for name in TEES)
    hints = nc.hints_between(a, b)
    found = nc.compare(a, b)
    assert found.near is False and found.how == "different"
    assert found.hash_distance == (hints[0].bits if hints else None) and found.hash_distance is not None
    assert found.agreement < nc.AGREE


def test_hints_given_are_taken_closest_first(photo):
    copy = photo.resize((photo.width // 2, photo.height // 2))
    hints = nc.hints_between(photo, copy)
    w, h = nc.working_grey(photo).shape[::-1]
    wrong = nc.Hint(stored_box=(0, 0, w // 3, h // 3), probe_box=hints[0].probe_box, turns=1, mirrored=True, bits=9)
    found = nc.compare(photo, copy, hints=[wrong, *hints])
    assert found.near and found.how == "hash" and found.hash_distance == hints[0].bits


@pytest.mark.parametrize(("found", "wanted", "confirms"), [
    (Agreement(correlation=0.5, overlap=nc.MIN_OVERLAP, local=0.3, centre=nc.CENTRE_AGREE), 0.3, True),  # bounds met
    (Agreement(correlation=0.5, overlap=nc.MIN_OVERLAP - 0.01, local=0.9, centre=0.9), 0.3, False),  # too little
    (Agreement(correlation=0.5, overlap=0.9, local=0.29, centre=0.9), 0.3, False),
    (Agreement(correlation=0.5, overlap=0.9, local=0.9, centre=nc.CENTRE_AGREE - 0.01), 0.3, False),  # the floor
    (Agreement(correlation=0.5, overlap=0.9, local=nc.BARE_CENTRE_AGREE, centre=None), 0.3, True),  # flat middle
    (Agreement(correlation=0.5, overlap=0.9, local=nc.BARE_CENTRE_AGREE - 0.01, centre=None), 0.3, False),
])
def test_the_confirmation_bounds(found, wanted, confirms):
    assert nc._confirms(found, wanted) is confirms


def test_the_working_size_is_at_most_the_keypoint_side():
    side = nc.ORB_SIDE
    exact = Image.new("RGB", (side, side // 2), (90, 90, 90))
    assert nc._at_working_size(exact) is exact and nc.working_grey(exact).shape == (side // 2, side)
    larger = Image.new("RGB", (side + 1, side // 2), (90, 90, 90))
    grey = nc.working_grey(larger)
    assert max(grey.shape) == side and grey.dtype == np.uint8 and grey.ndim == 2
    assert max(nc._at_working_size(larger).size) == side and larger.size == (side + 1, side // 2)  # not changed


def test_two_garments_on_one_floor_meet_by_keypoints_and_are_still_different():
    """Many keypoints on the floor around two different garments, and detail that agrees around them: not in the
    middle, so different; the comparison says how far it got (its keypoints, its best agreement), not a default."""
    a, b = (Image.open(LOOKALIKES / name).convert("RGB") for name in (
        "00f6e504-7c27-438e-a5d7-bc65e557bb2b.jpg", "5fea042c-f2ac-4523-a813-fc0eae2d9472.jpg"))
    found = nc.compare(a, b)
    assert found.near is False and found.how == "different" and found.hash_distance is None
    assert found.inliers is not None and found.inliers >= nc.MANY_INLIERS  # the floor
    assert isinstance(found.agreement, float) and found.agreement > nc.AGREE  # around the garments


def test_hints_name_the_whole_picture_and_whether_it_was_mirrored(photo):
    half = photo.resize((photo.width // 2, photo.height // 2))
    w, h = nc._at_working_size(photo).size
    [straight] = nc.hints_between(photo, half)
    assert straight == nc.Hint(stored_box=(0, 0, w, h), probe_box=straight.probe_box, turns=0, mirrored=False, bits=0)
    flipped = half.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    [mirrored] = nc.hints_between(photo, flipped)
    assert mirrored.mirrored is True and mirrored.stored_box == (0, 0, w, h) and mirrored.bits == 0
    assert nc.compare(photo, flipped) == nc.Comparison(True, 0, None, "hash", nc.compare(photo, flipped).agreement)


def test_hints_come_closest_first_and_stop_exactly_at_the_limit():
    shoes = Image.open(LOOKALIKES / "00f6e504-7c27-438e-a5d7-bc65e557bb2b.jpg").convert("RGB")
    framed = ImageOps.expand(shoes, border=40, fill="white")  # its whole and its margin-free content both meet
    assert [x.bits for x in nc.hints_between(shoes, framed)] == [0, 8]
    assert [x.bits for x in nc.hints_between(shoes, framed, max_bits=8)] == [0, 8]
    assert [x.bits for x in nc.hints_between(shoes, framed, max_bits=7)] == [0]
