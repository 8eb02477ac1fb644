"""The one-time set-up token: on a fresh workspace (no account, no single sign-on mapping) the console admits
only whoever presents it, as notebook servers do. It is made when the server process starts, printed on the
server's console, kept in this process only (as a SHA-256 hash) and no longer asked for once the first account
exists (set-up mode is over). The CLI (``create-user --role admin``) needs no token: it runs on the server."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading

ENV_VAR = "REVIEW_CONSOLE_SETUP_TOKEN"  # an operator may choose the token (e.g. for automated tests)

_lock = threading.Lock()
_hashes: dict[str, str] = {}  # workspace root -> SHA-256 of its set-up token, for this process


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_setup_token(*, root: str, token: str | None = None) -> str:
    """Make (or, given ``token``, set) the set-up token of workspace ``root`` for this process and return it;
    a token issued before for the same workspace stops working.

    Raises ValueError when ``token`` is given but shorter than 16 characters."""
    if token is not None and len(token) < 16:
        raise ValueError("a set-up token needs at least 16 characters")
    token = token or secrets.token_urlsafe(24)
    with _lock:
        _hashes[root] = _digest(token)
    return token


def setup_token_valid(*, root: str, token: str) -> bool:
    """True when ``token`` is the set-up token issued for workspace ``root`` in this process (compared in
    constant time). Raises nothing; False when no token was issued."""
    with _lock:
        expected = _hashes.get(root)
    return expected is not None and bool(token) and hmac.compare_digest(expected, _digest(token))


def forget_setup_token(*, root: str) -> None:
    """Drop the set-up token of workspace ``root`` (set-up mode is over). Raises nothing."""
    with _lock:
        _hashes.pop(root, None)


def banner(*, token: str, url: str = "http://localhost:8501") -> str:
    """The lines printed on the server's console so the operator can open the set-up page."""
    rule = "=" * 78
    return (f"\n{rule}\n  SET-UP MODE: no account exists yet. Open the console with this one-time token:\n\n"
            f"      {url}/?setup_token={token}\n\n  or paste the token on the set-up page:  {token}\n"
            f"  Then create the first admin under Users and audit (or: python -m services.cli create-user "
            f"--role admin).\n{rule}\n")
