"""Issue 19 item 14: single sign-on end to end in Chromium against a real OIDC provider on loopback
(``oidc-provider-mock``): ``st.login`` to the provider and back, the role mapping (a mapped group signs in with
its roles, an unmapped person is refused) and sign-out, with nothing faked on the console's side."""

from __future__ import annotations

import json
import os
import secrets

import pytest

from tests.e2e.console import CHROMIUM, console_env, free_port, serve

pw = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
mock = pytest.importorskip("oidc_provider_mock", reason="oidc-provider-mock is not installed (requirements-dev.txt)")
if not os.path.exists(CHROMIUM):
    pytest.skip("Chromium not found (apt-get install chromium)", allow_module_level=True)

WAIT = 60_000
ALICE = mock.User(sub="alice", claims={"email": "alice@example.com", "groups": ["console-inspectors"]})
MALLORY = mock.User(sub="mallory", claims={"email": "mallory@example.com", "groups": ["visitors"]})


@pytest.fixture
def provider():
    """A real OIDC provider (discovery, authorization code, signed ID tokens, userinfo, RP-initiated
    logout) on a loopback port, with two people."""
    with mock.run_server_in_thread(user_claims=[ALICE, MALLORY]) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
def server(ws, tmp_path, provider):
    from services.access.sso import set_mapping

    db = ws.db()
    set_mapping(db, kind="group", subject="console-inspectors", roles=["inspector"], actor="cli:test")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(
        "[auth]\n"
        f'redirect_uri = "{url}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_urlsafe(32)}"\n'
        'client_id = "review-console"\n'
        'client_secret = "review-console-secret"\n'
        f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n')
    with serve(console_env(ws.root, STREAMLIT_SECRETS_FILES=str(secrets_file)), port=port) as served:
        assert served == url
        yield url, db


def _browser(p):  # type: ignore[no-untyped-def]
    return p.chromium.launch(executable_path=CHROMIUM, args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"])


def _through_provider(page, url: str, sub: str) -> None:  # type: ignore[no-untyped-def]
    """Click the console's single sign-on button and pick ``sub`` on the provider's own page."""
    page.goto(url + "/queue")  # a deep link, as a bookmark would open it
    page.get_by_role("button", name="Sign in with single sign-on").click(timeout=WAIT)
    page.get_by_role("button", name=sub, exact=True).click(timeout=WAIT)  # the provider's authorization page


def test_single_sign_on_through_a_real_provider_maps_roles_and_signs_out(server, provider):
    url, db = server
    with pw.sync_playwright() as p:
        browser = _browser(p)
        context = browser.new_context()
        page = context.new_page()
        page.goto(url + "/")
        page.get_by_role("button", name="Sign in with single sign-on").wait_for(timeout=WAIT)
        assert page.get_by_label("User name").count() == 0  # no local account: single sign-on only

        _through_provider(page, url, "alice")
        page.get_by_text("(inspector)").wait_for(timeout=WAIT)  # mapped through her group
        page.get_by_text("alice@example.com").first.wait_for(timeout=WAIT)
        nav = page.get_by_test_id("stSidebarNav")
        nav.get_by_text("Review queue").wait_for(timeout=WAIT)
        for admin_page in ("Settings", "Jobs", "Users and audit"):
            assert nav.get_by_text(admin_page, exact=True).count() == 0, admin_page
        assert any(c["name"].startswith("_streamlit_user") and c["httpOnly"] for c in context.cookies())
        page.reload()  # st.login's own cookie keeps her signed in
        page.get_by_text("(inspector)").wait_for(timeout=WAIT)

        # RP-initiated logout at the provider (st.logout's redirect is lost if a rerun follows it before it reaches
        # the browser: the console then signed her out locally only, in 3 runs of 3 before the fix)
        page.get_by_role("button", name="Sign out").click(timeout=WAIT)
        page.wait_for_url(f"{provider}/oauth2/end_session?*", timeout=WAIT)
        page.get_by_role("button", name="End session").click()  # its page asks before ending its own session
        page.wait_for_url(f"{url}/*", timeout=WAIT)  # and sends the browser back to the console
        end = page.get_by_role("button", name="Sign in with single sign-on")
        end.wait_for(timeout=WAIT)
        assert not any(c["name"].startswith("_streamlit_user") for c in context.cookies())
        page.reload()
        end.wait_for(timeout=WAIT)
        assert page.get_by_text("(inspector)").count() == 0

        _through_provider(page, url, "mallory")  # signed in at the provider, mapped to nothing here
        page.get_by_text("ask an admin", exact=False).first.wait_for(timeout=WAIT)
        assert page.get_by_text("Signed in as").count() == 0
        browser.close()
    rows = db.execute("SELECT actor, action, json_extract(detail, '$.issuer') FROM audit_log "
                      "WHERE action LIKE 'sign_%' ORDER BY id").fetchall()
    assert [(actor, action) for actor, action, _ in rows] == [  # the reload is a new session: admitted again
        ("alice@example.com", "sign_in"), ("alice@example.com", "sign_in"), ("alice@example.com", "sign_out"),
        ("mallory@example.com", "sign_in.refused")]
    assert rows[0][2] == provider and rows[3][2] == provider  # the ID token the provider signed, checked by st.login
    assert json.loads(db.execute("SELECT roles FROM users WHERE username = 'alice@example.com'").fetchone()[0]) == \
        ["inspector"]
