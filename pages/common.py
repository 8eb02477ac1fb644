"""Shared UI helpers: cached heavy objects (once per process), the workspace, the acting user.

Not a page: ``app.py`` lists pages explicitly with ``st.navigation``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from pages import session
from pages.markup import code_span, md, when  # noqa: F401 (pages import them from here)
from pages.network import judged_client
from pages.run_scope import fragment_run, person_acted, refresh_only, run_memo, thread_connection  # noqa: F401 (pages import them from here)
from services.access.setup import setup_token_valid
from services.core.config import Workspace, default_data_dir, get_settings, object_store
from services.core.errors import ConsoleError
from services.core.storage import ObjectStore
from services.core.thumbnails import ThumbnailCache
from services.worker import kinds
from services.worker.runner import Worker

# The pages are listed by app.py's st.navigation and never found in pages/ (Streamlit's first multipage mode). Said
# once, at import, for the whole process: server.py imports this module before the first session, so no deep link
# runs a page file without app.py. (Switched off lazily by the first page run instead, two first visitors of a fresh
# process at once could both start in that mode and one ran its page without app.py, on the default workspace: the
# set-up page, seen by 3 of 50 inspectors signing in at once behind ./run.sh --processes 2.) Under a plain
# ``streamlit run app.py`` the first visitor's deep link imports this module from that mode: see through_router.
_STARTED_IN_PAGES_MODE = bool(PagesManager.uses_pages_directory)
PagesManager.uses_pages_directory = False

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
    from services.access.setup import ENV_VAR, banner, issue_setup_token
    from services.core.authz import setup_mode

    ws = Workspace.open(root)
    conn = ws.db()  # applies migrations once at start-up
    if setup_mode(conn):  # a fresh workspace: only who has the token printed here may set it up
        url = f"http://{st.get_option('server.address') or '127.0.0.1'}:{st.get_option('server.port')}"
        print(banner(token=issue_setup_token(root=str(ws.root), token=os.environ.get(ENV_VAR) or None), url=url), flush=True)
    conn.close()
    kinds.install()  # pages queue jobs whether or not this process runs them
    return ws


def workspace(root: str | None = None) -> Workspace:
    """The workspace of this session: ``--data-dir``, else $REVIEW_CONSOLE_DATA_DIR, else ./data."""
    if root is not None:
        st.session_state["workspace_root"] = root
    return _workspace(st.session_state.get("workspace_root") or str(default_data_dir()))


def through_router() -> None:
    """Make sure this run goes through app.py (page config, identity, roles), even for a deep link.

    Because the page files live in ``pages/``, a freshly started ``streamlit run app.py`` runs its first
    visitors' deep links (``/queue``) straight from that folder, skipping app.py, until the mode is switched off
    (this module's import does it; server.py imports it before any session). A session that has not been through
    app.py then runs again: the rerun starts at app.py and still opens the page asked for. Pages call it (through
    ``db()``); app.py does not, as a page it runs comes after it."""
    if _STARTED_IN_PAGES_MODE and not st.session_state.get(ROUTED_KEY):  # app.py has not run in this session
        st.rerun()


def thread_db():  # type: ignore[no-untyped-def]
    """This thread's connection to the session's workspace (``pages.run_scope.thread_connection``)."""
    return thread_connection(str(workspace().root), lambda: workspace().db())


def db(needs: str | None = None):  # type: ignore[no-untyped-def]
    """The connection for this script run (this thread's, see ``thread_db``). A page asking for
    one is stopped when the client is outside the network allowlist, at the sign-in form when nobody is
    signed in (once accounts exist), and with a refusal when the user may not do ``needs`` (an action of
    ``services.core.authz``: each page names the one it is for, so a page reached around the navigation shows
    nothing). The network and sign-in checks run once per run."""
    from services.core.authz import require

    through_router()
    conn = thread_db()
    guard_network(conn)
    memo = run_memo()
    user = current_user(conn)
    if needs and (needs, user.name) not in memo.setdefault("allowed", set()):
        try:
            require(conn, actor=user.name, action=needs)
        except ConsoleError as exc:
            show_error(exc)
            st.stop()
        memo["allowed"].add((needs, user.name))
    return conn


def refusal_page(title: str, action: str):  # type: ignore[no-untyped-def]
    """A hidden page at the address of a page the user may not open: it says which role it needs (and the
    refusal is audited) instead of Streamlit's "page not found"."""
    def page() -> None:
        from services.core.audit import record
        from services.core.authz import require

        conn = thread_db()
        user = current_user(conn)
        st.title(title)
        try:
            require(conn, actor=user.name, action=action)
        except ConsoleError as exc:
            record(conn, actor=user.name, action="access.refused", target=f"page:{title}",
                   detail={"from": client_address()})
            show_error(exc)

    return page


def guard_network(conn) -> None:  # type: ignore[no-untyped-def]
    """Stop the run, before any data is shown, for a client outside the allowed networks (Settings); checked once
    per run."""
    from services.core.network import is_allowed

    memo = run_memo()
    if memo.get("network_checked"):
        return
    settings = get_settings(conn)
    if not settings["allowed_networks"]:
        memo["network_checked"] = True
        return
    client = client_address()
    client = None if client == "unknown" else client
    if not is_allowed(client=client, allowed_networks=settings["allowed_networks"]):
        from services.core.audit import record

        record(conn, actor="unknown", action="access.refused", target="network", detail={"from": client or "unknown"})
        st.error(f"Access from {client or 'an unknown address'} is not allowed. Ask an admin to add your network.",
                 icon=":material/block:")
        st.stop()
    memo["network_checked"] = True


@st.cache_resource(show_spinner=False)
def worker(root: str) -> Worker:
    """The background job worker of this server process (a daemon thread, outside the script thread)."""
    return Worker(Workspace.open(root)).start()


def ensure_worker() -> None:
    """Start jobs now on this process's worker, unless jobs run elsewhere (REVIEW_CONSOLE_WORKER=off)."""
    if os.environ.get(WORKER_ENV, "on").lower() not in ("off", "0", "false", "no"):
        worker(str(workspace().root)).wake()


@st.cache_resource(show_spinner=False)
def _similarity_index(root: str):  # type: ignore[no-untyped-def]
    from services.reuse.detection import index_for

    return index_for(Workspace.open(root))


def similarity_index():  # type: ignore[no-untyped-def]
    """The workspace's similarity index over photo embeddings (loaded once per process; kept current by the
    reuse job)."""
    return _similarity_index(str(workspace().root))


def store() -> ObjectStore:
    return object_store(db())


IDLE_SECONDS = 30 * 60  # a session unused this long signs in again
AUTH_KEY = "auth_user"


def sso_providers() -> list[str | None]:
    """The OIDC providers configured under ``[auth]`` in .streamlit/secrets.toml ([] when SSO is off)."""
    from streamlit.errors import StreamlitSecretNotFoundError

    from services.access.sso import providers

    try:
        section = st.secrets.get("auth")
    except (StreamlitSecretNotFoundError, FileNotFoundError):
        return []
    return providers(section)


def current_user(conn=None, *, deep_links: list[str] | None = None) -> User:  # type: ignore[no-untyped-def]
    """The signed-in user. Before the first account or SSO mapping exists (``create-user --role admin``),
    and while single sign-on is not configured, the console is in set-up mode and trusts the local
    operator who presents the set-up token printed on the server's console with every role. Otherwise a visitor who is not signed in, or whose session has been idle for
    IDLE_SECONDS, gets the sign-in page and nothing else. A person the identity provider signed in
    (``st.user``) is admitted with the roles admins mapped to them (services.access.sso). ``deep_links``: called
    from app.py with the pages' URL paths; the sign-in page is then the only page of the navigation."""
    from services.core.authz import setup_mode

    memo = run_memo()
    if "user" in memo and deep_links is None and (st.session_state.get(AUTH_KEY) or {}).get("username") == memo["user"].name:
        return memo["user"]  # checked already in this run (a run is one person's action)
    conn = conn or thread_db()
    signed = st.session_state.get(AUTH_KEY) or session.resume(conn, idle_seconds=IDLE_SECONDS)  # the cookie
    setup = False
    if signed:
        from services.access.accounts import current_roles, idle_expired

        now = time.time()
        st.session_state[AUTH_KEY] = signed = {"last_seen": now, **signed}
        roles = current_roles(conn, signed["username"])  # a role taken away counts from the next run
        if roles is None or not roles:
            _end_session(signed, "Your account was disabled or has no role left: ask an admin.")
        elif reason := session.ended(conn, signed, idle_seconds=IDLE_SECONDS, touch=not refresh_only()):
            _end_session(signed, reason)  # revoked on the server (sign-out elsewhere, role change), or idle
            if fragment_run():
                st.rerun(scope="app")
        elif not idle_expired(last_seen=signed["last_seen"], now=now, idle_seconds=IDLE_SECONDS):
            if not refresh_only():  # a page refreshing itself is not a person's action
                signed["last_seen"] = now
            memo["user"] = User(name=signed["username"], roles=frozenset(roles))
            return memo["user"]
        else:
            _end_session(signed, f"Signed out after {IDLE_SECONDS // 60} minutes without activity.")
            if fragment_run():  # the sign-in page replaces the whole page, not only the refreshing part
                st.rerun(scope="app")
    else:
        providers = sso_providers()
        setup = not providers and setup_mode(conn)
        if setup and setup_admitted():
            return User(name=st.session_state.get("user_name", "local operator"),
                        roles=frozenset({"inspector", "ops", "admin"}))
        if providers and bool(st.user.to_dict().get("is_logged_in")) and not st.session_state.get(SSO_REFUSED_KEY):
            user = _sso_sign_in(conn)
            if user is not None:
                return user
    providers = sso_providers()
    if deep_links is not None:  # from app.py: signing in is the only page there is (no page list in the sidebar);
        # a deep link (/queue) shows it too, under its own address, and opens that page once signed in
        def form() -> None:
            setup_form() if setup else sign_in_form(providers)

        signin = [st.Page(form, title="Sign in", icon=":material/login:", default=True),
                  *(st.Page(form, title="Sign in", url_path=path) for path in deep_links)]
        st.navigation(signin, position="hidden").run()
    else:
        setup_form() if setup else sign_in_form(providers)
    st.stop()
    raise AssertionError("unreachable")  # st.stop() ends the run


SETUP_KEY = "setup_admitted"


def setup_admitted() -> bool:
    """Set-up mode: True once this session presented the token printed on the server's console (link or form)."""
    token = st.query_params.get("setup_token")
    if token is not None:
        del st.query_params["setup_token"]  # not left in the address bar
        if setup_token_valid(root=str(workspace().root), token=token):
            st.session_state[SETUP_KEY] = True
    return bool(st.session_state.get(SETUP_KEY))


def setup_form() -> None:
    """The set-up page of a fresh workspace: the one-time token from the server's console admits the operator."""
    st.title("Set up")
    st.info("No account exists yet. Enter the set-up token printed in the terminal where the console was "
            "started (`./run.sh`), then create the first admin under Users and audit.", icon=":material/key:")
    with st.form("setup"):
        token = st.text_input("Set-up token", type="password", key="setup_token")
        if st.form_submit_button("Continue", key="setup_submit", type="primary"):
            if setup_token_valid(root=str(workspace().root), token=token.strip()):
                st.session_state[SETUP_KEY] = True
                st.rerun()
            st.error("That is not the set-up token printed on the server's console.", icon=":material/error:")


SSO_REFUSED_KEY = "sso_refused"


def _sso_sign_in(conn) -> User | None:  # type: ignore[no-untyped-def]
    """Admit the person the identity provider signed in, or remember (for this session) why not."""
    from services.access import sso

    settings = get_settings(conn)
    try:
        user = sso.sign_in(conn, claims=st.user.to_dict(), source=client_address(),
                           identity_claim=settings["sso_identity_claim"], groups_claim=settings["sso_groups_claim"])
    except ConsoleError as exc:
        st.session_state[SSO_REFUSED_KEY] = str(exc)  # audited once, not on every rerun
        return None
    st.session_state[AUTH_KEY] = {**user, "last_seen": time.time(), "method": "oidc"}
    return User(name=user["username"], roles=frozenset(user["roles"]))


def _end_session(signed: dict, notice: str) -> None:  # type: ignore[type-arg]
    st.session_state.pop(AUTH_KEY, None)
    st.session_state["auth_notice"] = notice
    if signed.get("method") == "oidc":
        _leave_provider(notice)  # drops the identity cookie too, or the provider's sign-in would admit them again


def _leave_provider(notice: str = "") -> None:
    """``st.logout()`` and end the run: its redirect is a message in the queue to the browser, and a rerun
    started before the queue is flushed clears it (the browser then stays here, signed out locally only)."""
    st.logout()
    st.caption(f"{notice} Signing out…".strip())  # the browser leaves for the provider's sign-out (or the sign-in page) at once
    st.stop()


def client_address() -> str:
    """The client's address for the audit log, judged as the network allowlist judges it; "unknown" when it
    cannot be told."""
    return judged_client(get_settings(thread_db())["trusted_proxies"]) or "unknown"


def sign_in_form(providers: list[str | None]) -> None:
    """Single sign-on buttons (when configured) and the password form (when local accounts exist); on
    success the session holds the user and the app runs again."""
    from streamlit.errors import StreamlitAuthError

    from services.access.accounts import authenticate, has_password_accounts

    st.title("Sign in")
    if notice := st.session_state.pop("auth_notice", None):
        st.info(notice)
    if refused := st.session_state.get(SSO_REFUSED_KEY):
        st.error(md(refused), icon=":material/block:")  # names the person's identity
        left, right = st.columns(2)
        if left.button("Try again", key="sso_retry", icon=":material/refresh:"):  # once an admin has mapped them
            st.session_state.pop(SSO_REFUSED_KEY, None)
            st.rerun()
        if right.button("Sign out of single sign-on", key="sso_logout", icon=":material/logout:"):
            st.session_state.pop(SSO_REFUSED_KEY, None)
            _leave_provider()
    elif providers:
        for provider in providers:
            label = f"Sign in with {provider}" if provider else "Sign in with single sign-on"
            if st.button(label, key=f"sso_login_{provider or 'default'}", type="primary", icon=":material/key:"):
                try:
                    st.login(provider)  # redirects to the identity provider
                except StreamlitAuthError as exc:  # secrets.toml incomplete: say so, keep the page usable
                    st.error(f"Single sign-on is not set up correctly ({exc}). An admin can fix it in "
                             ".streamlit/secrets.toml (see secrets.toml.example).", icon=":material/error:")
    conn = thread_db()
    if providers and not has_password_accounts(conn):
        return  # single sign-on only
    with st.form("signin"):
        username = st.text_input("User name", key="signin_user")
        password = st.text_input("Password", type="password", key="signin_password")
        if st.form_submit_button("Sign in", key="signin_submit", type="primary"):
            try:
                user = authenticate(conn, username=username.strip(), password=password, source=client_address())
            except ConsoleError as exc:
                show_error(exc)
                return
            st.session_state[AUTH_KEY] = {**user, "last_seen": time.time(), "method": "password"}
            session.hand_off(conn, username=user["username"])  # the cookie for reloads and tabs, if served
            st.rerun()


def sign_out(user: User) -> None:
    """End the session (audited); a single sign-on session also leaves the identity provider's cookie."""
    from services.core.audit import record

    record(thread_db(), actor=user.name, action="sign_out", target=f"user:{user.name}",
           detail={"from": client_address()})
    signed = st.session_state.pop(AUTH_KEY, None) or {}
    if signed.get("method") == "oidc":
        _leave_provider()  # the run ends here: no rerun may follow
    session.forget(thread_db(), signed)  # revoked on the server; the browser drops the cookie


@st.cache_resource(show_spinner=False)
def _thumbnails(endpoint_url: str, roots: tuple[str, ...] | None, cache_dir: str) -> ThumbnailCache:
    """One thumbnail cache per process, storage endpoint and storage roots (loading ahead runs on its own
    threads)."""
    return ThumbnailCache(reader=ObjectStore(endpoint_url=endpoint_url or None,
                                             roots=None if roots is None else list(roots)).read, cache_dir=cache_dir)


def thumbnails() -> ThumbnailCache:
    """The process's thumbnail cache for the storage Settings configure (read once per run, on this thread's
    connection), its JPEGs kept on disk under the workspace (``thumbs/``) so other processes and restarts reuse
    them."""
    memo = run_memo()
    if "thumbnails" not in memo:
        store = object_store(thread_db())
        memo["thumbnails"] = _thumbnails(store.endpoint_url or "", None if store.roots is None else tuple(store.roots),
                                         str(workspace().root / "thumbs"))
    return memo["thumbnails"]


def thumbnail(uri: str, sha256: str | None, size: int = 256) -> tuple[bytes | None, str | None]:
    """(JPEG thumbnail, None) of a stored photo, or (None, why it cannot be shown)."""
    return thumbnails().get(uri, sha256, size)


def show_photo(container, *, uri: str, sha256: str | None, size: int, caption: str | None = None,  # type: ignore[no-untyped-def]
               width: int | str = "content") -> None:
    """The photo in ``container``, or an error saying why it cannot be shown. ``caption`` is markdown: a caller
    puts customer text in it through ``md``; without one the photo's path is the caption, shown literally."""
    data, error = thumbnail(uri, sha256, size)
    if data:
        container.image(data, caption=caption or md(uri), width=width)
    else:
        container.error(f"Cannot show {md(uri)}: {md(error)}")


def show_error(exc: ConsoleError) -> None:
    """The error's message, shown literally: it may name a user, a file or a review."""
    st.error(md(exc), icon=":material/error:")
