"""Box masks: blur, pixelate or fill rectangles of a frame, pure functions on uint8 arrays (RGB or one plane).

The pixel work of every mask in the console lives here: label boxes use ``mask_boxes`` directly, and the face
masks (``services.faces.masks``, a layer above) cover their boxes and ellipses with ``grow``, ``blurred`` and
``pixelated``, so a label box and a face's box shape are the same pixels (a test keeps them equal) and the photo
as published is one photo wherever it is made (the queue's preview, the export).

* ``blur``: a Gaussian whose sigma is a fixed share of the mask's size (``BLUR_SHARE``) with a floor
  (``MIN_SIGMA`` pixels), run on a reduced copy of the region and its surroundings so large regions cost little;
* ``pixelate``: blocks of about a tenth of the region, never fewer than ``MIN_BLOCK`` pixels;
* ``fill``: a solid value.
"""

from __future__ import annotations

import cv2
import numpy as np

from services.core.errors import InvalidInput

MODES = ("blur", "pixelate", "fill")
BLUR_SHARE = 0.15  # sigma as a share of the mask's longer side
MIN_SIGMA = 2.5  # pixels: the floor that makes a 10-pixel face a blob
PIXELATE_BLOCKS = 10  # blocks across the mask's longer side
MIN_BLOCK = 5  # pixels
BLOCK_SOFTEN = 0.3  # block edges are softened by a Gaussian of this share of a block (sharp edges are detail too)


def grow(boxes: np.ndarray, *, scale: float, width: int, height: int) -> np.ndarray:
    """Boxes scaled about their centres by ``scale`` and clamped to the frame, as integer (x1, y1, x2, y2).
    Raises nothing."""
    if not len(boxes):
        return np.zeros((0, 4), dtype=np.int32)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    hw, hh = (boxes[:, 2] - boxes[:, 0]) * scale / 2, (boxes[:, 3] - boxes[:, 1]) * scale / 2
    out = np.stack([cx - hw, cy - hh, cx + hw, cy + hh], axis=1)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return np.round(out).astype(np.int32)


def blurred(frame: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """The region [y1:y2, x1:x2] blurred with sigma = max(MIN_SIGMA, BLUR_SHARE * longer side), computed with its
    surroundings (so the edge of the region blends) on a copy reduced to a sigma of about 2 pixels, and mapped back
    onto the region alone."""
    height, width = frame.shape[:2]
    sigma = max(MIN_SIGMA, BLUR_SHARE * max(x2 - x1, y2 - y1))
    pad = int(np.ceil(1.5 * sigma))
    px1, py1, px2, py2 = max(0, x1 - pad), max(0, y1 - pad), min(width, x2 + pad), min(height, y2 + pad)
    small = frame[py1:py2, px1:px2]
    factor = max(1.0, sigma / 2.0)
    sw, sh = max(1, int(round((px2 - px1) / factor))), max(1, int(round((py2 - py1) / factor)))
    if factor > 1:  # pyramid halvings while far from the target size, then one area step
        left = factor
        while left >= 4 and min(small.shape[:2]) >= 8:
            small, left = cv2.pyrDown(small), left / 2
        small = cv2.resize(small, (sw, sh), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor, borderType=cv2.BORDER_REFLECT)
    fx, fy = (px2 - px1) / sw, (py2 - py1) / sh  # small pixel -> frame pixels; then shift to the region's origin
    to_region = np.array([[fx, 0, 0.5 * fx - 0.5 - (x1 - px1)], [0, fy, 0.5 * fy - 0.5 - (y1 - py1)]], dtype=np.float64)
    return cv2.warpAffine(small, to_region, (x2 - x1, y2 - y1), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def pixelated(region: np.ndarray) -> np.ndarray:
    """Blocks of max(MIN_BLOCK, a PIXELATE_BLOCKS-th of the longer side), each the mean of its pixels, their edges
    softened (BLOCK_SOFTEN) so the mosaic adds no sharp detail of its own."""
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
    for x1, y1, x2, y2 in grow(np.asarray(boxes, dtype=np.float32), scale=scale, width=width, height=height):
        if x2 <= x1 or y2 <= y1:
            continue
        if mode == "fill":
            out[y1:y2, x1:x2] = fill
        elif mode == "pixelate":
            out[y1:y2, x1:x2] = pixelated(frame[y1:y2, x1:x2])
        else:
            out[y1:y2, x1:x2] = blurred(frame, x1, y1, x2, y2)
    return out
