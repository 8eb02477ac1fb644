"""Face masks and their anonymisation: pure functions on RGB frames (numpy arrays), no I/O.

Modes: ``blur`` (a Gaussian blur strong enough that a face cannot be recognised, scaled to the face),
``pixelate`` (blocks of about a tenth of the face) and ``fill`` (solid black). Masks are ellipses (the shape
of a face, the default) or boxes, grown by ``mask_scale`` around each detection so hair, ears and chin are
covered too.
"""

from __future__ import annotations

import cv2
import numpy as np

from services.core.errors import InvalidInput

MODES = ("blur", "pixelate", "fill")
SHAPES = ("ellipse", "box")
DEFAULT_MASK_SCALE = 1.3


def validate(*, mode: str, shape: str, mask_scale: float) -> None:
    """Raises InvalidInput for an unknown mode or shape, or a mask scale outside 1 to 3."""
    if mode not in MODES:
        raise InvalidInput(f"unknown mode '{mode}': choose {', '.join(MODES)}")
    if shape not in SHAPES:
        raise InvalidInput(f"unknown mask shape '{shape}': choose {', '.join(SHAPES)}")
    if not 1.0 <= float(mask_scale) <= 3.0:
        raise InvalidInput(f"the mask scale must be between 1 and 3, got {mask_scale}")


def grow(boxes: np.ndarray, *, scale: float, width: int, height: int) -> np.ndarray:
    """Boxes scaled about their centres by ``scale`` and clamped to the frame, as integer (x1, y1, x2, y2)."""
    if not len(boxes):
        return np.zeros((0, 4), dtype=np.int32)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    hw, hh = (boxes[:, 2] - boxes[:, 0]) * scale / 2, (boxes[:, 3] - boxes[:, 1]) * scale / 2
    out = np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return np.round(out).astype(np.int32)


def mask(boxes: np.ndarray, *, width: int, height: int, shape: str = "ellipse",
         scale: float = DEFAULT_MASK_SCALE) -> np.ndarray:
    """(height, width) uint8 mask, 255 inside any face."""
    out = np.zeros((height, width), dtype=np.uint8)
    for x1, y1, x2, y2 in grow(boxes, scale=scale, width=width, height=height):
        if x2 <= x1 or y2 <= y1:
            continue
        if shape == "box":
            out[y1:y2, x1:x2] = 255
        else:
            cv2.ellipse(out, (int(x1 + x2) // 2, int(y1 + y2) // 2), (max(1, int(x2 - x1) // 2), max(1, int(y2 - y1) // 2)),
                        0, 0, 360, 255, -1)
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
    for x1, y1, x2, y2 in grow(boxes, scale=mask_scale, width=width, height=height):
        if x2 <= x1 or y2 <= y1:
            continue
        region = frame[y1:y2, x1:x2]
        side = max(x2 - x1, y2 - y1)
        if mode == "fill":
            cover = np.full_like(region, fill)
        elif mode == "pixelate":
            bw, bh = max(1, (x2 - x1) // 10), max(1, (y2 - y1) // 10)
            small = cv2.resize(region, (max(1, (x2 - x1) // bw), max(1, (y2 - y1) // bh)), interpolation=cv2.INTER_AREA)
            cover = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
        else:  # a Gaussian of about a third of the face, run on a quarter-size copy (16 times less work)
            rw, rh = x2 - x1, y2 - y1
            small = cv2.resize(region, (max(1, rw // 4), max(1, rh // 4)), interpolation=cv2.INTER_AREA)
            k = max(3, int(side / 12) | 1)
            cover = cv2.resize(cv2.GaussianBlur(small, (k, k), 0), (rw, rh), interpolation=cv2.INTER_LINEAR)
        inside = m[y1:y2, x1:x2] > 0
        out[y1:y2, x1:x2][inside] = cover[inside]
    return out
