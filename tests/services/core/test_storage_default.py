"""Issue 19 item 8: with no storage roots added (the default) the console reads and writes inside its
workspace only; whatever the roots, only regular files and S3 objects are read, in chunks up to a size cap, and
each bad item fails alone while the valid rows of its batch load.

The named-pipe tests never wait on a clock in the passing case: the store opens without blocking and refuses
what is not a regular file. Before the fix a named pipe blocked the reading thread for good; the bounded join
only turns that hang into a failure, and the writer opened in ``finally`` releases such a reader.
"""

from __future__ import annotations

import json
import os
import threading

import pytest

from services.core.config import STORAGE_ROOTS_ENV, object_store, set_setting
from services.core.errors import InvalidInput, PermissionDenied
from services.core.storage import ObjectStore
from services.faces import job as faces_job
from services.reviews.ingest import ingest_manifest
from tests.conftest import jpeg_bytes


@pytest.fixture
def default_roots(monkeypatch):
    """The console as deployed by default: no roots in Settings and none in the environment."""
    monkeypatch.delenv(STORAGE_ROOTS_ENV, raising=False)


def _release(fifo: str) -> None:
    """Give a reader blocked opening ``fifo`` a writer that closes at once (end of file); no-op otherwise."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # no reader waiting: nothing to release
        pass


def _finishes(fn, fifo: str):  # type: ignore[no-untyped-def]
    """Run ``fn`` on a thread; its result (or its exception) once it returns. Fails if it is still blocked after
    a generous bound."""
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except Exception as exc:  # noqa: BLE001 - handed to the test's thread
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        t.join(60)
        assert not t.is_alive(), "reading a named pipe blocked"
    finally:
        _release(fifo)
        t.join()
    if "error" in out:
        raise out["error"]
    return out["result"]


def test_the_default_allows_the_workspace_only(db, ws, tmp_path, default_roots):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the console")
    os.symlink(secret, ws.objects_dir / "link.jpg")  # inside the workspace by name only
    store = object_store(db)
    assert store.roots == [str(ws.root)]
    store.write(str(ws.objects_dir / "uploads" / "m.jsonl"), b"{}\n")
    assert store.read(str(ws.objects_dir / "uploads" / "m.jsonl")) == b"{}\n"
    for outside in ("/etc/passwd", "file:///etc/passwd", str(secret), f"{ws.root}/../secret.txt",
                    f"{ws.objects_dir}/../../secret.txt", str(ws.objects_dir / "link.jpg"), "s3://any-bucket/key.jpg"):
        with pytest.raises(PermissionDenied, match="outside the storage roots"):
            store.read(outside)
    with pytest.raises(PermissionDenied):
        store.write(str(tmp_path / "planted.txt"), b"x")
    with pytest.raises(PermissionDenied):
        list(store.list(str(tmp_path)))
    assert not (tmp_path / "planted.txt").exists()


def test_an_admin_adds_roots_and_the_environment_may_too(db, ws, tmp_path, default_roots, monkeypatch):
    photos, more = tmp_path / "photos", tmp_path / "more"
    photos.mkdir()
    more.mkdir()
    (photos / "a.jpg").write_bytes(jpeg_bytes())
    (more / "b.jpg").write_bytes(jpeg_bytes())
    set_setting(db, key="storage_roots", value=[str(photos)], actor="cli:test")
    assert object_store(db).read(str(photos / "a.jpg"))[:2] == b"\xff\xd8"
    with pytest.raises(PermissionDenied):
        object_store(db).read(str(more / "b.jpg"))
    monkeypatch.setenv(STORAGE_ROOTS_ENV, f"s3://bucket/in:{more}:file:///srv/x")
    assert object_store(db).read(str(more / "b.jpg"))[:2] == b"\xff\xd8"
    assert {"s3://bucket/in/", "/srv/x"} <= set(object_store(db).roots)


def test_default_manifest_rows_outside_the_workspace_fail_alone(db, ws, tmp_path, default_roots):
    inside = ws.objects_dir / "uploads" / "ok.jpg"
    object_store(db).write(str(inside), jpeg_bytes())
    (tmp_path / "outside.jpg").write_bytes(jpeg_bytes(color=(1, 2, 3)))
    manifest = ws.objects_dir / "uploads" / "batch.jsonl"
    rows = [("good", str(inside)), ("passwd", "/etc/passwd"), ("url", "file:///etc/passwd"),
            ("dotdot", f"{ws.root}/../outside.jpg"), ("outside", str(tmp_path / "outside.jpg"))]
    manifest.write_text("".join(json.dumps({"review_id": r, "review_type": "product", "image_uris": [u]}) + "\n"
                                for r, u in rows))
    report = ingest_manifest(db, uri=str(manifest), store=object_store(db), actor="cli:test").as_dict()
    statuses = dict(db.execute("SELECT review_id, status FROM images").fetchall())
    assert statuses == {"good": "pending", "passwd": "failed", "url": "failed", "dotdot": "failed", "outside": "failed"}
    assert report["error_count"] == 4
    assert all("outside the storage roots" in e["reason"] for e in report["errors"])


def test_only_regular_files_are_read_and_reads_are_capped(tmp_path):
    store = ObjectStore(max_bytes=1000)  # no roots at all: the checks below hold whatever the roots
    (tmp_path / "small.bin").write_bytes(b"x" * 1000)
    (tmp_path / "big.bin").write_bytes(b"x" * 1001)
    os.mkfifo(tmp_path / "pipe.jpg")
    os.symlink("/dev/null", tmp_path / "null.jpg")
    assert store.read(str(tmp_path / "small.bin")) == b"x" * 1000
    with pytest.raises(InvalidInput, match="larger than"):
        store.read(str(tmp_path / "big.bin"))
    with pytest.raises(InvalidInput, match="a device, not a regular file"):
        store.read(str(tmp_path / "null.jpg"))
    with pytest.raises(InvalidInput, match="a device, not a regular file"):
        store.read("/dev/zero")
    with pytest.raises(InvalidInput, match="not a regular file"):
        store.size(str(tmp_path / "null.jpg"))
    fifo = str(tmp_path / "pipe.jpg")
    with pytest.raises(InvalidInput, match="a named pipe, not a regular file"):
        _finishes(lambda: store.read(fifo), fifo)
    with pytest.raises(InvalidInput, match="named pipe"):
        _finishes(lambda: store.local_file(fifo), fifo)


def test_a_named_pipe_a_device_and_a_huge_file_in_a_manifest_fail_alone(db, ws, tmp_path):
    set_setting(db, key="max_read_mb", value=1, actor="cli:test")
    set_setting(db, key="storage_roots", value=["/dev"], actor="cli:test")  # even an admin's careless root
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "ok.jpg").write_bytes(jpeg_bytes())
    (batch / "ok2.jpg").write_bytes(jpeg_bytes(color=(9, 9, 9)))
    os.mkfifo(batch / "pipe.jpg")
    os.symlink("/dev/null", batch / "null.jpg")
    (batch / "huge.jpg").write_bytes(jpeg_bytes() + b"\0" * (1 << 20))
    rows = [("good", "ok.jpg"), ("pipe", "pipe.jpg"), ("null", "null.jpg"), ("huge", "huge.jpg"), ("good2", "ok2.jpg")]
    manifest = batch / "batch.jsonl"
    manifest.write_text("".join(json.dumps({"review_id": r, "review_type": "product", "image_uris": [str(batch / n)]})
                                + "\n" for r, n in rows))
    fifo, store = str(batch / "pipe.jpg"), object_store(db)
    report = _finishes(lambda: ingest_manifest(ws.db(), uri=str(manifest), store=store, actor="cli:test").as_dict(),
                       fifo)
    statuses = dict(db.execute("SELECT review_id, status FROM images").fetchall())
    assert statuses == {"good": "pending", "good2": "pending", "pipe": "failed", "null": "failed", "huge": "failed"}
    reasons = {e["uri"].rsplit("/", 1)[1]: e["reason"] for e in report["errors"]}
    assert "named pipe" in reasons["pipe.jpg"] and "a device" in reasons["null.jpg"]
    assert "larger than 1 MB" in reasons["huge.jpg"]


def test_a_named_pipe_as_the_manifest_is_refused_at_once(db, ws, tmp_path):
    fifo = str(tmp_path / "batch.jsonl")
    os.mkfifo(fifo)
    store = object_store(db)
    with pytest.raises(InvalidInput, match="named pipe"):
        _finishes(lambda: ingest_manifest(ws.db(), uri=fifo, store=store, actor="cli:test"), fifo)


def test_face_blurring_writes_nowhere_outside_the_roots_by_default(db, ws, tmp_path, default_roots):
    source = ws.objects_dir / "faces-in"
    source.mkdir()
    for destination in (str(tmp_path / "out"), "/tmp/anywhere", "file:///etc/cron.d"):
        with pytest.raises(PermissionDenied, match="outside the storage roots"):
            faces_job.launch(db, {"source": str(source), "destination": destination}, actor="cli:test")
    assert faces_job.launch(db, {"source": str(source), "destination": str(ws.objects_dir / "faces-out")},
                            actor="cli:test")
