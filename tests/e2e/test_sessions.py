"""Issue 19 item 6 in a real browser: a local account's session survives a reload, a deep link and a second tab,
through a signed HttpOnly, SameSite=Strict cookie that the server revokes at sign-out, role change and disable."""

from __future__ import annotations

import os

import pytest

from tests.e2e.console import CHROMIUM, console_env, serve

pw = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not os.path.exists(CHROMIUM):
    pytest.skip("Chromium not found (apt-get install chromium)", allow_module_level=True)

PASSWORD = "correct horse battery staple"
WAIT = 60_000


@pytest.fixture
def server(ws):
    from services.access.accounts import create_user

    db = ws.db()
    create_user(db, username="root", password=PASSWORD, roles=["admin"], actor="cli:test")
    create_user(db, username="ann", password=PASSWORD, roles=["inspector", "ops"], actor="cli:test")
    with serve(console_env(ws.root)) as url:
        yield url, db


def _browser(p):  # type: ignore[no-untyped-def]
    return p.chromium.launch(executable_path=CHROMIUM, args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"])


def _sign_in(page, username: str) -> None:  # type: ignore[no-untyped-def]
    page.get_by_label("User name").wait_for(timeout=WAIT)
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def _signed_in_as(page, text: str) -> None:  # type: ignore[no-untyped-def]
    page.get_by_text(text).wait_for(timeout=WAIT)
    assert page.get_by_label("User name").count() == 0


def test_a_session_survives_reload_deep_link_and_a_second_tab_and_ends_on_the_server(server):
    url, db = server
    with pw.sync_playwright() as p:
        browser = _browser(p)
        context = browser.new_context()
        page = context.new_page()
        page.goto(url + "/queue")
        _sign_in(page, "ann")
        _signed_in_as(page, "(inspector, ops)")
        cookie = next(c for c in context.cookies() if c["name"] == "console_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]  # http here
        assert page.evaluate("document.cookie").find("console_session") == -1  # no script can read it
        assert page.url.endswith("/queue")  # back where the person signed in

        page.reload()
        _signed_in_as(page, "(inspector, ops)")
        page.goto(url + "/lines")  # a deep link
        _signed_in_as(page, "(inspector, ops)")
        second = context.new_page()  # a second tab
        second.goto(url + "/queue")
        _signed_in_as(second, "(inspector, ops)")

        # a forged or altered cookie is no session
        other = browser.new_context()
        other.add_cookies([{**cookie, "value": cookie["value"][:-1] + ("0" if cookie["value"][-1] != "0" else "1")}])
        forged = other.new_page()
        forged.goto(url + "/queue")
        forged.get_by_label("User name").wait_for(timeout=WAIT)
        other.close()

        # a role change ends the session on the server: the next load asks to sign in again
        from services.access.accounts import set_disabled, set_roles

        set_roles(db, username="ann", roles=["inspector"], actor="cli:test")
        second.reload()
        second.get_by_label("User name").wait_for(timeout=WAIT)
        _sign_in(second, "ann")
        _signed_in_as(second, "(inspector)")

        # so does disabling the account, in every tab
        set_disabled(db, username="ann", disabled=True, actor="cli:test")
        page.reload()
        page.get_by_label("User name").wait_for(timeout=WAIT)
        set_disabled(db, username="ann", disabled=False, actor="cli:test")

        # sign-out revokes the session on the server (the old cookie value no longer opens it) and drops it
        _sign_in(page, "ann")
        _signed_in_as(page, "(inspector)")
        kept = next(c for c in context.cookies() if c["name"] == "console_session")
        page.get_by_role("button", name="Sign out").click()
        page.get_by_label("User name").wait_for(timeout=WAIT)
        assert not [c for c in context.cookies() if c["name"] == "console_session"]
        replay = browser.new_context()
        replay.add_cookies([kept])
        stolen = replay.new_page()
        stolen.goto(url + "/queue")
        stolen.get_by_label("User name").wait_for(timeout=WAIT)
        browser.close()
    reasons = [r[0] for r in db.execute("SELECT revoked_reason FROM web_sessions ORDER BY created_at")]
    assert reasons == ["roles", "disabled", "sign-out"]
