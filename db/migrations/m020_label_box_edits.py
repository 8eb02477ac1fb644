"""Migration 020: inspectors' edits of the shipping-label boxes (issue 26 item 1: added and removed in the queue)."""

from __future__ import annotations

import sqlite_utils


def m020_label_box_edits(db: sqlite_utils.Database) -> None:
    """``label_box_edits``: one row per box an inspector added or removed (who, when, which box and where), the
    history of a photo's boxes. ``label_boxes`` gains ``removed_at`` and ``removed_by``: a removed box stays, so
    the history can name it and a later search of the photo does not bring it back."""
    db["label_box_edits"].create({"id": int, "image_id": int, "box_id": int, "action": str, "kind": str,
                                  "x1": float, "y1": float, "x2": float, "y2": float, "actor": str, "at": str},
                                 pk="id", foreign_keys=[("image_id", "images", "id"), ("box_id", "label_boxes", "id")],
                                 not_null={"image_id", "box_id", "action", "actor", "at"})
    db["label_box_edits"].create_index(["image_id"])
    db["label_boxes"].add_column("removed_at", str)
    db["label_boxes"].add_column("removed_by", str)
