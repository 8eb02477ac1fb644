"""Who may do what, checked inside the services (the navigation only hides pages; this refuses work).

An actor is a name. A person's name is looked up in ``users`` on every check, so a role taken away or
an account disabled counts from the next call, whatever a session remembers. Names with a colon are
system principals (``cli:alice``: someone with a shell on the server, who can read the database file
anyway; ``model:v3``, ``system:line-feed``: the console's own work): user names cannot contain one.
Until the first account exists (set-up mode) the local operator holds every role, as in the app.
"""

from __future__ import annotations

import json

import sqlite_utils

from services.core.errors import PermissionDenied

ROLES = ("inspector", "ops", "admin")
SYSTEM_SEPARATOR = ":"

# what each action needs: any one of these roles
PERMISSIONS: dict[str, frozenset[str]] = {
    "stats.read": frozenset(ROLES),  # the overview's totals, the inspector dashboard
    "reviews.read": frozenset({"inspector", "admin"}),  # review text, photos, the queue
    "reviews.label": frozenset({"inspector", "admin"}),  # claim, answer, skip, undo, flag; yes/no checks
    "lines.read": frozenset({"ops", "admin"}),
    "lines.targets": frozenset({"ops", "admin"}),
    "lines.ingest": frozenset({"admin"}),
    "quality.manage": frozenset({"admin"}),  # adjudicate, re-review, gold, label export
    "jobs.manage": frozenset({"admin"}),  # launch, cancel, resume, import, train
    "models.manage": frozenset({"admin"}),
    "settings.change": frozenset({"admin"}),
    "users.manage": frozenset({"admin"}),
    "audit.read": frozenset({"admin"}),
}
_WHAT = {
    "stats.read": "see the console's figures",
    "reviews.read": "see reviews and their photos", "reviews.label": "label photos",
    "lines.read": "see line throughput", "lines.targets": "set line targets", "lines.ingest": "ingest line feeds",
    "quality.manage": "manage label quality", "jobs.manage": "run jobs", "models.manage": "manage models",
    "settings.change": "change settings", "users.manage": "manage users", "audit.read": "read the audit log",
}


def is_system(actor: str) -> bool:
    """True for the console's own principals and the server's shell (names with a colon)."""
    return SYSTEM_SEPARATOR in actor


def setup_mode(db: sqlite_utils.Database) -> bool:
    """True until the first account or single sign-on role mapping exists."""
    return (db.execute("SELECT 1 FROM users LIMIT 1").fetchone() is None
            and db.execute("SELECT 1 FROM sso_roles LIMIT 1").fetchone() is None)


def roles_of(db: sqlite_utils.Database, actor: str) -> frozenset[str]:
    """The roles ``actor`` holds now: every role for system principals and in set-up mode; none for an
    unknown or disabled account."""
    if is_system(actor):
        return frozenset(ROLES)
    row = db.execute("SELECT roles, disabled FROM users WHERE username = ?", [actor]).fetchone()
    if row is None:
        return frozenset(ROLES) if setup_mode(db) else frozenset()
    return frozenset() if row[1] else frozenset(json.loads(row[0]))


def allowed(db: sqlite_utils.Database, *, actor: str, action: str) -> bool:
    """Whether ``actor`` may do ``action`` now. Raises KeyError for an unknown action (a coding error)."""
    return bool(PERMISSIONS[action] & roles_of(db, actor))


def require(db: sqlite_utils.Database, *, actor: str, action: str) -> None:
    """Raise PermissionDenied, naming the role needed, unless ``actor`` may do ``action`` now."""
    if allowed(db, actor=actor, action=action):
        return
    need = " or ".join(sorted(PERMISSIONS[action]))
    raise PermissionDenied(f"{actor or 'an unknown user'} may not {_WHAT[action]}: that needs the {need} role. "
                           "Ask an admin if you should have it.")
