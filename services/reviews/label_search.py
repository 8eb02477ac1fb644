"""The ``label_search`` job: shipping labels searched on every photo that should be searched, not only at
classification.

Classification searches a photo's labels when the model calls it a package (``services.reviews.classify``). Photos
it never searched: those queued before any model, those re-scored to package later (``services.reviews.rescore``),
those an inspector or a decision calls a package while the model said otherwise, and photos of a review type whose
credit rule asks for a package. With ``redact_package_labels`` on, this job searches each of them that has no
``label_redactions`` row yet (the row is its resumable state: a photo searched is never searched again). A photo
that cannot be read as a photo (corrupt, truncated, gone) is recorded with its error, so it is skipped after; a
store that cannot be reached fails the item alone and leaves it for the next job. The worker queues the job
(``services.worker.housekeeping``) whenever such photos wait and none is queued or running.
"""

from __future__ import annotations

from typing import Any

import sqlite_utils

from services.core import jobs
from services.core.authz import require
from services.core.config import get_settings, object_store
from services.core.errors import ConsoleError, ImageError, NotFound
from services.redaction.labels import LabelBox, find_labels_in_photo
from services.redaction.store import save_found

KIND = "label_search"
ACTOR = "system:label-search"
JOB_LIMIT = 500  # photos one job searches at most (1.6 s each, 12-13 s for a 12-megapixel photo read closer and
# turned); the worker queues the next

LATEST_PREDICTION = "(SELECT p.label FROM predictions p WHERE p.image_id = i.id ORDER BY p.id DESC LIMIT 1)"


def _package_types(db: sqlite_utils.Database) -> list[str]:
    rules = get_settings(db)["credit_rules"]
    return sorted({"package", *(t for t, rule in rules.items() if "package" in (rule.get("classes") or []))})


def _wanted_sql(db: sqlite_utils.Database) -> tuple[str, list[Any]]:
    """SQL condition on ``i`` (images) and ``r`` (reviews): a photo whose labels should be searched."""
    types = _package_types(db)
    return (f"(i.status NOT IN ('pending', 'failed') AND ({LATEST_PREDICTION} = 'package' "
            f"OR r.review_type IN ({','.join('?' * len(types))}) "
            "OR (SELECT d.label FROM decisions d WHERE d.id = i.decision_id) = 'package' "
            "OR EXISTS (SELECT 1 FROM answers a WHERE a.image_id = i.id AND a.label = 'package')))", types)


def _unsearched(db: sqlite_utils.Database, *, limit: int | None = None) -> list[int]:
    if not get_settings(db)["redact_package_labels"]:
        return []
    where, params = _wanted_sql(db)
    sql = ("SELECT i.id FROM images i JOIN reviews r ON r.id = i.review_id WHERE "
           f"{where} AND NOT EXISTS (SELECT 1 FROM label_redactions lr WHERE lr.image_id = i.id) ORDER BY i.id")
    if limit is not None:
        sql, params = sql + " LIMIT ?", [*params, int(limit)]
    return [int(r[0]) for r in db.execute(sql, params)]


def unsearched_ids(db: sqlite_utils.Database) -> set[int]:
    """The photos that wait for a label search (none while ``redact_package_labels`` is off): they must not be
    published before it. Raises nothing."""
    return set(_unsearched(db))


def unsearched_count(db: sqlite_utils.Database) -> int:
    """How many photos wait for a label search (0 while ``redact_package_labels`` is off). Raises nothing."""
    return len(_unsearched(db))


def queue_if_needed(db: sqlite_utils.Database) -> int | None:
    """The queued or running label-search job's id, a new one when photos wait and none is active, else None.
    Raises nothing of its own."""
    if not _unsearched(db, limit=1):
        return None
    active = jobs.active_job(db, kind=KIND)
    return active if active is not None else jobs.create_job(db, kind=KIND, params={}, actor=ACTOR)


def search_state(db: sqlite_utils.Database, *, image_id: int, actor: str) -> dict[str, Any]:
    """Where a photo's label search stands: ``{"state", "error"}``, state one of ``searched``, ``failed`` (with
    the error), ``pending`` (it will be searched by the next label-search job), ``off`` (it should be searched but
    ``redact_package_labels`` is off) or ``not_wanted`` (nobody calls it a package). Raises PermissionDenied unless
    ``actor`` may see reviews, NotFound for an unknown photo."""
    require(db, actor=actor, action="reviews.read")
    looked = db.execute("SELECT error FROM label_redactions WHERE image_id = ?", [image_id]).fetchone()
    if looked is not None:
        return {"state": "failed" if looked[0] else "searched", "error": looked[0]}
    where, params = _wanted_sql(db)
    row = db.execute(f"SELECT {where} FROM images i JOIN reviews r ON r.id = i.review_id WHERE i.id = ?",
                     [*params, image_id]).fetchone()
    if row is None:
        raise NotFound(f"image {image_id} does not exist (it may have been deleted)")
    if not row[0]:
        return {"state": "not_wanted", "error": None}
    return {"state": "pending" if get_settings(db)["redact_package_labels"] else "off", "error": None}


class LabelSearchKind(jobs.BaseKind):
    """Search the labels of every photo that should be searched and was not; each batch's boxes in one
    transaction with its progress."""

    name = KIND
    batch_size = 2

    def start(self, ctx: jobs.JobContext) -> None:
        ctx.state.update(store=object_store(ctx.db), max_pixels=int(get_settings(ctx.db)["max_pixels"]))

    def list_items(self, ctx: jobs.JobContext) -> list[str]:
        return [str(i) for i in _unsearched(ctx.db, limit=JOB_LIMIT)]

    def compute(self, ctx: jobs.JobContext, items: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for item in items:
            image_id = int(item)
            if ctx.db.execute("SELECT 1 FROM label_redactions WHERE image_id = ?", [image_id]).fetchone():
                out[item] = None  # searched meanwhile (classified again, another job): never twice
                continue
            row = ctx.db.execute("SELECT uri FROM images WHERE id = ?", [image_id]).fetchone()
            try:
                if row is None:
                    raise NotFound(f"image {image_id} does not exist (it may have been deleted)")
                data = ctx.state["store"].read(row[0])
                out[item] = (find_labels_in_photo(data, max_pixels=ctx.state["max_pixels"]), None)
            except (ImageError, NotFound) as exc:  # not a readable photo: recorded, not searched again
                out[item] = ([], f"shipping labels not searched: {exc}") if row else str(exc)
            except ConsoleError as exc:  # the store, the model: left for the next job
                out[item] = str(exc)
        return out

    def write(self, ctx: jobs.JobContext, computed: dict[str, Any]) -> dict[str, str | None]:
        outcome: dict[str, str | None] = {}
        for item, found in computed.items():
            if found is None or isinstance(found, str):
                outcome[item] = found
                continue
            boxes: list[LabelBox] = found[0]
            save_found(ctx.db, image_id=int(item), boxes=boxes, error=found[1])
            outcome[item] = found[1]
        return outcome

    def finish(self, ctx: jobs.JobContext) -> dict[str, Any]:
        return {"waiting": unsearched_count(ctx.db)}
