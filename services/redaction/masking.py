"""Box masks for label boxes: blur, pixelate or fill the rectangles of a frame, pure functions on RGB arrays.

The same pixels as the face masks' box shape (``services.faces.masks.anonymize(shape="box")``; a test keeps them
equal), here because the redaction layer lies below the faces package and the export (``services.hitl``) may not
import faces: the photo as published must be one photo wherever it is made (the queue's preview, the export).
"""

from __future__ import annotations

import cv2
import numpy as np

from services.core.errors import InvalidInput

MODES = ("blur", "pixelate", "fill")
BLUR_SHARE = 0.15  # sigma as a share of the mask's longer side (as the face masks)
MIN_SIGMA = 2.5
PIXELATE_BLOCKS = 10
MIN_BLOCK = 5
BLOCK_SOFTEN = 0.3


def grown(boxes: np.ndarray, *, scale: float, width: int, height: int) -> np.ndarray:
    """(N, 4) integer boxes scaled about their centres by ``scale`` and clamped to the frame. Raises nothing."""
    if not len(boxes):
        return np.zeros((0, 4), dtype=np.int32)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    hw, hh = (boxes[:, 2] - boxes[:, 0]) * scale / 2, (boxes[:, 3] - boxes[:, 1]) * scale / 2
    out = np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return np.round(out).astype(np.int32)


def _blurred(frame: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    height, width = frame.shape[:2]
    sigma = max(MIN_SIGMA, BLUR_SHARE * max(x2 - x1, y2 - y1))
    pad = int(np.ceil(1.5 * sigma))
    px1, py1, px2, py2 = max(0, x1 - pad), max(0, y1 - pad), min(width, x2 + pad), min(height, y2 + pad)
    small = frame[py1:py2, px1:px2]
    factor = max(1.0, sigma / 2.0)
    sw, sh = max(1, int(round((px2 - px1) / factor))), max(1, int(round((py2 - py1) / factor)))
    if factor > 1:
        left = factor
        while left >= 4 and min(small.shape[:2]) >= 8:
            small, left = cv2.pyrDown(small), left / 2
        small = cv2.resize(small, (sw, sh), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor, borderType=cv2.BORDER_REFLECT)
    fx, fy = (px2 - px1) / sw, (py2 - py1) / sh
    to_region = np.array([[fx, 0, 0.5 * fx - 0.5 - (x1 - px1)], [0, fy, 0.5 * fy - 0.5 - (y1 - py1)]], dtype=np.float64)
    return cv2.warpAffine(small, to_region, (x2 - x1, y2 - y1), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _pixelated(region: np.ndarray) -> np.ndarray:
    rh, rw = region.shape[:2]
    block = max(MIN_BLOCK, max(rw, rh) / PIXELATE_BLOCKS)
    small = cv2.resize(region, (max(1, int(round(rw / block))), max(1, int(round(rh / block)))),
                       interpolation=cv2.INTER_AREA)
    blocks = cv2.resize(small, (rw, rh), interpolation=cv2.INTER_NEAREST)
    return cv2.GaussianBlur(blocks, (0, 0), BLOCK_SOFTEN * block, borderType=cv2.BORDER_REPLICATE)


def mask_boxes(frame: np.ndarray, boxes: np.ndarray, *, mode: str = "blur", scale: float = 1.0,
               fill: int = 0) -> np.ndarray:
    """A copy of ``frame`` (H, W, 3 uint8) with each (x1, y1, x2, y2, ...) box of ``boxes``, grown by ``scale``,
    blurred, pixelated or filled; the rest untouched. Raises InvalidInput for an unknown mode."""
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    height, width = frame.shape[:2]
    out = frame.copy()
    if not len(boxes):
        return out
    for x1, y1, x2, y2 in grown(np.asarray(boxes, dtype=np.float32), scale=scale, width=width, height=height):
        if x2 <= x1 or y2 <= y1:
            continue
        if mode == "fill":
            out[y1:y2, x1:x2] = fill
        elif mode == "pixelate":
            out[y1:y2, x1:x2] = _pixelated(frame[y1:y2, x1:x2])
        else:
            out[y1:y2, x1:x2] = _blurred(frame, x1, y1, x2, y2)
    return out
