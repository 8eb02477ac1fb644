"""The OIDC path through app.py with a faked ``st.user``: buttons, mapped roles, refusals, sign-out."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from services.access import sso
from services.access.accounts import create_user
from tests.pages.helpers import ROOT, file_pages, texts
from tests.pages.markdown_check import shown_text
from tests.pages.test_sign_in import GOOD, captions, sign_in

AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "not-a-real-secret",
        "client_id": "console", "client_secret": "not-a-real-secret",
        "server_metadata_url": "https://idp.example.com/.well-known/openid-configuration"}
INES = {"is_logged_in": True, "email": "ines@example.com", "name": "Ines", "iss": "https://idp.example.com",
        "groups": ["qa-team"]}


def app(user: dict, auth: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.secrets["auth"] = auth or AUTH
    at.user = user
    return at.run()


def audit(db, action):
    return db.execute("SELECT COUNT(*) FROM audit_log WHERE action = ?", [action]).fetchone()[0]


def test_sso_configured_ends_set_up_mode_and_offers_the_provider(ws, db):
    at = app({"is_logged_in": False})
    assert texts(at.title) == ["Sign in"] and not captions(at)
    assert at.button(key="sso_login_default").label == "Sign in with single sign-on"
    assert not at.text_input  # no local accounts: no password form
    at.button(key="sso_login_default").click().run()  # st.login: a redirect, given a secrets.toml on disk
    assert not at.exception and not captions(at)  # without one (as here) it says what is wrong instead
    assert texts(at.error)[0].startswith("Single sign-on is not set up correctly")


def test_named_providers_get_a_button_each_beside_the_password_form(ws, db):
    create_user(db, username="ada", password=GOOD, roles=["admin"], actor="cli:root")
    auth = {"redirect_uri": AUTH["redirect_uri"], "cookie_secret": "x", "okta": {"client_id": "a"}, "entra": {"client_id": "b"}}
    at = app({"is_logged_in": False}, auth)
    assert [b.label for b in at.button if b.key and b.key.startswith("sso_login_")] == ["Sign in with entra", "Sign in with okta"]
    sign_in(at, "ada", GOOD)  # break-glass local admin still signs in with a password
    assert any("**ada** (admin)" in c for c in captions(at))


def test_a_mapped_person_gets_their_roles_pages_and_one_audited_sign_in(ws, db):
    sso.set_mapping(db, kind="group", subject="qa-team", roles=["inspector"], actor="cli:root")
    at = app(INES)
    assert not at.exception and any("**`ines@example.com`** (inspector)" in c for c in captions(at))  # an e-mail: code, not a link
    assert "settings.py" not in file_pages(at) and "queue.py" in file_pages(at)
    at.run()
    assert audit(db, "sign_in") == 1  # once a session, not every rerun
    at.button(key="signout").click().run()
    assert at.user.get("is_logged_in") is False  # st.logout() cleared st.user
    assert not texts(at.title) and "Signing out…" in [c.value for c in at.caption]  # the run ends there: a rerun would clear the
    # queued redirect to the provider's sign-out before the browser got it (tests/e2e/test_sso.py)
    at.run()
    assert texts(at.title) == ["Sign in"] and audit(db, "sign_out") == 1


def test_an_unmapped_person_is_refused_once_and_can_try_again_after_an_admin_maps_them(ws, db):
    at = app(INES)
    assert texts(at.title) == ["Sign in"] and not captions(at)
    assert "ines@example.com has no role" in shown_text(texts(at.error)[0])
    at.run()
    assert audit(db, "sign_in.refused") == 1
    sso.set_mapping(db, kind="identity", subject="ines@example.com", roles=["ops"], actor="cli:root")
    at.button(key="sso_retry").click().run()
    assert any("**`ines@example.com`** (ops)" in c for c in captions(at)) and "lines.py" in file_pages(at)


def test_a_mapping_removed_mid_session_ends_the_session(ws, db):
    sso.set_mapping(db, kind="group", subject="qa-team", roles=["inspector"], actor="cli:root")
    at = app(INES)
    assert captions(at)
    sso.remove_mapping(db, kind="group", subject="qa-team", actor="cli:root")
    at.run()  # the session ends and the browser is sent to the provider's sign-out, saying why
    assert not texts(at.title) and any("no role left" in c.value and "Signing out" in c.value for c in at.caption)
    at.run()
    assert texts(at.title) == ["Sign in"] and not captions(at)
