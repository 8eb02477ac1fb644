"""Browser sessions of local accounts that survive a reload, a deep link and a second tab (issue 19 item 6).

A password sign-in gets a one-time hand-off code (``begin``, valid ``HANDOFF_SECONDS``); the browser takes it
to the server's own route, which exchanges it (``redeem``) for a session token and sets that, signed, as an
HttpOnly, SameSite=Strict cookie (``server.py``). Every run of the app checks the cookie here (``resume``,
``check``): the signature, then the session's row, which is the authority. Only the token's SHA-256 is stored,
so the database alone opens no session. A session ends on the server at sign-out, after ``idle_seconds``
without a person's action, and for every session of an account whose roles, password or enabled state change
(``revoke_user``, called by ``services.access.accounts``): the cookie is worthless from the next run on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import sqlite_utils

from db.database import immediate
from services.core.errors import PermissionDenied

COOKIE_NAME = "console_session"
HANDOFF_SECONDS = 60.0


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _key(db: sqlite_utils.Database) -> bytes:
    return bytes.fromhex(db.execute("SELECT secret FROM web_session_key WHERE id = 1").fetchone()[0])


def _sign(db: sqlite_utils.Database, token: str) -> str:
    return hmac.new(_key(db), token.encode(), hashlib.sha256).hexdigest()


def begin(db: sqlite_utils.Database, *, username: str, now: float | None = None) -> str:
    """A one-time code that ``redeem`` exchanges for a session of ``username`` within ``HANDOFF_SECONDS``.
    Call it only once the person has signed in. Raises PermissionDenied for a disabled or unknown account."""
    now = time.time() if now is None else now
    row = db.execute("SELECT disabled FROM users WHERE username = ?", [username]).fetchone()
    if row is None or row[0]:
        raise PermissionDenied(f"'{username}' cannot have a session: the account is disabled or gone")
    code = secrets.token_urlsafe(32)
    with immediate(db):
        db.execute("DELETE FROM web_session_handoffs WHERE expires_at < ?", [now])
        db.execute("INSERT INTO web_session_handoffs (code_hash, username, expires_at) VALUES (?, ?, ?)",
                   [_sha(code), username, now + HANDOFF_SECONDS])
    return code


def redeem(db: sqlite_utils.Database, *, code: str, now: float | None = None) -> str:
    """The signed cookie value of a new session, for a hand-off code from ``begin`` (used up here). Raises
    PermissionDenied for an unknown, used or expired code, or an account disabled meanwhile."""
    now = time.time() if now is None else now
    with immediate(db):
        row = db.execute("SELECT username, expires_at FROM web_session_handoffs WHERE code_hash = ?",
                         [_sha(code or "")]).fetchone()
        db.execute("DELETE FROM web_session_handoffs WHERE code_hash = ?", [_sha(code or "")])
        if row is None or row[1] < now:
            raise PermissionDenied("this sign-in link is used up or has expired: sign in again")
        user = db.execute("SELECT disabled FROM users WHERE username = ?", [row[0]]).fetchone()
        if user is None or user[0]:
            raise PermissionDenied("the account was disabled: ask an admin")
        token = secrets.token_urlsafe(32)
        db.execute("INSERT INTO web_sessions (id_hash, username, created_at, last_seen) VALUES (?, ?, ?, ?)",
                   [_sha(token), row[0], now, now])
    return f"{token}.{_sign(db, token)}"


def _session_id(db: sqlite_utils.Database, cookie: str) -> str | None:
    """The stored id of a cookie whose signature holds, else None."""
    token, _, signature = (cookie or "").partition(".")
    if not token or not hmac.compare_digest(_sign(db, token), signature):
        return None
    return _sha(token)


def resume(db: sqlite_utils.Database, *, cookie: str, idle_seconds: float, now: float | None = None) -> dict[str, Any] | None:
    """``{"username", "roles", "session"}`` for a cookie of a live session (signature valid, not revoked, used
    within ``idle_seconds``, account enabled with a role), else None. A session found idle is revoked here.
    Raises nothing for a bad cookie: it is simply not a session."""
    sid = _session_id(db, cookie)
    if sid is None or check(db, session=sid, idle_seconds=idle_seconds, now=now, touch=False) is not None:
        return None
    username = db.execute("SELECT username FROM web_sessions WHERE id_hash = ?", [sid]).fetchone()[0]
    roles = db.execute("SELECT roles FROM users WHERE username = ?", [username]).fetchone()[0]
    return {"username": username, "roles": json.loads(roles), "session": sid}


def check(db: sqlite_utils.Database, *, session: str, idle_seconds: float, touch: bool,
          now: float | None = None) -> str | None:
    """None while ``session`` (an id from ``resume``) is live, marking it used now when ``touch`` (a person's
    action, not a page refreshing itself); else why it ended, for the person to read. A session idle too long,
    or of a disabled account, is revoked here. Raises nothing."""
    now = time.time() if now is None else now
    row = db.execute("SELECT s.username, s.last_seen, s.revoked_at, s.revoked_reason, u.disabled, u.roles "
                     "FROM web_sessions s LEFT JOIN users u ON u.username = s.username WHERE s.id_hash = ?",
                     [session]).fetchone()
    if row is None:
        return "Your session has ended: sign in again."
    username, last_seen, revoked_at, reason, disabled, roles = row
    if revoked_at is not None:
        return {"sign-out": "You signed out.", "idle": f"Signed out after {round(idle_seconds / 60)} minutes "
                "without activity."}.get(reason or "", "Your account changed (roles, password or access): sign in again.")
    if disabled is None or disabled or not json.loads(roles or "[]"):
        revoke(db, session=session, reason="account")
        return "Your account was disabled or has no role left: ask an admin."
    if now - last_seen > idle_seconds:
        revoke(db, session=session, reason="idle")
        return f"Signed out after {round(idle_seconds / 60)} minutes without activity."
    if touch:
        with immediate(db):
            db.execute("UPDATE web_sessions SET last_seen = MAX(last_seen, ?) WHERE id_hash = ?", [now, session])
    return None


def revoke(db: sqlite_utils.Database, *, session: str, reason: str, now: float | None = None) -> None:
    """End one session on the server (``reason``: ``sign-out``, ``idle``, ``account``). Raises nothing."""
    with immediate(db):
        db.execute("UPDATE web_sessions SET revoked_at = ?, revoked_reason = ? WHERE id_hash = ? AND revoked_at IS NULL",
                   [time.time() if now is None else now, reason, session])


def revoke_user(db: sqlite_utils.Database, *, username: str, reason: str) -> int:
    """End every live session of ``username`` (its roles, password or enabled state changed: the caller has
    checked the role and audits the change). Returns how many ended. Runs inside the caller's transaction when
    there is one. Raises nothing."""
    with immediate(db):
        cur = db.execute("UPDATE web_sessions SET revoked_at = ?, revoked_reason = ? WHERE username = ? "
                         "AND revoked_at IS NULL", [time.time(), reason, username])
    return cur.rowcount
