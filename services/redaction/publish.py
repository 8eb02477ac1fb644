"""A review photo as published: its shipping-label boxes (``store.boxes_to_hide``, as inspectors left them) masked
(``masking.mask_boxes``, the labels' box masks) in the upright photo, written once to the object store.

A redacted copy is keyed by what it shows: ``<prefix>/<image id>/<digest>.<jpg|png>``, the digest of the
original's SHA-256, the mask mode and the boxes. An edit of the boxes gives a new copy (a new key); publishing
again with nothing changed finds the copy there and writes nothing. A photo with nothing to hide is published as
it is (its own URI). The default prefix is ``published/`` in the workspace (a storage root).
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import numpy as np
import sqlite_utils
from PIL import Image

from services.core.authz import require
from services.core.config import get_settings, workspace_root
from services.core.errors import NotFound
from services.core.images import decode
from services.core.storage import ObjectStore, join
from services.redaction.labels import MASK_SCALE, LabelBox, as_array
from services.redaction.masking import mask_boxes
from services.redaction.store import boxes_to_hide

MODE = "blur"  # how label boxes are hidden when a review photo is published (the queue's preview too)
PREFIX = "published"
VERSION = 1  # of the masking: a change of how boxes are masked must give new keys


def default_prefix(db: sqlite_utils.Database) -> str:
    """Where redacted copies go by default: ``published/`` in the workspace. Raises nothing."""
    return join(str(workspace_root(db)), PREFIX)


def redact_frame(frame: np.ndarray, boxes: list[LabelBox], *, width: int | None = None, height: int | None = None,
                 mode: str = MODE) -> np.ndarray:
    """A copy of the upright RGB ``frame`` with ``boxes`` (in pixels of a ``width`` x ``height`` photo; the
    frame's own size when not given, a preview gets them scaled) masked. Raises InvalidInput for an unknown mode."""
    px = as_array(boxes)
    if width and height:
        px[:, [0, 2]] *= frame.shape[1] / width
        px[:, [1, 3]] *= frame.shape[0] / height
    return mask_boxes(frame, px, mode=mode, scale=MASK_SCALE)


def digest(*, sha256: str, boxes: list[LabelBox], mode: str = MODE) -> str:
    """The key of a redacted copy: changes with the photo, the mode and any box (to a tenth of a pixel)."""
    spec = [VERSION, sha256, mode, sorted((b.kind, round(b.x1, 1), round(b.y1, 1), round(b.x2, 1), round(b.y2, 1))
                                          for b in boxes)]
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:20]


def publish_photo(db: sqlite_utils.Database, *, image_id: int, store: ObjectStore, actor: str,
                  prefix: str | None = None) -> dict[str, Any]:
    """Publish one photo: ``{"uri": the published URI, "hidden": boxes hidden, "written": bool}``; the original's
    URI when nothing is hidden, else the redacted copy (written only when not already there). Raises NotFound
    for an unknown photo, PermissionDenied (``actor`` may not see reviews, or a URI outside the storage roots),
    ImageError for an unreadable photo, StorageError."""
    require(db, actor=actor, action="reviews.read")
    row = db.execute("SELECT uri, sha256 FROM images WHERE id = ?", [image_id]).fetchone()
    if row is None:
        raise NotFound(f"image {image_id} does not exist (it may have been deleted)")
    uri, sha256 = row
    boxes = boxes_to_hide(db, image_id=image_id, actor=actor)
    if not boxes:
        return {"uri": uri, "hidden": 0, "written": False}
    data = store.read(uri)
    sha256 = sha256 or hashlib.sha256(data).hexdigest()
    ext = "png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "jpg"
    target = join(prefix or default_prefix(db), f"{image_id}/{digest(sha256=sha256, boxes=boxes)}.{ext}")
    if store.exists(target):
        return {"uri": target, "hidden": len(boxes), "written": False}
    frame = np.asarray(decode(data, max_pixels=int(get_settings(db)["max_pixels"])))
    out = Image.fromarray(redact_frame(frame, boxes))  # boxes are in the upright photo's pixels, as decoded
    buf = io.BytesIO()
    out.save(buf, format="PNG") if ext == "png" else out.save(buf, format="JPEG", quality=92)  # no EXIF kept
    store.write(target, buf.getvalue())
    return {"uri": target, "hidden": len(boxes), "written": True}
