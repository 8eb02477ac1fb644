"""Re-scoring the human queue when another model version becomes active.

Photos waiting in the queue because no model existed yet, or because the model was unsure, are scored again
by the active version from their stored embeddings (no photo is read again; a fine-tuned version, which
scores photos rather than embeddings, reads each one again). Each gets a prediction carrying
that version; those now at or above their class threshold are decided automatically (an audit share stays
queued, as in classification), the rest stay queued with the new suggestion. Photos someone holds, has
answered, or that are gold or audits are left alone. The worker's housekeeping queues one job per version.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import sqlite_utils

from services.core import jobs
from services.core.clock import now_iso
from services.core.config import get_settings, object_store
from services.core.errors import ConsoleError
from services.models.features import CUE_NAMES, CUES_SIDE, FeatureExtractor
from services.models.registry import active_version, load_head
from services.reviews.decisions import audit_rate_of, decide, route
from services.reviews.queue_value import rank_in_queue

KIND = "rescore"
ACTOR = "system:rescore"

ELIGIBLE_SQL = (  # a lease that ran out holds nothing (its row stays until the photo is claimed again), nor does an
    # answer taken back with undo
    "SELECT i.id FROM images i WHERE i.status = 'queued' AND i.queue_reason IN ('no_model', 'low_confidence') "
    "AND i.decision_id IS NULL AND NOT EXISTS (SELECT 1 FROM queue_claims c WHERE c.image_id = i.id "
    "AND c.lease_expires >= (julianday('now') - 2440587.5) * 86400.0) "
    "AND NOT EXISTS (SELECT 1 FROM active_answers a WHERE a.image_id = i.id) "
    "AND NOT EXISTS (SELECT 1 FROM gold_items g WHERE g.image_id = i.id)"
)
# not yet scored by the version since it became active (params: version id, activated_at)
NOT_SCORED_SQL = (" AND NOT EXISTS (SELECT 1 FROM predictions p WHERE p.image_id = i.id AND p.model_version_id = ? "
                  "AND p.created_at >= ?)")


def queue_if_needed(db: sqlite_utils.Database) -> int | None:
    """Queue a re-scoring job for the active version when a queued photo waits for it: none ran for the version
    since it last became active (a version activated again, as in a roll back, re-scores again), or a photo that
    was held, answered and taken back, or otherwise passed over by the last one has no prediction of it yet (an
    item the last job already tried, e.g. an unreadable photo, is not tried again). Returns the job's id, or None."""
    version = active_version(db)
    if version is None:
        return None
    since = version.get("activated_at") or ""
    done = [r[0] for r in db.execute("SELECT id FROM jobs WHERE kind = ? AND json_extract(params, '$.version_id') = ? "
                                     "AND created_at >= ?", [KIND, version["id"], since])]
    if done and jobs.active_job(db, kind=KIND) is not None:
        return None
    tried = (f" AND NOT EXISTS (SELECT 1 FROM job_items t WHERE t.job_id IN ({','.join('?' * len(done))}) "
             "AND t.item = CAST(i.id AS TEXT))") if done else ""
    if not db.execute(ELIGIBLE_SQL + NOT_SCORED_SQL + tried + " LIMIT 1", [version["id"], since, *done]).fetchone():
        return None
    return jobs.create_job(db, kind=KIND, params={"version_id": version["id"]}, actor=ACTOR)


class RescoreKind(jobs.BaseKind):
    name = KIND
    batch_size = 256

    def start(self, ctx: jobs.JobContext) -> None:
        version = active_version(ctx.db)
        if version is None or version["id"] != ctx.params.get("version_id"):
            ctx.state["version"] = None  # another version became active meanwhile: its own job re-scores
            return
        ctx.state.update(version=version, head=load_head(version, models_dir=ctx.ws.models_dir),
                         settings=get_settings(ctx.db))

    def list_items(self, ctx: jobs.JobContext) -> list[str]:
        if ctx.state["version"] is None:
            return []
        version = ctx.state["version"]
        return [str(r[0]) for r in ctx.db.execute(ELIGIBLE_SQL + NOT_SCORED_SQL + " ORDER BY i.id",
                                                  [version["id"], version.get("activated_at") or ""])]

    def compute(self, ctx: jobs.JobContext, items: list[str]) -> dict[str, Any]:
        ids = [int(i) for i in items]
        marks = ",".join("?" * len(ids))
        if getattr(ctx.state["head"], "kind", None) == "finetune":
            return self._score_photos(ctx, ids)
        rows = ctx.db.execute(
            f"SELECT i.id, i.sha256, e.vector, e.cues FROM images i JOIN embeddings e ON e.sha256 = i.sha256 "
            f"AND e.backbone = ? WHERE i.id IN ({marks})", [FeatureExtractor.backbone, *ids]).fetchall()
        if not rows:
            return {"rows": [], "proba": np.zeros((0, 0)), "missing": set(ids)}
        emb = np.stack([np.frombuffer(r[2], dtype=np.float32) for r in rows])
        stored = [np.array(json.loads(r[3]), dtype=np.float32) if r[3] else None for r in rows]
        lacking: set[int] = set()
        need = ctx.state["head"].cue_dims()

        def cues_for(idx: np.ndarray) -> np.ndarray:  # face cues were stored when classification needed them
            out = []
            for i in idx:
                if stored[int(i)] is None or len(stored[int(i)]) < need:  # never computed, or before body cues
                    lacking.add(int(i))
                    out.append(np.zeros(len(CUE_NAMES), np.float32))
                else:
                    out.append(np.pad(stored[int(i)], (0, max(0, len(CUE_NAMES) - len(stored[int(i)])))))
            return np.stack(out)

        proba = ctx.state["head"].predict_proba(emb, cues_for)
        found, errors = self._cues_from_photos(ctx, [rows[n][0] for n in sorted(lacking)])
        if found:  # photos queued before any model had no cues stored: read them once, score them with cues
            by_row = {n: found[rows[n][0]] for n in lacking if rows[n][0] in found}
            again = np.array(sorted(by_row), dtype=int)
            proba[again] = ctx.state["head"].predict_proba(
                emb[again], lambda idx: np.stack([by_row[int(again[i])] for i in idx]))
            lacking -= set(by_row)
        return {"rows": rows, "proba": proba, "lacking": lacking, "missing": set(ids) - {r[0] for r in rows},
                "cues": {rows[n][1]: c for n, c in ((n, found.get(rows[n][0])) for n in range(len(rows))) if c is not None},
                "errors": errors}

    def _cues_from_photos(self, ctx: jobs.JobContext, ids: list[int]) -> tuple[dict[int, np.ndarray], dict[int, str]]:
        """Person cues of photos whose embedding was stored without them (classified while no model existed, or
        before body cues): ({image id: cues}, {image id: why not}). A photo that cannot be read stays queued."""
        if not ids:
            return {}, {}
        store, max_pixels = object_store(ctx.db), ctx.state["settings"]["max_pixels"]
        pictures, errors = {}, {}
        marks = ",".join("?" * len(ids))
        for image_id, uri in ctx.db.execute(f"SELECT id, uri FROM images WHERE id IN ({marks})", ids).fetchall():
            try:
                pictures[image_id] = FeatureExtractor.decode(store.read(uri), max_pixels=max_pixels, side=CUES_SIDE)
            except ConsoleError as exc:
                errors[image_id] = f"{exc} (its person cues could not be computed: left in the queue as it was)"
        if not pictures:
            return {}, errors
        cues = FeatureExtractor.shared(ctx.ws.models_dir).cues(list(pictures.values()))
        return dict(zip(pictures, cues)), errors

    def _score_photos(self, ctx: jobs.JobContext, ids: list[int]) -> dict[str, Any]:
        """A fine-tuned version scores photos, not stored embeddings: read and run each one again."""
        store, max_pixels = object_store(ctx.db), ctx.state["settings"]["max_pixels"]
        rows, inputs, errors = [], [], {}
        marks = ",".join("?" * len(ids))
        for image_id, uri, sha in ctx.db.execute(f"SELECT id, uri, sha256 FROM images WHERE id IN ({marks})", ids):
            try:
                inputs.append(FeatureExtractor.prepare(FeatureExtractor.decode(store.read(uri), max_pixels=max_pixels)))
                rows.append((image_id, sha, None, None))
            except ConsoleError as exc:
                errors[image_id] = f"{exc} (left in the queue as it was)"
        _, proba = ctx.state["head"].run(np.stack(inputs)) if inputs else (None, np.zeros((0, 0)))
        return {"rows": rows, "proba": proba, "lacking": set(), "missing": set(), "errors": errors}

    def write(self, ctx: jobs.JobContext, computed: dict[str, Any]) -> dict[str, str | None]:
        db, head, version, settings = ctx.db, ctx.state["head"], ctx.state["version"], ctx.state["settings"]
        outcome: dict[str, str | None] = {str(i): "no stored embedding: it is scored when classified again"
                                          for i in computed["missing"]}
        outcome.update({str(i): reason for i, reason in computed.get("errors", {}).items()})
        now = now_iso()
        for sha, cue in computed.get("cues", {}).items():  # computed now: kept, so the next version reads them
            db.execute("UPDATE embeddings SET cues = ? WHERE sha256 = ? AND backbone = ?",
                       [json.dumps(cue.tolist()), sha, FeatureExtractor.backbone])
        for n, (image_id, sha, _, _) in enumerate(computed["rows"]):
            if n in computed["lacking"]:  # its photo could not be read for the cues: the reason is in errors
                outcome.setdefault(str(image_id), None)
                continue
            still = db.execute(ELIGIBLE_SQL + " AND i.id = ?", [image_id]).fetchone()
            if still is None:  # claimed, answered or decided meanwhile
                outcome[str(image_id)] = None
                continue
            p = computed["proba"][n]
            k = int(np.argmax(p))
            label, confidence = head.classes[k], float(p[k])
            pred = db.execute("INSERT INTO predictions (image_id, model_version_id, label, confidence, probabilities, "
                              "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                              [image_id, version["id"], label, confidence,
                               json.dumps(dict(zip(head.classes, map(float, p)))), now]).lastrowid
            r = route(label=label, confidence=confidence, thresholds=settings["thresholds"],
                      audit_rate=audit_rate_of(settings, label), sha256=sha)
            if r.automatic:
                decide(db, image_id=image_id, label=label, actor=f"model:{version['name']}", source="auto",
                       prediction_id=pred, note=f"re-scored by a newer model: {r.reason}", settings=settings,
                       keep_queued=r.audit)
                if r.audit:
                    db.execute("UPDATE images SET queue_reason = 'audit' WHERE id = ?", [image_id])
            else:
                rank = rank_in_queue(db, image_id=image_id, probabilities=p, hours=settings["queue_value_hours"])
                db.execute("UPDATE images SET queue_reason = 'low_confidence', queue_rank = ? WHERE id = ?", [rank, image_id])
            outcome[str(image_id)] = None
        return outcome

    def finish(self, ctx: jobs.JobContext) -> dict[str, Any]:
        version = ctx.state["version"]
        if version is None:
            return {"skipped": "another model version became active; its own job re-scores the queue"}
        decided = ctx.db.execute("SELECT COUNT(*) FROM decisions d JOIN predictions p ON p.id = d.prediction_id "
                                 "WHERE p.model_version_id = ? AND d.reason LIKE 're-scored%'", [version["id"]]).fetchone()[0]
        return {"model_version": version["name"], "decided_automatically": decided,
                "still_queued": ctx.db.execute("SELECT COUNT(*) FROM images WHERE status = 'queued'").fetchone()[0]}
