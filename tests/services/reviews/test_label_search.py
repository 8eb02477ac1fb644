"""The ``label_search`` job (issue 26 item 1, follow-up): classification searches only the photos the model calls a
package; photos queued before any model, re-scored to package, labelled package by an inspector or decided so, and
photos of a review type whose rule wants a package are searched by this job, which the worker queues. A photo once
looked at (its ``label_redactions`` row) is never searched again; a corrupt one is recorded with its error."""

from __future__ import annotations

import numpy as np
import pytest

from services.core.config import set_setting
from services.core.images import decode
from services.core.jobs import get_job, run_job
from services.core.storage import ObjectStore
from services.redaction.store import label_boxes
from services.reviews import label_search
from services.reviews.decisions import decide
from services.reviews.ingest import Row, ingest_rows
from services.worker.housekeeping import Housekeeping
from services.worker.kinds import install
from tests.services.redaction.parcel import jpeg, parcel_photo


@pytest.fixture
def queued(db, tmp_path) -> dict[str, int]:
    """Five photos queued before any model (no prediction), named by what becomes of them."""
    install()
    names = ["answered", "rescored", "decided", "corrupt", "other"]
    parcel = jpeg(parcel_photo()[0])
    rows = []
    for n, name in enumerate(names, start=1):
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(parcel if name != "other" else jpeg(np.full((60, 80, 3), 90, np.uint8)))
        rows.append(Row(n, name, "product", [str(path)]))
    ingest_rows(db, rows=rows, store=ObjectStore(), batch=str(tmp_path), actor="t")
    ids = {name: db.execute("SELECT id FROM images WHERE review_id = ?", [name]).fetchone()[0] for name in names}
    with db.conn:
        db.execute("UPDATE images SET status = 'queued', queue_reason = 'no_model'")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not a photo after all")
    return ids


def _search_now(ws, db) -> dict | None:
    job_id = Housekeeping(ws).run_all().get("label_search_job")
    if job_id is None:
        return None
    assert run_job(ws, job_id=job_id) == job_id
    return get_job(db, job_id)


def _state(db, image_id: int) -> str:
    return label_search.search_state(db, image_id=image_id, actor="cli:test")["state"]


def test_photos_called_a_package_after_classification_are_searched_by_the_worker(ws, db, queued):
    assert label_search.unsearched_count(db) == 0 and _search_now(ws, db) is None  # nobody called any a package
    assert _state(db, queued["answered"]) == "not_wanted"
    with db.conn:
        db.execute("INSERT INTO answers (image_id, inspector, label, kind, answered_at) "
                   "VALUES (?, 'ines', 'package', 'overlap', '2026-01-01T00:00:00Z')", [queued["answered"]])
        for name in ("rescored", "corrupt"):
            db.execute("INSERT INTO predictions (image_id, label, confidence, probabilities, created_at) "
                       "VALUES (?, 'package', 0.6, '{}', '2026-01-01T00:00:00Z')", [queued[name]])
    decide(db, image_id=queued["decided"], label="package", actor="cli:test")
    assert label_search.unsearched_count(db) == 4
    assert _state(db, queued["answered"]) == "pending" and _state(db, queued["other"]) == "not_wanted"

    job = _search_now(ws, db)
    assert (job["state"], job["done"], job["failed"]) == ("done", 3, 1)
    for name in ("answered", "rescored", "decided"):
        found = label_boxes(db, image_id=queued[name], actor="cli:test")
        assert found["looked"] and not found["error"] and {"barcode", "qr"} <= {b["kind"] for b in found["boxes"]}
        assert _state(db, queued[name]) == "searched"
    corrupt = label_boxes(db, image_id=queued["corrupt"], actor="cli:test")
    assert corrupt["looked"] and corrupt["error"].startswith("shipping labels not searched:")
    assert _state(db, queued["corrupt"]) == "failed"
    assert not label_boxes(db, image_id=queued["other"], actor="cli:test")["looked"]
    assert _search_now(ws, db) is None  # each photo once: the corrupt one is not tried again


def test_a_review_type_that_wants_a_package_and_the_setting_off(ws, db, queued, monkeypatch):
    searched = []
    monkeypatch.setattr(label_search, "find_labels_in_photo",  # the photo decoded, nothing found: quick
                        lambda data, **k: (decode(data), searched.append(1), [])[2])
    set_setting(db, key="redact_package_labels", value=False, actor="cli:test")
    assert _state(db, queued["other"]) == "not_wanted"
    set_setting(db, key="credit_rules", value={"product": {"classes": ["product", "package"], "mode": "any"}},
                actor="cli:test")
    assert _search_now(ws, db) is None and _state(db, queued["other"]) == "off"  # a package review: wanted
    assert _state(db, queued["answered"]) == "off"
    set_setting(db, key="redact_package_labels", value=True, actor="cli:test")
    assert _state(db, queued["other"]) == "pending"
    job = _search_now(ws, db)
    assert job["done"] == 4 and job["failed"] == 1 and len(searched) == 4  # the corrupt one never reaches it
    assert _state(db, queued["other"]) == "searched"  # searched, nothing found
