"""N inspectors deciding photos with number keys at once, against a real console server (issue 23 item 3).

    python benchmarks/concurrent_inspectors.py [--quick] [--inspectors 1,5,10,20] [--seconds S] [--think 2,3]
                                               [--url http://host:port --data-dir DIR] [--repo DIR] [--photos N]

Each client is Streamlit's own websocket protocol (``/_stcore/stream``, the protobuf messages the browser
sends and receives), not a browser: 50 Chromium pages do not fit beside the server on a 2-core machine, and
their rendering would be measured instead of the server. A client does what the browser does for a person:
opens the Review queue (``/queue``), signs in with the form (user name, password, the form's submit button),
then in a loop waits a think time (uniform in ``--think``, default 2-3 s), presses a number key (the browser
sends the trigger of the button whose shortcut it is, ``q_quick_<class>``, with the fragment id of the part
of the page the button is drawn in) and waits until the next photo is on screen: the run has finished, shows
another photo (its label radio is keyed by image id) and that photo's bytes are fetched from the media
endpoint as the browser would. That wait is "key to next photo".

Without ``--url``, the workspace is built once (benchmarks/out/inspectors_ws_<photos>/: distinct 800x600
photos, ingested and embedded by the real classify job, a third of them decided so the similar-cases
panel has neighbours, accounts insp01..insp60) and copied fresh for each N; the server is started as
``./run.sh`` does (``streamlit run server.py``, jobs off) on a free port, from ``--repo`` (default this
checkout: point it at another clone to measure "before"). Server CPU and memory are read for the server's
process tree (psutil if installed, else /proc) over the deciding phase only (sign-in excluded); the server's CPU
while everyone is signed in and nobody presses a key (10 s, ``idle_cpu_share``) is reported too, and
``net_cpu_s_per_decision`` subtracts it (with one inspector it is a large part of the gross figure).

Integrity, from the database after each N: ``doubled`` = photos answered by more inspectors than they needed
(gold items excluded: every inspector answers those by design; overlap photos need ``required_answers``);
``lost`` = decisions a client saw acknowledged (the next photo and "Saved ... for image <id>") that have no
answer row of that inspector for that photo.

With ``--url`` the server (e.g. several processes behind a proxy) is someone else's: give its workspace with
``--data-dir`` for the integrity check and accounts, and ``--server-pid`` to measure its CPU (all its
children are counted). The last line is one JSON object for the largest N (inspectors, decisions_per_min,
p50_s, p95_s, cpu_s_per_decision, lost, doubled) with the per-N table under ``runs``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from common import OUT, ROOT

PASSWORD = "correct horse battery staple 23"
N_USERS = 60
CLASSES = ("package", "product", "full_length", "half_length")
BUILD_VERSION = 1


# ----------------------------------------------------------------------------------------------- workspace


def build_workspace(root: Path, *, photos: int) -> None:
    """Photos ingested, embedded by the classify job (no model: all queued), a third decided by a seed
    inspector (so similar decided cases exist), and the inspectors' accounts."""
    from PIL import Image

    from services.access.accounts import create_user
    from services.core.config import Workspace
    from services.core.jobs import create_job, run_job
    from services.core.storage import ObjectStore
    from services.hitl.answers import submit
    from services.hitl.queue import claim_next
    from services.reviews.ingest import ingest_manifest
    from services.worker import kinds

    kinds.install()
    if root.exists():
        shutil.rmtree(root)
    ws = Workspace.open(root)
    db = ws.db()
    folder = ws.objects_dir / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(23)
    lines = []
    for i in range(photos):
        blocks = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        img = Image.fromarray(blocks).resize((800, 600), Image.Resampling.BILINEAR)
        noise = rng.integers(0, 24, (600, 800, 3), dtype=np.uint8)
        img = Image.fromarray(np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8))
        path = folder / f"p{i:04d}.jpg"
        img.save(path, quality=88)
        lines.append(json.dumps({"review_id": f"r{i:04d}", "review_type": ("product", "style")[i % 2],
                                 "product": f"item {i % 37}", "user_id": f"u{i % 91}",
                                 "submitted_at": f"2026-11-{1 + i % 28:02d}T10:{i % 60:02d}:00Z",
                                 "text": "nice", "image_uris": [str(path)]}))
    manifest = root / "batch.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    ingest_manifest(db, uri=str(manifest), store=ObjectStore(), actor="bench")
    for kind in ("classify", "reuse"):
        run_job(ws, job_id=create_job(db, kind=kind, params={}, actor="bench"))
    create_user(db, username="admin", password=PASSWORD, roles=["admin", "inspector"], actor="bench")
    create_user(db, username="seed", password=PASSWORD, roles=["inspector"], actor="admin")
    for _ in range(photos // 3):  # decided history: the similar-cases panel shows neighbours
        item = claim_next(db, inspector="seed")
        if item is None:
            break
        submit(db, image_id=item["id"], label=CLASSES[item["id"] % 4], actor="seed")
    db.execute("DELETE FROM queue_claims")
    for n in range(1, N_USERS + 1):
        create_user(db, username=f"insp{n:02d}", password=PASSWORD, roles=["inspector"], actor="admin")
    db.conn.commit()
    db.close()


def template(photos: int) -> Path:
    root = OUT / f"inspectors_ws_{photos}"
    stamp = root / ".built"
    if not stamp.exists() or stamp.read_text() != str(BUILD_VERSION):
        print(f"building the workspace of {photos} photos in {root} ...", flush=True)
        build_workspace(root, photos=photos)
        stamp.write_text(str(BUILD_VERSION))
    return root


# ------------------------------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(repo: Path, data_dir: Path) -> tuple[subprocess.Popen, str]:  # type: ignore[type-arg]
    port = free_port()
    env = {**os.environ, "REVIEW_CONSOLE_DATA_DIR": str(data_dir), "REVIEW_CONSOLE_WORKER": "off"}
    log = open(data_dir / "server.log", "w")  # the server writes its log here until it ends
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(repo / "server.py"), "--server.port",
                             str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=repo, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None:
                raise SystemExit((data_dir / "server.log").read_text()) from None
            time.sleep(0.2)
    raise SystemExit("the server did not start")


def tree_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, resident MB) of ``pid`` and its descendants."""
    try:
        import psutil

        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
        cpu = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
        return cpu, sum(p.memory_info().rss for p in procs) / 2**20
    except ImportError:
        pass
    tick = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(entry.name))
    todo, cpu, rss = [pid], 0.0, 0.0
    while todo:
        p = todo.pop()
        todo += kids.get(p, [])
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu += (int(fields[11]) + int(fields[12])) / tick
        rss += int(fields[21]) * page / 2**20
    return cpu, rss


# ------------------------------------------------------------------------------------------------- client


class Inspector:
    """One browser tab of the console, spoken to in Streamlit's websocket protocol."""

    def __init__(self, *, url: str, username: str, think: tuple[float, float], seed: int) -> None:
        self.url, self.username, self.think = url, username, think
        self.rng = random.Random(seed)
        self.elements: dict[tuple[int, ...], Any] = {}  # delta path -> (element, fragment id) of the screen
        self.latencies: list[float] = []
        self.acked: list[int] = []  # photos whose decision the client saw acknowledged
        self.errors: list[str] = []
        self.page_hash = ""

    async def connect(self) -> None:
        import websockets

        u = urlparse(self.url)
        self.ws = await websockets.connect(f"ws://{u.netloc}/_stcore/stream", subprotocols=["streamlit"],
                                           max_size=2**26, open_timeout=60)

    async def run_script(self, widgets: list[Any], fragment_id: str = "") -> str:
        """Send a rerun with these widget states; returns how the run(s) finished once the screen is
        settled (runs ended by a rerun are followed to the end of the next one)."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        msg = BackMsg()
        cs = msg.rerun_script
        cs.query_string = ""
        cs.page_name = "queue"
        cs.page_script_hash = self.page_hash
        cs.fragment_id = fragment_id
        cs.widget_states.widgets.extend(widgets)
        await self.ws.send(msg.SerializeToString())
        return await self.settle()

    async def settle(self) -> str:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        fragment_run = False
        while True:
            raw = await asyncio.wait_for(self.ws.recv(), timeout=120)
            fm = ForwardMsg()
            fm.ParseFromString(raw)
            kind = fm.WhichOneof("type")
            if kind == "new_session":
                self.page_hash = fm.new_session.page_script_hash or self.page_hash
                fragment_run = bool(fm.new_session.fragment_ids_this_run) if hasattr(
                    fm.new_session, "fragment_ids_this_run") else False
                if not fragment_run:
                    self.elements = {}
            elif kind == "page_info_changed" or kind == "navigation":
                if kind == "navigation" and fm.navigation.page_script_hash:
                    self.page_hash = fm.navigation.page_script_hash
            elif kind == "delta":
                path = tuple(fm.metadata.delta_path)
                if fm.delta.WhichOneof("type") == "new_element":
                    self.elements[path] = (fm.delta.new_element, fm.delta.fragment_id)
            elif kind == "script_finished":
                status = ForwardMsg.ScriptFinishedStatus.Name(fm.script_finished)
                if status != "FINISHED_EARLY_FOR_RERUN":
                    return status

    def widgets(self, kind: str) -> list[tuple[str, Any, str]]:
        """(widget id, element, fragment id) of the widgets of ``kind`` on screen."""
        out = []
        for path in sorted(self.elements):
            el, frag = self.elements[path]
            if el.WhichOneof("type") == kind:
                out.append((getattr(el, kind).id, getattr(el, kind), frag))
        return out

    def texts(self) -> list[str]:
        out = []
        for el, _ in self.elements.values():
            t = el.WhichOneof("type")
            if t in ("markdown", "alert", "text"):
                out.append(getattr(el, t).body)
        return out

    def photo_on_screen(self) -> int | None:
        for wid, _, _ in self.widgets("radio"):
            if "q_label_" in wid:
                return int(wid.rsplit("q_label_", 1)[1])
        return None

    def image_urls(self) -> list[str]:
        return [img.url for _, el, _ in [(None, e, f) for e, f in self.elements.values()]
                if el.WhichOneof("type") == "imgs" for img in el.imgs.imgs]

    async def sign_in(self) -> None:
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        await self.connect()
        await self.run_script([])
        states = []
        for wid, el, _ in self.widgets("text_input"):
            states.append(WidgetState(id=wid, string_value=self.username if el.label == "User name" else PASSWORD))
        submit = [wid for wid, el, _ in self.widgets("button") if el.label == "Sign in"]
        if not submit or len(states) != 2:
            raise RuntimeError(f"{self.username}: no sign-in form: {self.texts()[:5]}")
        await self.run_script([*states, WidgetState(id=submit[0], trigger_value=True)])
        for _ in range(5):  # "Signing in…" (a browser fetches its cookie here), then the page asked for
            if self.photo_on_screen() is not None:
                return
            await self.run_script([])
        raise RuntimeError(f"{self.username}: no photo after signing in: {self.texts()[:5]}")

    async def fetch(self, http: Any, url: str) -> None:
        async with http.get(self.url + "/" + url.lstrip("/")) as resp:
            await resp.read()

    async def decide(self, until: float, http: Any) -> None:
        try:
            await self._decide(until, http)
        except Exception as exc:  # noqa: BLE001 (a client that fails is counted, the others go on)
            self.errors.append(f"stopped: {exc!r}")

    async def _decide(self, until: float, http: Any) -> None:
        from streamlit.proto.WidgetStates_pb2 import WidgetState

        while time.monotonic() < until:
            await asyncio.sleep(self.rng.uniform(*self.think))  # the inspector looks at the photo
            photo = self.photo_on_screen()
            if photo is None:
                self.drained = True  # nothing left for this inspector: the run ends early for it
                return
            n = self.rng.randrange(4)
            buttons = [(wid, frag) for wid, _, frag in self.widgets("button") if wid.endswith(f"q_quick_{CLASSES[n]}")]
            if not buttons:
                self.errors.append(f"no key {n + 1} on screen")
                return
            wid, frag = buttons[0]
            t0 = time.perf_counter()
            await self.run_script([WidgetState(id=wid, trigger_value=True)], fragment_id=frag)
            nxt = self.photo_on_screen()
            urls = self.image_urls()
            if urls:
                await self.fetch(http, urls[0])  # the photo itself, as the browser loads it
            latency = time.perf_counter() - t0
            if any(t.startswith("Cannot show") for t in self.texts()):
                self.errors.append(f"photo {nxt}: not shown")
            if any(f"for image {photo}" in t and t.startswith("Saved") for t in self.texts()) and nxt != photo:
                self.acked.append(photo)
                self.latencies.append(latency)
            else:
                self.errors.append(f"photo {photo}: not acknowledged ({self.texts()[:3]})")
            for url in urls[1:]:
                asyncio.ensure_future(self.fetch(http, url))  # the thumbnails beside it


async def drive(url: str, n: int, *, seconds: float, think: tuple[float, float], pid: int | None,
                first_user: int, idle_seconds: float = 10.0) -> dict[str, Any]:
    import aiohttp

    clients = [Inspector(url=url, username=f"insp{first_user + i:02d}", think=think, seed=i) for i in range(n)]
    for i in range(0, n, 5):  # signing in is CPU-heavy on purpose (password hashing): a few at a time
        outcome = await asyncio.gather(*(c.sign_in() for c in clients[i:i + 5]), return_exceptions=True)
        for c, res in zip(clients[i:i + 5], outcome):
            if isinstance(res, Exception):  # counted, and the others go on
                c.errors.append(f"sign-in failed: {res}")
                c.dead = True
    clients_in = [c for c in clients if not getattr(c, "dead", False)]
    idle = 0.0
    if pid and idle_seconds > 0:  # the server's own cost with everyone signed in and looking (heartbeats, watchers)
        before = tree_usage(pid)[0]
        await asyncio.sleep(idle_seconds)
        idle = (tree_usage(pid)[0] - before) / idle_seconds
    cpu0, _ = tree_usage(pid) if pid else (0.0, 0.0)
    own0 = time.process_time()
    t0 = time.monotonic()
    peak = [0.0]

    async def watch() -> None:
        while True:
            await asyncio.sleep(2)
            if pid:
                peak[0] = max(peak[0], tree_usage(pid)[1])

    watcher = asyncio.ensure_future(watch())
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(c.decide(t0 + seconds, http) for c in clients_in))
    elapsed = time.monotonic() - t0
    watcher.cancel()
    cpu1, rss = tree_usage(pid) if pid else (float("nan"), float("nan"))
    for c in clients:
        if hasattr(c, "ws"):
            await c.ws.close()
    lat = [x for c in clients for x in c.latencies]
    decisions = len(lat)
    cpu = cpu1 - cpu0
    return {"inspectors": n, "seconds": round(elapsed, 1), "decisions": decisions,
            "decisions_per_min": round(decisions / elapsed * 60, 1),
            "p50_s": round(float(np.percentile(lat, 50)), 3) if lat else None,
            "p95_s": round(float(np.percentile(lat, 95)), 3) if lat else None,
            "max_s": round(max(lat), 3) if lat else None,
            "server_cpu_s": round(cpu, 2), "server_cpu_share": round(cpu / elapsed, 2),
            "client_cpu_share": round((time.process_time() - own0) / elapsed, 2),  # this driver's own load
            "load_average": round(os.getloadavg()[0], 1),
            "server_rss_mb": round(max(rss, peak[0]), 1),
            "cpu_s_per_decision": round(cpu / decisions, 4) if decisions else None,
            "idle_cpu_share": round(idle, 4),  # measured before deciding, subtracted below
            "net_cpu_s_per_decision": round((cpu - idle * elapsed) / decisions, 4) if decisions else None,
            "signed_in": len(clients_in), "ran_out_of_photos": sum(1 for c in clients if getattr(c, "drained", False)),
            "client_errors": sum(len(c.errors) for c in clients),
            "first_errors": [e for c in clients for e in c.errors][:3],
            "acked": {c.username: c.acked for c in clients}}


def integrity(db_path: Path, acked: dict[str, list[int]]) -> dict[str, int]:
    conn = sqlite3.connect(db_path)
    lost = 0
    for user, photos in acked.items():
        have = {r[0] for r in conn.execute("SELECT image_id FROM answers WHERE inspector = ?", [user])}
        lost += sum(1 for p in photos if p not in have)
    doubled = conn.execute(
        "SELECT COUNT(*) FROM (SELECT a.image_id, COUNT(DISTINCT a.inspector) AS n, "
        "MAX(COALESCE(i.required_answers, 1)) AS need FROM answers a JOIN images i ON i.id = a.image_id "
        "WHERE a.kind IN ('single', 'overlap') AND a.inspector LIKE 'insp%' GROUP BY a.image_id) WHERE n > need"
    ).fetchone()[0]
    conn.close()
    return {"lost": lost, "doubled": doubled}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 and 5 inspectors, 20 s each")
    ap.add_argument("--inspectors", default="1,5,10,20")
    ap.add_argument("--seconds", type=float, default=60.0, help="deciding time per N")
    ap.add_argument("--think", default="2,3", help="think time range in seconds")
    ap.add_argument("--photos", type=int, default=600)
    ap.add_argument("--repo", default=str(ROOT), help="the checkout whose server.py is started")
    ap.add_argument("--url", default=None, help="an already running server (its workspace: --data-dir)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--server-pid", type=int, default=None)
    args = ap.parse_args()
    ns = [1, 5] if args.quick else [int(x) for x in args.inspectors.split(",")]
    seconds = 20.0 if args.quick else args.seconds
    think = tuple(float(x) for x in args.think.split(","))
    if max(ns) > N_USERS:
        raise SystemExit(f"at most {N_USERS} inspectors")
    runs = []
    for n in ns:
        if args.url:
            url, proc, data = args.url, None, Path(args.data_dir)
            pid = args.server_pid
        else:
            data = OUT / "inspectors_run"
            if data.exists():
                shutil.rmtree(data)
            src = template(args.photos)
            shutil.copytree(src, data)
            with sqlite3.connect(data / "console.db") as conn:  # the photos of this copy (inside its storage root)
                conn.execute("UPDATE images SET uri = replace(uri, ?, ?)", [str(src.resolve()), str(data.resolve())])
            proc, url = start_server(Path(args.repo), data)
            pid = proc.pid
        try:
            res = asyncio.run(drive(url, n, seconds=seconds, think=think, pid=pid, first_user=1))
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
        acked = res.pop("acked")
        res.update(integrity(data / "console.db", acked))
        runs.append(res)
        print(json.dumps(res), flush=True)
    print("| inspectors | decisions/min | key to next photo p50 / p95 / max | server CPU | CPU s per decision "
          "(net of idle) | RSS MB | lost | doubled |")
    for r in runs:
        print(f"| {r['inspectors']} | {r['decisions_per_min']} | {r['p50_s']} / {r['p95_s']} / {r['max_s']} s "
              f"| {r['server_cpu_share']:.0%} | {r['cpu_s_per_decision']} ({r['net_cpu_s_per_decision']}) "
              f"| {r['server_rss_mb']} | {r['lost']} "
              f"| {r['doubled']} |")
    last = runs[-1]
    print(json.dumps({k: last[k] for k in ("inspectors", "decisions_per_min", "p50_s", "p95_s", "cpu_s_per_decision",
                                           "lost", "doubled")} | {"max_s": last["max_s"], "runs": runs,
                                                                  "median_p50_s": statistics.median(
                                                                      [r["p50_s"] or 0 for r in runs])}))


if __name__ == "__main__":
    main()
