"""Box geometry the models' own post-processing shares (pure numpy): the BlazePose detector's and the COCO
detector's non-maximum suppression both ask how much one box overlaps each of the others."""

from __future__ import annotations

import numpy as np


def iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (x0, y0, x1, y1, ...) with each of ``others`` (M, 4 or more); 0 where
    both have no area. Raises nothing."""
    iw = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


__all__ = ["iou"]
