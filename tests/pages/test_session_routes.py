"""The session-cookie routes ``server.py`` serves (``pages/session_routes.py`` (issue 19 item 6): HttpOnly, SameSite=Strict, Secure under HTTPS, one use
of a code, back to a page of this site only, no cross-site sign-in or sign-out."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from pages.session import CLEAR_PATH, SET_PATH
from pages.session_routes import ROUTES
from services.access import sessions
from services.access.accounts import create_user


@pytest.fixture
def routes(ws, monkeypatch):
    monkeypatch.setattr("sys.argv", ["server.py", "--data-dir", str(ws.root)])
    db = ws.db()
    create_user(db, username="ann", password="correct horse battery staple", roles=["inspector"], actor="cli:test")
    return Starlette(routes=ROUTES), db


def _cookie_header(response) -> str:  # type: ignore[no-untyped-def]
    return "; ".join(v for k, v in response.headers.items() if k == "set-cookie")


@pytest.mark.parametrize("base, secure", [("http://127.0.0.1", False), ("https://console.example.com", True)])
def test_the_cookie_is_httponly_strict_and_secure_under_https(routes, base, secure):
    app, db = routes
    client = TestClient(app, base_url=base, follow_redirects=False)
    code = sessions.begin(db, username="ann")
    response = client.get(SET_PATH, params={"code": code, "next": "/queue"})
    assert response.status_code == 303 and response.headers["location"] == "/queue"
    header = _cookie_header(response)
    assert header.startswith(f"{sessions.COOKIE_NAME}=") and "HttpOnly" in header and "SameSite=strict" in header
    assert ("Secure" in header) == secure
    value = header.split(";")[0].split("=", 1)[1]
    assert sessions.resume(db, cookie=value, idle_seconds=60)["username"] == "ann"
    again = client.get(SET_PATH, params={"code": code, "next": "/queue"})  # a code works once
    assert again.status_code == 403 and "set-cookie" not in again.headers


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "queue"])
def test_it_goes_back_to_a_page_of_this_site_only(routes, target):
    app, db = routes
    client = TestClient(app, follow_redirects=False)
    response = client.get(SET_PATH, params={"code": sessions.begin(db, username="ann"), "next": target})
    assert response.status_code == 303 and response.headers["location"] == "/"


def test_another_site_cannot_sign_a_browser_in_or_out(routes):
    app, db = routes
    client = TestClient(app, follow_redirects=False)
    cross = {"Sec-Fetch-Site": "cross-site"}
    assert client.get(SET_PATH, params={"code": sessions.begin(db, username="ann")}, headers=cross).status_code == 403
    assert client.get(CLEAR_PATH, headers=cross).status_code == 403
    cleared = client.get(CLEAR_PATH)
    assert cleared.status_code == 303 and f'{sessions.COOKIE_NAME}=""' in _cookie_header(cleared)
