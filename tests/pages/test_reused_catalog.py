"""Reused & catalog photos page: importing the catalog as a background job, catalog flags shown with their reason and
the catalog images beside the photo, cleared like reuse flags; the queue says so. Real product photos from
``tests/data/catalog`` (Grocery Store Dataset, MIT)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from services.core.jobs import get_job, run_job
from services.core.storage import ObjectStore
from services.reviews.ingest import ingest_manifest
from tests.pages.helpers import check_reuse_now, classify_now, start_app, texts

DATA = Path(__file__).resolve().parents[1] / "data" / "catalog"


def image_captions(at) -> list[str]:  # type: ignore[no-untyped-def]
    """The captions of every picture on the page."""
    out: list[str] = []

    def walk(node) -> None:  # type: ignore[no-untyped-def]
        for child in getattr(node, "children", {}).values():
            if type(child).__name__ == "Image":
                out.extend(img.caption for img in child.proto.imgs)
            walk(child)

    walk(at._tree)
    return out


@pytest.fixture
def flagged(ws, db, tmp_path):
    """The catalog imported through the page; an apple photo reviewed as milk (a mismatch) and a copy of a catalog
    image of milk reviewed as milk (a copy). Returns the app after the import and the image ids by review."""
    shutil.copytree(DATA / "catalog", tmp_path / "shop")
    shutil.copytree(DATA / "reviews", tmp_path / "sent")
    (tmp_path / "sent" / "milk_copy.jpg").write_bytes((DATA / "catalog" / "Arla-Standard-Milk" / "train_001.jpg").read_bytes())
    at = start_app("pages/reused.py")
    at.text_input(key="rp_catalog_source").set_value(str(tmp_path / "shop"))
    at.button(key="rp_catalog_import").click().run()
    job_id = at.session_state["rp_catalog_job"]
    assert get_job(db, job_id)["state"] == "queued"
    run_job(ws, job_id=job_id)
    assert get_job(db, job_id)["state"] == "done"
    rows = [{"review_id": "apple_as_milk", "review_type": "product", "product": "Arla-Standard-Milk", "user_id": "u1",
             "image_uris": [str(tmp_path / "sent" / "Granny-Smith_test_003.jpg")]},
            {"review_id": "copied", "review_type": "product", "product": "Arla-Standard-Milk", "user_id": "u2",
             "image_uris": [str(tmp_path / "sent" / "milk_copy.jpg")]}]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ingest_manifest(db, uri=str(tmp_path / "r.jsonl"), store=ObjectStore(), actor="cli:test")
    classify_now(ws, db)
    check_reuse_now(ws, db)
    return dict(db.execute("SELECT review_id, id FROM images").fetchall())


def test_the_page_imports_the_catalog_and_shows_catalog_flags_to_clear(ws, db, flagged):
    at = start_app("pages/reused.py")
    assert at.title[0].value == "Reused & catalog photos"
    shown = [m.replace("\\", "") for m in texts(at.markdown)]  # customer text is shown escaped
    assert any("**Review apple_as_milk** (product Arla-Standard-Milk) does not look like its product: the photo looks "
               "like catalog product Granny-Smith" in m for m in shown)
    assert any("**Review copied** (product Arla-Standard-Milk) copies a catalog image: the photo is the same bytes "
               "as the reviewed product's own catalog image" in m for m in shown)
    assert any(m.startswith("12 catalog images of 3 products") for m in shown)
    pictures = [c.replace("\\", "") for c in image_captions(at)]  # the photo and the catalog images beside it
    assert sum("looks like Granny-Smith:" in c for c in pictures) == 3
    assert sum("reviewed Arla-Standard-Milk:" in c for c in pictures) == 3
    assert sum("catalog image of Arla-Standard-Milk" in c for c in pictures) == 1
    assert any("The catalog holds 12 images of 3 products" in c for c in texts(at.caption))
    minute = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC"  # times as the app shows them, not raw ISO
    assert any(re.search(f"^12 catalog images of 3 products, last imported {minute}\\.$", m) for m in shown)
    (flag_id,) = db.execute("SELECT id FROM reuse_flags WHERE image_id = ? AND kind = 'mismatch'",
                            [flagged["apple_as_milk"]]).fetchone()
    at.text_input(key=f"rp_note_{flag_id}").set_value("a photo of the wrong product")
    at.button(key=f"rp_confirm_{flag_id}").click().run()
    assert texts(at.success) == [f"Flag {flag_id} confirmed."]
    assert db.execute("SELECT status, note FROM reuse_flags WHERE id = ?", [flag_id]).fetchone() == (
        "confirmed", "a photo of the wrong product")
    at.segmented_control(key="rp_status").set_value("confirmed").run()
    assert any(re.search(f"^confirmed by .+ at {minute}: a photo of the wrong product$", c.replace("\\", ""))
               for c in texts(at.caption))


def test_an_import_without_a_source_says_what_is_missing(ws, db):
    at = start_app("pages/reused.py")
    at.button(key="rp_catalog_import").click().run()
    assert any("folder or s3:// prefix" in e.replace("\\", "") for e in texts(at.error))
    at.text_input(key="rp_catalog_source").set_value("/somewhere")
    at.radio(key="rp_catalog_from").set_value("manifest")
    at.button(key="rp_catalog_import").click().run()
    assert any("manifest CSV" in e.replace("\\", "") for e in texts(at.error))


def test_the_queue_shows_the_catalog_flags_with_the_catalog_images(ws, db, flagged):
    at = start_app("pages/queue.py")
    warnings = [w.replace("\\", "") for w in texts(at.warning)]
    shown = [r.key for r in at.radio if (r.key or "").startswith("q_label_")][0]
    expected = ("the photo looks like catalog product Granny-Smith" if shown == f"q_label_{flagged['apple_as_milk']}"
                else "the photo is the same bytes as the reviewed product's own catalog image")
    assert any(w.startswith("Catalog check: ") and expected in w for w in warnings)
    assert any(("Its credit is held" in w) == ("same bytes" in expected) for w in warnings if "Catalog check" in w)


def test_a_catalog_image_that_cannot_be_read_is_listed_with_why_and_when(ws, db, tmp_path):
    shutil.copytree(DATA / "catalog", tmp_path / "shop")
    (tmp_path / "shop" / "Arla-Standard-Milk" / "broken.jpg").write_bytes(b"not a photo at all")
    at = start_app("pages/reused.py")
    at.text_input(key="rp_catalog_source").set_value(str(tmp_path / "shop"))
    at.button(key="rp_catalog_import").click().run()
    run_job(ws, job_id=at.session_state["rp_catalog_job"])
    at.run()
    (table,) = [d.value for d in at.dataframe if "why" in d.value.columns]  # AppTest gives a table no key
    assert list(table.columns) == ["image", "why", "when"] and len(table) == 1
    assert table["image"][0] == str(tmp_path / "shop" / "Arla-Standard-Milk" / "broken.jpg")
    assert "not" in table["why"][0].lower() and table["when"][0]
    assert any("The catalog holds 12 images of 3 products; 1 image could not be imported." in c
               for c in texts(at.caption))
