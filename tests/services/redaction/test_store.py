"""Label boxes in the database: a photo's found boxes replace its earlier ones, together with the record that it
was looked at, in one transaction."""

from __future__ import annotations

import pytest

from services.access.accounts import create_user
from services.core.errors import PermissionDenied
from services.core.storage import ObjectStore
from services.redaction.labels import LabelBox
from services.redaction.store import label_boxes, save_found
from services.reviews.ingest import Row, ingest_rows
from tests.services.redaction.parcel import jpeg, parcel_photo


@pytest.fixture
def image_id(db, tmp_path):
    path = tmp_path / "parcel.jpg"
    path.write_bytes(jpeg(parcel_photo()[0]))
    ingest_rows(db, rows=[Row(1, "r1", "product", [str(path)])], store=ObjectStore(), batch=str(tmp_path), actor="t")
    return db.execute("SELECT id FROM images").fetchone()[0]


def test_found_boxes_replace_earlier_ones_with_the_look_recorded(db, image_id):
    first = [LabelBox("qr", 1, 2, 30, 40, 1.0), LabelBox("text", 5, 5, 50, 20, 0.8)]
    save_found(db, image_id=image_id, boxes=first)
    assert [b["kind"] for b in label_boxes(db, image_id=image_id, actor="admin")["boxes"]] == ["qr", "text"]
    save_found(db, image_id=image_id, boxes=[], error="shipping labels not searched: no model")
    assert label_boxes(db, image_id=image_id, actor="admin") == {
        "looked": True, "error": "shipping labels not searched: no model", "boxes": [], "removed": [], "width": 960,
        "height": 1200}


def test_a_failed_write_leaves_nothing_behind(db, image_id):
    save_found(db, image_id=image_id, boxes=[LabelBox("barcode", 0, 0, 10, 10, 1.0)])
    with pytest.raises(Exception, match="FOREIGN KEY"):  # the second statement fails: the first is undone
        save_found(db, image_id=image_id + 99, boxes=[LabelBox("qr", 0, 0, 5, 5, 1.0)])
    assert db.execute("SELECT COUNT(*) FROM label_boxes").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM label_redactions").fetchone()[0] == 1


def test_a_photo_never_looked_at_and_roles(db, image_id):
    assert label_boxes(db, image_id=image_id, actor="admin") == {"looked": False, "error": None, "boxes": [],
                                                                 "removed": [], "width": 960, "height": 1200}
    create_user(db, username="olga", password="correct horse battery", roles=["ops"], actor="tester")
    with pytest.raises(PermissionDenied):
        label_boxes(db, image_id=image_id, actor="olga")  # line operations see no reviews
