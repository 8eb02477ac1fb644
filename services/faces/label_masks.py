"""A review photo as it will be published: its shipping-label boxes (``services.redaction.store``, as inspectors
left them) masked as the export masks them (``services.redaction.publish.redact_frame``: the same box masks as
the faces package's, kept equal by a test), so the queue's preview is the published photo."""

from __future__ import annotations

import numpy as np
import sqlite_utils

from services.core.errors import InvalidInput
from services.redaction.masking import MODES
from services.redaction.publish import MODE, redact_frame
from services.redaction.store import boxes_to_hide


def redact_photo(db: sqlite_utils.Database, *, image_id: int, frame: np.ndarray, actor: str,
                 mode: str = MODE) -> np.ndarray:
    """A copy of the photo's upright RGB ``frame`` with ``boxes_to_hide`` masked (``mode``: blur, pixelate or
    fill). Boxes are in the full photo's pixels: a smaller ``frame`` (a preview) gets them scaled to it. Raises
    PermissionDenied, InvalidInput for an unknown mode."""
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    boxes = boxes_to_hide(db, image_id=image_id, actor=actor)
    size = db.execute("SELECT width, height FROM images WHERE id = ?", [image_id]).fetchone() or (None, None)
    return redact_frame(frame, boxes, width=size[0], height=size[1], mode=mode)
