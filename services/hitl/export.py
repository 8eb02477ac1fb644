"""Export decisions: a CSV table, or the consolidated labels as a SageMaker Ground Truth manifest.

Each manifest line carries a confidence for its label: the model's for automatic decisions, the
consolidated posterior for photos several inspectors labelled, the inspector's estimated accuracy for
a single inspector's label, and 1.0 for gold photos and an admin's adjudication.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import sqlite_utils

from services.core.authz import require
from services.core.config import CLASSES, object_store
from services.core.csvsafe import safe_row
from services.core.errors import ConsoleError, InvalidInput
from services.core.storage import ObjectStore
from services.hitl.consensus import PRIOR_ACCURACY
from services.redaction.publish import publish_photo
from services.reviews import label_search
from services.reviews.credit_holds import HELD_SQL, hold_active

EXPORT_SQL = """
SELECT i.id AS image_id, i.uri, i.sha256, i.status, i.queue_reason, i.error,
       r.id AS review_id, r.review_type, r.product, r.user_id, r.submitted_at,
       d.label, d.credit, d.reason, d.source, d.decided_by, d.decided_at,
       p.label AS predicted_label, p.confidence AS predicted_confidence, mv.name AS model_version,
       c.confidence AS consensus_confidence, c.agreement AS consensus_agreement, c.n_answers AS consensus_answers,
       c.outcome AS consensus_outcome, ir.accuracy AS inspector_accuracy, g.label AS gold_label,
       (SELECT f.status FROM reuse_flags f WHERE f.image_id = i.id AND f.source = 'review' ORDER BY f.id DESC LIMIT 1)
         AS reuse_flag,
       (SELECT f.status FROM reuse_flags f WHERE f.image_id = i.id AND f.source = 'catalog' AND f.kind = 'copy'
         ORDER BY f.id DESC LIMIT 1) AS catalog_copy_flag,
       (SELECT f.reason FROM reuse_flags f WHERE f.image_id = i.id AND f.source = 'catalog' AND f.kind = 'copy'
         ORDER BY f.id DESC LIMIT 1) AS catalog_copy_reason,
       (SELECT f.status FROM reuse_flags f WHERE f.image_id = i.id AND f.kind = 'mismatch'
         ORDER BY f.id DESC LIMIT 1) AS product_mismatch_flag,
       (SELECT f.reason FROM reuse_flags f WHERE f.image_id = i.id AND f.kind = 'mismatch'
         ORDER BY f.id DESC LIMIT 1) AS product_mismatch_reason,
       (SELECT COUNT(*) FROM label_boxes lb WHERE lb.image_id = i.id AND lb.removed_at IS NULL) AS label_boxes_hidden,
       CASE WHEN {held} THEN 1 ELSE 0 END AS credit_held
FROM images i JOIN reviews r ON r.id = i.review_id
LEFT JOIN decisions d ON d.id = i.decision_id
LEFT JOIN consensus c ON c.image_id = i.id
LEFT JOIN inspector_reliability ir ON ir.inspector = d.decided_by
LEFT JOIN gold_items g ON g.image_id = i.id
LEFT JOIN predictions p ON p.id = (SELECT MAX(id) FROM predictions WHERE image_id = i.id)
LEFT JOIN model_versions mv ON mv.id = p.model_version_id
ORDER BY i.id
"""


def rows(db: sqlite_utils.Database) -> Iterator[dict[str, Any]]:
    """One row per image with its review, latest decision and latest prediction, its latest reuse flag, its
    catalog flags (a copy of a catalog image, a mismatch with the reviewed product: status and reason) and
    whether its credit is held (services.reviews.credit_holds)."""
    held = f"({HELD_SQL})" if hold_active(db) else "0"  # a photo whose credit is held for reuse says so
    yield from db.query(EXPORT_SQL.format(held=held))


def _published(db: sqlite_utils.Database, row: dict[str, Any], *, store: ObjectStore, actor: str,
               prefix: str | None, unsearched: set[int]) -> dict[str, Any]:
    """``row`` with ``published_uri`` after its ``uri`` (and ``publish_error``): for a decided photo, the photo as
    published: its redacted copy (written to the object store by ``services.redaction.publish``) when label boxes
    are hidden, else its own URI; empty for a photo not decided yet (nothing is published), one in ``unsearched``
    (its shipping labels are still to be searched, so what it shows is not known) or one that failed, the reason in
    ``publish_error``. Raises nothing of its own: a photo that cannot be published says why."""
    uri, error = "", ""
    if row["label"] and row["image_id"] in unsearched:
        error = ("not published yet: its shipping labels are still to be searched (the label-search job on the "
                 "worker does it; export again after)")
    elif row["label"]:
        uri = row["uri"]
        if row["label_boxes_hidden"]:
            try:
                uri = publish_photo(db, image_id=row["image_id"], store=store, actor=actor, prefix=prefix)["uri"]
            except ConsoleError as exc:
                uri, error = "", f"not published: {exc}"
    out: dict[str, Any] = {}
    for key, value in row.items():
        out[key] = value
        if key == "uri":
            out["published_uri"] = uri
    out["publish_error"] = error
    return out


def to_csv(db: sqlite_utils.Database, *, actor: str, store: ObjectStore | None = None,
           prefix: str | None = None) -> tuple[str, int]:
    """(CSV text, row count). Each decided photo is published on the way (``_published``): with label boxes to
    hide, its redacted copy is written under ``prefix`` (default ``published/`` in the workspace) unless already
    there, and ``published_uri`` names it; one whose labels wait for a search is not published yet. Raises
    PermissionDenied unless ``actor`` manages label quality, InvalidInput for a malformed storage root."""
    require(db, actor=actor, action="quality.manage")
    store = store or object_store(db)
    out = io.StringIO()
    writer = None
    n = 0
    unsearched = label_search.unsearched_ids(db)
    for row in rows(db):
        row = _published(db, row, store=store, actor=actor, prefix=prefix, unsearched=unsearched)
        if writer is None:
            writer = csv.DictWriter(out, fieldnames=list(row))
            writer.writeheader()
        writer.writerow(safe_row(row=row))
        n += 1
    if writer is None:
        out.write(",".join(["image_id", "uri", "published_uri", "review_id", "label", "credit", "reason", "source"])
                  + "\n")
    return out.getvalue(), n


def label_confidence(row: dict[str, Any]) -> float:
    """How sure the export is of a row's label (see the module docstring)."""
    if row["source"] != "human":
        return float(row["predicted_confidence"] or 0.0)
    if row["gold_label"] == row["label"] or row["consensus_outcome"] == "adjudicated":
        return 1.0
    if row["decided_by"] == "consensus" and row["consensus_confidence"] is not None:
        return float(row["consensus_confidence"])
    return float(row["inspector_accuracy"] if row["inspector_accuracy"] is not None else PRIOR_ACCURACY)


def to_groundtruth(
    db: sqlite_utils.Database,
    *,
    actor: str,
    attribute: str = "category",
    job_name: str = "review-console",
    human_only: bool = False,
    min_confidence: float = 0.0,
) -> tuple[str, int]:
    """(manifest text, line count): one line per decided photo in the Ground Truth image-classification
    output shape, ready to train here or in SageMaker. ``human_only`` keeps people's labels only;
    ``min_confidence`` drops labels the export is less sure of. Raises PermissionDenied unless ``actor``
    manages label quality, InvalidInput for a bad attribute name."""
    require(db, actor=actor, action="quality.manage")
    if not attribute or not all(ch.isalnum() or ch in "-_" for ch in attribute):
        raise InvalidInput(f"the label attribute name '{attribute}' may hold only letters, digits, - and _")
    lines = []
    for row in rows(db):
        if not row["label"] or (human_only and row["source"] != "human"):
            continue
        confidence = label_confidence(row)
        if confidence < min_confidence:
            continue
        lines.append(
            json.dumps(
                {
                    "source-ref": row["uri"],
                    attribute: CLASSES.index(row["label"]),
                    f"{attribute}-metadata": {
                        "class-name": row["label"],
                        "confidence": round(confidence, 4),
                        "type": "groundtruth/image-classification",
                        "job-name": f"labeling-job/{job_name}",
                        "human-annotated": "yes" if row["source"] == "human" else "no",
                        "creation-date": (row["decided_at"] or "").rstrip("Z")[:19],
                    },
                }
            )
        )
    return "".join(line + "\n" for line in lines), len(lines)
