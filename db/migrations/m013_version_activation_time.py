"""Migration 013: when a model version last became active."""

from __future__ import annotations

import sqlite_utils


def m013_version_activation_time(db: sqlite_utils.Database) -> None:
    """When a version last became active: activating it again (a roll back) re-scores the queue again."""
    db["model_versions"].add_column("activated_at", str)
    db.execute("UPDATE model_versions SET activated_at = created_at WHERE active = 1")
