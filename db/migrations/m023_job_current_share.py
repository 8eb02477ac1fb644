"""Migration 023: how far a running job is through its current item, as a share, for the progress bar."""

from __future__ import annotations

import sqlite_utils


def m023_job_current_share(db: sqlite_utils.Database) -> None:
    """``jobs.current_share``: the share (0 to 1) of the item in hand that is done (a video's frames written),
    set with ``jobs.current`` and cleared with it; NULL when the item gives no measure."""
    db["jobs"].add_column("current_share", float)
