"""Cloud paths at cloud speed: the real ``filter`` job with Rekognition against a local endpoint with a quota.

    python benchmarks/cloud_concurrency.py [--quick] [--images N] [--latency-ms 200] [--quota 50]

A small HTTP server on loopback speaks Rekognition's JSON protocol (``X-Amz-Target:
RekognitionService.DetectLabels``, the real request and response shapes; errors as ``{"__type": ...}`` with
HTTP 400) behind the console's ``rekognition_endpoint_url`` setting. Every answer takes ``--latency-ms``; the
account's quota is a token bucket of ``--quota`` requests a second (a fifth of a second's burst): a request
beyond it is answered ThrottlingException at once, as AWS does. One image in ten shows a bird.

Runs, each a whole filter job (listing, reading, DetectLabels, decisions, copies of the kept images, the
manifest and the report) through the real job runner on this thread:
- ``sequential``: one request at a time (``rekognition_in_flight`` 1), as the console did before;
- ``at quota``: the rate limit set to the quota, 16 in flight;
- ``above quota``: the rate limit set to twice the quota (a wrong setting): throttles are answered by
  slowing down, never by failing;
- ``early stop``: at quota, birds only among the first images and ``stop_after_misses``: how many requests
  went out for images past the stop (bounded by the requests in flight).

Prints a table; the last line is one JSON object (the issue's fields: ``latency_ms``, ``in_flight``,
``rate_limit``, ``images_per_s``, ``ratio_to_limit`` for the run at quota, and every run's figures).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class Quota:
    """The account's side: a token bucket of ``rate`` a second holding ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


class Endpoint:
    """What the fake Rekognition knows: image hashes -> names, birds, the quota, what it was asked."""

    def __init__(self, *, latency_s: float, quota: float) -> None:
        self.latency_s = latency_s
        self.quota = Quota(quota, max(1.0, quota / 5))
        self.names: dict[str, str] = {}
        self.birds: set[str] = set()
        self.seen: list[str] = []
        self.throttled = 0
        self.lock = threading.Lock()

    def reset(self, *, quota: float | None = None) -> None:
        with self.lock:
            self.seen.clear()
            self.throttled = 0
        if quota is not None:
            self.quota = Quota(quota, max(1.0, quota / 5))

    def answer(self, target: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if target != "RekognitionService.DetectLabels":
            return 400, {"__type": "UnknownOperationException", "message": f"unknown operation {target}"}
        if not self.quota.take():
            with self.lock:
                self.throttled += 1
            return 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}
        time.sleep(self.latency_s)
        data = base64.b64decode(body["Image"]["Bytes"])
        name = self.names.get(hashlib.sha1(data).hexdigest(), "?")
        with self.lock:
            self.seen.append(name)
        if name in self.birds:
            labels = [{"Name": "Robin", "Confidence": 97.5, "Instances": [{"BoundingBox": {"Width": 0.4, "Height": 0.5,
                       "Left": 0.1, "Top": 0.2}, "Confidence": 96.0}], "Parents": [{"Name": "Bird"}, {"Name": "Animal"}],
                       "Aliases": [], "Categories": [{"Name": "Animals and Pets"}]}]
        else:
            labels = [{"Name": "Rock", "Confidence": 92.0, "Instances": [], "Parents": [], "Aliases": [],
                       "Categories": [{"Name": "Nature and Outdoors"}]}]
        return 200, {"Labels": labels, "LabelModelVersion": "3.0"}


def serve(endpoint: Endpoint) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            status, payload = endpoint.answer(self.headers.get("X-Amz-Target", ""), body)
            out = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("x-amzn-RequestId", hashlib.md5(out).hexdigest())
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            return None

    class Server(ThreadingHTTPServer):
        request_queue_size = 256  # many clients connect at once (the default backlog of 5 resets them)

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def make_images(folder: Path, n: int, endpoint: Endpoint) -> list[str]:
    """n small JPEGs (<folder>-000000.jpg ...) in scan order, distinct from every other folder's."""
    import io

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    base = len(endpoint.names)
    for i in range(n):
        k = base + i
        img = Image.new("RGB", (96, 64), ((k * 37) % 256, (k * 11) % 256, (k // 256) % 256))
        img.putpixel((k % 96, (k // 96) % 64), (255, 255, 255))
        img.putpixel((95 - k % 96, 63 - (k // 96) % 64), (0, 0, 0))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        name = f"{folder.name}-{i:06d}.jpg"
        if hashlib.sha1(buf.getvalue()).hexdigest() in endpoint.names:
            raise SystemExit(f"two benchmark images came out the same ({name})")
        (folder / name).write_bytes(buf.getvalue())
        endpoint.names[hashlib.sha1(buf.getvalue()).hexdigest()] = name
        names.append(name)
    return names


def run_job(ws: Any, *, source: Path, dest: Path, name: str, rate: float, in_flight: int,
            stop_after_misses: int | None = None) -> tuple[float, dict[str, Any]]:
    from services.core import jobs, ratelimit
    from services.core.config import set_setting
    from services.dataset_filter.job import validate_params

    ratelimit._SHARED.clear()  # each run starts with its own limiter (a fresh process would)
    db = ws.db()
    set_setting(db, key="rekognition_requests_per_second", value=rate, actor="bench")
    set_setting(db, key="rekognition_in_flight", value=in_flight, actor="bench")
    params = validate_params(db, {"source": str(source), "destination": str(dest), "labels": ["bird"], "name": name,
                                  "detector": "rekognition", "threshold": 0.8, "band_low": 0.8,
                                  "stop_after_misses": stop_after_misses})
    job_id = jobs.create_job(db, kind="filter", params=params, actor="bench")
    t0 = time.perf_counter()
    jobs.run_job(ws, job_id=job_id)
    seconds = time.perf_counter() - t0
    job = jobs.get_job(db, job_id)
    job["outcomes"] = dict(db.execute("SELECT outcome, COUNT(*) FROM filter_results WHERE job_id = ? GROUP BY outcome",
                                      [job_id]).fetchall())
    db.close()
    return seconds, job


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer images (a minute or so)")
    ap.add_argument("--images", type=int, default=None, help="images per run at quota (default 2000, quick 400)")
    ap.add_argument("--latency-ms", type=float, default=200.0)
    ap.add_argument("--quota", type=float, default=50.0, help="the account's DetectLabels requests a second")
    ap.add_argument("--in-flight", type=int, default=16)
    args = ap.parse_args()
    n = args.images or (400 if args.quick else 2000)
    n_seq = 20 if args.quick else 50

    for key, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"), ("AWS_SESSION_TOKEN", "")):
        os.environ[key] = value
    os.environ.setdefault("REVIEW_CONSOLE_WORKER", "off")
    from services.core.config import Workspace, set_setting
    from services.worker import kinds

    kinds.install()
    endpoint = Endpoint(latency_s=args.latency_ms / 1000, quota=args.quota)
    server = serve(endpoint)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-cloud-") as tmp:
        ws = Workspace.open(Path(tmp) / "ws")
        db = ws.db()
        set_setting(db, key="rekognition_endpoint_url", value=url, actor="bench")
        set_setting(db, key="rekognition_region", value="us-east-1", actor="bench")
        db.close()
        src, seq_src, stop_src = ws.root / "src", ws.root / "seq", ws.root / "stop"
        names = make_images(src, n, endpoint)
        endpoint.birds = {nm for i, nm in enumerate(names) if i % 10 == 3}
        seq_names = make_images(seq_src, n_seq, endpoint)
        endpoint.birds |= {nm for i, nm in enumerate(seq_names) if i % 10 == 3}
        stop_names = make_images(stop_src, min(n, 400), endpoint)  # birds only in the first 20
        endpoint.birds |= {nm for i, nm in enumerate(stop_names) if i < 20 and i % 10 == 3}  # birds: 3 and 13 only
        stop_at = 13 + 100  # the 100th miss in a row after the last bird: the scan stops on it

        runs = [("sequential (before)", seq_src, args.quota, 1, None, n_seq),
                ("at quota", src, args.quota, args.in_flight, None, n),
                ("early stop", stop_src, args.quota, args.in_flight, 100, stop_at + 1),
                ("above quota (2x)", src, 2 * args.quota, args.in_flight, None, n)]
        for i, (what, source, rate, flight, stop, expect) in enumerate(runs):
            endpoint.reset(quota=args.quota)
            seconds, job = run_job(ws, source=source, dest=ws.root / "out", name=f"run{i}", rate=rate,
                                   in_flight=flight, stop_after_misses=stop)
            result = job["result"] or {}
            scanned = sum(job["outcomes"].values())
            wasted = None
            if stop:
                time.sleep(1.0)  # anything still under way arrives (the job already waited for its requests)
                wasted = sum(1 for nm in endpoint.seen if nm in stop_names and stop_names.index(nm) > stop_at)
            row = {"run": what, "rate_limit": rate, "in_flight": flight, "images": scanned, "seconds": round(seconds, 2),
                   "images_per_s": round(scanned / seconds, 1), "throttles": endpoint.throttled,
                   "job_state": job["state"], "job_failures": int(job["state"] != "done") + job["outcomes"].get("failed", 0),
                   "sent_past_stop": result.get("sent_past_stop"), "wasted_seen_by_endpoint": wasted,
                   "kept": job["outcomes"].get("kept", 0), "expected_images": expect}
            rows.append(row)
            print(f"{what:>20}: {scanned} images in {seconds:.1f} s = {row['images_per_s']} img/s, "
                  f"{row['throttles']} throttled, state {job['state']}"
                  + (f", {wasted} requests past the stop (job says {row['sent_past_stop']})" if stop else ""),
                  flush=True)
            if job["state"] != "done":
                print(f"   error: {job['error']}", flush=True)
    server.shutdown()
    print()
    print(f"latency {args.latency_ms:.0f} ms, quota {args.quota:g} requests/s (token bucket, burst {max(1.0, args.quota / 5):g})")
    print("| run | rate limit | in flight | images | images/s | throttles | job failures | wasted past stop |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        wasted = "" if r["wasted_seen_by_endpoint"] is None else str(r["wasted_seen_by_endpoint"])
        print(f"| {r['run']} | {r['rate_limit']:g}/s | {r['in_flight']} | {r['images']} | {r['images_per_s']} | "
              f"{r['throttles']} | {r['job_failures']} | {wasted} |")
    main_row = rows[1]
    summary = {"latency_ms": args.latency_ms, "in_flight": main_row["in_flight"], "rate_limit": main_row["rate_limit"],
               "quota": args.quota, "images_per_s": main_row["images_per_s"],
               "ratio_to_limit": round(main_row["images_per_s"] / args.quota, 3),
               "throttles": sum(r["throttles"] for r in rows), "job_failures": sum(r["job_failures"] for r in rows),
               "wasted_past_stop": rows[2]["wasted_seen_by_endpoint"], "sent_past_stop": rows[2]["sent_past_stop"],
               "runs": rows, "quick": args.quick}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
