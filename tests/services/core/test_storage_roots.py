"""Storage roots: with roots set, nothing outside them is read, listed or written, whatever the URI says."""

from __future__ import annotations

import json
import os

import pytest

from services.core.config import STORAGE_ROOTS_ENV, get_settings, object_store, set_setting
from services.core.errors import InvalidInput, PermissionDenied
from services.core.storage import ObjectStore
from services.reviews.ingest import ingest_manifest
from tests.conftest import jpeg_bytes


@pytest.fixture(autouse=True)
def _only_the_roots_set_here(monkeypatch):
    """No roots from the environment (tests/conftest.py gives pytest's folders): only those each test sets."""
    monkeypatch.delenv(STORAGE_ROOTS_ENV, raising=False)


@pytest.fixture
def tree(tmp_path):
    allowed = tmp_path / "allowed"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "sub" / "ok.jpg").write_bytes(jpeg_bytes())
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the console")
    os.symlink(secret, allowed / "link.jpg")  # a link inside the root that points out of it
    return allowed, secret


def test_reads_lists_and_writes_stay_inside_the_roots(tree):
    allowed, secret = tree
    store = ObjectStore(roots=[str(allowed)])
    assert store.read(str(allowed / "sub" / "ok.jpg"))[:2] == b"\xff\xd8"
    for escape in (str(secret), f"{allowed}/sub/../../secret.txt", f"file://{secret}", str(allowed / "link.jpg"),
                   "/etc/passwd"):
        with pytest.raises(PermissionDenied, match="outside the storage roots allowed in Settings: an admin can add its folder"):
            store.read(escape)
    with pytest.raises(PermissionDenied):
        store.write(str(allowed.parent / "planted.txt"), b"x")
    assert not (allowed.parent / "planted.txt").exists()
    with pytest.raises(PermissionDenied):
        list(store.list(str(allowed.parent)))
    assert [o.key for o in store.list(str(allowed))] == ["link.jpg", "sub/ok.jpg"]  # listed, but unreadable above
    sibling = allowed.parent / "allowed-not"  # a prefix of the name is not inside
    sibling.mkdir()
    with pytest.raises(PermissionDenied):
        list(store.list(str(sibling)))


def test_s3_roots_are_bucket_prefixes():
    store = ObjectStore(roots=["s3://photos/reviews", "/srv/data"])
    store.check_allowed("s3://photos/reviews/2026/a.jpg")
    store.check_allowed("s3://photos/reviews")  # the prefix itself, for listing
    for outside in ("s3://photos/other/a.jpg", "s3://photos/reviews-old/a.jpg", "s3://elsewhere/reviews/a.jpg",
                    "s3://photos/reviews/../other/a.jpg"):
        with pytest.raises(PermissionDenied):
            store.check_allowed(outside)
    assert ObjectStore().roots is None  # no roots: anywhere (the default)


def test_roots_are_validated_and_the_workspace_is_always_allowed(db, ws, tree):
    allowed, secret = tree
    with pytest.raises(InvalidInput, match="absolute"):
        set_setting(db, key="storage_roots", value=["relative/folder"], actor="cli:test")
    with pytest.raises(InvalidInput, match=r"\.\."):
        set_setting(db, key="storage_roots", value=["s3://b/x/../y"], actor="cli:test")
    assert object_store(db).roots == [str(ws.root)]  # the default: the workspace only
    set_setting(db, key="storage_roots", value=[str(allowed), "s3://photos/in/"], actor="cli:test")
    assert get_settings(db)["storage_roots"] == sorted([os.path.realpath(allowed), "s3://photos/in/"])
    store = object_store(db)
    store.write(str(ws.objects_dir / "uploads" / "m.jsonl"), b"{}\n")  # the workspace stays writable
    with pytest.raises(PermissionDenied):
        store.read(str(secret))


def test_an_image_uri_outside_the_roots_fails_that_photo_and_the_rest_load(db, ws, tree):
    allowed, secret = tree
    set_setting(db, key="storage_roots", value=[str(allowed)], actor="cli:test")
    manifest = allowed / "batch.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in (
        {"review_id": "good", "review_type": "product", "image_uris": [str(allowed / "sub" / "ok.jpg")]},
        {"review_id": "sneaky", "review_type": "product", "image_uris": [f"{allowed}/../secret.txt"]},
    )) + "\n")
    report = ingest_manifest(db, uri=str(manifest), store=object_store(db), actor="cli:test").as_dict()
    assert report["error_count"] == 1 and "outside the storage roots" in report["errors"][0]["reason"]
    statuses = dict(db.execute("SELECT review_id, status FROM images").fetchall())
    assert statuses["good"] == "pending" and statuses["sneaky"] == "failed"
    with pytest.raises(PermissionDenied):  # and the manifest itself must be inside too
        ingest_manifest(db, uri=str(secret), store=object_store(db), actor="cli:test")


def test_a_line_feed_outside_the_roots_is_refused(db, tree, tmp_path):
    from services.lines.feed import ingest_source

    allowed, secret = tree
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / "a.jsonl").write_text('{"line_id": "L1", "camera_id": "c", "ts": 1, "count": 2}\n')
    os.symlink(feed / "a.jsonl", allowed / "frames.jsonl")  # inside the roots by name only
    set_setting(db, key="storage_roots", value=[str(allowed)], actor="cli:test")
    with pytest.raises(PermissionDenied):
        ingest_source(db, uri=str(feed), store=object_store(db), actor="cli:test")
    report = ingest_source(db, uri=str(allowed), store=object_store(db), actor="cli:test")
    assert report["frames_added"] == 0 and "outside the storage roots" in report["errors"][0]["reason"]
