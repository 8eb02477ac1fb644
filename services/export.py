"""Export decisions: a CSV table, or a SageMaker Ground Truth image-classification manifest."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import sqlite_utils

from services.config import CLASSES

EXPORT_SQL = """
SELECT i.id AS image_id, i.uri, i.sha256, i.status, i.queue_reason, i.error,
       r.id AS review_id, r.review_type, r.product, r.user_id, r.submitted_at,
       d.label, d.credit, d.reason, d.source, d.decided_by, d.decided_at,
       p.label AS predicted_label, p.confidence AS predicted_confidence, mv.name AS model_version
FROM images i JOIN reviews r ON r.id = i.review_id
LEFT JOIN decisions d ON d.id = i.decision_id
LEFT JOIN predictions p ON p.id = (SELECT MAX(id) FROM predictions WHERE image_id = i.id)
LEFT JOIN model_versions mv ON mv.id = p.model_version_id
ORDER BY i.id
"""


def rows(db: sqlite_utils.Database) -> Iterator[dict[str, Any]]:
    """One row per image with its review, latest decision and latest prediction."""
    yield from db.query(EXPORT_SQL)


def to_csv(db: sqlite_utils.Database) -> tuple[str, int]:
    """(CSV text, row count)."""
    out = io.StringIO()
    writer = None
    n = 0
    for row in rows(db):
        if writer is None:
            writer = csv.DictWriter(out, fieldnames=list(row))
            writer.writeheader()
        writer.writerow(row)
        n += 1
    if writer is None:
        out.write(",".join(["image_id", "uri", "review_id", "label", "credit", "reason", "source"]) + "\n")
    return out.getvalue(), n


def to_groundtruth(db: sqlite_utils.Database, *, attribute: str = "category", job_name: str = "review-console") -> tuple[str, int]:
    """(manifest text, line count): one line per decided image, Ground Truth image-classification shape."""
    lines = []
    for row in rows(db):
        if not row["label"]:
            continue
        human = row["source"] == "human"
        confidence = 1.0 if human else float(row["predicted_confidence"] or 0.0)
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
                        "human-annotated": "yes" if human else "no",
                        "creation-date": (row["decided_at"] or "").rstrip("Z")[:19],
                    },
                }
            )
        )
    return "".join(line + "\n" for line in lines), len(lines)
