"""The two routes ``server.py`` adds to Streamlit's server for sessions of local accounts (issue 19 item 6):
one exchanges a page's one-time code for the signed session cookie (HttpOnly, SameSite=Strict, Secure under
HTTPS) and goes back to that page, the other drops the cookie. Starlette handlers, no Streamlit session."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from pages.common import data_dir_from_argv
from pages.session import CLEAR_PATH, SET_PATH, safe_next
from services.access import sessions
from services.core.config import Workspace, default_data_dir
from services.core.errors import PermissionDenied

SECURE_ENV = "REVIEW_CONSOLE_COOKIE_SECURE"  # "1": the cookie is Secure even when TLS ends at a proxy


def _same_origin(request: Request) -> bool:
    """Refuse a cross-site navigation (another site cannot sign a browser in or out here)."""
    return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or os.environ.get(SECURE_ENV) == "1"


async def set_session(request: Request) -> Response:
    """Exchange the one-time code for the session cookie and go back to the page."""
    if not _same_origin(request):
        return PlainTextResponse("cross-site sign-in refused", status_code=403)
    code = request.query_params.get("code", "")
    root = Path(data_dir_from_argv() or default_data_dir()).expanduser().resolve()

    def redeem() -> str:
        db = Workspace(root).db()
        try:
            return sessions.redeem(db, code=code)
        finally:
            db.close()

    try:
        cookie = await run_in_threadpool(redeem)
    except PermissionDenied as exc:
        return PlainTextResponse(str(exc), status_code=403)
    response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    response.set_cookie(sessions.COOKIE_NAME, cookie, httponly=True, samesite="strict", secure=_secure(request),
                        path="/")
    response.headers["Cache-Control"] = "no-store"
    return response


async def clear_session(request: Request) -> Response:
    """Drop the cookie (the session itself was revoked on the server at sign-out) and go to the sign-in page."""
    if not _same_origin(request):
        return PlainTextResponse("cross-site sign-out refused", status_code=403)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(sessions.COOKIE_NAME, path="/", httponly=True, samesite="strict", secure=_secure(request))
    return response


ROUTES = [Route(SET_PATH, set_session), Route(CLEAR_PATH, clear_session)]
