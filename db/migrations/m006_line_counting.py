"""Migration 006: packaging-line counting."""

from __future__ import annotations

import sqlite_utils


def m006_line_counting(db: sqlite_utils.Database) -> None:
    """Packaging-line counting: detector frames, files read (once, resumable), per-line counter state,
    bins, per-minute roll-ups, targets per shift, alerts."""
    db["lines"].create(
        {"id": str, "name": str, "created_at": str, "last_frame_ts": float},
        pk="id",
    )
    db["line_frames"].create(
        {
            "line_id": str,
            "camera_id": str,
            "ts": float,  # epoch seconds, UTC
            "count": int,  # trays counted in the frame (boxes under the minimum confidence left out)
            "raw_count": int,  # as reported
            "file": str,
        },
        pk=("line_id", "camera_id", "ts"),  # a frame seen twice is one frame
    )
    db["line_frames"].create_index(["line_id", "ts"])
    db["line_files"].create(
        {
            "uri": str,
            "offset": int,  # bytes consumed (complete lines only: a file still being written is resumed here)
            "size": int,
            "etag": str,
            "frames_added": int,
            "duplicates": int,
            "skipped": str,  # JSON {reason: count}
            "samples": str,  # JSON [{line, reason}] first few skipped lines
            "state": str,  # partial | done
            "first_seen_at": str,
            "updated_at": str,
        },
        pk="uri",
    )
    db["line_state"].create(
        {"line_id": str, "state": str, "counted_to_ts": float, "updated_at": str},
        pk="line_id",
    )
    db["line_bins"].create(
        {"id": int, "line_id": str, "start_ts": float, "end_ts": float, "trays": int, "reason": str,
         "created_at": str},
        pk="id",
    )
    db["line_bins"].create_index(["line_id", "end_ts"], unique=True)
    db["line_minutes"].create(
        {"line_id": str, "minute": int, "frames": int, "mean_count": float, "max_count": int, "trays_binned": int},
        pk=("line_id", "minute"),  # minute = epoch seconds // 60
    )
    db["line_targets"].create(
        {"line_id": str, "shift": str, "trays_per_hour": float, "updated_by": str, "updated_at": str},
        pk=("line_id", "shift"),
    )
    db["line_alerts"].create(
        {"id": int, "line_id": str, "shift": str, "kind": str, "started_ts": float, "ended_ts": float,
         "rate_per_hour": float, "target_per_hour": float, "message": str, "created_at": str},
        pk="id",
    )
    db["line_alerts"].create_index(["line_id", "started_ts"])
