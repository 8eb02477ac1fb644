"""What a person's label of a low-confidence photo is worth to the model, and the queue rank it buys.

Within a priority the queue serves the lowest ``images.queue_rank`` first (epoch seconds). A photo's rank is
its submitted time, except for a photo queued for low confidence: its label is worth its uncertainty,
``value = 1 - (p_top - p_second)`` in [0, 1] (0 when the model is sure, 1 when its top two classes tie), and its
rank is ``submitted - value * hours * 3600`` with ``hours`` the ``queue_value_hours`` setting.

The bound: the most uncertain photo may pass photos submitted up to ``hours`` before it, and no photo waits behind
one submitted more than ``hours`` after it. If B is served before A, rank_B <= rank_A, so
submitted_B <= submitted_A + (value_B - value_A) * hours <= submitted_A + hours. With ``hours`` = 0 the queue is
oldest first; without a model a photo has no value, and its rank is its submitted time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sqlite_utils

from db.migrations import SUBMITTED_EPOCH
from services.core.errors import NotFound

SECONDS_PER_HOUR = 3600.0
Probabilities = Mapping[str, float] | Iterable[float]  # by class, or in the head's class order


def label_value(probabilities: Probabilities | None) -> float:
    """Uncertainty, 1 - (top - second probability), in [0, 1]; 0 for no probabilities (no model, no value)."""
    if probabilities is None:
        return 0.0
    values = probabilities.values() if isinstance(probabilities, Mapping) else probabilities
    ranked = sorted((float(p) for p in values), reverse=True)
    if not ranked:
        return 0.0
    second = ranked[1] if len(ranked) > 1 else 0.0
    return min(1.0, max(0.0, 1.0 - (ranked[0] - second)))


def queue_rank(*, submitted: float, probabilities: Probabilities | None, hours: float) -> float:
    """The rank of a low-confidence photo submitted at ``submitted`` (epoch seconds): earlier by its value times
    ``hours`` (negative hours count as 0). Raises nothing."""
    return submitted - label_value(probabilities) * max(0.0, float(hours)) * SECONDS_PER_HOUR


def rank_in_queue(db: sqlite_utils.Database, *, image_id: int, probabilities: Probabilities | None,
                  hours: float) -> float:
    """``queue_rank`` for a photo of the database (its submitted time read as the migration reads it).
    Raises NotFound for an unknown photo."""
    row = db.execute(f"SELECT {SUBMITTED_EPOCH} FROM images WHERE id = ?", [image_id]).fetchone()
    if row is None:
        raise NotFound(f"image {image_id} does not exist")
    return queue_rank(submitted=float(row[0]), probabilities=probabilities, hours=hours)
