"""Single sign-on: map an OIDC identity (the claims Streamlit's ``st.login`` hands over) to console roles.

Roles never come from the identity provider alone: admins map identities (the value of the identity
claim, by default ``email``) and groups (from the groups claim, by default ``groups``; Cognito sends
``cognito:groups``) to roles here. A person's roles are the union of their identity's and their groups'
mappings. An SSO user gets an account row (``auth = 'oidc'``, no password) so that the role checks in
the services, disabling and the audit log work as for local accounts; its roles are recomputed at each
sign-in and whenever a mapping changes. An identity provider can never take over a local account.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import sqlite_utils

from db.database import immediate
from services.core.audit import record
from services.core.authz import ROLES, require
from services.core.clock import now_iso
from services.core.errors import InvalidInput, NotFound, PermissionDenied

KINDS = ("identity", "group")


def providers(auth_section: Mapping[str, Any] | None) -> list[str | None]:
    """The providers an ``[auth]`` secrets section configures: ``[None]`` for one provider given inline,
    the names of its ``[auth.NAME]`` tables otherwise; ``[]`` when single sign-on is not configured."""
    if not auth_section or not auth_section.get("redirect_uri") or not auth_section.get("cookie_secret"):
        return []
    named = sorted(k for k, v in auth_section.items() if isinstance(v, Mapping) and v.get("client_id"))
    if named:
        return list(named)
    return [None] if auth_section.get("client_id") else []


def _clean_roles(roles: Iterable[str]) -> list[str]:
    roles = list(roles)
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise InvalidInput(f"roles must be some of {', '.join(ROLES)}; unknown: {', '.join(unknown)}")
    return sorted(set(roles), key=ROLES.index)


def claims_identity(claims: Mapping[str, Any], *, identity_claim: str, groups_claim: str) -> tuple[str, list[str]]:
    """(user name, groups) from an ID token's claims. Raises PermissionDenied when the identity claim is
    missing or unusable as a user name (empty, spaces, a colon)."""
    raw = claims.get(identity_claim)
    name = str(raw).strip().lower() if isinstance(raw, str) else ""
    if not name or any(c.isspace() for c in name) or ":" in name or len(name) > 254:
        raise PermissionDenied(f"the identity provider did not send a usable '{identity_claim}' claim: "
                               "ask an admin to check the single sign-on settings")
    groups = claims.get(groups_claim) or []
    if isinstance(groups, str):
        groups = [g.strip() for g in groups.split(",")]
    return name, sorted({str(g).strip() for g in groups if str(g).strip()})


def roles_for(db: sqlite_utils.Database, *, identity: str, groups: Iterable[str]) -> list[str]:
    """The union of the roles mapped to ``identity`` and to each of ``groups``."""
    subjects = [("identity", identity), *(("group", g) for g in groups)]
    roles: set[str] = set()
    for kind, subject in subjects:
        row = db.execute("SELECT roles FROM sso_roles WHERE kind = ? AND subject = ?", [kind, subject]).fetchone()
        if row:
            roles.update(json.loads(row[0]))
    return sorted(roles & set(ROLES), key=ROLES.index)


def sign_in(db: sqlite_utils.Database, *, claims: Mapping[str, Any], source: str, identity_claim: str = "email",
            groups_claim: str = "groups") -> dict[str, Any]:
    """Admit a person the identity provider signed in, with the roles mapped to them; returns
    {username, roles}. Every attempt is audited with ``source`` and the issuer. Raises PermissionDenied
    when no role is mapped to them, their account is disabled, or the name belongs to a local account."""
    name, groups = claims_identity(claims, identity_claim=identity_claim, groups_claim=groups_claim)
    where = {"from": source, "method": "oidc", "issuer": str(claims.get("iss", ""))}
    refusal = None
    with immediate(db):
        row = db.execute("SELECT auth, disabled FROM users WHERE username = ?", [name]).fetchone()
        roles = roles_for(db, identity=name, groups=groups)
        if row is not None and row[0] != "oidc":
            refusal = f"'{name}' is a local account here: sign in with its password instead"
        elif row is not None and row[1]:
            refusal = "this account is disabled: ask an admin"
        elif not roles:
            refusal = f"{name} has no role in this console yet: ask an admin to map your account or group to one"
        if refusal:
            record(db, actor=name, action="sign_in.refused", target=f"user:{name}", detail={**where, "why": refusal})
        else:
            now = now_iso()
            if row is None:
                db.execute("INSERT INTO users (username, password_hash, roles, disabled, failed_count, locked_until, "
                           "created_at, created_by, auth, sso_groups, last_sign_in_at) "
                           "VALUES (?, NULL, ?, 0, 0, 0, ?, 'sso', 'oidc', ?, ?)",
                           [name, json.dumps(roles), now, json.dumps(groups), now])
            else:
                db.execute("UPDATE users SET roles = ?, sso_groups = ?, last_sign_in_at = ? WHERE username = ?",
                           [json.dumps(roles), json.dumps(groups), now, name])
            record(db, actor=name, action="sign_in", target=f"user:{name}", detail={**where, "roles": roles})
    if refusal:
        raise PermissionDenied(refusal)
    return {"username": name, "roles": roles}


def _refresh_roles(db: sqlite_utils.Database) -> None:
    """Inside a transaction: recompute every SSO account's roles from the mappings and its last groups."""
    for name, groups in db.execute("SELECT username, sso_groups FROM users WHERE auth = 'oidc'").fetchall():
        roles = roles_for(db, identity=name, groups=json.loads(groups or "[]"))
        db.execute("UPDATE users SET roles = ? WHERE username = ?", [json.dumps(roles), name])


def set_mapping(db: sqlite_utils.Database, *, kind: str, subject: str, roles: list[str], actor: str) -> dict[str, Any]:
    """Map an identity or a group to roles (audited); SSO accounts' roles follow at once. Raises
    PermissionDenied unless ``actor`` manages users, InvalidInput for a bad kind, subject or role."""
    require(db, actor=actor, action="users.manage")
    if kind not in KINDS:
        raise InvalidInput(f"a mapping is for an {' or a '.join(KINDS)}, not '{kind}'")
    subject = subject.strip().lower() if kind == "identity" else subject.strip()
    if not subject:
        raise InvalidInput(f"say which {kind} to map")
    clean = _clean_roles(roles)
    if not clean:
        raise InvalidInput("choose at least one role (remove the mapping to take every role away)")
    with immediate(db):
        db.execute("INSERT INTO sso_roles (kind, subject, roles, updated_at, updated_by) VALUES (?, ?, ?, ?, ?) "
                   "ON CONFLICT(kind, subject) DO UPDATE SET roles = excluded.roles, updated_at = excluded.updated_at, "
                   "updated_by = excluded.updated_by", [kind, subject, json.dumps(clean), now_iso(), actor])
        _refresh_roles(db)
        record(db, actor=actor, action="sso.map", target=f"{kind}:{subject}", detail={"roles": clean})
    return {"kind": kind, "subject": subject, "roles": clean}


def remove_mapping(db: sqlite_utils.Database, *, kind: str, subject: str, actor: str) -> None:
    """Remove a mapping (audited); SSO accounts lose the roles it gave at once. Raises PermissionDenied,
    NotFound."""
    require(db, actor=actor, action="users.manage")
    with immediate(db):
        if db.execute("DELETE FROM sso_roles WHERE kind = ? AND subject = ?", [kind, subject]).rowcount == 0:
            raise NotFound(f"no mapping for {kind} '{subject}'")
        _refresh_roles(db)
        record(db, actor=actor, action="sso.unmap", target=f"{kind}:{subject}")


def mappings(db: sqlite_utils.Database, *, actor: str) -> list[dict[str, Any]]:
    """Every mapping: kind, subject, roles, updated_at, updated_by. Raises PermissionDenied."""
    require(db, actor=actor, action="users.manage")
    out = []
    for row in db.query("SELECT kind, subject, roles, updated_at, updated_by FROM sso_roles ORDER BY kind, subject"):
        row["roles"] = json.loads(row["roles"])
        out.append(row)
    return out
