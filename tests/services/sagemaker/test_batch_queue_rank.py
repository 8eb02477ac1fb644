"""SageMaker batch imports rank the photos they leave in the queue by what a label is worth, as classification does."""

from __future__ import annotations

from datetime import datetime

import pytest

from services.core.config import set_setting
from services.sagemaker import batch as smb
from services.sagemaker import training as smt
from tests.conftest_sagemaker import ACTOR, BUCKET, configure


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_imported_predictions_rank_low_confidence_photos_by_value(db):
    configure(db)
    version_id = smt.save_version(db, actor=ACTOR, training_data={}, desc={
        "name": "tj-1", "status": "Completed", "metrics": {}, "seconds": 1.0, "hyperparameters": {},
        "model_artifacts": f"s3://{BUCKET}/rc/output/tj-1/output/model.tar.gz", "training_image": "x"})
    submitted = "2026-05-01T10:00:00.000000Z"
    for n in (1, 2, 3):
        db.execute("INSERT INTO reviews (id, review_type, submitted_at) VALUES (?, 'product', ?)", [f"r{n}", submitted])
        db.execute("INSERT INTO images (id, review_id, uri, sha256, status, queue_reason) VALUES (?, ?, ?, ?, 'queued', "
                   "'no_model')", [n, f"r{n}", f"s3://{BUCKET}/in/{n}.jpg", f"{n:064x}"])
    set_setting(db, key="audit_rate", value=0.0, actor=ACTOR)
    outputs = {f"s3://{BUCKET}/in/1.jpg": [0.45, 0.45, 0.05, 0.05],  # a tie: worth a full day
               f"s3://{BUCKET}/in/2.jpg": [0.1, 0.8, 0.05, 0.05],  # below 0.9, fairly sure: worth 0.3
               f"s3://{BUCKET}/in/3.jpg": [0.97, 0.01, 0.01, 0.01]}  # decided automatically
    counts = smb.write_predictions(db, version=smb.sagemaker_version(db, version_id), outputs=outputs)
    assert (counts["queued"], counts["decided"]) == (2, 1)
    rank = dict(db.execute("SELECT id, queue_rank FROM images WHERE status = 'queued'").fetchall())
    assert rank[1] == pytest.approx(_epoch(submitted) - 24 * 3600)
    assert rank[2] == pytest.approx(_epoch(submitted) - 0.3 * 24 * 3600)
    assert db.execute("SELECT status FROM images WHERE id = 3").fetchone() == ("decided",)
