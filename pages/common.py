"""Shared UI helpers: cached heavy objects (once per process), the workspace, the acting user.

Not a page: ``app.py`` lists pages explicitly with ``st.navigation``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass

import streamlit as st

from services.config import Workspace, default_data_dir, get_settings
from services.errors import ConsoleError
from services.jobs import Worker
from services.storage import ObjectStore
from services.thumbnails import ThumbnailCache

WORKER_ENV = "REVIEW_CONSOLE_WORKER"
ROUTED_KEY = "_routed"  # set by app.py: this session has been through the router


@dataclass(frozen=True)
class User:
    name: str
    roles: frozenset[str]


def data_dir_from_argv() -> str | None:
    """``streamlit run app.py -- --data-dir D`` (else the environment variable or the default)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--data-dir", default=None)
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args.data_dir


@st.cache_resource(show_spinner=False)
def _workspace(root: str | None) -> Workspace:
    ws = Workspace.open(root)
    ws.db().close()  # apply migrations once at start-up
    return ws


def workspace(root: str | None = None) -> Workspace:
    """The workspace of this session: ``--data-dir``, else $REVIEW_CONSOLE_DATA_DIR, else ./data."""
    if root is not None:
        st.session_state["workspace_root"] = root
    return _workspace(st.session_state.get("workspace_root") or str(default_data_dir()))


def through_router() -> None:
    """Make sure this run goes through app.py (page config, identity, roles), even for a deep link.

    Because the page files live in ``pages/``, a freshly started Streamlit server runs its first
    visitor's deep link (``/queue``) straight from that folder, skipping app.py, until some run calls
    ``st.navigation``. Seeing that mode, switch it off for the process and run again: the rerun starts
    at app.py and still opens the page asked for. Pages call it (through ``db()``); app.py does not, as
    a page it runs comes after its ``st.navigation`` call, which switches the mode off.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        if not st.session_state.get(ROUTED_KEY):  # app.py has not run in this session yet
            st.rerun()


def db(needs: str | None = None):  # type: ignore[no-untyped-def]
    """A connection for this script run (sqlite connections belong to their thread). A page asking for
    one is stopped when the client is outside the network allowlist, at the sign-in form when nobody is
    signed in (once accounts exist), and with a refusal when the user may not do ``needs`` (an action of
    ``services.authz``: each page names the one it is for, so a page reached around the navigation shows
    nothing)."""
    from services.authz import require

    through_router()
    conn = workspace().db()
    guard_network(conn)
    user = current_user(conn)
    if needs:
        try:
            require(conn, actor=user.name, action=needs)
        except ConsoleError as exc:
            show_error(exc)
            st.stop()
    return conn


def guard_network(conn) -> None:  # type: ignore[no-untyped-def]
    """Stop the run, before any data is shown, for a client outside the allowed networks (Settings)."""
    from services.network import effective_client, is_allowed

    settings = get_settings(conn)
    if not settings["allowed_networks"]:
        return
    headers = st.context.headers
    forwarded = headers.get("X-Forwarded-For") if hasattr(headers, "get") else None
    client = effective_client(peer=client_address(), forwarded_for=forwarded if isinstance(forwarded, str) else None,
                              trusted_proxies=settings["trusted_proxies"])
    if not is_allowed(client=client, allowed_networks=settings["allowed_networks"]):
        from services.audit import record

        record(conn, actor="unknown", action="access.refused", target="network", detail={"from": client or "unknown"})
        st.error(f"Access from {client or 'an unknown address'} is not allowed. Ask an admin to add your network.",
                 icon=":material/block:")
        st.stop()


@st.cache_resource(show_spinner=False)
def worker(root: str) -> Worker:
    """The background job worker of this server process (a daemon thread, outside the script thread)."""
    return Worker(Workspace.open(root)).start()


def ensure_worker() -> None:
    """Start jobs now on this process's worker, unless jobs run elsewhere (REVIEW_CONSOLE_WORKER=off)."""
    if os.environ.get(WORKER_ENV, "on").lower() not in ("off", "0", "false", "no"):
        worker(str(workspace().root)).wake()


def store() -> ObjectStore:
    return ObjectStore(endpoint_url=get_settings(db())["s3_endpoint_url"] or None)


IDLE_SECONDS = 30 * 60  # a session unused this long signs in again
AUTH_KEY = "auth_user"


def _accounts_exist(conn) -> bool:  # type: ignore[no-untyped-def]
    return conn.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None


def current_user(conn=None) -> User:  # type: ignore[no-untyped-def]
    """The signed-in user. Before the first account exists (``create-user --role admin``), the console is
    in set-up mode and trusts the local operator with every role. Otherwise a visitor who is not signed
    in, or whose session has been idle for IDLE_SECONDS, gets the sign-in form and nothing else."""
    conn = conn or workspace().db()
    signed = st.session_state.get(AUTH_KEY)
    if signed:
        from services.accounts import current_roles, idle_expired

        now = time.time()
        roles = current_roles(conn, signed["username"])  # a role taken away counts from the next run
        if roles is None:
            st.session_state.pop(AUTH_KEY)
            st.session_state["auth_notice"] = "Your account was disabled: ask an admin."
        elif not idle_expired(last_seen=signed["last_seen"], now=now, idle_seconds=IDLE_SECONDS):
            signed["last_seen"] = now
            return User(name=signed["username"], roles=frozenset(roles))
        else:
            st.session_state.pop(AUTH_KEY)
            st.session_state["auth_notice"] = f"Signed out after {IDLE_SECONDS // 60} minutes without activity."
    elif not _accounts_exist(conn):
        return User(name=st.session_state.get("user_name", "local operator"), roles=frozenset({"inspector", "ops", "admin"}))
    sign_in_form()
    st.stop()
    raise AssertionError("unreachable")  # st.stop() ends the run


def client_address() -> str:
    """The client's address from the connection (forwarded headers are not trusted here)."""
    ip = st.context.ip_address
    return ip if isinstance(ip, str) and ip else "unknown"


def sign_in_form() -> None:
    """User name and password; on success the session holds the user and the app runs again."""
    from services.accounts import authenticate

    st.title("Sign in")
    if notice := st.session_state.pop("auth_notice", None):
        st.info(notice)
    with st.form("signin"):
        username = st.text_input("User name", key="signin_user")
        password = st.text_input("Password", type="password", key="signin_password")
        if st.form_submit_button("Sign in", key="signin_submit", type="primary"):
            try:
                user = authenticate(workspace().db(), username=username.strip(), password=password,
                                    source=client_address())
            except ConsoleError as exc:
                show_error(exc)
                return
            st.session_state[AUTH_KEY] = {**user, "last_seen": time.time()}
            st.rerun()


def sign_out(user: User) -> None:
    """End the session (audited)."""
    from services.audit import record

    record(workspace().db(), actor=user.name, action="sign_out", target=f"user:{user.name}",
           detail={"from": client_address()})
    st.session_state.pop(AUTH_KEY, None)


@st.cache_resource(show_spinner=False)
def _thumbnails(endpoint_url: str) -> ThumbnailCache:
    """One thumbnail cache per process and storage endpoint (loading ahead runs on its own threads)."""
    return ThumbnailCache(reader=ObjectStore(endpoint_url=endpoint_url or None).read)


def thumbnails() -> ThumbnailCache:
    return _thumbnails(get_settings(db())["s3_endpoint_url"] or "")


def thumbnail(uri: str, sha256: str | None, size: int = 256) -> tuple[bytes | None, str | None]:
    """(JPEG thumbnail, None) of a stored photo, or (None, why it cannot be shown)."""
    return thumbnails().get(uri, sha256, size)


def show_photo(container, *, uri: str, sha256: str | None, size: int, caption: str | None = None,  # type: ignore[no-untyped-def]
               width: int | str = "content") -> None:
    """The photo in ``container``, or an error saying why it cannot be shown."""
    data, error = thumbnail(uri, sha256, size)
    if data:
        container.image(data, caption=caption or uri, width=width)
    else:
        container.error(f"Cannot show {uri}: {error}")


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def md(text: object) -> str:
    """Escape customer-supplied text for st.markdown, so it shows literally."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def show_error(exc: ConsoleError) -> None:
    st.error(str(exc), icon=":material/error:")
