"""A review photo as it will be published: its shipping-label boxes (``services.redaction.store``, as inspectors
left them) masked with the face masks. Here, above both, because masks belong to the faces package and the label
boxes to the redaction package below it."""

from __future__ import annotations

import numpy as np
import sqlite_utils

from services.core.errors import InvalidInput
from services.faces.masks import MODES, anonymize
from services.redaction.labels import MASK_SCALE, MASK_SHAPE, as_array
from services.redaction.store import boxes_to_hide


def redact_photo(db: sqlite_utils.Database, *, image_id: int, frame: np.ndarray, actor: str,
                 mode: str = "blur") -> np.ndarray:
    """A copy of the photo's upright RGB ``frame`` with ``boxes_to_hide`` masked as the faces job masks labels
    (``mode``: blur, pixelate or fill). Boxes are in the full photo's pixels: a smaller ``frame`` (a preview)
    gets them scaled to it. Raises PermissionDenied, InvalidInput for an unknown mode."""
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    boxes = boxes_to_hide(db, image_id=image_id, actor=actor)
    size = db.execute("SELECT width, height FROM images WHERE id = ?", [image_id]).fetchone()
    boxes_px = as_array(boxes)
    if size and size[0] and size[1]:
        boxes_px[:, [0, 2]] *= frame.shape[1] / size[0]
        boxes_px[:, [1, 3]] *= frame.shape[0] / size[1]
    return anonymize(frame, boxes_px, mode=mode, shape=MASK_SHAPE, mask_scale=MASK_SCALE)
