"""Migration 014: alerts raised when audits show a model class missing its promised accuracy."""

from __future__ import annotations

import sqlite_utils


def m014_model_alerts(db: sqlite_utils.Database) -> None:
    """One row per alert: which version and class, the audit evidence, what was done, and when it was resolved."""
    db["model_alerts"].create(
        {
            "id": int,
            "created_at": str,
            "version_id": int,
            "class": str,
            "audited": int,  # audited automatic decisions of the class by this version
            "right": int,  # of which the inspectors agreed
            "upper95": float,  # the one-sided 95% upper bound of their accuracy
            "target": float,
            "action": str,  # what the console did: sent_to_people
            "detail": str,
            "resolved_at": str,
            "resolved_by": str,
        },
        pk="id",
        foreign_keys=[("version_id", "model_versions", "id")],
    )
    db["model_alerts"].create_index(["version_id", "class"])
