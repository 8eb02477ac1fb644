"""Migration 016: ``line_bins`` says which bins the counter estimated (an outage hid their change) and their range."""

from __future__ import annotations

import sqlite_utils


def m016_estimated_bins(db: sqlite_utils.Database) -> None:
    """``estimated`` (0/1) and ``trays_low`` .. ``trays_high`` (equal to ``trays`` for a bin seen whole)."""
    db["line_bins"].add_column("estimated", int, not_null_default=0)
    db["line_bins"].add_column("trays_low", int)
    db["line_bins"].add_column("trays_high", int)
    db.execute("UPDATE line_bins SET trays_low = trays, trays_high = trays")
