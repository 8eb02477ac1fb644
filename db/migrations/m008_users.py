"""Migration 008: local accounts."""

from __future__ import annotations

import sqlite_utils


def m008_users(db: sqlite_utils.Database) -> None:
    """Local accounts: argon2id password hashes, roles, and the failure count and lock of the lockout."""
    db["users"].create(
        {
            "username": str,
            "password_hash": str,
            "roles": str,  # JSON list: inspector | ops | admin
            "disabled": int,
            "failed_count": int,  # failed sign-ins since the last success
            "locked_until": float,  # epoch seconds; sign-in refused before it
            "created_at": str,
            "created_by": str,
            "last_sign_in_at": str,
        },
        pk="username",
    )
