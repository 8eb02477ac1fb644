"""Inspectors' edits of a photo's label boxes (issue 26 item 1): a found box removed and a missed one added, each
recorded with who and when (``label_box_edits`` and the audit log); the published photo hides what is left; a
later search does not bring a removed box back; bad boxes and other roles are refused."""

from __future__ import annotations

import numpy as np
import pytest

from services.access.accounts import create_user
from services.core.audit import entries
from services.core.errors import InvalidInput, NotFound, PermissionDenied
from services.core.storage import ObjectStore
from services.faces.label_masks import redact_photo  # the photo as published: label boxes under the face masks
from services.redaction.labels import LabelBox
from services.redaction.store import (
    add_label_box,
    boxes_to_hide,
    label_box_edits,
    label_boxes,
    remove_label_box,
    restore_label_box,
    save_found,
)
from services.reviews.ingest import Row, ingest_rows
from tests.services.redaction.parcel import jpeg, parcel_photo

GOOD = "correct horse battery staple"


@pytest.fixture
def image_id(db, tmp_path):
    path = tmp_path / "parcel.jpg"
    path.write_bytes(jpeg(parcel_photo()[0]))
    ingest_rows(db, rows=[Row(1, "r1", "product", [str(path)])], store=ObjectStore(), batch=str(tmp_path), actor="t")
    create_user(db, username="ines", password=GOOD, roles=["inspector"], actor="cli:root")
    create_user(db, username="ada", password=GOOD, roles=["admin"], actor="cli:root")
    return db.execute("SELECT id FROM images").fetchone()[0]


def test_a_removed_box_and_an_added_one_are_recorded_and_hidden_as_edited(db, image_id):
    save_found(db, image_id=image_id, boxes=[LabelBox("qr", 10, 20, 110, 120, 1.0), LabelBox("text", 5, 5, 50, 20, 0.8)])
    qr, text = label_boxes(db, image_id=image_id, actor="ines")["boxes"]
    assert (qr["kind"], qr["source"], text["kind"]) == ("qr", "auto", "text")

    removed = remove_label_box(db, box_id=text["id"], actor="ines")
    added = add_label_box(db, image_id=image_id, kind="barcode", x1=200, y1=300, x2=400.5, y2=360, actor="ines")
    assert removed["id"] == text["id"] and added["source"] == "inspector"
    assert [(b["kind"], b["source"]) for b in label_boxes(db, image_id=image_id, actor="ines")["boxes"]] == [
        ("qr", "auto"), ("barcode", "inspector")]
    assert boxes_to_hide(db, image_id=image_id, actor="ines") == [LabelBox("qr", 10, 20, 110, 120, 1.0),
                                                                  LabelBox("barcode", 200, 300, 400.5, 360, 1.0)]
    edits = label_box_edits(db, image_id=image_id, actor="ines")
    assert [(e["action"], e["kind"], e["actor"], e["box_id"]) for e in edits] == [
        ("removed", "text", "ines", text["id"]), ("added", "barcode", "ines", added["id"])]
    assert all(e["at"] for e in edits)
    audit = entries(db, actor="ada", action="labels.")
    assert [(a["actor"], a["action"], a["target"]) for a in reversed(audit)] == [
        ("ines", "labels.box_removed", f"image:{image_id}"), ("ines", "labels.box_added", f"image:{image_id}")]

    # a later search finds the text block again: it stays removed; the inspector's box stays
    save_found(db, image_id=image_id, boxes=[LabelBox("qr", 10, 20, 110, 120, 1.0), LabelBox("text", 6, 5, 50, 21, 0.7)])
    assert [b["kind"] for b in label_boxes(db, image_id=image_id, actor="ines")["boxes"]] == ["barcode", "qr"]


def test_the_published_photo_hides_the_edited_boxes_only(db, image_id):
    width, height = db.execute("SELECT width, height FROM images WHERE id = ?", [image_id]).fetchone()
    save_found(db, image_id=image_id, boxes=[LabelBox("text", 0, 0, width / 2, height / 2, 0.9)])
    rng = np.random.default_rng(1)
    preview = rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8)  # a quarter-size preview
    out = redact_photo(db, image_id=image_id, frame=preview, actor="ines", mode="fill")
    h, w = preview.shape[:2]
    inner, outer = (slice(0, int(h * 0.45)), slice(0, int(w * 0.45))), (slice(int(h * 0.6), h), slice(int(w * 0.6), w))
    assert (out[inner] == 0).all() and (out[outer] == preview[outer]).all()  # boxes scaled to the preview
    remove_label_box(db, box_id=label_boxes(db, image_id=image_id, actor="ines")["boxes"][0]["id"], actor="ines")
    add_label_box(db, image_id=image_id, kind="qr", x1=width / 2, y1=height / 2, x2=width, y2=height, actor="ines")
    out = redact_photo(db, image_id=image_id, frame=preview, actor="ines", mode="fill")
    top_left, bottom_right = (slice(0, int(h * 0.4)), slice(0, int(w * 0.4))), (slice(int(h * 0.55), h), slice(int(w * 0.55), w))
    assert (out[top_left] == preview[top_left]).all() and (out[bottom_right] == 0).all()


@pytest.mark.parametrize("box", [(10, 10, 5, 20), (0, 0, 0, 0), (-5, 0, 10, 10), (0, 0, 1e9, 10),
                                 (0, 0, float("nan"), 10), ("a", 0, 1, 1)])
def test_bad_boxes_are_refused_and_nothing_is_recorded(db, image_id, box):
    with pytest.raises(InvalidInput):
        add_label_box(db, image_id=image_id, kind="text", x1=box[0], y1=box[1], x2=box[2], y2=box[3], actor="ines")
    assert db.execute("SELECT COUNT(*) FROM label_box_edits").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM label_boxes").fetchone()[0] == 0


def test_unknown_kind_photo_or_box_and_a_second_removal(db, image_id):
    with pytest.raises(InvalidInput, match="one of barcode, qr, text"):
        add_label_box(db, image_id=image_id, kind="face", x1=0, y1=0, x2=5, y2=5, actor="ines")
    with pytest.raises(NotFound):
        add_label_box(db, image_id=image_id + 99, kind="qr", x1=0, y1=0, x2=5, y2=5, actor="ines")
    with pytest.raises(NotFound):
        remove_label_box(db, box_id=12345, actor="ines")
    box = add_label_box(db, image_id=image_id, kind="qr", x1=0, y1=0, x2=5, y2=5, actor="ines")
    remove_label_box(db, box_id=box["id"], actor="ines")
    with pytest.raises(InvalidInput, match="already removed by ines"):
        remove_label_box(db, box_id=box["id"], actor="ada")
    assert len(label_box_edits(db, image_id=image_id, actor="ines")) == 2


def test_only_people_who_label_photos_edit_boxes(db, image_id):
    create_user(db, username="olga", password=GOOD, roles=["ops"], actor="cli:root")
    box = add_label_box(db, image_id=image_id, kind="qr", x1=0, y1=0, x2=5, y2=5, actor="ines")
    with pytest.raises(PermissionDenied):
        add_label_box(db, image_id=image_id, kind="qr", x1=0, y1=0, x2=5, y2=5, actor="olga")
    with pytest.raises(PermissionDenied):
        remove_label_box(db, box_id=box["id"], actor="olga")
    with pytest.raises(PermissionDenied):
        label_box_edits(db, image_id=image_id, actor="olga")
    assert len(label_boxes(db, image_id=image_id, actor="ines")["boxes"]) == 1


def test_a_box_past_the_photos_edge_says_where_the_corners_may_go(db, image_id):
    width, height = db.execute("SELECT width, height FROM images WHERE id = ?", [image_id]).fetchone()
    with pytest.raises(InvalidInput, match=rf"outside the photo: corners go from \(0, 0\) to \({width}, {height}\)"):
        add_label_box(db, image_id=image_id, kind="qr", x1=10, y1=10, x2=width + 1, y2=20, actor="ines")
    with db.conn:
        db.execute("UPDATE images SET width = NULL WHERE id = ?", [image_id])
    with pytest.raises(InvalidInput, match="size of image .* is not known yet"):  # never taken on trust
        add_label_box(db, image_id=image_id, kind="qr", x1=10, y1=10, x2=20, y2=20, actor="ines")


def test_an_exact_copy_of_a_hidden_box_is_refused_and_a_removed_one_can_come_back(db, image_id):
    save_found(db, image_id=image_id, boxes=[LabelBox("qr", 10, 20, 110, 120, 1.0)])
    (qr,) = label_boxes(db, image_id=image_id, actor="ines")["boxes"]
    refused = "a QR or 2D code box with these corners already hides the photo at \\(10, 20, 110, 120\\): nothing added"
    with pytest.raises(InvalidInput, match=refused):
        add_label_box(db, image_id=image_id, kind="text", x1=10, y1=20, x2=110, y2=120, actor="ines")
    remove_label_box(db, box_id=qr["id"], actor="ines")
    found = label_boxes(db, image_id=image_id, actor="ines")
    assert found["boxes"] == [] and [(b["id"], b["x1"], b["y2"], b["removed_by"]) for b in found["removed"]] == [
        (qr["id"], 10, 120, "ines")]
    restored = restore_label_box(db, box_id=qr["id"], actor="ada")
    assert restored["id"] == qr["id"] and label_boxes(db, image_id=image_id, actor="ines")["removed"] == []
    assert boxes_to_hide(db, image_id=image_id, actor="ines") == [LabelBox("qr", 10, 20, 110, 120, 1.0)]
    assert [(e["action"], e["actor"]) for e in label_box_edits(db, image_id=image_id, actor="ines")] == [
        ("removed", "ines"), ("restored", "ada")]
    assert entries(db, actor="ada", action="labels.box_restored")[0]["target"] == f"image:{image_id}"
    with pytest.raises(InvalidInput, match="is not removed"):
        restore_label_box(db, box_id=qr["id"], actor="ines")
    remove_label_box(db, box_id=qr["id"], actor="ines")
    add_label_box(db, image_id=image_id, kind="qr", x1=10, y1=20, x2=110, y2=120, actor="ines")  # drawn again
    with pytest.raises(InvalidInput, match="nothing restored"):
        restore_label_box(db, box_id=qr["id"], actor="ines")


def test_a_corner_left_empty_is_named(db, image_id):
    with pytest.raises(InvalidInput, match="needs all four corners \\(x1, y1, x2, y2\\): x2, y2 not given"):
        add_label_box(db, image_id=image_id, kind="qr", x1=1, y1=1, x2=None, y2="", actor="ines")
