"""Dataset filtering: the ``filter`` job kind keeps only the images of a source that show a wanted label.

A job scans a source (a local folder or ``s3://bucket/prefix``) in a stable order (S3 key order, which
the local walk follows too), at most ``scan_cap`` images, and runs a label detector on each image
(``services.dataset_filter.label_detectors``: the offline models, i.e. the ImageNet classifier with the person
detectors and a COCO object detector for the everyday labels, or Rekognition DetectLabels). For each
image, the best evidence among the wanted labels decides its outcome:

- ``kept``: confidence >= ``threshold``; the image is copied to ``destination/<name>/<key relative to
  the source>`` (server-side ``copy_object`` when source and destination are both on the S3 endpoint).
- ``band``: ``band_low`` <= confidence < ``threshold``; a yes/no check (``filter_checks``, status open)
  asks a person, and a yes copies it (``services.dataset_filter.checks``).
- ``rejected``: below the band. A rejection is a *miss*: after ``stop_after_misses`` misses in a row
  (in scan order; a kept or band image resets the count, failed and skipped images do neither) the
  scan stops early. The order of the outcomes never depends on the batch size.
- ``failed``: the image could not be read (access denied, gone), decoded, or taken by the detector
  (too large, bad format), or its copy failed; the reason is recorded and the job goes on. A detector
  service refusing the caller itself (``ExternalServiceError``: no permission, bad credentials,
  throttled past every retry) stops the job with that message instead; resume it once fixed.
- ``skipped``: an object that is not an image by its extension.

A paid detector (Rekognition) is called for up to its ``in_flight`` images at once, within the account's rate
(``services.core.ratelimit``): a look-ahead starts requests in scan order as images are loaded, across
batches, while ``compute`` takes the answers in scan order, so outcomes, misses and the early stop are
exactly those of one request at a time. An early stop starts no new request; those already started past the
stop (at most ``in_flight - 1``) are counted in the result as ``sent_past_stop``. Server-side copies go
through a limiter of their own (``s3_copy_requests_per_second``, ``s3_copy_in_flight``).

Every scanned object gets one ``filter_results`` row, written with its job item in the batch
transaction, so a job killed halfway resumes where it stopped: nothing is scanned twice and nothing
is copied twice (a copy goes to a fixed key, and is made only for an image whose row is not committed).
At the end the job writes ``manifest.jsonl`` (Ground Truth image classification, plus bounding boxes
when the detector gave them) and ``report.csv`` (every scanned object) to ``destination/<name>/``.
Its result says what the threshold means for each label (``calibration.threshold_meaning``) and, when
nothing was kept, why: the best confidences seen per label and the thresholds that would have kept some
(``outputs.why_nothing_kept``).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from services.core import jobs, ratelimit
from services.core.authz import require
from services.core.clock import now_iso
from services.core.config import get_settings
from services.core.errors import ConsoleError, ExternalServiceError, InvalidInput
from services.core.storage import ObjectStore, is_s3
from services.dataset_filter.calibration import threshold_meaning
from services.dataset_filter.outputs import copy_image, misses_in_a_row, progress, why_nothing_kept, write_outputs
from services.dataset_filter.params import (
    DETECTORS,
    IMAGE_SUFFIXES,
    KIND,
    destination_for,
    listing,
    output_root,
    store_for,
    validate_params,
)

IO_THREADS = 4
DRY_RUN_LIST_LIMIT = 200  # URIs kept in a dry-run job's result (the full list: dry_run())





# --------------------------------------------------------------------------------------------------
# the job kind


@dataclass
class Loaded:
    items: list[str]
    data: dict[str, bytes] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # the object could not be read


@dataclass
class Row:
    uri: str
    seq: int
    outcome: str
    label: str | None = None
    confidence: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    copied_to: str | None = None


def _detection_dict(det: Any) -> dict[str, Any]:
    return {
        "confidence": round(float(det.confidence), 6),
        "matched": list(getattr(det, "matched", None) or [])[:20],
        "boxes": list(getattr(det, "boxes", None) or []),
    }


class FilterKind(jobs.BaseKind):
    name = KIND
    batch_size = 32

    # ---- set-up
    def start(self, ctx: jobs.JobContext) -> None:
        settings = get_settings(ctx.db)
        params = ctx.params
        ctx.state.update(
            settings=settings,
            store=store_for(ctx.db),
            pool=ThreadPoolExecutor(IO_THREADS, thread_name_prefix=f"job{ctx.job_id}-io"),
            started=time.monotonic(),
            scanned_this_run=0,
        )
        ctx.state["misses"] = misses_in_a_row(ctx.db, job_id=ctx.job_id)
        limit = params.get("stop_after_misses")
        ctx.state["stopped"] = bool(limit and ctx.state["misses"] >= limit)
        ctx.state["sent_past_stop"] = 0
        if not params.get("dry_run"):
            detector = ctx.state["detector"] = DETECTORS[params["detector"]](ctx.ws, settings, ctx.state["store"])
            if float(getattr(detector, "cost_per_image", 0.0) or 0.0) > 0:  # paid: no request past an early stop
                ctx.state["inputs"] = {}
                ahead = ctx.state["ahead"] = ratelimit.Lookahead(
                    lambda uri: self._detect_one(ctx, uri, ctx.state["inputs"][uri]),
                    window=max(1, int(getattr(detector, "in_flight", 1) or 1)), name=f"job{ctx.job_id}-detect")
                sent: set[str] = ctx.state.setdefault("sent_not_taken", set())  # at most the window's images
                if hasattr(detector, "stop_sending"):
                    detector.stop_sending = ahead.stopped  # past a stop, what is not sent yet is never sent
                    detector.on_send = sent.add
            copies = int(settings.get("s3_copy_in_flight") or IO_THREADS)
            ctx.state["copy_limiter"] = ratelimit.shared(
                "s3-copy", rate=float(settings.get("s3_copy_requests_per_second") or 200.0), in_flight=copies)
            ctx.state["copy_pool"] = ThreadPoolExecutor(copies, thread_name_prefix=f"job{ctx.job_id}-copy")

    def list_items(self, ctx: jobs.JobContext) -> list[str]:
        params = ctx.params
        objects = [(o.uri, image) for o, image in listing(ctx.state["store"], params["source"], cap=params["scan_cap"])]
        if params.get("dry_run"):
            images = [u for u, image in objects if image]
            ctx.state["dry_run"] = {"dry_run": True, "would_scan": len(images), "non_images": len(objects) - len(images),
                                    "output": output_root(params), "first": images[:DRY_RUN_LIST_LIMIT]}
            return []
        if not any(image for _, image in objects):
            raise InvalidInput(f"the source {params['source']} holds no images: nothing to scan")
        ctx.state["order"] = {u: i for i, (u, _) in enumerate(objects)}
        return [u for u, _ in objects]

    def _order(self, ctx: jobs.JobContext) -> dict[str, int]:
        if "order" not in ctx.state:
            rows = ctx.db.execute("SELECT item FROM job_items WHERE job_id = ? ORDER BY rowid", [ctx.job_id])
            ctx.state["order"] = {r[0]: i for i, r in enumerate(rows)}
        return ctx.state["order"]

    # ---- I/O (loader thread: no ctx.db)
    def load(self, ctx: jobs.JobContext, items: list[str]) -> Loaded:
        out = Loaded(items=items)
        if ctx.state.get("stopped"):
            return out
        store: ObjectStore = ctx.state["store"]

        def one(uri: str) -> None:
            if not uri.lower().endswith(IMAGE_SUFFIXES):
                return
            try:
                out.data[uri] = store.read(uri)
            except ConsoleError as exc:
                out.errors[uri] = f"cannot read {uri}: {exc}"

        list(ctx.state["pool"].map(one, items))
        ahead = ctx.state.get("ahead")
        if ahead is not None and not ctx.state.get("stopped"):  # requests start now, in scan order
            readable = [u for u in items if u in out.data]
            ctx.state["inputs"].update((u, out.data[u]) for u in readable)
            ahead.submit(readable)
        return out

    # ---- detection and copies (worker thread; reads only)
    def _detect_batch(self, ctx: jobs.JobContext, uris: list[str], loaded: Loaded) -> dict[str, Any]:
        """Detections (or each image's ConsoleError) for the whole batch at once, when the detector has a batch
        API and is free; else {} and ``compute`` calls it one image at a time, so an early stop saves calls."""
        detector = ctx.state["detector"]
        many = getattr(detector, "detect_many", None)
        if not callable(many) or not uris or float(getattr(detector, "cost_per_image", 0.0) or 0.0) > 0:
            return {}
        return dict(zip(uris, many([loaded.data[u] for u in uris], wanted=ctx.params["labels"]), strict=True))

    def _detect_one(self, ctx: jobs.JobContext, uri: str, data: bytes) -> Any:
        return ctx.state["detector"].detect(data=data, uri=uri, wanted=ctx.params["labels"])

    def _decide(self, ctx: jobs.JobContext, row: Row, found: dict[str, Any]) -> None:
        params = ctx.params
        detections = {name: det for name, det in (found or {}).items() if name in params["labels"]}
        if detections:
            best_name, best = max(detections.items(), key=lambda kv: (float(kv[1].confidence), -params["labels"].index(kv[0])))
            row.label, row.confidence = best_name, float(best.confidence)
        else:
            row.label, row.confidence = params["labels"][0], 0.0
        size = next((getattr(d, "image_size", None) for d in detections.values() if getattr(d, "image_size", None)), None)
        row.detail = {"detections": {n: _detection_dict(d) for n, d in detections.items()}}
        if size:
            row.detail["image_size"] = list(size)
        if row.confidence >= params["threshold"]:
            row.outcome = "kept"
        elif row.confidence >= params["band_low"] and params["band_low"] < params["threshold"]:
            row.outcome = "band"
        else:
            row.outcome = "rejected"

    def compute(self, ctx: jobs.JobContext, loaded: Loaded) -> list[Row]:
        order = self._order(ctx)
        params, state = ctx.params, ctx.state
        limit = params.get("stop_after_misses")
        readable = [u for u in loaded.items if u in loaded.data]
        ahead: ratelimit.Lookahead[str, Any] | None = state.get("ahead")
        batch = {} if state["stopped"] or ahead is not None else self._detect_batch(ctx, readable, loaded)
        rows: list[Row] = []
        for uri in sorted(loaded.items, key=lambda u: order.get(u, 0)):
            if state["stopped"]:
                break  # early stop: the rest is not scanned (its job items just close)
            row = Row(uri=uri, seq=order.get(uri, 0), outcome="failed")
            if not uri.lower().endswith(IMAGE_SUFFIXES):
                row.outcome, row.detail = "skipped", {"error": "not an image (by its extension)"}
            elif uri in loaded.errors:
                row.detail = {"error": loaded.errors[uri]}
            elif uri not in loaded.data:
                continue  # read after the stop flag went up on the loader thread: not scanned
            else:
                try:
                    if ahead is not None:
                        found = self._take(ctx, ahead, uri)
                    else:
                        found = batch[uri] if uri in batch else self._detect_one(ctx, uri, loaded.data[uri])
                    if isinstance(found, ConsoleError):
                        raise found
                    self._decide(ctx, row, found)
                except ExternalServiceError:
                    raise  # the service refuses every image (access, credentials, throttling): stop; resume later
                except ConsoleError as exc:  # this image: not decodable, too large, unreadable
                    row.outcome, row.detail = "failed", {"error": f"{uri}: {exc}"}
                finally:
                    if ahead is not None:
                        self._done_with(ctx, ahead, row, limit)
            rows.append(row)
            if row.outcome == "skipped":
                continue
            state["scanned_this_run"] += 1
            if row.outcome == "failed":
                continue  # neither a miss nor a match: the count of misses in a row goes on past it
            state["misses"] = state["misses"] + 1 if row.outcome == "rejected" else 0
            if limit and state["misses"] >= limit:
                state["stopped"] = True
        self._copy(ctx, [r for r in rows if r.outcome == "kept"], loaded)
        return rows

    @staticmethod
    def _take(ctx: jobs.JobContext, ahead: ratelimit.Lookahead[str, Any], uri: str) -> Any:
        """The detector's answer for ``uri`` from the look-ahead (its input is dropped once answered)."""
        try:
            return ahead.take(uri)
        finally:
            ctx.state["inputs"].pop(uri, None)
            ctx.state["sent_not_taken"].discard(uri)

    @staticmethod
    def _done_with(ctx: jobs.JobContext, ahead: ratelimit.Lookahead[str, Any], row: Row, limit: int | None) -> None:
        """Free the image's place in the look-ahead; when this image makes the scan stop, stop the look-ahead
        first, so that no new request starts (those sent before are counted at the end)."""
        state = ctx.state
        if limit and row.outcome == "rejected" and state["misses"] + 1 >= limit:
            ahead.stop()
        ahead.release()

    def _copy(self, ctx: jobs.JobContext, rows: list[Row], loaded: Loaded) -> None:
        store: ObjectStore = ctx.state["store"]
        limiter = ctx.state.get("copy_limiter")

        def one(row: Row) -> None:
            try:
                dst = destination_for(ctx.params, row.uri)
                server_side = {"limiter": limiter} if is_s3(row.uri) and is_s3(dst) else {}  # the quota's for S3
                copy_image(store, row.uri, dst, loaded.data.get(row.uri), **server_side)
                row.copied_to = dst
            except ConsoleError as exc:
                row.outcome = "failed"
                row.detail["error"] = f"shows {row.label} ({row.confidence:.2f}) but the copy failed: {exc}"

        list(ctx.state.get("copy_pool", ctx.state["pool"]).map(one, rows))

    # ---- the batch transaction
    def write(self, ctx: jobs.JobContext, computed: list[Row]) -> dict[str, str | None]:
        now = now_iso()
        outcome: dict[str, str | None] = {}
        for row in computed:
            cur = ctx.db.execute(
                "INSERT OR IGNORE INTO filter_results (job_id, uri, seq, label, confidence, outcome, detail, copied_to, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [ctx.job_id, row.uri, row.seq, row.label, row.confidence, row.outcome, json.dumps(row.detail),
                 row.copied_to, now],
            )
            if cur.rowcount and row.outcome == "band":
                ctx.db.execute(
                    "INSERT OR IGNORE INTO filter_checks (job_id, uri, label, confidence, status) VALUES (?, ?, ?, ?, 'open')",
                    [ctx.job_id, row.uri, row.label, row.confidence],
                )
            outcome[row.uri] = row.detail.get("error") if row.outcome == "failed" else None
        elapsed = max(time.monotonic() - ctx.state["started"], 1e-6)
        live = {"progress": {"rate": round(ctx.state["scanned_this_run"] / elapsed, 2),
                             "misses_in_a_row": ctx.state["misses"], "stopped_early": ctx.state["stopped"],
                             **self._requests(ctx)}}
        ctx.db.execute("UPDATE jobs SET result = ? WHERE id = ?", [json.dumps(live), ctx.job_id])
        return outcome

    def finish(self, ctx: jobs.JobContext) -> dict[str, Any]:
        if ctx.params.get("dry_run"):
            return ctx.state.get("dry_run") or {"dry_run": True, "would_scan": 0}
        ahead = ctx.state.get("ahead")
        if ahead is not None:  # the requests still out come back (or are never sent) before they are counted
            ahead.close(wait=True)
            ctx.state["sent_past_stop"] = len(ctx.state["sent_not_taken"])
        outputs = write_outputs(ctx.db, job_id=ctx.job_id, store=ctx.state["store"])
        summary = progress(ctx.db, job_id=ctx.job_id)
        elapsed = max(time.monotonic() - ctx.state["started"], 1e-6)
        summary.update(rate=round(ctx.state["scanned_this_run"] / elapsed, 2), state="done")
        meaning = [threshold_meaning(label, threshold=ctx.params["threshold"], detector=ctx.params["detector"])
                   for label in ctx.params["labels"]]
        result = {**summary, "progress": {"rate": summary["rate"]}, **outputs, "output": output_root(ctx.params),
                  "threshold_meaning": meaning, **self._requests(ctx)}
        why = why_nothing_kept(ctx.db, job_id=ctx.job_id)
        if why is not None:
            result["nothing_kept"] = why
        return result

    @staticmethod
    def _requests(ctx: jobs.JobContext) -> dict[str, Any]:
        """This run's detector requests: {"requests", "throttles", "sent_past_stop"} (empty for a free one)."""
        detector = ctx.state.get("detector")
        if float(getattr(detector, "cost_per_image", 0.0) or 0.0) <= 0:
            return {}
        past = len(ctx.state.get("sent_not_taken") or ()) if ctx.state.get("stopped") else 0
        return {"requests": int(getattr(detector, "calls", 0)), "throttles": int(getattr(detector, "throttles", 0)),
                "sent_past_stop": max(past, int(ctx.state.get("sent_past_stop", 0)))}

    def close(self, ctx: jobs.JobContext) -> None:
        ahead = ctx.state.pop("ahead", None)
        if ahead is not None:  # nothing more is sent, and the requests under way end before the run does: a job
            ahead.close(wait=True)  # resumed at once must not see its last run's requests still arriving
        for key in ("pool", "copy_pool"):
            pool = ctx.state.pop(key, None)
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        detector = ctx.state.pop("detector", None)
        closer = getattr(detector, "close", None)
        if callable(closer):
            closer()




def launch(db: sqlite_utils.Database, params: dict[str, Any], *, actor: str,
           store: ObjectStore | None = None) -> int:
    """Validate and queue a filter job; returns its id. Raises InvalidInput (see validate_params)."""
    require(db, actor=actor, action="jobs.manage")
    return jobs.create_job(db, kind=KIND, params=validate_params(db, params, store=store), actor=actor)
