"""Sessions of local accounts across reloads, deep links and tabs (issue 19 item 6): the page's side.

After a password sign-in the page sends the browser to ``server.py``'s route with a one-time code; the route
sets the signed HttpOnly, SameSite=Strict cookie. Every run reads that cookie from the websocket's request
(``st.context.cookies``) and asks the server-side record (``services.access.sessions``) whether the session
still lives. Without ``server.py`` (``streamlit run app.py``, page tests) sessions stay per tab, as before.
"""

from __future__ import annotations

import json
import os
from typing import Any

import streamlit as st

from services.access import sessions

COOKIE_ENV = "REVIEW_CONSOLE_SESSION_COOKIE"  # set by server.py, which serves the routes below
SET_PATH = "/_console/session"
CLEAR_PATH = "/_console/sign-out"


def cookies_on() -> bool:
    """Whether this server sets session cookies (started as ``streamlit run server.py``)."""
    return os.environ.get(COOKIE_ENV) == "on"


def safe_next(path: str | None) -> str:
    """A same-site path to return to after the cookie is set (never another host)."""
    path = path or "/"
    return path if path.startswith("/") and not path.startswith(("//", "/\\")) and "\\" not in path else "/"


def resume(conn: Any, *, idle_seconds: float) -> dict[str, Any] | None:
    """The signed-in state of this browser's session cookie, or None (no cookie, revoked, idle, forged)."""
    if not cookies_on():
        return None
    cookie = st.context.cookies.get(sessions.COOKIE_NAME)
    found = sessions.resume(conn, cookie=cookie, idle_seconds=idle_seconds) if cookie else None
    return None if found is None else {**found, "method": "password"}


def ended(conn: Any, signed: dict[str, Any], *, idle_seconds: float, touch: bool) -> str | None:
    """Why the server-side session of ``signed`` ended, or None while it lives (marked used when ``touch``)."""
    if not signed.get("session"):
        return None
    return sessions.check(conn, session=signed["session"], idle_seconds=idle_seconds, touch=touch)


def _go(url: str) -> None:
    """Send the browser to ``url`` (a path of this server built here, never customer text)."""
    target = json.dumps(url).replace("<", "\\u003c").replace(">", "\\u003e")  # no </script> can end it early
    st.html(f"<script>window.location.replace({target});</script>", unsafe_allow_javascript=True)


def hand_off(conn: Any, *, username: str) -> bool:
    """After a password sign-in: send the browser for its session cookie, back to this page (the run stops
    there). False when this server sets no cookies (the session stays in this tab)."""
    if not cookies_on():
        return False
    from urllib.parse import urlencode, urlsplit

    code = sessions.begin(conn, username=username)
    here = safe_next(urlsplit(st.context.url or "/").path)
    _go(f"{SET_PATH}?{urlencode({'code': code, 'next': here})}")
    st.caption("Signing in…")
    st.stop()
    return True


def forget(conn: Any, signed: dict[str, Any]) -> None:
    """At sign-out: revoke the session on the server and drop the cookie in the browser (the run stops there
    when this server sets cookies)."""
    if not signed.get("session"):
        return  # a session of this tab only, or single sign-on (st.logout clears its own cookie)
    sessions.revoke(conn, session=signed["session"], reason="sign-out")
    if cookies_on():
        _go(CLEAR_PATH)
        st.stop()  # the browser leaves for the sign-in page
