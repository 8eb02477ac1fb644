"""Migration 018: browser sessions of local accounts, kept on the server so a cookie can be revoked."""

from __future__ import annotations

import secrets

import sqlite_utils


def m018_web_sessions(db: sqlite_utils.Database) -> None:
    """``web_sessions``: one row per signed-in browser (the SHA-256 of its token, never the token), with the
    account, when it was made and last used, and when and why it was revoked. ``web_session_handoffs``: one-time
    codes (hashed, short-lived) a signed-in page exchanges for the cookie. ``web_session_key``: the key the
    cookie is signed with, made here at random."""
    db.execute("CREATE TABLE web_sessions (id_hash TEXT PRIMARY KEY, username TEXT NOT NULL, "
               "created_at REAL NOT NULL, last_seen REAL NOT NULL, revoked_at REAL, revoked_reason TEXT)")
    db.execute("CREATE INDEX web_sessions_username ON web_sessions (username)")
    db.execute("CREATE TABLE web_session_handoffs (code_hash TEXT PRIMARY KEY, username TEXT NOT NULL, "
               "expires_at REAL NOT NULL)")
    db.execute("CREATE TABLE web_session_key (id INTEGER PRIMARY KEY CHECK (id = 1), secret TEXT NOT NULL)")
    db.execute("INSERT INTO web_session_key (id, secret) VALUES (1, ?)", [secrets.token_hex(32)])
