"""Sign-in: set-up mode before the first account; then the form, refusals, roles, idle timeout, sign-out."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from services.access.accounts import create_user
from tests.pages.helpers import ROOT, start_app

GOOD = "correct horse battery staple"


def sign_in(at, username: str, password: str):
    at.text_input(key="signin_user").set_value(username)
    at.text_input(key="signin_password").set_value(password)
    return at.button(key="signin_submit").click().run()


def captions(at) -> list[str]:
    return [c.value for c in at.sidebar.caption]


def test_before_the_first_account_the_local_operator_has_every_role(ws, db):
    at = start_app()
    assert any("local operator" in c for c in captions(at)) and not at.text_input


def test_once_accounts_exist_only_a_signed_in_user_gets_in_with_their_roles(ws, db):
    create_user(db, username="ann", password=GOOD, roles=["inspector"], actor="root")
    at = start_app()
    assert [t.value for t in at.title] == ["Sign in"] and not captions(at)  # nothing else is shown
    sign_in(at, "ann", "not her password")
    assert [e.value for e in at.error] == ["wrong user name or password"]
    sign_in(at, "ann", GOOD)
    assert not at.exception and any("**ann** (inspector)" in c for c in captions(at))
    assert at.session_state["auth_user"]["roles"] == ["inspector"]
    sources = [r[0] for r in db.execute("SELECT action FROM audit_log WHERE action LIKE 'sign_in%' ORDER BY id")]
    assert sources == ["sign_in.failed", "sign_in"]

    at.session_state["auth_user"]["last_seen"] -= 31 * 60  # idle for over half an hour
    at.run()
    assert "Sign in" in [t.value for t in at.title] and not captions(at)
    assert [i.value for i in at.info] == ["Signed out after 30 minutes without activity."]

    sign_in(at, "ann", GOOD)
    at.button(key="signout").click().run()
    assert "Sign in" in [t.value for t in at.title] and not captions(at)
    assert db.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'sign_out'").fetchone()[0] == 1


def test_a_client_outside_the_allowed_networks_is_refused_before_anything_is_shown(ws, db, monkeypatch):
    from services.core.config import set_setting

    set_setting(db, key="allowed_networks", value=["10.0.0.0/8"], actor="admin")
    monkeypatch.setattr("pages.common.client_address", lambda: "203.0.113.9")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert [e.value for e in at.error] == ["Access from 203.0.113.9 is not allowed. Ask an admin to add your network."]
    assert not at.title and not captions(at)
    assert db.execute("SELECT detail FROM audit_log WHERE action = 'access.refused'").fetchone()[0] == '{"from": "203.0.113.9"}'
    monkeypatch.setattr("pages.common.client_address", lambda: "10.2.3.4")
    at.run()
    assert not at.error and any("local operator" in c for c in captions(at))
