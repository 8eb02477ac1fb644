"""Is one photo an edited copy of another? Pure functions on decoded pictures.

Candidates come from close perceptual hashes (``services.reuse.hashes``: of the whole photo, its quarter turns and
its regions) and from near embeddings; neither is proof. Shop photos of products on white share a loose hash
and a fair embedding by design (two different dark T-shirts flat on white: hash 10 bits apart, cosine 0.69).
A candidate is a copy when an alignment lays one picture over the other and the fine detail agrees under it
(``services.reuse.alignment``):

* the alignment a close hash implies (the hashed regions, the quarter turn, the mirror), checked first; it
  settles resizing, recompression, mirroring, turns, recolouring, borders and pasted or cropped copies whose
  region was hashed;
* else ORB keypoints matched both ways (also against the mirror image) and one RANSAC homography: crops,
  perspective, captions, stickers. At least MIN_INLIERS keypoints must agree with it, and then the detail. When
  the detail disagrees at the edges because the copy was tilted by a tool whose warp is not a homography, the
  homography is bent by a smooth correction the keypoints measure (``alignment.bend``) and the detail compared
  again, at the stricter BENT_AGREE.

The detail must agree in the central half of the overlap as well (CENTRE_AGREE): two different garments laid on
the same floor, carpet or blanket and photographed from the same spot align by the floor, whose texture agrees
all around them, while the garments in the middle do not.

Thresholds were chosen on the tune split of ``benchmarks/near_duplicates.py`` (edited copies of half the sample
photos, look-alike product photos) and are reported on the other half.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from services.reuse import hashes as hashing
from services.reuse.alignment import (
    ORB_SIDE,
    Agreement,
    Fit,
    agreement,
    bend,
    box_homography,
    fit,
    keypoints,
    mirror_matrix,
)
from services.reuse.hashes import HASH_BITS_NEAR, HashIndex, hash_distance, perceptual_hash
from services.reuse.regions import Box

__all__ = ["HASH_BITS_NEAR", "ORB_SIDE", "Comparison", "HashIndex", "Hint", "compare", "hash_distance",
           "hints_between", "perceptual_hash", "working_grey"]

# Tune split: different photos (630 pairs of look-alike products, 322 other pairs) agree locally (median over
# blocks) at most 0.14 under any alignment, with at most 17 keypoints on a chance homography, and two shots of one
# package ten seconds apart at 0.06 (120 keypoints on the floor's plane); edited copies agree at 0.37 and more
# (5th percentile of perspective tilts; turns 0.8, stickers 0.99).
AGREE = 0.3  # local detail agreement at or above which an alignment confirms a copy
AGREE_MANY_KEYPOINTS = 0.2  # enough when at least MANY_INLIERS keypoints agree on the homography
# A bent alignment (a homography with a smooth correction the keypoints measure, ``alignment.bend``) has more
# freedom, so it must agree more: tune split perspective copies agreed at 0.9 and more under it, different garments
# on one floor or carpet at most 0.77 (and 0.03 in the middle), one pair of sandals shot twice on a carpet at 0.25.
BENT_AGREE = 0.5
MIN_INLIERS = 12  # keypoints one homography must explain before the detail is compared
MANY_INLIERS = 60
MIN_OVERLAP = 0.5  # the aligned overlap covers at least this share of one picture
# Tune split of the garment photos (3,068 photos sent by people, many on a floor, a carpet or a blanket): seven
# different garments on the same floor were confirmed by the floor around them (median 0.31-0.52 over all blocks)
# while the central half, the garment, disagreed (median -0.01 to 0.07, or no texture there); edited copies agree
# there at 0.6 and more (stickers pasted over the middle; 0.1 only for a perspective tilt under a hash's box
# alignment, which the keypoint homography then settles).
CENTRE_AGREE = 0.3  # the central half of the overlap agrees at least this much as well
BARE_CENTRE_AGREE = 0.6  # the whole overlap agrees this much when its central half is too flat to compare


@dataclass(frozen=True)
class Hint:
    """What a close hash says: ``stored_box`` of the stored picture looks like ``probe_box`` of the new one
    turned ``turns`` quarter turns (np.rot90), or like its mirror image."""

    stored_box: Box
    probe_box: Box
    turns: int
    mirrored: bool
    bits: int


@dataclass(frozen=True)
class Comparison:
    near: bool
    hash_distance: int | None  # bits of the closest hash pair, None when no hash was close
    inliers: int | None  # keypoints the homography explains, None when the hash alignment settled it
    how: str  # "hash" | "keypoints" | "different"
    agreement: float = 0.0  # local detail agreement under the best alignment tried


def working_grey(picture: Image.Image) -> np.ndarray:
    """The greyscale (uint8) at most ORB_SIDE a side that hashes, keypoints and detail are read on."""
    pic = picture
    if max(pic.size) > ORB_SIDE:
        pic = pic.copy()
        pic.thumbnail((ORB_SIDE, ORB_SIDE))
    return np.asarray(pic.convert("L"))


def _at_working_size(picture: Image.Image) -> Image.Image:
    if max(picture.size) <= ORB_SIDE:
        return picture
    pic = picture.copy()
    pic.thumbnail((ORB_SIDE, ORB_SIDE))
    return pic


def _confirms(found: Agreement, wanted: float) -> bool:
    """The detail agrees under an alignment: over the overlap's blocks, in its central half too (where the
    product is), and the overlap is large enough."""
    if found.overlap < MIN_OVERLAP or found.local < wanted:
        return False
    return found.centre >= CENTRE_AGREE if found.centre is not None else found.local >= BARE_CENTRE_AGREE


def hints_between(stored: Image.Image, new: Image.Image, *, max_bits: int = HASH_BITS_NEAR) -> list[Hint]:
    """Every close pair of hashes between the stored picture's whole and regions and the new picture's probes,
    closest first (both pictures at working size: ORB_SIDE)."""
    stored, new = _at_working_size(stored), _at_working_size(new)
    w, h = stored.size
    boxes: dict[str, Box] = {"": (0, 0, w, h), **hashing.region_boxes(stored)}
    values = {"": perceptual_hash(stored), **hashing.region_hashes(stored)}
    out = []
    for probe in hashing.probes(new):
        for name, (value, mirror) in values.items():
            straight, mirrored = hashing.hamming(probe.value, value), hashing.hamming(probe.value, mirror)
            bits = min(straight, mirrored)
            if bits <= max_bits:
                out.append(Hint(boxes[name], probe.box, probe.turns, mirrored < straight, bits))
    return sorted(out, key=lambda x: x.bits)


def compare(stored: Image.Image, new: Image.Image, *, hints: list[Hint] | None = None) -> Comparison:
    """Whether ``new`` is an edited copy of ``stored`` (or holds it, or is a part of it). ``hints`` are the close
    hashes found by the caller, boxes at working size (found here when None)."""
    stored, new = _at_working_size(stored), _at_working_size(new)
    hints = hints_between(stored, new) if hints is None else sorted(hints, key=lambda x: x.bits)
    a, b = working_grey(stored), working_grey(new)
    bits = hints[0].bits if hints else None
    best = 0.0
    for hint in hints[:4]:
        matrix = box_homography(hint.stored_box, hint.probe_box, turns=hint.turns, mirrored=hint.mirrored)
        found = agreement(a, b, matrix)
        best = max(best, found.local)
        if _confirms(found, AGREE):
            return Comparison(True, hint.bits, None, "hash", found.local)
    kb = keypoints(b)
    straight = fit(keypoints(a), kb)
    flipped = fit(keypoints(np.ascontiguousarray(a[:, ::-1])), kb)
    if flipped.inliers > straight.inliers and flipped.matrix is not None:
        unflipped = flipped.points_a.copy()
        unflipped[:, 0] = a.shape[1] - 1 - unflipped[:, 0]
        chosen = Fit(flipped.matrix @ mirror_matrix(a.shape[1]), flipped.inliers, unflipped, flipped.points_b,
                     flipped.explained)
    else:
        chosen = straight
    matrix, inliers = chosen.matrix, chosen.inliers
    if matrix is not None and inliers >= MIN_INLIERS:
        wanted = AGREE_MANY_KEYPOINTS if inliers >= MANY_INLIERS else AGREE
        found = agreement(a, b, matrix)
        best = max(best, found.local)
        if _confirms(found, wanted):
            return Comparison(True, bits, inliers, "keypoints", found.local)
        # a tilt or a free-transform warp is not quite a homography: bent by what the keypoints measure
        coefficients = bend(chosen, (b.shape[1], b.shape[0]))
        if coefficients is not None:
            found = agreement(a, b, matrix, bent=coefficients)
            best = max(best, found.local)
            if _confirms(found, BENT_AGREE):
                return Comparison(True, bits, inliers, "keypoints", found.local)
    return Comparison(False, bits, inliers, "different", best)
