"""Local accounts: argon2id password hashes, a password policy, roles, normalised names, and sign-in
throttling per client address and per (account, address).

Every sign-in, success or failure, goes to the audit log with the address it came from. A failed
sign-in never says whether the user name exists, and an unknown name costs the same hash. After
``FREE_FAILURES`` failures in a row from one address, that address is locked out of the account for
``LOCK_BASE_SECONDS``, doubling with each further failure up to ``LOCK_MAX_SECONDS``; other addresses are
only slowed, and an address failing across many names is blocked (services.access.throttle).
"""

from __future__ import annotations

import functools
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import sqlite_utils
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from db.database import immediate
from services.access import sessions, throttle
from services.access.names import MAX_USERNAME_LENGTH, fold, normalise_username
from services.core.audit import record
from services.core.authz import ROLES, require, setup_mode
from services.core.clock import now_iso
from services.core.errors import InvalidInput, NotFound, PermissionDenied

MIN_PASSWORD_LENGTH = 12
FREE_FAILURES = throttle.PAIR_FREE_FAILURES
LOCK_BASE_SECONDS = throttle.PAIR_BASE_SECONDS
LOCK_MAX_SECONDS = throttle.PAIR_MAX_SECONDS
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
    """The user name normalised (see services.access.names.normalise_username). Raises InvalidInput for an
    empty or long name, spaces, invisible or control characters, a colon (the console's own principals,
    see services.core.authz), other punctuation, or mixed or look-alike scripts."""
    return normalise_username(username)


def create_user(db: sqlite_utils.Database, *, username: str, password: str, roles: list[str], actor: str) -> dict[str, Any]:
    """Create a local account (admins; anyone in set-up mode, to make the first admin), stored under its
    normalised name. Raises PermissionDenied, and InvalidInput for a bad name, a name taken once case,
    width and compatibility forms are ignored, a weak password or unknown roles."""
    if not setup_mode(db):
        require(db, actor=actor, action="users.manage")
    typed = username.strip()
    username = check_username(username)
    check_password_policy(username=username, password=password)
    clean = _roles(roles)
    hashed = _HASHER.hash(password)
    with immediate(db):
        taken = db.execute("SELECT username FROM users WHERE name_key = ? OR username = ?", [username, username]).fetchone()
        if taken is None:  # single sign-on accounts and legacy look-alikes have no key: compare their folded names
            taken = next((r for r in db.execute("SELECT username FROM users WHERE name_key IS NULL").fetchall()
                          if fold(r[0]) == username), None)
        if taken is not None:
            same = "" if taken[0] == typed else f" ('{typed}' is the same name once case and character width are ignored)"
            raise InvalidInput(f"user '{taken[0]}' already exists{same}: choose another name")
        db.execute("INSERT INTO users (username, password_hash, roles, disabled, failed_count, locked_until, created_at, "
                   "created_by, name_key) VALUES (?, ?, ?, 0, 0, 0, ?, ?, ?)",
                   [username, hashed, json.dumps(clean), now_iso(), actor, username])
        record(db, actor=actor, action="user.create", target=f"user:{username}", detail={"roles": clean})
    return {"username": username, "roles": clean}


def set_roles(db: sqlite_utils.Database, *, username: str, roles: list[str], actor: str) -> list[str]:
    """Change a user's roles (audited); their browser sessions end (services.access.sessions). Raises
    PermissionDenied, NotFound, InvalidInput."""
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
        sessions.revoke_user(db, username=username, reason="roles")  # signed in again, with the new roles
        record(db, actor=actor, action="user.roles", target=f"user:{username}",
               detail={"before": json.loads(row[0]), "after": clean})
    return clean


def set_password(db: sqlite_utils.Database, *, username: str, password: str, actor: str) -> None:
    """Set a new password (audited, the hash never is); it also lifts a lockout and ends the account's browser
    sessions. Users may set their own; admins anyone's. Raises PermissionDenied, NotFound, InvalidInput."""
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
        throttle.clear_account(db, account=fold(username))
        sessions.revoke_user(db, username=username, reason="password")
        record(db, actor=actor, action="user.password", target=f"user:{username}")


def set_disabled(db: sqlite_utils.Database, *, username: str, disabled: bool, actor: str) -> None:
    """Disable or enable an account (audited); disabling ends its browser sessions, enabling lifts a lockout.
    Raises PermissionDenied, NotFound, and InvalidInput when an admin would disable their own account."""
    require(db, actor=actor, action="users.manage")
    if disabled and username == actor:
        raise InvalidInput("you cannot disable your own account")
    with immediate(db):
        if db.execute("SELECT 1 FROM users WHERE username = ?", [username]).fetchone() is None:
            raise NotFound(f"no user '{username}'")
        db.execute("UPDATE users SET disabled = ?, failed_count = CASE WHEN ? THEN failed_count ELSE 0 END, "
                   "locked_until = CASE WHEN ? THEN locked_until ELSE 0 END WHERE username = ?",
                   [int(disabled), int(disabled), int(disabled), username])
        if not disabled:
            throttle.clear_account(db, account=fold(username))
        else:
            sessions.revoke_user(db, username=username, reason="disabled")
        record(db, actor=actor, action="user.disable" if disabled else "user.enable", target=f"user:{username}")


def lock_seconds(failures: int) -> float:
    """How long an address is refused for an account after ``failures`` failed sign-ins in a row from it
    (0 while still free)."""
    return throttle.back_off(failures, free=FREE_FAILURES, base=LOCK_BASE_SECONDS, cap=LOCK_MAX_SECONDS)


@functools.cache
def _dummy_hash() -> str:
    """A hash no password matches, checked for unknown names so they cost what a known one costs."""
    return _HASHER.hash(secrets.token_urlsafe(24))


def _find(db: sqlite_utils.Database, *, typed: str) -> tuple[Any, ...] | None:
    """The password account a typed name signs in to: by its normalised key, else (legacy look-alikes the
    migration left without a key) by the exact name. SSO accounts have no password: None."""
    cols = "username, password_hash, roles, disabled, failed_count"
    try:
        key = normalise_username(typed)
    except InvalidInput:
        key = None
    row = db.execute(f"SELECT {cols} FROM users WHERE name_key = ?", [key]).fetchone() if key else None
    if row is None:
        row = db.execute(f"SELECT {cols} FROM users WHERE username = ? AND name_key IS NULL", [typed]).fetchone()
    return None if row is None or row[1] is None else row


def authenticate(db: sqlite_utils.Database, *, username: str, password: str, source: str,
                 now: float | None = None, sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Check a sign-in and return {username, roles}; the name is matched once normalised (``Admin`` signs in
    to ``admin``). Every attempt is audited with ``source`` (the client address). Raises PermissionDenied
    with the same message for an unknown user and a wrong password; a "try again in N s" message while
    ``source`` is locked out of this account or blocked altogether (see services.access.throttle), before
    any password hash is computed; and a refusal for a disabled account. Unknown names are checked against
    a dummy hash, so they take the time a known name takes. ``now`` and ``sleep`` are injectable for tests.

    The attempt is charged to the throttle before the hash is checked, outside the transaction, and the
    result, the counters and the audit entry are committed before a refusal is raised.
    """
    now = time.time() if now is None else now
    typed, address = username.strip()[:MAX_USERNAME_LENGTH], source[:200]
    account = fold(typed)
    refusal: str | None = None
    failures = 0
    with immediate(db):
        row = _find(db, typed=typed)
        actor = row[0] if row else typed
        gate = throttle.gate(db, account=account, address=address, account_failures=row[4] if row else 0, now=now)
        if gate.refused_for:
            record(db, actor=actor, action="sign_in.blocked" if gate.address_blocked else "sign_in.locked",
                   target=f"user:{actor}", detail={"from": source})
            where = " from this address" if gate.address_blocked else ""
            refusal = f"too many failed sign-ins{where}: try again in {int(gate.refused_for) + 1} s"
        else:
            failures = throttle.charge(db, account=account, address=address, now=now)
            if row:
                db.execute("UPDATE users SET failed_count = failed_count + 1 WHERE username = ?", [actor])
    if refusal is not None:
        raise PermissionDenied(refusal)
    if gate.slow_seconds:
        sleep(gate.slow_seconds)
    try:
        _HASHER.verify(row[1] if row else _dummy_hash(), password)
        right = row is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        right = False
    rehash = _HASHER.hash(password) if right and _HASHER.check_needs_rehash(row[1]) else None
    with immediate(db):
        if not right:
            record(db, actor=actor, action="sign_in.failed", target=f"user:{actor}",
                   detail={"from": source, "failures": failures} if row else {"from": source})
            refusal = _WRONG
        else:
            throttle.refund(db, account=account, address=address, now=now)
            db.execute("UPDATE users SET failed_count = 0, locked_until = 0 WHERE username = ?", [actor])
            if row[3]:
                record(db, actor=actor, action="sign_in.disabled", target=f"user:{actor}", detail={"from": source})
                refusal = "this account is disabled: ask an admin"
            else:
                if rehash:
                    db.execute("UPDATE users SET password_hash = ? WHERE username = ?", [rehash, actor])
                db.execute("UPDATE users SET last_sign_in_at = ? WHERE username = ?", [now_iso(), actor])
                record(db, actor=actor, action="sign_in", target=f"user:{actor}", detail={"from": source})
    if refusal is not None:
        raise PermissionDenied(refusal)
    return {"username": actor, "roles": json.loads(row[2])}


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
