"""Issue 19 item 7: a fresh workspace admits only who presents the one-time set-up token printed on the server's
console; once the first account exists, the token opens nothing."""

from __future__ import annotations

from services.access.accounts import create_user
from services.access.setup import issue_setup_token
from tests.pages.helpers import start_app
from tests.pages.test_sign_in import GOOD, captions

CHECKS_SETUP_TOKEN = True  # tests/pages/conftest.py: no stand-in for the token here
TOKEN = "a-test-set-up-token-0123456789"


def test_a_fresh_workspace_asks_for_the_set_up_token_before_anything_is_shown(ws, db):
    at = start_app()
    assert [t.value for t in at.title] == ["Set up"] and not captions(at)  # not the local operator with every role
    issue_setup_token(root=str(ws.root), token=TOKEN)  # the one printed on the server's console
    at.text_input(key="setup_token").set_value("a guess")
    at.button(key="setup_submit").click().run()
    assert not captions(at) and at.error
    at.text_input(key="setup_token").set_value(TOKEN)
    at.button(key="setup_submit").click().run()
    assert not at.exception and any("local operator" in c for c in captions(at))


def test_the_link_with_the_token_admits_and_the_token_is_dropped_from_the_address(ws, db):
    at = start_app()
    issue_setup_token(root=str(ws.root), token=TOKEN)
    at.query_params["setup_token"] = "wrong-token-wrong-token"
    at.run()
    assert [t.value for t in at.title] == ["Set up"] and not captions(at)
    at.query_params["setup_token"] = TOKEN
    at.run()
    assert not at.exception and any("local operator" in c for c in captions(at))
    assert "setup_token" not in at.query_params


def test_once_the_first_admin_exists_the_token_opens_nothing(ws, db):
    at = start_app()
    issue_setup_token(root=str(ws.root), token=TOKEN)
    at.query_params["setup_token"] = TOKEN
    at.run()
    create_user(db, username="root", password=GOOD, roles=["admin"], actor="local operator")
    at.run()
    assert [t.value for t in at.title] == ["Sign in"] and not captions(at)
    other = start_app()
    other.query_params["setup_token"] = TOKEN
    other.run()
    assert [t.value for t in other.title] == ["Sign in"] and not captions(other)
