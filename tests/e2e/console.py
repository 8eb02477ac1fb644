"""The console as a real server for end-to-end tests: ``streamlit run app.py`` on a free loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SETUP_TOKEN = "e2e-set-up-token-0123456789"  # REVIEW_CONSOLE_SETUP_TOKEN of the servers started here
SETUP = f"?setup_token={SETUP_TOKEN}"  # a fresh workspace admits who has it (issue 19 item 7)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(env: Mapping[str, str], *, script: str = "server.py", port: int | None = None) -> Iterator[str]:
    """Start the console with the repo's config and ``env`` (the whole environment of the server process; the
    workspace, worker and set-up token are the caller's); yields its URL once it accepts connections.
    ``script``: ``server.py`` as ``./run.sh`` starts it (with the session-cookie routes), or ``app.py`` alone;
    ``port``: a free one by default (give one when the URL must be known first, e.g. for an OIDC redirect)."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / script), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(proc.stdout.read().decode())
                time.sleep(0.2)  # polling a starting server's port, not waiting for app state
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def console_env(root: Path, **extra: str) -> dict[str, str]:
    """The server's environment: this one, the workspace at ``root``, no worker, the set-up token, ``extra``."""
    import os

    return {**os.environ, "REVIEW_CONSOLE_DATA_DIR": str(root), "REVIEW_CONSOLE_WORKER": "off",
            "REVIEW_CONSOLE_SETUP_TOKEN": SETUP_TOKEN, **extra}
