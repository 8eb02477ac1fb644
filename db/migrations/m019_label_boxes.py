"""Migration 019: the shipping-label boxes found on review photos classified as packages."""

from __future__ import annotations

import sqlite_utils


def m019_label_boxes(db: sqlite_utils.Database) -> None:
    """``label_boxes``: one row per barcode, QR code or text block to hide on a photo (pixels of the upright
    photo), found by classification (``source`` 'auto'). ``label_redactions``: one row per photo looked at, so a
    photo with no label on it is told apart from one never looked at, with the detector's error if it failed."""
    db["label_boxes"].create({"id": int, "image_id": int, "kind": str, "x1": float, "y1": float, "x2": float,
                              "y2": float, "score": float, "source": str, "created_at": str},
                             pk="id", foreign_keys=[("image_id", "images", "id")], not_null={"image_id", "kind"})
    db["label_boxes"].create_index(["image_id"])
    db["label_redactions"].create({"image_id": int, "boxes": int, "error": str, "created_at": str},
                                  pk="image_id", foreign_keys=[("image_id", "images", "id")])
