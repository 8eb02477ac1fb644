"""``./run.sh --processes 2``: the real nginx in front of two app processes and the worker service, on one
workspace (issue 23 item 2). Through the proxy: health, each browser's requests and websocket on one app process,
a session hand-off and a browser sign-in; beside it, inspectors in two processes deciding from one database lose
and double nothing."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.console import CHROMIUM, ROOT, SETUP_TOKEN

NGINX = os.environ.get("NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
if not os.path.exists(NGINX):
    pytest.skip("nginx not found (apt-get install nginx; .ci/run installs it)", allow_module_level=True)

PASSWORD = "correct horse battery staple"
PROCESSES = 2
PHOTOS = 40
TIMEOUT = 120.0


def _free_ports(n: int) -> int:
    """A port such that it and the next ``n`` are free now (the proxy's, then one per app process)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65535:
            continue
        try:
            socks = []
            for port in range(base, base + n + 1):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError("no run of free ports")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


def _get(url: str, *, cookie: str | None = None, redirects: bool = True) -> tuple[int, dict[str, list[str]], str]:
    opener = urllib.request.build_opener() if redirects else urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with opener.open(request, timeout=30) as resp:
            status, headers, body = resp.status, resp.headers, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, headers, body = exc.code, exc.headers, exc.read().decode(errors="replace")
    out: dict[str, list[str]] = {}
    for key, value in headers.items():
        out.setdefault(key.lower(), []).append(value)
    return status, out, body


def _upstreams(log: Path) -> list[tuple[str, str, str]]:
    """(request line, upstream address, backend cookie) of each request in the proxy's access log."""
    rows = []
    for line in log.read_text().splitlines():
        m = re.search(r'"([^"]*)" (\d+) (\S+) backend=(\S*)', line)
        if m:
            rows.append((m.group(1), m.group(3), m.group(4)))
    return rows


@pytest.fixture
def served(ws):
    """The console as ``./run.sh --processes 2`` starts it, on free ports, with two inspectors and an admin."""
    from services.access.accounts import create_user

    db = ws.db()
    create_user(db, username="root", password=PASSWORD, roles=["admin"], actor="cli:test")
    for name in ("ann", "bob"):
        create_user(db, username=name, password=PASSWORD, roles=["inspector"], actor="cli:test")
    port = _free_ports(PROCESSES)
    env = {**os.environ, "PORT": str(port), "NGINX": NGINX, "REVIEW_CONSOLE_SETUP_TOKEN": SETUP_TOKEN}
    env.pop("REVIEW_CONSOLE_WORKER", None)  # run.sh decides: off in the app processes, on in the worker service
    proc = subprocess.Popen([str(ROOT / "run.sh"), "--processes", str(PROCESSES), "--data-dir", str(ws.root)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen = []
    try:
        deadline = time.monotonic() + 600  # the first start after a change of run.sh installs the requirements
        while not any(line.startswith("Serving on") for line in seen):
            try:
                seen.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail("not serving in time:\n" + "".join(seen))
        yield f"http://127.0.0.1:{port}", port, db, ws.root
    finally:
        os.kill(proc.pid, signal.SIGTERM)  # run.sh's own way to stop: it stops nginx, the apps and the worker
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode == 0, "".join(seen)
    assert not (ws.root / "serve" / "run.pid").exists()


def _inspect(root: str, inspector: str, start: multiprocessing.synchronize.Barrier,
             done: multiprocessing.Queue) -> None:
    """An inspector in a process of its own: claim and decide until the queue is empty (the services the
    queue page calls); puts (inspector, photos decided) on ``done``."""
    from services.core.config import Workspace
    from services.hitl.answers import submit
    from services.hitl.queue import claim_next

    db = Workspace.open(root).db()
    start.wait(TIMEOUT)
    decided = 0
    while (item := claim_next(db, inspector=inspector)) is not None:
        submit(db, image_id=item["id"], label="product", actor=inspector)
        decided += 1
    done.put((inspector, decided))


def _seed_queue(db, n: int) -> None:  # type: ignore[no-untyped-def]
    from services.core.config import set_setting

    for key, value in {"overlap_rate": 0.0, "gold_rate": 0.0}.items():
        set_setting(db, key=key, value=value, actor="root")
    db.execute("INSERT INTO model_versions (id, name, active) VALUES (1, 'm1', 1)")
    with db.atomic():
        for i in range(1, n + 1):
            db.execute("INSERT INTO reviews (id, review_type, submitted_at) VALUES (?, 'product', ?)",
                       [f"r{i}", f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z"])
            db.execute("INSERT INTO images (id, review_id, uri, sha256, status, queue_reason) "
                       "VALUES (?, ?, ?, ?, 'queued', 'low_confidence')", [i, f"r{i}", f"{i}.jpg", f"{i:064x}"])
            db.execute("INSERT INTO predictions (image_id, model_version_id, label, confidence, probabilities) "
                       "VALUES (?, 1, 'product', 0.6, '{}')", [i])


async def _websocket(url: str, cookie: str) -> None:
    """Open Streamlit's websocket through the proxy with a browser's cookie, see it upgraded, close it."""
    import websockets

    ws_url = url.replace("http://", "ws://") + "/_stcore/stream"
    async with websockets.connect(ws_url, additional_headers={"Cookie": cookie}, subprotocols=["streamlit"],
                                  open_timeout=30) as conn:
        assert conn.response.status_code == 101


def test_run_sh_processes_serves_health_sticky_sessions_sign_in_and_safe_writes(served):
    url, port, db, root = served
    logs = root / "serve" / "logs"
    backends = {f"127.0.0.1:{port + i}" for i in range(1, PROCESSES + 1)}

    # the proxy proves itself to the app processes with a per-start secret, kept out of reach of other users
    conf = root / "serve" / "nginx.conf"
    assert conf.stat().st_mode & 0o777 == 0o600
    secret = re.search(r'proxy_set_header X-Console-Proxy "([^"]+)";', conf.read_text()).group(1)
    assert len(secret) >= 40 and not re.search(r"@@[A-Z_]+@@", conf.read_text())

    # health through the proxy, and the cookie that keeps this browser on one process
    status, headers, body = _get(url + "/_stcore/health")
    assert (status, body, headers["server"]) == (200, "ok", ["nginx"])
    sticky = next(c for c in headers["set-cookie"] if c.startswith("console_backend="))
    assert "HttpOnly" in sticky and "SameSite=Lax" in sticky

    # browsers (fixed cookies) are spread over both processes, and each one's requests and websocket stay on one
    browsers = [f"console_backend=browser-{i}" for i in range(12)]
    for cookie in browsers:
        for _ in range(3):
            assert _get(url + "/_stcore/health", cookie=cookie)[0] == 200
        _, again, _ = _get(url + "/_stcore/health", cookie=cookie)
        assert not [c for c in again.get("set-cookie", []) if c.startswith("console_backend=")]  # kept, not renewed
        asyncio.run(_websocket(url, cookie))
    served_by: dict[str, set[str]] = {}
    for request, upstream, backend in _upstreams(logs / "nginx-access.log"):
        if backend.startswith("browser-"):
            served_by.setdefault(backend, set()).add(upstream)
            assert upstream in backends, request
    assert all(len(ups) == 1 for ups in served_by.values()), served_by
    assert set().union(*served_by.values()) == backends  # every process serves
    ws_rows = [r for r in _upstreams(logs / "nginx-access.log") if r[0].startswith("GET /_stcore/stream")]
    assert len(ws_rows) == len(browsers)

    # a session hand-off made by one process (here, the test's) is redeemed through the proxy by whichever serves
    from pages.session import SET_PATH
    from services.access import sessions

    for cookie in browsers[:4]:
        code = sessions.begin(db, username="ann")
        status, headers, _ = _get(f"{url}{SET_PATH}?code={code}&next=/queue", cookie=cookie, redirects=False)
        assert status == 303 and headers["location"] == ["/queue"]
        session_cookie = next(c for c in headers["set-cookie"] if c.startswith(sessions.COOKIE_NAME + "="))
        value = session_cookie.split(";")[0].split("=", 1)[1]
        assert sessions.resume(db, cookie=value, idle_seconds=600)["username"] == "ann"

    # inspectors in two processes decide from one queue, while the console's processes hold the database open
    _seed_queue(db, PHOTOS)
    ctx = multiprocessing.get_context("spawn")
    start, done = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_inspect, args=(str(root), name, start, done)) for name in ("ann", "bob")]
    for p in procs:
        p.start()
    counts = dict(done.get(timeout=TIMEOUT) for _ in procs)
    for p in procs:
        p.join(TIMEOUT)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sum(counts.values()) == PHOTOS
    decided = db.execute("SELECT image_id, COUNT(*) FROM answers GROUP BY image_id").fetchall()
    assert len(decided) == PHOTOS and all(n == 1 for _, n in decided)  # none lost, none doubled
    assert db.execute("SELECT COUNT(*) FROM images WHERE status = 'decided'").fetchone()[0] == PHOTOS
    assert Counter(r[0] for r in db.execute("SELECT decided_by FROM decisions")) == Counter(counts)


def test_a_browser_signs_in_through_the_proxy_and_keeps_its_session(served):
    pw = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium not found (apt-get install chromium)")
    url, _, _, root = served
    logs = root / "serve" / "logs"
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        context = browser.new_context()
        page = context.new_page()
        page.goto(url + "/queue")
        page.get_by_label("User name").wait_for(timeout=60_000)
        page.get_by_label("User name").fill("ann")
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("(inspector)").wait_for(timeout=60_000)
        assert page.url.endswith("/queue")
        names = {c["name"]: c["value"] for c in context.cookies()}
        assert "console_session" in names and "console_backend" in names
        page.reload()  # a new websocket session, resumed from the cookie
        page.get_by_text("(inspector)").wait_for(timeout=60_000)
        assert page.get_by_label("User name").count() == 0
        browser.close()
    mine = [r for r in _upstreams(logs / "nginx-access.log") if r[2] == names["console_backend"]]
    assert any(r[0].startswith("GET /_stcore/stream") for r in mine)
    assert any(r[0].startswith("GET /_console/session") for r in mine)
    assert len({r[1] for r in mine}) == 1  # the page, its websockets and the session route: one process
