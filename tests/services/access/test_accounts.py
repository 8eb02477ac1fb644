"""Local accounts: password policy, argon2id hashes, lockout with back-off, roles, audited sign-ins."""

from __future__ import annotations

import pytest

from services.access.accounts import (
    FREE_FAILURES,
    LOCK_BASE_SECONDS,
    authenticate,
    create_user,
    has_password_accounts,
    idle_expired,
    list_users,
    lock_seconds,
    set_password,
    set_roles,
)
from services.core.errors import InvalidInput, NotFound, PermissionDenied
from tests.conftest import REPO

GOOD = "correct horse battery staple"


def _audit(db, action: str) -> list[dict]:
    return list(db.query("SELECT actor, target, detail FROM audit_log WHERE action = ? ORDER BY id", [action]))


def test_policy_refuses_weak_passwords_and_bad_names(db):
    for weak, why in (("short1!", "at least 12"), ("password1234", "too easy"), ("aaaaaaaaaaaaaa", "too easy"),
                      ("my-name-is-ann-ok", "user name")):
        with pytest.raises(InvalidInput, match=why):
            create_user(db, username="ann", password=weak, roles=["inspector"], actor="cli:root")
    with pytest.raises(InvalidInput, match="without spaces"):
        create_user(db, username="ann smith", password=GOOD, roles=["inspector"], actor="cli:root")
    with pytest.raises(InvalidInput, match="unknown: boss"):
        create_user(db, username="ann", password=GOOD, roles=["boss"], actor="cli:root")
    create_user(db, username="ann", password=GOOD, roles=["inspector"], actor="cli:root")
    with pytest.raises(InvalidInput, match="already exists"):
        create_user(db, username="ann", password=GOOD, roles=["inspector"], actor="cli:root")
    stored = db.execute("SELECT password_hash FROM users").fetchone()[0]
    assert stored.startswith("$argon2id$") and GOOD not in stored
    assert "password_hash" not in list_users(db, actor="cli:test")[0]  # listing never shows the hash


def test_sign_in_is_audited_with_its_address_and_never_says_which_part_was_wrong(db):
    create_user(db, username="ann", password=GOOD, roles=["inspector", "admin"], actor="cli:root")
    assert authenticate(db, username="ann", password=GOOD, source="10.0.0.5") == {
        "username": "ann", "roles": ["inspector", "admin"]}
    with pytest.raises(PermissionDenied) as wrong_pw:
        authenticate(db, username="ann", password="nope nope nope", source="10.0.0.6")
    with pytest.raises(PermissionDenied) as wrong_user:
        authenticate(db, username="bob", password=GOOD, source="10.0.0.7")
    assert str(wrong_pw.value) == str(wrong_user.value) == "wrong user name or password"
    assert [a["detail"] for a in _audit(db, "sign_in")] == ['{"from": "10.0.0.5"}']
    assert [a["actor"] for a in _audit(db, "sign_in.failed")] == ["ann", "bob"]  # committed before the refusal


def test_lockout_backs_off_and_a_success_or_new_password_clears_it(db):
    create_user(db, username="ann", password=GOOD, roles=["ops"], actor="cli:root")
    t = 1_000_000.0
    for i in range(FREE_FAILURES):
        with pytest.raises(PermissionDenied, match="wrong"):
            authenticate(db, username="ann", password=f"bad password {i}", source="x", now=t)
    with pytest.raises(PermissionDenied, match="try again in 30 s"):  # locked, even with the right password
        authenticate(db, username="ann", password=GOOD, source="x", now=t + 1)
    assert lock_seconds(FREE_FAILURES) == LOCK_BASE_SECONDS and lock_seconds(FREE_FAILURES + 2) == 4 * LOCK_BASE_SECONDS
    assert lock_seconds(FREE_FAILURES + 30) == 3600.0  # capped
    with pytest.raises(PermissionDenied, match="wrong"):  # after the lock: one more failure doubles it
        authenticate(db, username="ann", password="still wrong!!", source="x", now=t + 31)
    with pytest.raises(PermissionDenied, match="try again in 60 s"):
        authenticate(db, username="ann", password=GOOD, source="x", now=t + 32)
    assert authenticate(db, username="ann", password=GOOD, source="x", now=t + 31 + 61)["username"] == "ann"
    assert db.execute("SELECT failed_count, locked_until FROM users").fetchone() == (0, 0)
    set_password(db, username="ann", password="another long passphrase", actor="cli:root")
    with pytest.raises(PermissionDenied):
        authenticate(db, username="ann", password=GOOD, source="x", now=t + 200)
    with pytest.raises(NotFound):
        set_password(db, username="nobody", password="another long passphrase", actor="cli:root")


def test_roles_change_is_audited_and_disabled_accounts_are_refused(db):
    create_user(db, username="ann", password=GOOD, roles=["inspector"], actor="cli:root")
    assert set_roles(db, username="ann", roles=["admin", "inspector"], actor="cli:root") == ["inspector", "admin"]
    assert _audit(db, "user.roles")[0]["detail"] == '{"before": ["inspector"], "after": ["inspector", "admin"]}'
    db.execute("UPDATE users SET disabled = 1 WHERE username = 'ann'")
    with pytest.raises(PermissionDenied, match="disabled"):
        authenticate(db, username="ann", password=GOOD, source="x")
    with pytest.raises(NotFound):
        set_roles(db, username="bob", roles=["ops"], actor="cli:root")


def test_idle_timeout():
    assert not idle_expired(last_seen=100.0, now=100.0 + 1800, idle_seconds=1800)
    assert idle_expired(last_seen=100.0, now=100.0 + 1801, idle_seconds=1800)


def test_the_first_admin_is_created_from_the_command_line(ws, db, capsys, monkeypatch):
    import io
    import json

    from services.cli import main as cli

    monkeypatch.setattr("sys.stdin", io.StringIO(GOOD + "\n"))
    assert cli.main(["--data-dir", str(ws.root), "create-user", "--username", "root", "--role", "admin",
                     "--password-stdin"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out == {"command": "create-user", "username": "root", "roles": ["admin"]}
    assert authenticate(db, username="root", password=GOOD, source="cli")["roles"] == ["admin"]
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["--data-dir", str(ws.root), "create-user", "--username", "x", "--role", "ops",
                     "--password-stdin"]) == 1  # the policy's message, no account
    assert cli.main(["--data-dir", str(ws.root), "users"]) == 0
    listed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["users"]
    assert [u["username"] for u in listed] == ["root"] and "password_hash" not in listed[0]


def test_no_password_reaches_the_logs_or_the_audit_log(db, caplog):
    import logging
    import tomllib

    caplog.set_level(logging.DEBUG)
    create_user(db, username="ann", password=GOOD, roles=["inspector"], actor="cli:root")
    authenticate(db, username="ann", password=GOOD, source="10.0.0.1")
    with pytest.raises(PermissionDenied):
        authenticate(db, username="ann", password=GOOD + " typo", source="10.0.0.1")
    set_password(db, username="ann", password=GOOD + " new", actor="cli:root")
    stored = " ".join(str(v) for row in db.execute("SELECT * FROM audit_log").fetchall() for v in row)
    for secret in (GOOD, GOOD + " typo", GOOD + " new"):
        assert secret not in stored and secret not in caplog.text
    # error details are hidden from users in the shipped configuration
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"


def test_password_accounts_are_known_before_anyone_signs_in(db):
    assert not has_password_accounts(db)
    create_user(db, username="ann", password=GOOD, roles=["inspector"], actor="cli:root")
    assert has_password_accounts(db)
