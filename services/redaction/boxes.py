"""Boxes that belong together merged into one: the loop barcodes (overlapping pieces of one code) and text (lines
of one block) share; and boxes near others (``near``: bars near printing, a second text network's lines near the
first's). Pure numpy, no I/O."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def intersection(a: Sequence[float], b: Sequence[float]) -> float:
    """The area two boxes (x1, y1, x2, y2, ...) share. Raises nothing."""
    return float(max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1])))


def area(box: Sequence[float]) -> float:
    """A box's (x1, y1, x2, y2, ...) area. Raises nothing."""
    return float((box[2] - box[0]) * (box[3] - box[1]))


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Two boxes' intersection over their union (0 when the union is empty). Raises nothing."""
    ix = intersection(a, b)
    union = area(a) + area(b) - ix
    return ix / union if union > 0 else 0.0


def merge_pairs(rows: np.ndarray, *, joins: Callable[[np.ndarray, np.ndarray], bool]) -> np.ndarray:
    """``rows`` (N, 4 or more: x1, y1, x2, y2, then e.g. a score) where the first pair, in order, that ``joins``
    is replaced by its union (corners; further columns: the larger value), searched again from the start until no
    pair joins. Returns float32 rows of the same width. Raises nothing."""
    cols = rows.shape[1] if rows.ndim == 2 else 4
    out = [row.astype(np.float32) for row in rows.reshape(-1, cols)]
    merged = True
    while merged and len(out) > 1:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if joins(a, b):
                    out[i] = np.concatenate([np.minimum(a[:2], b[:2]), np.maximum(a[2:], b[2:])])
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return np.array(out, dtype=np.float32).reshape(-1, cols)


def near(boxes: np.ndarray, anchors: np.ndarray, *, reach: float) -> np.ndarray:
    """The ``boxes`` (N, 4 or more) whose box, grown by ``reach`` times its shorter side on every side, overlaps one
    of ``anchors`` (M, 4 or more). Raises nothing."""
    if not len(boxes) or not len(anchors):
        return boxes[:0]
    a = np.asarray(anchors, dtype=np.float32)[None, :, :4]
    d = reach * np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])[:, None]
    close = ((a[..., 0] < boxes[:, 2:3] + d) & (a[..., 2] > boxes[:, 0:1] - d)
             & (a[..., 1] < boxes[:, 3:4] + d) & (a[..., 3] > boxes[:, 1:2] - d))
    return boxes[close.any(axis=1)]
