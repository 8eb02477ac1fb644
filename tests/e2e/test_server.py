"""Server-level security checks against a real streamlit server on loopback (issue 19): the network allowlist
against a forged ``X-Forwarded-For``, and what the server configuration exposes."""

from __future__ import annotations

import os
import tomllib
import urllib.request

import pytest

from services.core.config import set_setting
from tests.e2e.console import CHROMIUM, ROOT, SETUP, console_env, serve


@pytest.fixture
def allowed_networks() -> list[str]:
    return ["10.9.8.0/24"]


@pytest.fixture
def trusted_proxies() -> list[str]:
    return []


@pytest.fixture
def server_trust() -> str | None:
    """FORWARDED_ALLOW_IPS for the server: None leaves uvicorn's default (loopback), "" is what run.sh sets."""
    return None


@pytest.fixture
def proxy_secret() -> str | None:
    """REVIEW_CONSOLE_PROXY_SECRET, as deploy/serve.sh gives the app processes behind its nginx; None: not set."""
    return None


@pytest.fixture
def server(ws, allowed_networks, trusted_proxies, server_trust, proxy_secret):
    """The console started with ``streamlit run`` and the repo's config, on loopback."""
    db = ws.db()
    set_setting(db, key="allowed_networks", value=allowed_networks, actor="cli:test")
    set_setting(db, key="trusted_proxies", value=trusted_proxies, actor="cli:test")
    env = {k: v for k, v in console_env(ws.root).items() if k != "FORWARDED_ALLOW_IPS"}
    if server_trust is not None:
        env["FORWARDED_ALLOW_IPS"] = server_trust
    if proxy_secret is not None:
        env["REVIEW_CONSOLE_PROXY_SECRET"] = proxy_secret
    with serve(env) as url:
        yield url, db


def _visit(url: str, forwarded_for: str, **headers: str) -> bool:
    """Open the console in Chromium, sending ``X-Forwarded-For`` on every request (the WebSocket's too); True
    when admitted (set-up mode: signed in as the local operator), False when refused by the allowlist."""
    pw = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium not found (apt-get install chromium)")
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_context(extra_http_headers={"X-Forwarded-For": forwarded_for, **headers}).new_page()
        page.goto(url + "/" + SETUP)
        refused, admitted = page.get_by_text("is not allowed"), page.get_by_text("Signed in as")
        refused.or_(admitted).first.wait_for(timeout=60_000)
        result = admitted.count() > 0
        assert result != (refused.count() > 0)
        browser.close()
    return result


@pytest.mark.parametrize("server_trust", [None, ""])  # streamlit run as it comes, and as run.sh starts it
def test_a_forged_forwarded_for_from_loopback_does_not_pass_the_allowlist(server):
    """A client on 127.0.0.1 (outside 10.9.8.0/24, no trusted proxies) that sends X-Forwarded-For: 10.9.8.7
    is refused like one that does not, and audited without the forged address."""
    url, db = server
    assert not _visit(url, "10.9.8.7"), "the forged header passed the allowlist (set-up mode: as admin)"
    refused = [r[0] for r in db.execute("SELECT detail FROM audit_log WHERE action = 'access.refused'")]
    assert refused and all("10.9.8.7" not in (detail or "") for detail in refused)


@pytest.mark.parametrize(("server_trust", "trusted_proxies"), [("", ["127.0.0.1"])])
def test_a_reverse_proxy_on_loopback_listed_as_trusted_forwards_its_client(server):
    """The console's own trusted-proxy list decides: a proxy on 127.0.0.1 listed there (the server started as
    run.sh does) is believed about its client, inside or outside the allowed networks."""
    url, db = server
    assert _visit(url, "10.9.8.7")
    assert not _visit(url, "203.0.113.9")
    refused = [r[0] for r in db.execute("SELECT detail FROM audit_log WHERE action = 'access.refused'")]
    assert len(refused) == 1 and "203.0.113.9" in refused[0]


@pytest.mark.parametrize(("server_trust", "proxy_secret"), [("", "per-start-secret-0123")])
def test_the_projects_own_proxy_is_believed_with_its_secret_and_only_then(server):
    """Behind ``./run.sh --processes N`` every peer is 127.0.0.1 (nginx), with no trusted proxies set: its
    secret header (X-Console-Proxy, which it sets and the client cannot) makes its right-most X-Forwarded-For
    entry the client. Without the secret, or with a wrong one, loopback stays the client (any local program could
    forge the header); the secret never makes a client-written entry further left count."""
    url, db = server
    assert _visit(url, "203.0.113.9, 10.9.8.7", **{"X-Console-Proxy": "per-start-secret-0123"})
    assert not _visit(url, "10.9.8.7, 203.0.113.9", **{"X-Console-Proxy": "per-start-secret-0123"})
    assert not _visit(url, "10.9.8.7", **{"X-Console-Proxy": "per-start-secret-0124"})
    assert not _visit(url, "10.9.8.7")
    refused = [r[0] for r in db.execute("SELECT detail FROM audit_log WHERE action = 'access.refused' ORDER BY id")]
    assert len(refused) == 3 and "203.0.113.9" in refused[0] and "10.9.8.7" not in " ".join(refused)


def test_the_server_configuration_closes_what_it_can():
    """XSRF checks on uploads, uploads no bigger than a manifest needs, no agent API, no static folder."""
    server = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]
    assert server["enableXsrfProtection"] is True
    assert server["enableCORS"] is True
    assert server["maxUploadSize"] <= 10  # MB; larger manifests are read from a path or s3://
    assert server["enableStaticServing"] is False
    assert server["enableAgentApi"] is False


def test_what_the_server_answers_before_sign_in_is_what_the_readme_says(server):
    """What configuration cannot close (README, Security: "What the server exposes before sign-in"), checked on
    a real server: if a Streamlit upgrade starts sending frame headers or guards the metrics, this fails so the
    README and config can take it up. The console page itself is refused to this client (outside the list)."""
    url, _ = server
    with urllib.request.urlopen(url + "/", timeout=30) as response:
        headers = {k.lower() for k in response.headers}
    assert "x-frame-options" not in headers and "content-security-policy" not in headers  # the proxy's job
    with urllib.request.urlopen(url + "/_stcore/metrics", timeout=30) as response:
        assert response.status == 200  # answers anyone: keep it inside at the proxy
    readme = (ROOT / "README.md").read_text()
    for needed in ("frame-ancestors 'none'", "X-Frame-Options DENY", "location /_stcore/metrics"):
        assert needed in readme


def test_a_session_that_never_signed_in_cannot_upload_15_mb(server):
    """A client outside the allowlist still gets a Streamlit session (the refusal page is drawn through it) and
    with it the upload endpoint; the server's own limit (server.maxUploadSize) is what caps it."""
    pw = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium not found (apt-get install chromium)")
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    url, _ = server
    session_ids: list[str] = []

    def frames(ws) -> None:  # type: ignore[no-untyped-def]
        def received(payload) -> None:  # type: ignore[no-untyped-def]
            if isinstance(payload, bytes):
                msg = ForwardMsg()
                try:
                    msg.ParseFromString(payload)
                except Exception:  # noqa: BLE001 (another frame kind)
                    return
                if msg.WhichOneof("type") == "new_session" and msg.new_session.initialize.session_id:
                    session_ids.append(msg.new_session.initialize.session_id)
        ws.on("framereceived", received)

    with pw.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page()
        page.on("websocket", frames)
        page.goto(url + "/")
        page.get_by_text("is not allowed").wait_for(timeout=60_000)
        assert session_ids
        status = page.evaluate("""async ([sid, size]) => {
            const token = (document.cookie.match(/_streamlit_xsrf=([^;]+)/) || [])[1] || "";
            const form = new FormData();
            form.append("file", new Blob([new Uint8Array(size)]), "reviews.jsonl");
            const r = await fetch(`/_stcore/upload_file/${sid}/f1`, {method: "PUT", body: form,
                                  headers: {"X-Xsrftoken": decodeURIComponent(token)}});
            return r.status;
        }""", [session_ids[0], 15 * 1024 * 1024])
        small = page.evaluate("""async ([sid]) => {
            const token = (document.cookie.match(/_streamlit_xsrf=([^;]+)/) || [])[1] || "";
            const form = new FormData();
            form.append("file", new Blob([new Uint8Array(1000)]), "reviews.jsonl");
            const r = await fetch(`/_stcore/upload_file/${sid}/f2`, {method: "PUT", body: form,
                                  headers: {"X-Xsrftoken": decodeURIComponent(token)}});
            return r.status;
        }""", [session_ids[0]])
        browser.close()
    assert small == 204  # the endpoint itself is open to the session (README: what remains)
    assert status == 413
