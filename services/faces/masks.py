"""Face masks and their anonymisation: pure functions on RGB frames (numpy arrays), no I/O.

Every mode removes the detail of a face whatever its size, a 10-pixel face as surely as a 200-pixel one
(``services.faces.quality`` measures it; the tests check each mode at each size):

* ``blur``: a Gaussian whose sigma is a fixed share of the mask's size (``BLUR_SHARE``) with a floor
  (``MIN_SIGMA`` pixels), run on a reduced copy of the face and its surroundings so large faces cost little;
  the pixel work of every mode is ``services.redaction.masking``'s, which label boxes use too;
* ``pixelate``: blocks of about a tenth of the face, never fewer than ``MIN_BLOCK`` pixels, so a small face
  becomes two or three blocks across, not a copy of itself;
* ``fill``: solid black.

Masks are ellipses (the shape of a face, the default) or boxes, grown by ``mask_scale`` around each detection so
hair, ears and chin are covered too. An ellipse always reaches the corners of the detected box (its axes are at
least ``ELLIPSE_COVER`` times the box's), so no corner of a face is left readable at small scales.
"""

from __future__ import annotations

import cv2
import numpy as np

from services.core.errors import InvalidInput
from services.redaction.masking import MODES, blurred, grow, pixelated

SHAPES = ("ellipse", "box")
DEFAULT_MASK_SCALE = 1.3
ELLIPSE_COVER = 1.42  # an ellipse of axes sqrt(2) times the half-sides passes through the box's corners
ELLIPSE_MARGIN = 2.0  # pixels added to an ellipse's axes, so its edge clears the box's corners


def validate(*, mode: str, shape: str, mask_scale: float) -> None:
    """Raises InvalidInput for an unknown mode or shape, or a mask scale outside 1 to 3."""
    if mode not in MODES:
        raise InvalidInput(f"unknown mode '{mode}': choose {', '.join(MODES)}")
    if shape not in SHAPES:
        raise InvalidInput(f"unknown mask shape '{shape}': choose {', '.join(SHAPES)}")
    if not 1.0 <= float(mask_scale) <= 3.0:
        raise InvalidInput(f"the mask scale must be between 1 and 3, got {mask_scale}")


def mask_scale_for(shape: str, scale: float) -> float:
    """The scale a mask of ``shape`` is actually grown by: ellipses at least ``ELLIPSE_COVER``."""
    return max(scale, ELLIPSE_COVER) if shape == "ellipse" else scale


def regions(boxes: np.ndarray, *, shape: str, scale: float, width: int, height: int) -> np.ndarray:
    """The integer (x1, y1, x2, y2) each mask of ``shape`` occupies, clamped to the frame."""
    if not len(boxes):
        return np.zeros((0, 4), dtype=np.int32)
    real = mask_scale_for(shape, scale)
    if shape == "box":
        return grow(boxes, scale=real, width=width, height=height)
    out = boxes[:, :4].astype(np.float32).copy()
    cx, cy = (out[:, 0] + out[:, 2]) / 2, (out[:, 1] + out[:, 3]) / 2
    ax = (out[:, 2] - out[:, 0]) * real / 2 + ELLIPSE_MARGIN
    ay = (out[:, 3] - out[:, 1]) * real / 2 + ELLIPSE_MARGIN
    out = np.stack([np.floor(cx - ax), np.floor(cy - ay), np.ceil(cx + ax) + 1, np.ceil(cy + ay) + 1], axis=1)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out.astype(np.int32)


def consolidate(boxes: np.ndarray, *, same: float = 0.5) -> np.ndarray:
    """Fewer boxes to mask, covering as much: boxes overlapping by ``same`` IoU or more become their union, and a box
    inside another (within 5%) goes. For video frames, where held tracks of one face pile up. Largest first, the
    first such pair (in that order) is merged and the search starts again, until no pair is left; each search is
    one array operation over all pairs (a crowd holds hundreds of boxes). Raises nothing."""
    cols = boxes.shape[1] if boxes.ndim == 2 else 5
    out = boxes[np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))].astype(np.float32)
    while len(out) > 1:
        a, b = out[:, None, :], out[None, :, :]
        ix = (np.maximum(0.0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]))
              * np.maximum(0.0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])))
        area = (out[:, 2] - out[:, 0]) * (out[:, 3] - out[:, 1])
        mx, my = ((out[:, 2] - out[:, 0]) * 0.025)[:, None], ((out[:, 3] - out[:, 1]) * 0.025)[:, None]
        inside = ((b[..., 0] >= a[..., 0] - mx) & (b[..., 1] >= a[..., 1] - my)
                  & (b[..., 2] <= a[..., 2] + mx) & (b[..., 3] <= a[..., 3] + my))
        iou = ix / np.maximum(1e-6, area[:, None] + area[None, :] - ix)
        pairs = np.triu(inside | (iou >= same), k=1)
        if not pairs.any():
            break
        i, j = divmod(int(np.argmax(pairs)), len(out))  # the first pair in order
        x, y = out[i], out[j]
        out[i, :5] = [min(x[0], y[0]), min(x[1], y[1]), max(x[2], y[2]), max(x[3], y[3]), max(x[4], y[4])]
        out = np.delete(out, j, axis=0)
    return out.reshape(-1, cols)


def mask(boxes: np.ndarray, *, width: int, height: int, shape: str = "ellipse",
         scale: float = DEFAULT_MASK_SCALE) -> np.ndarray:
    """(height, width) uint8 mask, 255 inside any face."""
    out = np.zeros((height, width), dtype=np.uint8)
    if not len(boxes):
        return out
    real = mask_scale_for(shape, scale)
    if shape == "box":
        for x1, y1, x2, y2 in regions(boxes, shape=shape, scale=scale, width=width, height=height):
            out[y1:y2, x1:x2] = 255
        return out
    for x1, y1, x2, y2 in boxes[:, :4].astype(np.float64):  # sub-pixel centres and axes (4 fractional bits)
        centre = (int(round((x1 + x2) / 2 * 16)), int(round((y1 + y2) / 2 * 16)))
        axes = (int(round(((x2 - x1) * real / 2 + ELLIPSE_MARGIN) * 16)), int(round(((y2 - y1) * real / 2 + ELLIPSE_MARGIN) * 16)))
        cv2.ellipse(out, centre, axes, 0, 0, 360, 255, -1, cv2.LINE_8, 4)
    return out


def anonymize(frame: np.ndarray, boxes: np.ndarray, *, mode: str = "blur", shape: str = "ellipse",
              mask_scale: float = DEFAULT_MASK_SCALE, fill: int = 0) -> np.ndarray:
    """A copy of ``frame`` (H, W, 3 or one plane H, W of uint8) with every face in ``boxes`` anonymised; the rest
    untouched. ``fill`` is the value of a solid fill (0, black, for RGB; 16 for a Y plane, 128 for U and V)."""
    height, width = frame.shape[:2]
    out = frame.copy()
    if not len(boxes):
        return out
    m = mask(boxes, width=width, height=height, shape=shape, scale=mask_scale)
    for x1, y1, x2, y2 in regions(boxes, shape=shape, scale=mask_scale, width=width, height=height):
        if x2 <= x1 or y2 <= y1:
            continue
        if mode == "fill":
            cover = np.full_like(frame[y1:y2, x1:x2], fill)
        elif mode == "pixelate":
            cover = pixelated(frame[y1:y2, x1:x2])
        else:
            cover = blurred(frame, x1, y1, x2, y2)
        inside = m[y1:y2, x1:x2] > 0
        np.copyto(out[y1:y2, x1:x2], cover, where=inside[..., None] if cover.ndim == 3 else inside)
    return out
