"""Jobs page: launch, run (explicitly, on the test thread), watch and cancel jobs; import reviews and labels."""

from __future__ import annotations

import json

from services.core.jobs import get_job, run_job
from tests.pages.helpers import seed_reviews, start_app, write_photo
from tests.pages.markdown_check import shown_text


def progress_texts(at) -> list[str]:
    return [p.text for p in at.progress]


def result_figures(at) -> list[dict]:  # type: ignore[no-untyped-def]
    """The rows of the first job's result table (what, value), as the Result expander shows them."""
    table = next(d.value for d in at.dataframe if list(d.value.columns) == ["what", "value"])
    return table.to_dict("records")


def jobs_rows(db) -> list[dict]:
    rows = list(db.query("SELECT id, kind, state, params, created_by FROM jobs ORDER BY id"))
    for r in rows:
        r["params"] = json.loads(r["params"])
    return rows


def write_manifest(folder, rows: list[dict], name: str = "batch.jsonl") -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for n, rv in enumerate(rows):
        rv["image_uris"] = [write_photo(folder / f"{rv['review_id']}.jpg", (50 * n, 120, 60))]
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_no_jobs_yet(ws):
    at = start_app("pages/jobs.py")
    assert any(c.value == "No jobs yet." for c in at.caption)
    assert at.button(key="jobs_classify").disabled  # nothing waits for classification
    assert at.button(key="jobs_train").disabled  # no labels to train on
    assert at.button(key="jobs_import_manifest").disabled  # no path typed yet
    assert any(w.value.startswith("No model yet: classifying now sends every photo") for w in at.warning)


def test_classify_button_queues_a_job_that_runs_to_done(ws, db, tmp_path):
    seed_reviews(db, tmp_path / "photos", [
        {"review_id": "r1", "review_type": "product"},
        {"review_id": "r2", "review_type": "style"},
    ])
    at = start_app("pages/jobs.py")
    assert any(m.value == "2 photos wait for classification." for m in at.markdown)
    assert not at.button(key="jobs_classify").disabled
    at.button(key="jobs_classify").click().run()
    assert not at.exception

    rows = jobs_rows(db)
    assert [(r["kind"], r["state"], r["params"], r["created_by"]) for r in rows] == [
        ("classify", "queued", {}, "local operator")
    ]
    job_id = rows[0]["id"]
    assert [t.value for t in at.toast] == [f"Job {job_id} (classify) queued"]
    assert progress_texts(at) == [f"Job #{job_id} (classify) — queued · 0/0"]
    assert at.button(key=f"jobs_cancel_{job_id}")

    assert run_job(ws, job_id=job_id) == job_id
    at.run()
    assert not at.exception
    assert progress_texts(at) == [f"Job #{job_id} (classify) — done · 2/2"]
    assert at.progress[0].value == 100
    assert not [b for b in at.button if b.key == f"jobs_cancel_{job_id}"]  # a finished job cannot be cancelled
    assert not at.json  # the result reads as figures, not as the JSON the job stored
    assert {"what": "images by status · queued", "value": "2"} in result_figures(at)
    assert any(m.value == "0 photos wait for classification." for m in at.markdown)
    assert at.button(key="jobs_classify").disabled


def test_cancel_a_queued_job(ws, db, tmp_path):
    seed_reviews(db, tmp_path / "photos", [{"review_id": "r1", "review_type": "product"}])
    at = start_app("pages/jobs.py")
    at.button(key="jobs_classify").click().run()
    job_id = jobs_rows(db)[0]["id"]
    at.button(key=f"jobs_cancel_{job_id}").click().run()
    assert not at.exception
    assert get_job(db, job_id)["state"] == "cancelled"
    assert progress_texts(at) == [f"Job #{job_id} (classify) — cancelled · 0/0"]
    assert not [b for b in at.button if b.key == f"jobs_cancel_{job_id}"]
    assert run_job(ws, job_id=job_id) is None  # a cancelled job is never picked up
    assert db.execute("SELECT status FROM images").fetchall() == [("pending",)]


def test_import_manifest_by_path_queues_an_ingest_job_that_adds_the_reviews(ws, db, tmp_path):
    manifest = write_manifest(tmp_path / "incoming", [
        {"review_id": "m1", "review_type": "product", "product": "kettle"},
        {"review_id": "m22", "review_type": "style"},
    ])
    at = start_app("pages/jobs.py")
    at.text_input(key="jobs_manifest_uri").input(f"  {manifest} ").run()
    assert not at.button(key="jobs_import_manifest").disabled
    at.button(key="jobs_import_manifest").click().run()
    rows = jobs_rows(db)
    assert [(r["kind"], r["state"], r["params"]) for r in rows] == [("ingest", "queued", {"manifest": manifest})]
    assert db.execute("SELECT COUNT(*) FROM reviews").fetchone()[0] == 0  # nothing happens until the job runs

    run_job(ws, job_id=rows[0]["id"])
    at.run()
    assert not at.exception
    assert sorted(r[0] for r in db.execute("SELECT id FROM reviews")) == ["m1", "m22"]
    assert progress_texts(at)[0] == f"Job #{rows[0]['id']} (ingest) — done · 1/1"
    shown = result_figures(at)
    assert {"what": "reviews added", "value": "2"} in shown and {"what": "images added", "value": "2"} in shown
    assert any(m.value == "2 photos wait for classification." for m in at.markdown)


def test_import_uploaded_manifest(ws, db, tmp_path):
    manifest = write_manifest(tmp_path / "incoming", [{"review_id": "u1", "review_type": "product"}])
    at = start_app("pages/jobs.py")
    assert at.button(key="jobs_import_upload").disabled
    with open(manifest, "rb") as fh:
        at.file_uploader(key="jobs_upload").set_value(("batch.jsonl", fh.read(), "application/json"))
    at.run()
    at.button(key="jobs_import_upload").click().run()
    assert not at.exception
    job = jobs_rows(db)[0]
    saved = job["params"]["manifest"]  # kept under a unique name, so a second upload cannot replace it
    assert job["kind"] == "ingest" and saved.startswith(str(ws.objects_dir / "uploads")) and saved.endswith("-batch.jsonl")
    run_job(ws, job_id=job["id"])
    assert [r[0] for r in db.execute("SELECT id FROM reviews")] == ["u1"]


def test_ingest_of_a_missing_manifest_reports_the_failure(ws, db, tmp_path):
    at = start_app("pages/jobs.py")
    missing = str(tmp_path / "nowhere" / "batch.jsonl")
    at.text_input(key="jobs_manifest_uri").input(missing).run()
    at.button(key="jobs_import_manifest").click().run()
    job_id = jobs_rows(db)[0]["id"]
    run_job(ws, job_id=job_id)
    at.run()
    assert not at.exception
    assert progress_texts(at) == [f"Job #{job_id} (ingest) — failed · 1/1 · 1 failed"]
    assert "not found" in at.error[0].value and "nowhere" in at.error[0].value
    failed = at.dataframe[0].value
    assert list(failed["item"]) == [missing]
    assert failed["why"].str.len().min() > 0 and list(failed.columns) == ["item", "why", "when"]
    assert failed["when"][0].endswith(" UTC")  # a time as the app shows times, not raw ISO


def _import_labels(at, ws, db, source):
    at.text_input(key="jobs_label_src").input(source).run()
    at.button(key="jobs_import_labels").click().run()
    job = jobs_rows(db)[-1]
    assert (job["kind"], job["state"], job["params"]) == ("import-labels", "queued", {"source": source})
    run_job(ws, job_id=job["id"])
    at.run()
    assert not at.exception
    return get_job(db, job["id"])


def test_import_labels_from_a_bad_path_fails_the_job_with_a_clear_message(ws, db, tmp_path):
    at = start_app("pages/jobs.py")
    for bad in (str(tmp_path / "no_such_folder"), str(tmp_path / "no_such.manifest")):
        job = _import_labels(at, ws, db, bad)
        assert job["state"] == "failed" and "not found" in job["error"]
        assert any("not found" in e.value for e in at.error)
    write_photo(tmp_path / "unlabelled" / "misc" / "a.jpg", (10, 20, 30))
    job = _import_labels(at, ws, db, str(tmp_path / "unlabelled"))
    assert job["state"] == "failed" and "no photos found in class folders" in job["error"]
    assert db.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 0


def test_import_labels_from_a_class_folder(ws, db, tmp_path):
    root = tmp_path / "labelled"
    write_photo(root / "product" / "a.jpg", (200, 10, 10))
    write_photo(root / "package" / "b.jpg", (10, 200, 10))
    at = start_app("pages/jobs.py")
    job = _import_labels(at, ws, db, str(root))
    assert job["state"] == "done" and job["result"]["photos"] == 2
    assert sorted(db.execute("SELECT label FROM labels").fetchall()) == [("package",), ("product",)]
    assert any(c.value == "2 imported labels in this workspace." for c in at.caption)
    assert not at.button(key="jobs_train").disabled
    at.button(key="jobs_train").click().run()
    assert not at.exception
    assert [(r["kind"], r["state"]) for r in jobs_rows(db)][-1] == ("train", "queued")


def test_classify_tab_names_the_active_model(trained_ws):
    db = trained_ws.db()
    try:
        name = db.execute("SELECT name FROM model_versions WHERE active = 1").fetchone()[0]
        n_labels = db.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
    finally:
        db.close()
    at = start_app("pages/jobs.py")
    assert any(shown_text(c.value) == f"Active model: {name}" for c in at.caption)
    assert not at.warning
    assert n_labels > 0
    assert any(c.value == f"{n_labels:,} imported labels in this workspace." for c in at.caption)


def test_a_job_inside_a_long_file_says_where_it_is_and_its_bar_counts_the_file_s_share(ws, db, tmp_path):
    from services.core import jobs
    from services.faces import job as face_blur

    write_photo(tmp_path / "src" / "a.jpg", (10, 120, 60))
    job_id = face_blur.launch(db, {"source": str(tmp_path / "src"), "destination": str(tmp_path / "out")},
                              actor="cli:test")
    with db.atomic():
        db.execute("UPDATE jobs SET state = 'running', total = 2, done = 1 WHERE id = ?", [job_id])
    jobs.set_current(db, job_id=job_id, text="talk.mp4: frame 1,000 of about 2,000", share=0.5)
    at = start_app("pages/jobs.py")
    assert not at.exception, at.exception
    assert progress_texts(at) == [f"Job #{job_id} (faces) — running · 1/2"]
    assert at.progress[0].proto.value == 75  # one file done and half of the video in hand
    assert "Now: talk.mp4: frame 1,000 of about 2,000" in [shown_text(c.value) for c in at.caption]
