"""Yes/no checks page: the empty state, one check at a time, Yes copies the image, No and Skip do not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.core.config import set_setting
from services.core.jobs import create_job, run_job
from services.dataset_filter import job as dataset_filter
from tests.pages.helpers import ROOT, run_page, texts, write_photo
from tests.pages.markdown_check import shown_text

PAGE = str(ROOT / "pages" / "checks.py")






def shown_uri(at) -> str:
    """The source image on screen: its caption is neutral ('check 3', issue 20 item 2); an admin (the local
    operator here) sees its URI under Details."""
    assert not at.exception, at.exception
    assert len(at.image) == 1
    assert shown_text(at.image[0].captions[0]).startswith("check ")
    return at.expander[0].code[0].value


@pytest.fixture
def band(ws, db, tmp_path) -> dict:
    """A real filter job over three photos whose every image lands in the human band: nothing is a dog with
    certainty 1.0, and every confidence is at least 0."""
    src, out = tmp_path / "source", tmp_path / "out"
    for n, name in enumerate(("a.jpg", "b.jpg", "c.jpg")):
        write_photo(src / name, (60 * n + 30, 120, 200 - 50 * n))
    params = dataset_filter.validate_params(db, {"source": str(src), "destination": str(out), "labels": ["dog"],
                                                 "name": "dogs", "threshold": 1.0, "band_low": 0.0})
    job_id = create_job(db, kind="filter", params=params, actor="test")
    run_job(ws, job_id=job_id)
    checks = list(db.query("SELECT id, uri, status FROM filter_checks WHERE job_id = ? ORDER BY id", [job_id]))
    assert [(c["uri"], c["status"]) for c in checks] == [(str(src / n), "open") for n in ("a.jpg", "b.jpg", "c.jpg")]
    return {"job_id": job_id, "src": src, "out": out / "dogs", "checks": checks}


def test_no_checks_waiting(ws):
    at = run_page(PAGE)
    assert texts(at.info) == ["No yes/no checks are waiting."]
    assert not at.button and not at.image
    assert at.caption[0].value == "0 checks open · 0 answered yes · 0 answered no"


def test_yes_copies_the_image_and_adds_it_to_the_manifest(band, db):
    at = run_page(PAGE)
    first = band["checks"][0]
    assert shown_uri(at) == first["uri"]
    [question] = at.subheader
    assert shown_text(question.value) == "Does this image show a dog?"
    assert any(c.value.startswith("The detector's confidence: ") for c in at.caption)
    assert db.execute("SELECT claimed_by FROM filter_checks WHERE id = ?", [first["id"]]).fetchone()[0] == "local operator"
    for key, shortcut in (("ck_yes", "y"), ("ck_no", "n"), ("ck_skip", "s")):  # as Streamlit stores them
        assert at.button(key=key).proto.shortcut == shortcut, key

    at.button(key="ck_yes").click().run()
    copy = band["out"] / "a.jpg"
    row = db.execute("SELECT status, answered_by, copied_to FROM filter_checks WHERE id = ?", [first["id"]]).fetchone()
    assert row == ("yes", "local operator", str(copy))
    assert copy.read_bytes() == (band["src"] / "a.jpg").read_bytes()
    # the job had finished: its manifest is rewritten with the image a person confirmed
    [line] = [json.loads(x) for x in (band["out"] / "manifest.jsonl").read_text().splitlines()]
    assert line["source-ref"] == str(copy) and line["category-metadata"]["human-annotated"] == "yes"
    assert any(s.value.startswith(f"Check #{first['id']}: yes") for s in at.success)
    assert shown_uri(at) == band["checks"][1]["uri"]  # the next one at once
    assert at.caption[0].value == "2 checks open · 1 answered yes · 0 answered no"


def test_no_and_skip_copy_nothing_then_the_queue_is_empty(band, db):
    at = run_page(PAGE)
    a, b, c = band["checks"]
    at.button(key="ck_no").click().run()
    assert db.execute("SELECT status, copied_to FROM filter_checks WHERE id = ?", [a["id"]]).fetchone() == ("no", None)
    assert shown_uri(at) == b["uri"]
    at.button(key="ck_skip").click().run()
    assert shown_uri(at) == c["uri"]
    # a skipped check is given back: another inspector can take it at once
    assert db.execute("SELECT status, claimed_by FROM filter_checks WHERE id = ?", [b["id"]]).fetchone() == ("open", None)
    at.button(key="ck_skip").click().run()
    assert texts(at.info) == ["No yes/no checks are waiting. (Some were skipped this session.)"]
    assert not (band["out"] / "a.jpg").exists() and not (band["out"] / "b.jpg").exists()

    at.button(key="ck_unskip").click().run()
    assert shown_uri(at) == b["uri"]
    at.button(key="ck_yes").click().run()
    assert (band["out"] / "b.jpg").exists()
    assert at.caption[0].value == "1 check open · 1 answered yes · 1 answered no"


def test_yes_on_s3_copies_inside_the_bucket(ws, db, s3_bucket, tmp_path):
    store, bucket = s3_bucket
    set_setting(db, key="s3_endpoint_url", value=store.endpoint_url, actor="test")
    store.write(f"s3://{bucket}/in/x/a.jpg", Path(write_photo(tmp_path / "a.jpg", (90, 150, 30))).read_bytes())
    params = dataset_filter.validate_params(db, {"source": f"s3://{bucket}/in", "destination": f"s3://{bucket}/out",
                                                 "labels": ["dog"], "threshold": 1.0, "band_low": 0.0})
    run_job(ws, job_id=create_job(db, kind="filter", params=params, actor="test"))
    at = run_page(PAGE)
    assert shown_uri(at) == f"s3://{bucket}/in/x/a.jpg"
    assert not at.error  # the photo loads through the workspace's S3 endpoint
    at.button(key="ck_yes").click().run()
    assert texts(at.info) == ["No yes/no checks are waiting."]
    assert store.read(f"s3://{bucket}/out/dog/x/a.jpg") == store.read(f"s3://{bucket}/in/x/a.jpg")
    assert db.execute("SELECT status, copied_to FROM filter_checks").fetchall() == [
        ("yes", f"s3://{bucket}/out/dog/x/a.jpg")]
