"""Local accounts: argon2id password hashes, a password policy, roles, and lockout with back-off.

Every sign-in, success or failure, goes to the audit log with the address it came from. A failed
sign-in never says whether the user name exists. After ``FREE_FAILURES`` failures in a row an account
is locked for ``LOCK_BASE_SECONDS``, doubling with each further failure up to ``LOCK_MAX_SECONDS``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlite_utils
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from db.database import immediate
from services.core.audit import record
from services.core.authz import ROLES, SYSTEM_SEPARATOR, require, setup_mode
from services.core.clock import now_iso
from services.core.errors import InvalidInput, NotFound, PermissionDenied

MIN_PASSWORD_LENGTH = 12
FREE_FAILURES = 5
LOCK_BASE_SECONDS = 30.0
LOCK_MAX_SECONDS = 3600.0
COMMON_PASSWORDS = frozenset({
    "password1234", "123456789012", "qwertyuiopas", "passwordpassword", "letmein12345", "administrator",
    "welcome12345", "iloveyou1234", "changeme1234", "password123!", "admin1234567",
})
_HASHER = PasswordHasher()  # argon2id with the library's current parameters
_WRONG = "wrong user name or password"


def check_password_policy(*, username: str, password: str) -> None:
    """Raises InvalidInput when the password is shorter than MIN_PASSWORD_LENGTH, a common one, or
    contains the user name."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if password.lower() in COMMON_PASSWORDS or len(set(password)) < 4:
        raise InvalidInput("that password is too easy to guess: choose a longer, less common one")
    if username and username.lower() in password.lower():
        raise InvalidInput("a password must not contain the user name")


def _roles(roles: list[str] | tuple[str, ...]) -> list[str]:
    unknown = sorted(set(roles) - set(ROLES))
    if not roles or unknown:
        raise InvalidInput(f"roles must be some of {', '.join(ROLES)}" + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    return sorted(set(roles), key=ROLES.index)


def check_username(username: str) -> str:
    """The user name stripped. Raises InvalidInput for an empty or long name, spaces, or a colon (names
    with a colon are the console's own principals, see services.core.authz)."""
    username = username.strip()
    if not username or len(username) > 254 or any(c.isspace() for c in username) or SYSTEM_SEPARATOR in username:
        raise InvalidInput("a user name needs 1 to 254 characters, without spaces or colons")
    return username


def create_user(db: sqlite_utils.Database, *, username: str, password: str, roles: list[str], actor: str) -> dict[str, Any]:
    """Create a local account (admins; anyone in set-up mode, to make the first admin). Raises
    PermissionDenied, and InvalidInput for a bad or taken user name, a weak password or unknown roles."""
    if not setup_mode(db):
        require(db, actor=actor, action="users.manage")
    username = check_username(username)
    check_password_policy(username=username, password=password)
    clean = _roles(roles)
    with immediate(db):
        if db.execute("SELECT 1 FROM users WHERE username = ?", [username]).fetchone():
            raise InvalidInput(f"user '{username}' already exists")
        db.execute("INSERT INTO users (username, password_hash, roles, disabled, failed_count, locked_until, created_at, "
                   "created_by) VALUES (?, ?, ?, 0, 0, 0, ?, ?)",
                   [username, _HASHER.hash(password), json.dumps(clean), now_iso(), actor])
        record(db, actor=actor, action="user.create", target=f"user:{username}", detail={"roles": clean})
    return {"username": username, "roles": clean}


def set_roles(db: sqlite_utils.Database, *, username: str, roles: list[str], actor: str) -> list[str]:
    """Change a user's roles (audited). Raises NotFound, InvalidInput."""
    require(db, actor=actor, action="users.manage")
    clean = _roles(roles)
    with immediate(db):
        row = db.execute("SELECT roles, auth FROM users WHERE username = ?", [username]).fetchone()
        if row is None:
            raise NotFound(f"no user '{username}'")
        if row[1] == "oidc":
            raise InvalidInput(f"'{username}' signs in through single sign-on: their roles come from the SSO role "
                               "mappings (map their identity or a group instead)")
        db.execute("UPDATE users SET roles = ? WHERE username = ?", [json.dumps(clean), username])
        record(db, actor=actor, action="user.roles", target=f"user:{username}",
               detail={"before": json.loads(row[0]), "after": clean})
    return clean


def set_password(db: sqlite_utils.Database, *, username: str, password: str, actor: str) -> None:
    """Set a new password (audited, the hash never is); it also lifts a lockout. Users may set their own;
    admins anyone's. Raises PermissionDenied, NotFound, InvalidInput."""
    if actor != username:
        require(db, actor=actor, action="users.manage")
    check_password_policy(username=username, password=password)
    with immediate(db):
        row = db.execute("SELECT auth FROM users WHERE username = ?", [username]).fetchone()
        if row is None:
            raise NotFound(f"no user '{username}'")
        if row[0] == "oidc":
            raise InvalidInput(f"'{username}' signs in through single sign-on and has no password here")
        db.execute("UPDATE users SET password_hash = ?, failed_count = 0, locked_until = 0 WHERE username = ?",
                   [_HASHER.hash(password), username])
        record(db, actor=actor, action="user.password", target=f"user:{username}")


def set_disabled(db: sqlite_utils.Database, *, username: str, disabled: bool, actor: str) -> None:
    """Disable or enable an account (audited); enabling also lifts a lockout. Raises NotFound, and
    InvalidInput when an admin would disable their own account."""
    require(db, actor=actor, action="users.manage")
    if disabled and username == actor:
        raise InvalidInput("you cannot disable your own account")
    with immediate(db):
        if db.execute("SELECT 1 FROM users WHERE username = ?", [username]).fetchone() is None:
            raise NotFound(f"no user '{username}'")
        db.execute("UPDATE users SET disabled = ?, failed_count = CASE WHEN ? THEN failed_count ELSE 0 END, "
                   "locked_until = CASE WHEN ? THEN locked_until ELSE 0 END WHERE username = ?",
                   [int(disabled), int(disabled), int(disabled), username])
        record(db, actor=actor, action="user.disable" if disabled else "user.enable", target=f"user:{username}")


def lock_seconds(failures: int) -> float:
    """How long an account stays locked after ``failures`` failed sign-ins in a row (0 while still free)."""
    if failures < FREE_FAILURES:
        return 0.0
    return min(LOCK_MAX_SECONDS, LOCK_BASE_SECONDS * 2 ** (failures - FREE_FAILURES))


def authenticate(db: sqlite_utils.Database, *, username: str, password: str, source: str,
                 now: float | None = None) -> dict[str, Any]:
    """Check a sign-in and return {username, roles}. Every attempt is audited with ``source`` (the client
    address). Raises PermissionDenied with the same message for an unknown user and a wrong password,
    and a "locked" message (with the time left) during a lockout; disabled accounts are refused.

    The failure count, the lock and the audit entry are committed before the refusal is raised.
    """
    now = time.time() if now is None else now
    refusal: str | None = None
    with immediate(db):
        row = db.execute("SELECT password_hash, roles, disabled, failed_count, locked_until FROM users "
                         "WHERE username = ?", [username]).fetchone()
        if row is not None and row[0] is None:  # a single sign-on account has no password to check
            row = None
        if row is None:
            _HASHER.hash(password)  # the same work as a real check: timing does not tell which names exist
            record(db, actor=username, action="sign_in.failed", target=f"user:{username}", detail={"from": source})
            refusal = _WRONG
        else:
            refusal = _check(db, username=username, password=password, source=source, now=now, row=row)
    if refusal is not None:
        raise PermissionDenied(refusal)
    return {"username": username, "roles": json.loads(row[1])}


def _check(db: sqlite_utils.Database, *, username: str, password: str, source: str, now: float,
           row: tuple[Any, ...]) -> str | None:
    """Inside the sign-in transaction: record the attempt; return why it is refused, or None."""
    hashed, _, disabled, failures, locked_until = row
    if locked_until and now < locked_until:
        record(db, actor=username, action="sign_in.locked", target=f"user:{username}", detail={"from": source})
        return f"too many failed sign-ins: try again in {int(locked_until - now) + 1} s"
    try:
        _HASHER.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        failures += 1
        wait = lock_seconds(failures)
        db.execute("UPDATE users SET failed_count = ?, locked_until = ? WHERE username = ?",
                   [failures, now + wait if wait else 0.0, username])
        record(db, actor=username, action="sign_in.failed", target=f"user:{username}",
               detail={"from": source, "failures": failures})
        return _WRONG
    if disabled:
        record(db, actor=username, action="sign_in.disabled", target=f"user:{username}", detail={"from": source})
        return "this account is disabled: ask an admin"
    if _HASHER.check_needs_rehash(hashed):
        db.execute("UPDATE users SET password_hash = ? WHERE username = ?", [_HASHER.hash(password), username])
    db.execute("UPDATE users SET failed_count = 0, locked_until = 0, last_sign_in_at = ? WHERE username = ?",
               [now_iso(), username])
    record(db, actor=username, action="sign_in", target=f"user:{username}", detail={"from": source})
    return None


def list_users(db: sqlite_utils.Database, *, actor: str) -> list[dict[str, Any]]:
    """Every account without its hash: username, auth (password or oidc), roles, disabled, failed_count, locked_until, last sign-in.
    Raises PermissionDenied unless ``actor`` manages users."""
    require(db, actor=actor, action="users.manage")
    out = []
    for row in db.query("SELECT username, auth, roles, disabled, failed_count, locked_until, created_at, "
                        "last_sign_in_at FROM users ORDER BY username"):
        row["roles"] = json.loads(row["roles"])
        out.append(row)
    return out


def current_roles(db: sqlite_utils.Database, username: str) -> list[str] | None:
    """The roles of an enabled account now, or None when it is disabled or gone (its session must end)."""
    row = db.execute("SELECT roles, disabled FROM users WHERE username = ?", [username]).fetchone()
    return None if row is None or row[1] else json.loads(row[0])


def has_password_accounts(db: sqlite_utils.Database) -> bool:
    """Whether any local (password) account exists, so the sign-in page offers the password form. Raises nothing:
    it is asked before anyone has signed in."""
    return db.execute("SELECT 1 FROM users WHERE auth = 'password' LIMIT 1").fetchone() is not None


def idle_expired(*, last_seen: float, now: float, idle_seconds: float) -> bool:
    """True when a session unused for longer than ``idle_seconds`` must sign in again."""
    return now - last_seen > idle_seconds
