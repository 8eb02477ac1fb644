"""The catalog: imported from a folder or an S3 prefix (incrementally, a corrupt image skipped with its reason), and
review photos checked against it by the reuse job: copies of catalog images (exact, edited) flagged with credit
held; a photo of another product flagged as a mismatch with the nearest catalog images, its own product's not.
Real product photos: ``tests/data/catalog`` (Grocery Store Dataset, MIT)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from services.core.config import set_setting
from services.core.errors import InvalidInput
from services.core.jobs import create_job, get_job, run_job
from services.core.storage import ObjectStore
from services.hitl import export
from services.hitl.answers import submit
from services.hitl.queue import claim_next
from services.hitl.similar_cases import catalog_flags_of
from services.reuse import catalog
from services.reuse import detection as reuse
from services.reviews.decisions import review_outcomes
from services.reviews.ingest import ingest_manifest
from tests.pages.helpers import run_kind_now

DATA = Path(__file__).resolve().parents[2] / "data" / "catalog"
PRODUCTS = ("Arla-Standard-Milk", "Banana", "Granny-Smith")


def _import(ws, db, source: str, manifest: str = "") -> dict:
    job_id = create_job(db, kind=catalog.KIND, params={"source": source, "manifest": manifest}, actor="cli:admin")
    run_job(ws, job_id=job_id)
    job = get_job(db, job_id)
    assert job["state"] == "done", job["error"]
    return job


def _failed(db, job: dict) -> list[str]:
    return [r[0] for r in db.execute("SELECT error FROM job_items WHERE job_id = ? AND state = 'failed'", [job["id"]])]


@pytest.fixture
def shop(tmp_path) -> Path:
    """The catalog folder: one folder per product (in the test's folder, which the console may read)."""
    dst = tmp_path / "shop"
    shutil.copytree(DATA / "catalog", dst)
    return dst


@pytest.fixture
def photos(tmp_path) -> Path:
    """The review photos, where the console may read them."""
    dst = tmp_path / "sent"
    shutil.copytree(DATA / "reviews", dst)
    return dst


def test_a_folder_imports_once_a_corrupt_image_is_skipped_and_a_changed_one_is_read_again(ws, db, shop):
    (shop / "Banana" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.open(shop / "Banana" / "iconic.jpg").save(shop / "loose.jpg")  # no product folder: no product id
    job = _import(ws, db, str(shop))
    rows = db.execute("SELECT product_id, COUNT(*) FROM catalog_images GROUP BY product_id").fetchall()
    assert dict(rows) == {p: 4 for p in PRODUCTS}
    errors = _failed(db, job)
    assert len(errors) == 2 and job["result"]["failed"] == 2
    assert any("broken.jpg skipped:" in e for e in errors)
    assert any("loose.jpg: no product id" in e for e in errors)
    assert catalog.summary(db)["images"] == 12 and catalog.summary(db)["products"] == 3
    # importing again reads nothing: the same URIs and etags
    again = _import(ws, db, str(shop))
    assert again["total"] == 2 and again["done"] == 0  # only the two that failed are tried again
    assert db.execute("SELECT COUNT(*) FROM catalog_images").fetchone()[0] == 12
    # a changed image is read again and replaced, not added
    before = db.execute("SELECT sha256, id FROM catalog_images WHERE uri LIKE '%Banana%train_001.jpg'").fetchone()
    Image.open(shop / "Banana" / "train_001.jpg").resize((200, 200)).save(shop / "Banana" / "train_001.jpg", "JPEG")
    (shop / "Banana" / "broken.jpg").unlink()
    (shop / "loose.jpg").unlink()
    changed = _import(ws, db, str(shop))
    assert (changed["total"], changed["done"]) == (1, 1)
    after = db.execute("SELECT sha256, id FROM catalog_images WHERE uri LIKE '%Banana%train_001.jpg'").fetchone()
    assert after[1] == before[1] and after[0] != before[0]
    assert db.execute("SELECT COUNT(*) FROM catalog_images").fetchone()[0] == 12


def test_an_s3_prefix_imports_with_a_manifest_of_product_ids(ws, db, s3_server, s3_bucket):
    store, bucket = s3_bucket
    set_setting(db, key="s3_endpoint_url", value=s3_server.endpoint_url, actor="cli:test")
    set_setting(db, key="storage_roots", value=[f"s3://{bucket}/"], actor="cli:test")
    lines = ["key,product_id"]
    for n, product in enumerate(PRODUCTS):
        for path in sorted((DATA / "catalog" / product).glob("*.jpg"))[:2]:
            key = f"img/{n}_{path.name}"
            store.write(f"s3://{bucket}/shop/{key}", path.read_bytes())
            lines.append(f"{key},SKU-{n}")
    store.write(f"s3://{bucket}/shop/img/unlisted.jpg", (DATA / "reviews" / "Banana_test_004.jpg").read_bytes())
    store.write(f"s3://{bucket}/manifest.csv", ("\n".join(lines) + "\n").encode())
    job = _import(ws, db, f"s3://{bucket}/shop", f"s3://{bucket}/manifest.csv")
    got = dict(db.execute("SELECT product_id, COUNT(*) FROM catalog_images GROUP BY product_id").fetchall())
    assert got == {"SKU-0": 2, "SKU-1": 2, "SKU-2": 2}
    assert all(u.startswith(f"s3://{bucket}/shop/img/") for (u,) in db.execute("SELECT uri FROM catalog_images"))
    assert any("unlisted.jpg: no product id" in e for e in _failed(db, job))
    assert db.execute("SELECT COUNT(DISTINCT etag) FROM catalog_images").fetchone()[0] == 6  # S3's ETags
    assert _import(ws, db, f"s3://{bucket}/shop", f"s3://{bucket}/manifest.csv")["done"] == 0


def test_start_import_checks_what_it_is_given(db):
    with pytest.raises(InvalidInput, match="folder or s3:// prefix"):
        catalog.start_import(db, source=" ", actor="cli:admin")
    with pytest.raises(InvalidInput, match="manifest CSV"):
        catalog.start_import(db, source="/x", product_from="manifest", actor="cli:admin")
    with pytest.raises(InvalidInput, match="key \\(or uri\\) and product_id"):
        catalog.read_manifest(b"name,sku\na.jpg,1\n", name="m.csv")
    with pytest.raises(InvalidInput, match="line 3"):
        catalog.read_manifest(b"key,product_id\na.jpg,1\nb.jpg,\n", name="m.csv")
    assert catalog.start_import(db, source="/x", actor="cli:admin") > 0


def _reviews(ws, db, tmp_path, rows: list[dict]) -> None:
    manifest = tmp_path / f"reviews{len(list(tmp_path.glob('reviews*.jsonl')))}.jsonl"
    manifest.write_text("".join(json.dumps({"review_type": "product", **r}) + "\n" for r in rows))
    report = ingest_manifest(db, uri=str(manifest), store=ObjectStore(), actor="cli:test")
    assert report.as_dict()["error_count"] == 0
    run_kind_now(ws, db, "classify")


def _flags(db) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for rid, kind, product in db.execute(
            "SELECT i.review_id, f.kind, c.product_id FROM reuse_flags f JOIN images i ON i.id = f.image_id "
            "LEFT JOIN catalog_images c ON c.id = f.catalog_image_id WHERE f.source = 'catalog' ORDER BY f.id"):
        out.setdefault(rid, []).append((kind, product))
    return out


def test_copies_of_catalog_images_are_flagged_and_their_credit_held(ws, db, shop, photos, tmp_path):
    edits = tmp_path / "edits"
    edits.mkdir()
    exact = edits / "exact.jpg"
    exact.write_bytes((shop / "Granny-Smith" / "train_001.jpg").read_bytes())
    milk = Image.open(shop / "Arla-Standard-Milk" / "train_003.jpg")
    w, h = milk.size
    milk.crop((w // 8, h // 8, w * 7 // 8, h * 7 // 8)).resize((200, 200)).save(edits / "cropped.jpg", "JPEG", quality=70)
    _reviews(ws, db, tmp_path, [
        {"review_id": "exact", "product": "Banana", "user_id": "u1", "image_uris": [str(exact)]},
        {"review_id": "cropped", "product": "Arla-Standard-Milk", "user_id": "u2", "image_uris": [str(edits / "cropped.jpg")]},
        {"review_id": "own", "product": "Granny-Smith", "user_id": "u3",
         "image_uris": [str(photos / "Granny-Smith_test_003.jpg")]},
    ])
    run_kind_now(ws, db, reuse.KIND)  # no catalog yet: nothing to flag against
    assert _flags(db) == {} and reuse.unchecked_count(db) == 0
    _import(ws, db, str(shop))  # the catalog changed: every photo is checked against it again
    assert reuse.unchecked_count(db) == 3
    run_kind_now(ws, db, reuse.KIND)
    assert _flags(db) == {"exact": [("copy", "Granny-Smith")], "cropped": [("copy", "Arla-Standard-Milk")]}
    reason = db.execute("SELECT reason, how FROM reuse_flags f JOIN images i ON i.id = f.image_id "
                        "WHERE i.review_id = 'exact'").fetchone()
    assert reason == ("the photo is the same bytes as a catalog image of product Granny-Smith (the review is of "
                      "Banana)", "bytes")
    cropped = db.execute("SELECT reason FROM reuse_flags f JOIN images i ON i.id = f.image_id "
                         "WHERE i.review_id = 'cropped'").fetchone()[0]
    assert cropped == "the photo is an edited copy of the reviewed product's own catalog image"
    while (item := claim_next(db, inspector="ann")) is not None:  # each labelled a product shot: it would earn credit
        submit(db, image_id=item["id"], label="product", actor="ann")
    held = review_outcomes(db, review_ids=["exact", "own"])
    assert held["own"]["credit"] is True and held["exact"]["credit"] is None
    assert held["exact"]["held"] and "copy of a catalog image" in held["exact"]["reason"]
    assert not held["own"]["held"]
    rows = {r["review_id"]: r for r in export.rows(db)}
    assert (rows["cropped"]["catalog_copy_flag"], rows["cropped"]["credit_held"]) == ("open", 1)
    assert rows["cropped"]["catalog_copy_reason"] == cropped and rows["own"]["catalog_copy_flag"] is None
    csv_text, _ = export.to_csv(db, actor="cli:admin")
    assert "catalog_copy_reason" in csv_text.splitlines()[0] and "product_mismatch_reason" in csv_text.splitlines()[0]
    (image_id,) = db.execute("SELECT id FROM images WHERE review_id = 'exact'").fetchone()
    flag = catalog_flags_of(db, image_id=image_id, actor="cli:admin")[0]
    assert flag["shown"][0]["caption"] == "catalog image of Granny-Smith"
    reuse.resolve(db, flag_id=flag["id"], status="cleared", actor="cli:admin")
    assert review_outcomes(db, review_ids=["exact"])["exact"]["credit"] is True
    assert catalog_flags_of(db, image_id=image_id, actor="cli:admin") == []
    listed = reuse.list_flags(db, actor="cli:admin", status=None)
    assert {f["source"] for f in listed} == {"catalog"} and all(f["catalog_uri"] for f in listed)


def test_another_products_photo_is_a_mismatch_and_its_own_products_photo_is_not(ws, db, shop, photos, tmp_path):
    _import(ws, db, str(shop))
    apple = str(photos / "Granny-Smith_test_003.jpg")
    banana = str(photos / "Banana_test_004.jpg")
    _reviews(ws, db, tmp_path, [  # the same photo in two reviews: the later one is a copy of the earlier one
        {"review_id": "apple_as_milk", "product": "Arla-Standard-Milk", "user_id": "u3", "image_uris": [apple]},
        {"review_id": "apple_as_apple", "product": "Granny-Smith", "user_id": "u1", "image_uris": [apple]},
        {"review_id": "banana_as_banana", "product": "Banana", "user_id": "u2", "image_uris": [banana]},
        {"review_id": "no_product", "user_id": "u4", "image_uris": [banana]},
    ])
    run_kind_now(ws, db, reuse.KIND)
    assert _flags(db) == {"apple_as_milk": [("mismatch", None)]}
    (image_id,) = db.execute("SELECT id FROM images WHERE review_id = 'apple_as_milk'").fetchone()
    flag = catalog_flags_of(db, image_id=image_id, actor="cli:admin")[0]
    assert flag["reason"].startswith("the photo looks like catalog product Granny-Smith (")
    assert "more than the reviewed product Arla-Standard-Milk" in flag["reason"]
    detail = json.loads(flag["detail"])
    assert detail["other_product"] == "Granny-Smith" and detail["other_best"] - detail["own_best"] > 0.3
    assert [s["side"] for s in flag["shown"]] == ["own"] * 3 + ["other"] * 3  # nearest images of both products
    assert flag["shown"][3]["caption"].startswith("looks like Granny-Smith: ")
    while (item := claim_next(db, inspector="ann")) is not None:
        submit(db, image_id=item["id"], label="product", actor="ann")
    outcome = review_outcomes(db, review_ids=["apple_as_milk"])["apple_as_milk"]
    assert outcome["credit"] is True and not outcome["held"]  # a mismatch asks a person to look, holds nothing
    row = next(r for r in export.rows(db) if r["review_id"] == "apple_as_milk")
    assert row["product_mismatch_flag"] == "open" and row["product_mismatch_reason"] == flag["reason"]
    assert reuse.unchecked_count(db) == 0  # each photo is checked once
    assert db.execute("SELECT COUNT(*) FROM reuse_flags WHERE source = 'catalog'").fetchone()[0] == 1


def _catalog_of(db, rows: list[tuple[str, list[float]]]):
    import numpy as np

    from services.reuse.catalog_checks import CatalogIndex

    for n, (product, vector) in enumerate(rows):
        unit = (np.array(vector) / np.linalg.norm(vector)).astype(np.float32)  # as the import stores them
        db.execute("INSERT INTO catalog_images (uri, product_id, sha256, vector, imported_at) VALUES (?, ?, ?, ?, ?)",
                   [f"/c/{n}.jpg", product, f"sha{n}", unit.tobytes(), "t"])
    index = CatalogIndex()
    assert index.sync(db) and not index.sync(db)  # loaded once, until the catalog changes
    return index


def test_the_product_space_discounts_how_photos_of_one_product_vary(db):
    import numpy as np

    from services.reuse.catalog_checks import MISMATCH_MARGIN, mismatch

    # products A and B differ along the first axis; photos of one product vary a lot along the second (the light)
    index = _catalog_of(db, [("A", [0.3, 0, 1]), ("A", [0.3, 1, 1]), ("B", [-0.3, -1, 1]), ("B", [-0.3, 0, 1])])
    photo = np.array([0.3, -1, 1], dtype=np.float32)  # an A photo in a light only a B image was shot in
    assert np.argmax(index.similarities(photo)) == 2  # plain cosine: nearest a B image
    own = index.product_similarities(photo)
    assert own[:2].max() > own[2:].max() + MISMATCH_MARGIN  # in the product space it is an A
    assert mismatch(index, product="A", sims=own) is None
    flag = mismatch(index, product="B", sims=own)
    assert flag["kind"] == "mismatch" and json.loads(flag["detail"])["other_product"] == "A"
    assert mismatch(index, product="C", sims=own) is None  # a product without catalog images: nothing to compare


def test_a_catalog_of_single_images_compares_plain_embeddings(db):
    import numpy as np

    index = _catalog_of(db, [("A", [1, 0, 0]), ("B", [0, 1, 0])])
    assert np.allclose(index.whiten, np.eye(3))
    photo = np.array([1, 0.1, 0], dtype=np.float32)
    centred = index.product_similarities(photo)
    assert centred[0] > centred[1]
