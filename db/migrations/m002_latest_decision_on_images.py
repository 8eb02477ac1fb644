"""Migration 002: each photo points at its latest decision."""

from __future__ import annotations

import sqlite_utils


def m002_latest_decision_on_images(db: sqlite_utils.Database) -> None:
    """Point each image at its latest decision, so pages and exports join in O(1) per row."""
    db.execute("ALTER TABLE images ADD COLUMN decision_id INTEGER REFERENCES decisions(id)")
    db.execute("UPDATE images SET decision_id = (SELECT MAX(id) FROM decisions WHERE image_id = images.id)")
    db.execute("CREATE INDEX idx_images_decision_id ON images (decision_id)")
    db.execute("CREATE INDEX idx_images_created_at ON images (created_at)")
