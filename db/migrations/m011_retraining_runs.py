"""Migration 011: gated retraining runs."""

from __future__ import annotations

import sqlite_utils


def m011_retraining_runs(db: sqlite_utils.Database) -> None:
    """Gated retraining: every run, what it trained, how the candidate compared and what was decided."""
    db["retrain_runs"].create(
        {
            "id": int,
            "job_id": int,
            "started_at": str,
            "finished_at": str,
            "trigger": str,  # due (enough new labels) | forced
            "new_labels": int,
            "candidate_version_id": int,
            "candidate_macro_f1": float,
            "current_version_id": int,
            "current_macro_f1": float,
            "outcome": str,  # promoted | kept | failed
            "reason": str,
        },
        pk="id",
    )
