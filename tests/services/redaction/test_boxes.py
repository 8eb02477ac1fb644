"""merge_pairs: the union of the first joining pair, searched again from the start, until none joins."""

from __future__ import annotations

import numpy as np

from services.redaction.boxes import merge_pairs


def _touching(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(min(a[2], b[2]) >= max(a[0], b[0]) and min(a[3], b[3]) >= max(a[1], b[1]))


def test_a_chain_merges_into_one_box_with_the_larger_score_and_the_rest_stay():
    rows = np.array([[0, 0, 10, 10, 0.2], [50, 50, 60, 60, 0.4], [20, 0, 30, 10, 0.1], [10, 5, 20, 8, 0.9]])
    out = merge_pairs(rows, joins=_touching)
    assert out.dtype == np.float32 and out.tolist() == [[0, 0, 30, 10, np.float32(0.9)], [50, 50, 60, 60, np.float32(0.4)]]


def test_nothing_or_one_box_comes_back_as_it_is_in_shape():
    assert merge_pairs(np.zeros((0, 4)), joins=_touching).shape == (0, 4)
    assert merge_pairs(np.array([[1, 2, 3, 4]]), joins=_touching).tolist() == [[1, 2, 3, 4]]
