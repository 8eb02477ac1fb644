"""Migration 022: what a running job is doing inside its current item, for items that take minutes (a video)."""

from __future__ import annotations

import sqlite_utils


def m022_job_current_item(db: sqlite_utils.Database) -> None:
    """``jobs.current``: a short sentence on the item in hand and how far it is (``video.mp4: frame 1,200 of about
    4,500``), set by the job while it works on the item and cleared when the item is recorded or the job ends."""
    db["jobs"].add_column("current", str)
