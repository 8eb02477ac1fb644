"""How much detail a mask leaves in a face: pure functions on frames (numpy arrays), no I/O.

Detail is the variance of the Laplacian inside the face's box, on the grey image; a mask removes a face's detail
when that falls below half of what the original had (``REMOVED_BELOW``). The job checks every face it masks
with it, and the benchmarks score recall with it.
"""

from __future__ import annotations

import cv2
import numpy as np

REMOVED_BELOW = 0.5  # detail after / detail before under this: the face's detail is gone


def grey(frame: np.ndarray) -> np.ndarray:
    """The frame as float32 luma (an H x W plane is taken as it is)."""
    if frame.ndim == 2:
        return frame.astype(np.float32)
    return cv2.cvtColor(np.ascontiguousarray(frame[..., :3]), cv2.COLOR_RGB2GRAY).astype(np.float32)


def laplacian(frame: np.ndarray) -> np.ndarray:
    """The Laplacian of the frame's grey image (3x3 aperture), computed once per frame."""
    return cv2.Laplacian(grey(frame), cv2.CV_32F)


def _cells(box: np.ndarray | list[float], width: int, height: int) -> tuple[slice, slice] | None:
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    c1, r1 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
    c2, r2 = min(width, int(np.ceil(x2))), min(height, int(np.ceil(y2)))
    if c2 - c1 < 2 or r2 - r1 < 2:
        return None
    return slice(r1, r2), slice(c1, c2)


def detail(lap: np.ndarray, box: np.ndarray | list[float]) -> float:
    """Variance of the Laplacian ``lap`` (see ``laplacian``) inside ``box`` [x1, y1, x2, y2]; 0.0 for a box under
    2 pixels inside the frame."""
    cells = _cells(box, lap.shape[1], lap.shape[0])
    return float(lap[cells].var()) if cells else 0.0


def detail_ratios(before: np.ndarray, after: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Per box [x1, y1, x2, y2, ...], detail after / detail before (0.0 where the original had none: nothing
    there to read)."""
    if not len(boxes):
        return np.zeros(0, dtype=np.float32)
    lb, la = laplacian(before), laplacian(after)
    out = []
    for box in boxes:
        d0 = detail(lb, box)
        out.append(detail(la, box) / d0 if d0 > 1e-6 else 0.0)
    return np.array(out, dtype=np.float32)
