"""The box overlap the models' non-maximum suppressions share."""

from __future__ import annotations

import numpy as np
import pytest

from services.models import body_cues, coco_objects
from services.models.boxes import iou


def test_iou_of_one_box_with_each_other_box_ignores_extra_columns_and_empty_boxes():
    box = np.array([0.0, 0.0, 10.0, 10.0, 0.9])
    others = np.array([[0.0, 0.0, 10.0, 10.0, 0.1], [5.0, 0.0, 15.0, 10.0, 0.5], [20.0, 20.0, 30.0, 30.0, 0.7],
                       [3.0, 3.0, 3.0, 3.0, 1.0]])
    assert iou(box, others) == pytest.approx([1.0, 50 / 150, 0.0, 0.0])
    assert iou(np.array([1.0, 1.0, 1.0, 1.0]), np.array([[1.0, 1.0, 1.0, 1.0]]))[0] == 0.0  # no area: no overlap


def test_both_detectors_use_it():
    assert coco_objects.iou is iou and body_cues.iou is iou
