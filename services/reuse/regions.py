"""Parts of a picture worth hashing on their own, so that a copy inside a larger picture, or a hard crop of one,
still meets a close hash: the picture without uniform margins (a border, the white around a shop photo), the
largest photo-like block on a page (a screenshot of a shop page: bars, text and buttons around the photo),
and the centre window a crop of 25% a side keeps (crops of 10-20% a side keep most of the photo: their
embeddings stay near, and keypoints confirm them).

Boxes are (left, top, right, bottom) in pixels of the picture they were found in. Pure functions.
"""

from __future__ import annotations

import cv2
import numpy as np

Box = tuple[int, int, int, int]
UNIFORM = 12  # grey levels: a margin line is uniform when 98% of it is this close to the edge's colour
PAGE = 6  # colour levels from the page colour at which a pixel belongs to something placed on the page
MIN_SIDE = 0.15  # a region keeps at least this share of each side of the picture
ASPECT = 3.0  # a placed photo is at most this much longer than wide (bars and buttons are longer)
CENTRES = {"c50": 0.25}  # centre windows and the share cut from each side (lighter crops: embeddings, keypoints)
QUARTERS = ("q0", "q1", "q2", "q3")  # the four quarters of a picture, in reading order


def _edge(lines: np.ndarray, reference: float) -> int:
    """How many leading lines of ``lines`` (one per row of the array) are uniform at ``reference``."""
    uniform = (np.abs(lines.astype(np.int16) - int(reference)) <= UNIFORM).mean(axis=1) >= 0.98
    return int(np.argmin(uniform)) if not uniform.all() else len(uniform)


def content_box(grey: np.ndarray) -> Box:
    """The picture without its uniform margins on each side (a border, a page's blank margin, a product photo's
    white); the whole picture when nothing (or almost everything) is margin."""
    h, w = grey.shape
    top = _edge(grey, float(np.median(grey[0])))
    bottom = h - _edge(grey[::-1], float(np.median(grey[-1])))
    left = _edge(grey.T, float(np.median(grey[:, 0])))
    right = w - _edge(grey.T[::-1], float(np.median(grey[:, -1])))
    if right - left < MIN_SIDE * w or bottom - top < MIN_SIDE * h:
        return 0, 0, w, h
    return left, top, right, bottom


def placed_box(rgb: np.ndarray) -> Box | None:
    """The largest block that stands out from the page colour (the picture's commonest border colour), at least
    MIN_SIDE of the picture's shorter side each way and at most ASPECT times longer than wide: a photo pasted on a
    page with bars, text and buttons around it (a shop's 200-px image on a phone page is 13% of its height). None
    when the block is (nearly) the whole picture."""
    h, w = rgb.shape[:2]
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.int16)
    quantised = border // 8
    values, counts = np.unique(quantised, axis=0, return_counts=True)
    page = border[(quantised == values[np.argmax(counts)]).all(axis=1)].mean(axis=0)
    mask = (np.abs(rgb.astype(np.int16) - page).max(axis=2) > PAGE).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    best: Box | None = None
    best_area = 0
    least = MIN_SIDE * min(w, h)  # of the shorter side: a phone page is twice as tall as it is wide
    for x, y, bw, bh, _ in stats[1:n]:
        if bw >= least and bh >= least and max(bw, bh) <= ASPECT * min(bw, bh) and bw * bh > best_area:
            best, best_area = (int(x), int(y), int(x + bw), int(y + bh)), int(bw * bh)
    if best is None or best_area > 0.85 * w * h:
        return None
    return best


def centre(box: Box, share: float) -> Box:
    """``box`` with ``share`` of its width and height cut from each side."""
    left, top, right, bottom = box
    dx, dy = (right - left) * share, (bottom - top) * share
    return int(round(left + dx)), int(round(top + dy)), int(round(right - dx)), int(round(bottom - dy))


def quarters(box: Box) -> dict[str, Box]:
    """The four quarters of ``box``, named ``QUARTERS`` in reading order."""
    left, top, right, bottom = box
    mx, my = (left + right) // 2, (top + bottom) // 2
    parts = [(left, top, mx, my), (mx, top, right, my), (left, my, mx, bottom), (mx, my, right, bottom)]
    return dict(zip(QUARTERS, parts))


def differs(a: Box, b: Box, size: tuple[int, int]) -> bool:
    """Whether two boxes differ by more than 4% of the picture's side on some edge (else one hash serves)."""
    w, h = size
    return any(abs(p - q) > 0.04 * s for p, q, s in zip(a, b, (w, h, w, h)))
