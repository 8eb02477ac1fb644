"""Migration 017: sign-in throttling per client address and per (account, address), and normalised user names."""

from __future__ import annotations

import unicodedata

import sqlite_utils


def _key(name: str) -> str:
    """NFKC, case-folded: the same key services.access.names.normalise_username gives a valid name."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name.strip()).casefold())


def m017_sign_in_throttle(db: sqlite_utils.Database) -> None:
    """``sign_in_failures`` counts failed sign-ins per (account, address) and per address (account ``*``),
    with the time until which they are refused. ``users.name_key`` is the normalised name a password
    account is found under, unique: of existing accounts whose names normalise alike (``Admin`` beside
    ``admin``) the oldest keeps the key and the others keep signing in by their exact name only."""
    db.execute("CREATE TABLE sign_in_failures (account TEXT NOT NULL, address TEXT NOT NULL, "
               "failures INTEGER NOT NULL DEFAULT 0, blocked_until REAL NOT NULL DEFAULT 0, "
               "last_at REAL NOT NULL DEFAULT 0, PRIMARY KEY (account, address))")
    db.execute("CREATE INDEX sign_in_failures_last_at ON sign_in_failures (last_at)")
    db["users"].add_column("name_key", str)
    taken: set[str] = set()
    rows = db.execute("SELECT username FROM users WHERE auth = 'password' ORDER BY created_at, rowid").fetchall()
    for (name,) in rows:
        key = _key(name)
        if key not in taken:
            taken.add(key)
            db.execute("UPDATE users SET name_key = ? WHERE username = ?", [key, name])
    db.execute("CREATE UNIQUE INDEX users_name_key ON users (name_key) WHERE name_key IS NOT NULL")
