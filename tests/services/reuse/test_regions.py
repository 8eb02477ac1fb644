"""Region hashes, quarter-turn probes and the detail check, on constructed pictures (no workspace needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from services.reuse.alignment import agreement, box_homography
from services.reuse.hashes import QUARTER_BITS, HashIndex, perceptual_hash, probes, region_boxes, region_hashes
from services.reuse.near_copies import compare, working_grey
from services.reuse.regions import content_box, placed_box


def _picture(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)


def test_a_border_is_trimmed_and_a_pasted_photo_is_found_on_its_page():
    photo = _picture(1)
    framed = ImageOps.expand(photo, border=30, fill=(200, 40, 40))
    assert content_box(np.asarray(framed.convert("L"))) == (30, 30, 350, 270)
    page = Image.new("RGB", (400, 900), (245, 245, 245))
    page.paste(Image.new("RGB", (400, 40), (20, 20, 20)), (0, 0))  # a status bar: too thin to be the photo
    page.paste(photo, (40, 120))
    assert placed_box(np.asarray(page)) == (40, 120, 360, 360)
    assert placed_box(np.asarray(photo)) is None  # a photo is not a page


def test_a_small_shop_image_on_a_tall_phone_page_is_found_and_confirmed():
    """A catalog's 198-px shop image shown at its own size on a phone page (720 x 1560): 13% of the page's height
    but 28% of its width. The bars and the button stand out from the page too, and are longer than a photo."""
    shop = Image.open(Path(__file__).resolve().parents[2] / "data" / "catalog" / "catalog" / "Banana" / "iconic.jpg")
    page = Image.new("RGB", (720, 1560), (240, 244, 250))
    page.paste(Image.new("RGB", (720, 48), (20, 20, 20)), (0, 0))  # status bar
    page.paste(Image.new("RGB", (720, 92), (200, 228, 245)), (0, 48))  # header
    page.paste(shop.convert("RGB"), (173, 196))
    page.paste(Image.new("RGB", (672, 80), (250, 200, 40)), (24, 536))  # "Add to cart"
    assert placed_box(np.asarray(page)) == (173, 196, 371, 394)
    assert compare(shop, page).near  # at working size (236 x 512) the shop image is 65 px across


def test_quarter_turns_and_a_screenshot_meet_the_stored_hashes(db):
    photo = _picture(2)
    db.execute("INSERT INTO image_hashes (sha256, phash, phash_mirror) VALUES (?, ?, ?)", ["orig", *perceptual_hash(photo)])
    for name, (value, mirror) in region_hashes(photo).items():
        db.execute("INSERT INTO image_hashes (sha256, phash, phash_mirror) VALUES (?, ?, ?)", [f"orig#{name}", value, mirror])
    db.execute("INSERT INTO image_hashes (sha256, phash, phash_mirror) VALUES (?, ?, ?)", ["other", *perceptual_hash(_picture(3))])
    index = HashIndex()
    index.sync(db)
    for turn in (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270):
        turned = ImageOps.mirror(photo.transpose(turn))
        hits = index.scan(db, [p.value for p in probes(turned)])
        assert hits and hits[0].sha256 == "orig" and hits[0].bits <= 4
    before = index.scan(db, [perceptual_hash(photo.transpose(Image.Transpose.ROTATE_90))[0]])
    assert not any(h.sha256 == "orig" for h in before)  # the whole-photo hash alone misses a quarter turn
    page = Image.new("RGB", (480, 1000), (240, 240, 244))
    page.paste(photo, (80, 200))
    hits = index.scan(db, [p.value for p in probes(page)])
    assert hits and hits[0].sha256 == "orig"
    crop = photo.crop((80, 60, 240, 180))  # 25% a side: the stored centre window
    assert index.scan(db, [p.value for p in probes(crop)])[0].region == "c50"
    assert "c50" in region_boxes(photo)


def test_the_detail_check_follows_the_hash_alignment_and_refuses_another_picture():
    photo = _picture(4)
    a = working_grey(photo)
    turned = np.rot90(a, 1)
    h, w = turned.shape
    right = box_homography((0, 0, a.shape[1], a.shape[0]), (0, 0, w, h), turns=3, mirrored=False)
    wrong = box_homography((0, 0, a.shape[1], a.shape[0]), (0, 0, w, h), turns=1, mirrored=False)
    # np.rot90(turned, 3) is the photo again: the stored box maps onto the new one turned three quarters
    assert agreement(a, np.ascontiguousarray(turned), right).local > 0.9
    assert agreement(a, np.ascontiguousarray(turned), wrong).local < 0.3
    other = working_grey(_picture(5))
    same_frame = box_homography((0, 0, 320, 240), (0, 0, 320, 240), turns=0, mirrored=False)
    assert agreement(a, other, same_frame).local < 0.3
    assert compare(photo, photo.transpose(Image.Transpose.ROTATE_270)).near
    assert not compare(photo, _picture(5)).near


def test_textured_quarters_are_hashed_and_met_only_when_close(db):
    photo = _picture(5)
    half_plain = photo.copy()
    half_plain.paste((250, 250, 250), (0, 0, 160, 240))  # the white around a shop photo: nothing to tell apart
    assert set(region_boxes(photo, quarters=True)) >= {"q0", "q1", "q2", "q3"}
    assert not {"q0", "q2"} & set(region_boxes(half_plain, quarters=True)) and {"q1", "q3"} <= set(region_boxes(half_plain, quarters=True))
    assert not {"q0", "q1", "q2", "q3"} & set(region_boxes(photo))  # only the reuse check asks for quarters
    for name, (value, mirror) in region_hashes(photo, quarters=True).items():
        db.execute("INSERT INTO image_hashes (sha256, phash, phash_mirror) VALUES (?, ?, ?)", [f"orig#{name}", value, mirror])
    index = HashIndex()
    index.sync(db)
    covered = photo.copy()
    covered.paste((255, 0, 0), (0, 0, 320, 120))  # the top half under a caption or stickers
    covered.paste((0, 0, 255), (0, 120, 160, 240))
    hits = index.scan(db, [p.value for p in probes(covered, quarters=True)],
                      limits=[p.max_bits for p in probes(covered, quarters=True)])
    assert hits and hits[0].sha256 == "orig" and hits[0].region == "q3" and hits[0].bits <= QUARTER_BITS
    assert not index.scan(db, [p.value for p in probes(covered)])  # the whole and its regions are too far
    far = int(region_hashes(photo, quarters=True)["q3"][0]) ^ ((1 << (QUARTER_BITS + 1)) - 1)  # QUARTER_BITS + 1 bits off
    assert not [h for h in index.scan(db, [far]) if h.region == "q3"]  # a stored quarter is met only within QUARTER_BITS
