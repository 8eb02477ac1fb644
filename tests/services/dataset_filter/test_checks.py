"""services.dataset_filter.checks: yes/no checks on band images, leased to one inspector at a time."""

from __future__ import annotations

import json
import threading

import pytest

from services.core import jobs
from services.core.config import set_setting
from services.core.errors import InvalidInput, NotFound
from services.core.storage import ObjectStore
from services.dataset_filter import checks as fc
from services.dataset_filter import job as df
from tests.services.dataset_filter.test_job import FakeDetector, make_folder, params, put, s3_params
from tests.threads import run_at_once


@pytest.fixture
def band_job(ws, db, tmp_path, monkeypatch):
    """A finished filter job over local folders: one kept image and three in the band."""
    src = make_folder(tmp_path / "src", ["a.jpg", "b.jpg", "c.jpg", "sub/d.jpg", "e.jpg"])
    det = FakeDetector({"a.jpg": 0.9, "b.jpg": 0.6, "c.jpg": 0.7, "d.jpg": 0.55})
    monkeypatch.setitem(df.DETECTORS, "local", lambda ws, settings, store: det)
    job_id = df.launch(db, params(src, tmp_path / "out"), actor="admin")
    jobs.run_job(ws, job_id=job_id)
    assert jobs.get_job(db, job_id)["state"] == "done"
    return job_id, src, tmp_path / "out" / "birds"


def manifest(out) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_two_inspectors_never_get_the_same_check_and_a_lease_expires(db, band_job) -> None:
    job_id, src, _ = band_job
    first = fc.claim_next_check(db, inspector="ann", now=1000.0)
    assert first["uri"] == str(src / "b.jpg") and first["question"] == "Does this image show a bird?"
    assert first["claimed_by"] == "ann" and first["lease_expires"] == 1300.0
    assert fc.claim_next_check(db, inspector="ann", now=1001.0)["id"] == first["id"]  # a reload: the same one
    second = fc.claim_next_check(db, inspector="bob", now=1002.0)
    third = fc.claim_next_check(db, inspector="cy", now=1003.0)
    assert len({first["id"], second["id"], third["id"]}) == 3
    assert fc.claim_next_check(db, inspector="dee", now=1004.0) is None
    assert fc.claim_next_check(db, inspector="bob", skip=[second["id"]], now=1005.0) is None
    fc.release_check(db, check_id=third["id"], inspector="cy")
    assert fc.claim_next_check(db, inspector="bob", skip=[second["id"]], now=1006.0)["id"] == third["id"]
    summary = fc.checks_summary(db, now=1006.0)
    assert {k: summary[k] for k in ("open", "claimed", "yes", "no", "total")} == {
        "open": 3, "claimed": 3, "yes": 0, "no": 0, "total": 3}
    assert summary["by_job"][job_id]["open"] == 3
    assert fc.claim_next_check(db, inspector="dee", now=1400.0)["id"] == first["id"]  # ann's lease expired
    with pytest.raises(InvalidInput, match="inspector"):
        fc.claim_next_check(db, inspector=" ")


def test_concurrent_claims_from_threads_get_distinct_checks(ws, db, band_job) -> None:
    got: list[int] = []
    lock = threading.Lock()

    def claim(name: str) -> None:
        conn = ws.db()
        try:
            check = fc.claim_next_check(conn, inspector=name)
            with lock:
                got.append(check["id"] if check else None)
        finally:
            conn.close()

    run_at_once([lambda n=n: claim(f"i{n}") for n in range(5)])
    ids = [g for g in got if g is not None]
    assert len(ids) == 3 and len(set(ids)) == 3 and got.count(None) == 2


def test_yes_copies_and_rewrites_the_manifest_no_is_recorded(db, band_job) -> None:
    job_id, src, out = band_job
    store = ObjectStore()
    assert [m["source-ref"] for m in manifest(out)] == [str(out / "a.jpg")]
    check = fc.claim_next_check(db, inspector="ann")
    with pytest.raises(InvalidInput, match="being answered by ann"):
        fc.answer_check(db, check_id=check["id"], yes=True, actor="bob", store=store)
    done = fc.answer_check(db, check_id=check["id"], yes=True, actor="ann", store=store)
    assert done["status"] == "yes" and done["answered_by"] == "ann" and done["copied_to"] == str(out / "b.jpg")
    assert (out / "b.jpg").read_bytes() == (src / "b.jpg").read_bytes()
    lines = manifest(out)
    assert [m["source-ref"] for m in lines] == [str(out / "a.jpg"), str(out / "b.jpg")]
    meta = lines[1]["category-metadata"]
    assert meta["human-annotated"] == "yes" and meta["class-name"] == "bird" and meta["confidence"] == 1.0
    with pytest.raises(InvalidInput, match="already answered yes"):
        fc.answer_check(db, check_id=check["id"], yes=False, actor="ann", store=store)

    nxt = fc.claim_next_check(db, inspector="bob")
    no = fc.answer_check(db, check_id=nxt["id"], yes=False, actor="bob", store=store)
    assert no["status"] == "no" and no["copied_to"] is None and not (out / "c.jpg").exists()
    d = fc.claim_next_check(db, inspector="bob")
    fc.answer_check(db, check_id=d["id"], yes=True, actor="bob", store=store)
    assert (out / "sub" / "d.jpg").is_file()  # the key relative to the source is kept
    report = (out / "report.csv").read_text()
    assert "yes" in report and ",no," in report
    summary = fc.checks_summary(db, job_id=job_id)
    assert (summary["yes"], summary["no"], summary["open"]) == (2, 1, 0)
    assert fc.claim_next_check(db, inspector="ann") is None
    assert [c["status"] for c in fc.list_checks(db, job_id=job_id)] == ["yes", "no", "yes"]
    audit = [json.loads(r[0])["answer"] for r in db.execute(
        "SELECT detail FROM audit_log WHERE action = 'filter_check.answer' ORDER BY id")]
    assert audit == ["yes", "no", "yes"]
    with pytest.raises(NotFound):
        fc.answer_check(db, check_id=999, yes=True, actor="ann", store=store)


def test_a_failed_copy_leaves_the_check_open(db, band_job) -> None:
    _, src, out = band_job
    check = fc.claim_next_check(db, inspector="ann")
    (src / "b.jpg").unlink()
    with pytest.raises(NotFound, match="b.jpg"):
        fc.answer_check(db, check_id=check["id"], yes=True, actor="ann", store=ObjectStore())
    assert db["filter_checks"].get(check["id"])["status"] == "open"


def test_yes_on_s3_copies_server_side(ws, db, s3_bucket, monkeypatch) -> None:
    store, bucket = s3_bucket
    set_setting(db, key="s3_endpoint_url", value=store.endpoint_url, actor="t")
    monkeypatch.setattr(df, "store_for", lambda db: store)
    put(store, bucket, ["x/1.jpg", "x/2.jpg"])
    det = FakeDetector({"1.jpg": 0.6, "2.jpg": 0.95})
    monkeypatch.setitem(df.DETECTORS, "local", lambda ws, settings, s: det)
    job_id = df.launch(db, s3_params(bucket), actor="admin", store=store)
    jobs.run_job(ws, job_id=job_id)
    ops: list[str] = []
    store.client.meta.events.register("provide-client-params.s3.*", lambda event_name, **k: ops.append(
        event_name.rsplit(".", 1)[-1]))
    check = fc.claim_next_check(db, inspector="ann")
    fc.answer_check(db, check_id=check["id"], yes=True, actor="ann", store=store)
    assert ops.count("CopyObject") == 1 and "GetObject" not in ops
    text = store.read(f"s3://{bucket}/clean/birds/manifest.jsonl").decode()
    assert [json.loads(x)["source-ref"] for x in text.splitlines()] == [
        f"s3://{bucket}/clean/birds/x/1.jpg", f"s3://{bucket}/clean/birds/x/2.jpg"]
