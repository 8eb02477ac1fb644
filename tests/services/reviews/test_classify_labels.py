"""Label redaction as a step of classification (``redact_package_labels``, on by default): a photo classified as a
package has its shipping labels found and their boxes stored with its prediction; other photos are not searched;
a failing search is recorded and never fails the photo's classification."""

from __future__ import annotations

import numpy as np
import pytest

from services.core import jobs
from services.core.config import get_settings, set_setting
from services.core.errors import ModelError
from services.core.storage import ObjectStore
from services.reviews import classify as classify_module
from services.reviews.ingest import Row, ingest_rows
from tests.services.redaction.parcel import jpeg, parcel_photo


class Predicts:
    """The trained head, its answer fixed per row (the classifier is tested elsewhere; here its answer is given)."""

    def __init__(self, head, labels: list[str]) -> None:
        self.classes, self.labels = head.classes, labels

    def predict_proba(self, emb, cues_for):
        p = np.zeros((len(emb), len(self.classes)))
        for row in range(len(emb)):
            p[row, self.classes.index(self.labels[row])] = 1.0
        return p


@pytest.fixture
def photos(trained_ws, tmp_path, monkeypatch):
    """(db, {name: image id}) for a parcel photo classified as a package and a blank photo classified as a product."""
    db = trained_ws.db()
    parcel = tmp_path / "parcel.jpg"
    parcel.write_bytes(jpeg(parcel_photo()[0]))
    blank = tmp_path / "blank.jpg"
    blank.write_bytes(jpeg(np.full((300, 400, 3), 180, np.uint8)))
    ingest_rows(db, rows=[Row(1, "parcel", "product", [str(parcel)]), Row(2, "blank", "product", [str(blank)])],
                store=ObjectStore(), batch=str(tmp_path), actor="t")
    ids = {r[1]: r[0] for r in db.execute("SELECT id, review_id FROM images")}
    real = classify_module.load_head
    monkeypatch.setattr(classify_module, "load_head",
                        lambda version, models_dir: Predicts(real(version, models_dir=models_dir), ["package", "product"]))
    yield db, ids
    db.close()


def _classify(ws, db) -> dict:
    job_id = jobs.create_job(db, kind="classify", params={}, actor="t")
    assert jobs.run_job(ws, job_id=job_id) == job_id
    return jobs.get_job(db, job_id)


def test_a_package_photo_has_its_labels_stored_and_others_are_not_searched(trained_ws, photos):
    db, ids = photos
    assert get_settings(db)["redact_package_labels"] is True
    job = _classify(trained_ws, db)
    assert (job["state"], job["done"], job["failed"]) == ("done", 2, 0)
    kinds = [r[0] for r in db.execute("SELECT kind FROM label_boxes WHERE image_id = ?", [ids["parcel"]])]
    assert {"barcode", "qr", "text"} <= set(kinds)
    assert db.execute("SELECT boxes, error FROM label_redactions WHERE image_id = ?", [ids["parcel"]]).fetchone() == (len(kinds), None)
    assert db.execute("SELECT COUNT(*) FROM label_redactions WHERE image_id = ?", [ids["blank"]]).fetchone()[0] == 0
    assert db.execute("SELECT label FROM predictions WHERE image_id = ?", [ids["parcel"]]).fetchone()[0] == "package"


def test_a_failing_search_is_recorded_and_the_photo_still_classified(trained_ws, photos, monkeypatch):
    db, ids = photos

    def broken(data, *, max_pixels):
        raise ModelError("the text detector's weights are missing")

    monkeypatch.setattr(classify_module, "find_labels_in_photo", broken)
    job = _classify(trained_ws, db)
    assert (job["state"], job["done"], job["failed"]) == ("done", 2, 0)
    error = db.execute("SELECT error FROM label_redactions WHERE image_id = ?", [ids["parcel"]]).fetchone()[0]
    assert error == "shipping labels not searched: the text detector's weights are missing"
    assert db.execute("SELECT status FROM images WHERE id = ?", [ids["parcel"]]).fetchone()[0] != "pending"


def test_with_the_setting_off_nothing_is_searched(trained_ws, photos):
    db, ids = photos
    set_setting(db, key="redact_package_labels", value=False, actor="t")
    assert _classify(trained_ws, db)["done"] == 2
    assert db.execute("SELECT COUNT(*) FROM label_redactions").fetchone()[0] == 0


