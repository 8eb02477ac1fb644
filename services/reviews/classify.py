"""Batch classification: the ``classify`` job kind.

Per batch: read the photos (threads), decode at reduced size, embed, apply the active head (person
cues only where needed), then in one transaction store embeddings, predictions and routed decisions.
Without a model every photo goes to the human queue. With ``redact_package_labels`` on, a photo whose predicted
class is ``package`` has its shipping labels found (``services.redaction``) and their boxes stored in the same
transaction; a failure there is recorded with the photo and never fails its classification.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlite_utils
from PIL import Image

from services.core import jobs
from services.core.authz import require
from services.core.clock import now_iso
from services.core.config import get_settings, object_store
from services.core.errors import ConsoleError, StorageError
from services.core.storage import ObjectStore
from services.models.features import CUES_SIDE, FeatureExtractor
from services.models.registry import active_version, load_head
from services.redaction.labels import LabelBox, find_labels_in_photo
from services.redaction.store import save_found
from services.reuse.near_copies import perceptual_hash
from services.reviews.decisions import audit_rate_of, decide, route
from services.reviews.queue_value import rank_in_queue

IO_THREADS = 4


@dataclass
class Loaded:
    ids: list[int]
    pictures: dict[int, Image.Image] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)  # the photo itself is bad: it fails
    transient: dict[int, str] = field(default_factory=dict)  # storage unreachable or refused: retried later
    shas: dict[int, str] = field(default_factory=dict)
    data: dict[int, bytes] = field(default_factory=dict)  # kept to decode larger for face cues, when needed
    prepared: dict[int, np.ndarray] = field(default_factory=dict)  # backbone inputs, made on the I/O threads
    hashes: dict[int, tuple[int, int]] = field(default_factory=dict)  # perceptual hashes, for reused-photo checks


@dataclass
class Computed:
    loaded: Loaded
    embeddings: dict[int, np.ndarray] = field(default_factory=dict)
    cues: dict[int, np.ndarray] = field(default_factory=dict)
    probabilities: dict[int, np.ndarray] = field(default_factory=dict)
    labels: dict[int, tuple[list[LabelBox], str | None]] = field(default_factory=dict)  # package photos: boxes, error


def classify_pictures(
    extractor: FeatureExtractor,
    head: Any,
    pictures: list[Image.Image],
    prepared: list[np.ndarray] | None = None,
    cue_picture: Callable[[int], Image.Image] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]:
    """(embeddings, probabilities, cues by row) for decoded pictures; head may be None (no model), a Head over
    backbone embeddings, or a fine-tuned network (``services.models.finetune_model``), which needs no cues.

    ``prepared``: the pictures' backbone inputs (``FeatureExtractor.prepare``) when already made.
    ``cue_picture(row)``: the row's photo decoded at CUES_SIDE for face cues (default: the picture itself).
    """
    cues: dict[int, np.ndarray] = {}
    if getattr(head, "kind", None) == "finetune":  # one network embeds and scores
        emb, proba = head.run(np.stack(prepared if prepared is not None else [extractor.prepare(p) for p in pictures]))
        return emb, proba, cues
    emb = extractor.embed(pictures, prepared)
    if head is None:
        return emb, np.zeros((len(pictures), 0)), cues

    def cues_for(idx: np.ndarray) -> np.ndarray:
        found = extractor.cues([cue_picture(int(i)) if cue_picture else pictures[i] for i in idx])
        cues.update({int(i): c for i, c in zip(idx, found)})
        return found

    return emb, head.predict_proba(emb, cues_for), cues


def _labels(data: bytes, *, max_pixels: int) -> tuple[list[LabelBox], str | None]:
    """(label boxes, None) for a package photo, or ([], the reason) when they cannot be found."""
    try:
        return find_labels_in_photo(data, max_pixels=max_pixels), None
    except ConsoleError as exc:
        return [], f"shipping labels not searched: {exc}"


def pending_count(db: sqlite_utils.Database, *, actor: str) -> int:
    """How many photos wait for classification (the next classify job's items). Raises PermissionDenied."""
    require(db, actor=actor, action="jobs.manage")
    return int(db.execute("SELECT COUNT(*) FROM images WHERE status = 'pending'").fetchone()[0])


class ClassifyKind(jobs.BaseKind):
    name = "classify"
    batch_size = 32

    def list_items(self, ctx: jobs.JobContext) -> list[str]:
        rows = ctx.db.execute("SELECT id FROM images WHERE status = 'pending' ORDER BY id").fetchall()
        return [str(r[0]) for r in rows]

    def start(self, ctx: jobs.JobContext) -> None:
        settings = get_settings(ctx.db)
        version = active_version(ctx.db)
        ctx.state.update(
            settings=settings,
            version=version,
            head=load_head(version, models_dir=ctx.ws.models_dir) if version else None,
            store=object_store(ctx.db),
            extractor=FeatureExtractor.shared(ctx.ws.models_dir),
            pool=ThreadPoolExecutor(IO_THREADS, thread_name_prefix=f"job{ctx.job_id}-io"),
        )

    def load(self, ctx: jobs.JobContext, items: list[str]) -> Loaded:
        ids = [int(i) for i in items]
        # this runs on the loader thread: it needs a connection of its own
        db = ctx.ws.db()
        try:
            marks = ",".join("?" * len(ids))
            rows = {r[0]: (r[1], r[2]) for r in db.execute(f"SELECT id, uri, sha256 FROM images WHERE id IN ({marks})", ids)}
        finally:
            db.close()
        store: ObjectStore = ctx.state["store"]
        max_pixels = ctx.state["settings"]["max_pixels"]
        out = Loaded(ids=ids)

        def one(image_id: int) -> None:
            if image_id not in rows:
                out.errors[image_id] = "image row no longer exists"
                return
            uri, sha = rows[image_id]
            try:
                data = store.read(uri)
                if sha and hashlib.sha256(data).hexdigest() != sha:
                    out.errors[image_id] = (f"{uri} changed since it was ingested (sha256 differs); "
                                            "import the batch again to take the new photo")
                    return
                picture = FeatureExtractor.decode(data, max_pixels=max_pixels)
            except StorageError as exc:
                out.transient[image_id] = f"{exc} (the photo stays pending; the next classify run retries it)"
                return
            except ConsoleError as exc:
                out.errors[image_id] = str(exc)
                return
            out.prepared[image_id] = FeatureExtractor.prepare(picture)
            out.hashes[image_id] = perceptual_hash(picture)
            out.shas[image_id] = sha
            out.data[image_id] = data
            out.pictures[image_id] = picture

        list(ctx.state["pool"].map(one, ids))
        return out

    def compute(self, ctx: jobs.JobContext, loaded: Loaded) -> Computed:
        done = Computed(loaded=loaded)
        ids = [i for i in loaded.ids if i in loaded.pictures]
        if not ids:
            return done
        max_pixels = ctx.state["settings"]["max_pixels"]
        emb, probs, cues = classify_pictures(
            ctx.state["extractor"], ctx.state["head"], [loaded.pictures[i] for i in ids], [loaded.prepared[i] for i in ids],
            lambda row: FeatureExtractor.decode(loaded.data[ids[row]], max_pixels=max_pixels, side=CUES_SIDE),
        )
        for row, image_id in enumerate(ids):
            done.embeddings[image_id] = emb[row]
            if probs.shape[1]:
                done.probabilities[image_id] = probs[row]
            if row in cues:
                done.cues[image_id] = cues[row]
        if ctx.state["settings"]["redact_package_labels"] and ctx.state["head"] is not None:
            for row, image_id in enumerate(ids):
                if probs.shape[1] and ctx.state["head"].classes[int(np.argmax(probs[row]))] == "package":
                    done.labels[image_id] = _labels(loaded.data[image_id], max_pixels=max_pixels)
        return done

    def write(self, ctx: jobs.JobContext, computed: Computed) -> dict[str, str | None]:
        db, now = ctx.db, now_iso()
        settings, version, head = ctx.state["settings"], ctx.state["version"], ctx.state["head"]
        outcome: dict[str, str | None] = {}
        ids = computed.loaded.ids
        pending = {r[0] for r in db.execute(
            f"SELECT id FROM images WHERE status = 'pending' AND id IN ({','.join('?' * len(ids))})", ids)}
        for image_id in set(ids) - pending:  # classified meanwhile by another job: never twice
            outcome[str(image_id)] = None
        for image_id, error in computed.loaded.transient.items():
            if image_id in pending:
                db.execute("UPDATE images SET error = ? WHERE id = ?", [error, image_id])
                outcome[str(image_id)] = error
        for image_id, error in computed.loaded.errors.items():
            if image_id in pending:
                db.execute("UPDATE images SET status = 'failed', error = ? WHERE id = ?", [error, image_id])
                outcome[str(image_id)] = error
        backbone = ctx.state["extractor"].backbone
        for image_id, vector in computed.embeddings.items():
            if image_id not in pending:
                continue
            sha = computed.loaded.shas[image_id]  # read with the uri in load (and checked against the bytes)
            cue = computed.cues.get(image_id)
            db.execute(
                "INSERT INTO embeddings (sha256, backbone, vector, cues, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(sha256, backbone) DO UPDATE SET cues = COALESCE(excluded.cues, embeddings.cues)",
                [sha, backbone, vector.astype(np.float32).tobytes(), json.dumps(cue.tolist()) if cue is not None else None, now],
            )
            if image_id in computed.labels:
                save_found(db, image_id=image_id, boxes=computed.labels[image_id][0],
                           error=computed.labels[image_id][1], now=now)
            if image_id in computed.loaded.hashes:
                db.execute("INSERT OR IGNORE INTO image_hashes (sha256, phash, phash_mirror) VALUES (?, ?, ?)",
                           [sha, *computed.loaded.hashes[image_id]])
            outcome[str(image_id)] = None
            if head is None:
                db.execute("UPDATE images SET status = 'queued', queue_reason = 'no_model', error = NULL WHERE id = ?", [image_id])
                continue
            p = computed.probabilities[image_id]
            k = int(np.argmax(p))
            label, confidence = head.classes[k], float(p[k])
            cur = db.execute(
                "INSERT INTO predictions (image_id, model_version_id, label, confidence, probabilities, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [image_id, version["id"], label, confidence, json.dumps(dict(zip(head.classes, map(float, p)))), now],
            )
            r = route(
                label=label,
                confidence=confidence,
                thresholds=settings["thresholds"],
                audit_rate=audit_rate_of(settings, label),
                sha256=sha,
            )
            if r.automatic:
                decide(
                    db,
                    image_id=image_id,
                    label=label,
                    actor=f"model:{version['name']}",
                    source="auto",
                    prediction_id=cur.lastrowid,
                    note=r.reason,
                    settings=settings,
                    keep_queued=r.audit,
                )
            if r.audit:
                db.execute("UPDATE images SET status = 'queued', queue_reason = 'audit', error = NULL WHERE id = ?",
                           [image_id])
            elif not r.automatic:
                rank = rank_in_queue(db, image_id=image_id, probabilities=p, hours=settings["queue_value_hours"])
                db.execute("UPDATE images SET status = 'queued', queue_reason = ?, queue_rank = ?, error = NULL "
                           "WHERE id = ?", [r.queue_reason, rank, image_id])
        return outcome

    def close(self, ctx: jobs.JobContext) -> None:
        pool = ctx.state.pop("pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def finish(self, ctx: jobs.JobContext) -> dict[str, Any]:
        counts = dict(ctx.db.execute("SELECT status, COUNT(*) FROM images GROUP BY status").fetchall())
        version = ctx.state.get("version")
        return {"model_version": version["name"] if version else None, "images_by_status": counts}
