"""Migration 009: single sign-on."""

from __future__ import annotations

import sqlite_utils


def m009_single_sign_on(db: sqlite_utils.Database) -> None:
    """Single sign-on: accounts say how they sign in (``password`` or ``oidc``, the latter without a hash,
    keeping the groups of their last sign-in), and admins map identities and groups to roles."""
    db["users"].add_column("auth", str, not_null_default="password")
    db["users"].add_column("sso_groups", str)  # JSON list, from the identity provider's groups claim
    db["sso_roles"].create(
        {
            "kind": str,  # identity (the identity claim's value, e.g. an email) | group
            "subject": str,
            "roles": str,  # JSON list: inspector | ops | admin
            "updated_at": str,
            "updated_by": str,
        },
        pk=("kind", "subject"),
    )
