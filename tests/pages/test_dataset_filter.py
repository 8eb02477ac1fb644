"""Dataset filter page: the form, label check with suggestions, estimate, dry run, launch, live panel, cancel, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from pages.common import md
from services.core.config import set_setting
from services.core.jobs import get_job, run_job
from tests.pages.helpers import ROOT, run_page, texts, write_photo

PAGE = str(ROOT / "pages" / "dataset_filter.py")






def table(at):
    """The one table of images on the page: the dry run's list or the results (a display-only st.dataframe has no
    element id, so its key is not in the tree); the job's result figures (what, value) and their tables are
    others."""
    images = [d.value for d in at.dataframe if {"seq", "image"} & set(d.value.columns)]
    assert len(images) == 1, [list(d.value.columns) for d in at.dataframe]
    return images[0]


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


@pytest.fixture
def source(tmp_path) -> Path:
    """Three small photos (one in a sub-folder, one PNG) and a file that is not an image."""
    src = tmp_path / "source"
    write_photo(src / "a.jpg", (200, 40, 40))
    write_photo(src / "b.jpg", (40, 200, 40))
    write_photo(src / "sub" / "c.png", (40, 40, 200), fmt="PNG")
    (src / "notes.txt").write_text("not a photo")
    return src


def fill(at: AppTest, *, source, destination, labels: str, name: str = "", threshold: float = 0.8,
         band_low: float = 0.5, cap: int = 0, misses: int = 0) -> AppTest:
    at.text_input(key="df_source").input(str(source))
    at.text_input(key="df_destination").input(str(destination))
    at.text_input(key="df_labels").input(labels)
    at.text_input(key="df_name").input(name)
    at.number_input(key="df_threshold").set_value(threshold)
    at.number_input(key="df_band_low").set_value(band_low)
    at.number_input(key="df_scan_cap").set_value(cap)
    at.number_input(key="df_misses").set_value(misses)
    at.run()
    assert not at.exception, at.exception
    return at


def filter_jobs(db) -> list[dict]:
    rows = list(db.query("SELECT id, state, params, created_by FROM jobs WHERE kind = 'filter' ORDER BY id"))
    for r in rows:
        r["params"] = json.loads(r["params"])
    return rows


def test_empty_page_has_nothing_to_run(ws):
    at = run_page(PAGE)
    assert "No filter jobs yet." in texts(at.caption)
    for key in ("df_check", "df_estimate", "df_dry_run", "df_launch"):
        assert at.button(key=key).disabled, key
    assert at.selectbox(key="df_detector").value == "local"
    assert not at.metric and not at.dataframe and not at.error


def test_check_labels_names_the_classes_or_suggests_close_names(ws, db):
    at = run_page(PAGE)
    at.text_input(key="df_labels").input("bird, birb").run()
    assert not at.button(key="df_check").disabled
    assert at.button(key="df_launch").disabled  # no source or destination yet
    at.button(key="df_check").click().run()
    assert not at.exception
    [error] = texts(at.error)
    assert "'birb' matches no ImageNet class" in error and "did you mean" in error and "bird" in error
    assert not at.success

    at.text_input(key="df_labels").input("bird , dog").run()
    at.button(key="df_check").click().run()
    found = texts(at.success)
    assert len(found) == 2 and not at.error
    assert found[0].startswith("**bird** matches 59 ImageNet classes: ") and "and 51 more" in found[0]
    assert found[1].startswith("**dog** matches 118 ImageNet classes: ")
    assert filter_jobs(db) == []  # checking launches nothing


def test_everyday_labels_say_where_they_come_from_and_what_the_threshold_means(ws, db):
    at = run_page(PAGE)
    at.text_input(key="df_labels").input("women, shoe, dog").run()
    assert not at.exception
    [meaning] = [c.replace("\\", "") for c in texts(at.caption) if c.startswith("What the threshold means")]
    assert "women: calibrated (as person" in meaning and "of the images scored 0.8, about 80% show it" in meaning
    assert "shoe: calibrated (as shoe" in meaning
    assert "dog: 0.8 is a sum of ImageNet class probabilities, not calibrated" in meaning
    at.button(key="df_check").click().run()
    found = texts(at.success)
    assert len(found) == 3 and not at.error
    assert found[0].startswith("**women** is found by the person models: ") and "BlazePose" in found[0]
    assert found[1].startswith("**shoe** (calibrated, as shoe) matches: ") and "sneaker" in found[1]
    assert found[2].startswith("**dog** matches 118 ImageNet classes: ")

    at.number_input(key="df_threshold").set_value(0.5).run()
    [meaning] = [c.replace("\\", "") for c in texts(at.caption) if c.startswith("What the threshold means")]
    assert "dog: 0.5 is a sum" in meaning and "of the images scored 0.5, about 50% show it" in meaning
    at.selectbox(key="df_detector").set_value("rekognition").run()
    [meaning] = [c.replace("\\", "") for c in texts(at.caption) if c.startswith("What the threshold means")]
    assert "women: 0.5 is Rekognition's own confidence (50%)" in meaning


def test_a_job_that_keeps_nothing_says_why_on_the_page(ws, db, source, tmp_path):
    # no image is a dog with certainty 1.0 and there is no band: nothing is kept
    at = fill(run_page(PAGE), source=source, destination=tmp_path / "out", labels="dog, cat", threshold=1.0,
              band_low=1.0)
    at.button(key="df_launch").click().run()
    [job] = filter_jobs(db)
    run_job(ws, job_id=job["id"])
    at.run()
    assert not at.exception and metrics(at)["Kept"] == "0"
    [warning] = texts(at.warning)
    why = get_job(db, job["id"])["result"]["nothing_kept"]
    assert warning == md(why["message"])
    plain = warning.replace("\\", "")
    assert plain.startswith("Nothing reached the threshold 1. Best confidences seen: dog ")
    assert "; cat " in plain and "would have kept 1" in plain
    best = why["best"]["dog"][0]["confidence"]
    assert 0 < best < 1 and why["would_keep"][0]["threshold"] <= best


def test_estimate_and_dry_run_list_the_scope_without_a_detector(ws, db, source, tmp_path):
    at = fill(run_page(PAGE), source=source, destination=tmp_path / "out", labels="dog", name="dogs", cap=2)
    at.button(key="df_estimate").click().run()
    assert not at.exception and not at.error
    assert metrics(at) == {"Images in scope": "3", "Scanned (after the cap)": "2", "Expected cost": "free (local)"}
    assert f"Output: {md(tmp_path / 'out' / 'dogs')} · 1 object that is not an image will be skipped" in texts(at.caption)

    at.button(key="df_dry_run").click().run()
    assert not at.exception and not at.error
    dry = table(at)  # the cap counts images, in scan (S3 key) order
    assert list(dry["image"]) == [str(source / "a.jpg"), str(source / "b.jpg")]
    assert list(dry["copy if kept"]) == [str(tmp_path / "out" / "dogs" / n) for n in ("a.jpg", "b.jpg")]
    assert any(m.startswith("Dry run: 2 images would be scanned") and "No detector was called" in m
               for m in texts(at.markdown))
    assert filter_jobs(db) == [] and db.execute("SELECT COUNT(*) FROM filter_results").fetchone()[0] == 0
    assert not (tmp_path / "out").exists()


def test_rekognition_estimate_prices_the_capped_scan(ws, db, source, tmp_path):
    at = fill(run_page(PAGE), source=source, destination=tmp_path / "out", labels="robin", cap=2)
    at.selectbox(key="df_detector").set_value("rekognition").run()
    at.button(key="df_check").click().run()
    assert texts(at.success) == ["**robin** is matched against Rekognition's label names, aliases and parents."]
    at.button(key="df_estimate").click().run()
    assert not at.error
    assert metrics(at) == {"Images in scope": "3", "Scanned (after the cap)": "2", "Expected cost": "$0.002"}
    said = " ".join(texts(at.info))  # the time from the rate limit and the requests in flight (Settings)
    assert "2 images" in said and "about 1 second at 50 requests a second" in said and "in flight" in said
    assert filter_jobs(db) == []  # no Rekognition call, no job


def test_bad_input_is_refused_before_launch(ws, db, source, tmp_path):
    at = fill(run_page(PAGE), source=source, destination=source / "clean", labels="dog")
    at.button(key="df_launch").click().run()
    assert not at.exception
    assert any("inside the source" in e for e in texts(at.error))

    empty = tmp_path / "empty"
    empty.mkdir()
    at = fill(at, source=empty, destination=tmp_path / "out", labels="dog")
    for key in ("df_estimate", "df_dry_run", "df_launch"):
        at.button(key=key).click().run()
        assert not at.exception
        assert any("holds no images" in e for e in texts(at.error)), key

    at = fill(at, source=source, destination=tmp_path / "out", labels="birb")
    at.button(key="df_launch").click().run()
    assert any("did you mean" in e and "bird" in e for e in texts(at.error))

    at = fill(at, source=source, destination=tmp_path / "out", labels="dog", threshold=0.4, band_low=0.6)
    at.button(key="df_launch").click().run()
    assert any("band" in e for e in texts(at.error))
    assert filter_jobs(db) == []
    assert "No filter jobs yet." in texts(at.caption)


def test_launch_runs_a_real_job_shown_live_with_results_and_report(ws, db, source, tmp_path):
    out = tmp_path / "out"
    # "entity" covers all 1,000 ImageNet classes: every image shows it, whatever the model thinks it is
    at = fill(run_page(PAGE), source=source, destination=out, labels="entity", name="everything", threshold=0.9)
    at.button(key="df_launch").click().run()
    assert not at.exception and not at.error
    [job] = filter_jobs(db)
    assert (job["state"], job["created_by"]) == ("queued", "local operator")
    assert job["params"] == {
        "source": str(source), "destination": str(out), "labels": ["entity"], "name": "everything",
        "threshold": 0.9, "band_low": 0.5, "scan_cap": None, "stop_after_misses": None, "detector": "local",
        "dry_run": False,
    }
    assert texts(at.toast) == [f"Filter job {job['id']} queued"]
    assert at.selectbox(key="df_job").value == job["id"]
    assert metrics(at)["State"] == "queued" and metrics(at)["Scanned"] == "0"
    assert "Nothing scanned yet." in texts(at.caption)
    assert at.button(key="df_cancel") and not [b for b in at.button if b.key == "df_resume"]

    assert run_job(ws, job_id=job["id"]) == job["id"]  # the worker's part, on this thread
    at.run()
    assert not at.exception and not at.error
    shown = metrics(at)
    assert {k: shown[k] for k in ("State", "Scanned", "Kept", "In the band", "Misses in a row")} == {
        "State": "done", "Scanned": "3", "Kept": "3", "In the band": "0", "Misses in a row": "0"}
    assert shown["Rate"].endswith("/s")
    assert not [b for b in at.button if b.key in ("df_cancel", "df_resume")]
    results = table(at)
    assert list(results["outcome"]) == ["kept", "kept", "skipped", "kept"]  # S3 key order: a, b, notes.txt, sub/c
    assert list(results["uri"]) == [str(source / n) for n in ("a.jpg", "b.jpg", "notes.txt", "sub/c.png")]
    assert results["error"].iloc[2] == "not an image (by its extension)"
    assert at.get("download_button")[0].proto.label == "Download the report (CSV)"

    copies = sorted(str(p.relative_to(out / "everything")) for p in (out / "everything").rglob("*") if p.is_file())
    assert copies == ["a.jpg", "b.jpg", "manifest.jsonl", "report.csv", "sub/c.png"]
    assert (out / "everything" / "sub" / "c.png").read_bytes() == (source / "sub" / "c.png").read_bytes()
    manifest = [json.loads(line) for line in (out / "everything" / "manifest.jsonl").read_text().splitlines()]
    assert [m["source-ref"] for m in manifest] == [str(out / "everything" / n) for n in ("a.jpg", "b.jpg", "sub/c.png")]
    assert any(c.startswith(f"Manifest: {md(out / 'everything' / 'manifest.jsonl')} (3 lines)") for c in texts(at.caption))
    rows = db.execute("SELECT uri, outcome, copied_to FROM filter_results WHERE job_id = ? ORDER BY seq",
                      [job["id"]]).fetchall()
    assert [r[1] for r in rows] == ["kept", "kept", "skipped", "kept"]


def test_band_cap_and_early_stop_show_in_the_panel(ws, db, source, tmp_path):
    # nothing here is a dog with certainty 1.0, and everything is at least 0.0: every image goes to a person
    at = fill(run_page(PAGE), source=source, destination=tmp_path / "out", labels="dog", threshold=1.0, band_low=0.0,
              cap=2)
    at.button(key="df_launch").click().run()
    [job] = filter_jobs(db)
    run_job(ws, job_id=job["id"])
    at.run()
    shown = metrics(at)
    assert (shown["Scanned"], shown["Kept"], shown["In the band"]) == ("2", "0", "2")
    assert list(table(at)["check"]) == ["open", "open"]
    assert db.execute("SELECT COUNT(*) FROM filter_checks WHERE job_id = ? AND status = 'open'",
                      [job["id"]]).fetchone()[0] == 2

    # a threshold no image reaches and no band: every image is a miss; stop after two in a row
    at = fill(at, source=source, destination=tmp_path / "out2", labels="dog", threshold=1.0, band_low=1.0, misses=2)
    at.button(key="df_launch").click().run()
    second = filter_jobs(db)[-1]
    assert at.selectbox(key="df_job").value == second["id"]
    run_job(ws, job_id=second["id"])
    at.run()
    shown = metrics(at)
    assert (shown["State"], shown["Scanned"], shown["Kept"], shown["Misses in a row"]) == ("done", "2", "0", "2")
    assert any("stopped early after too many misses in a row" in p.text for p in at.progress)

    at.selectbox(key="df_job").set_value(job["id"]).run()  # the first job again
    assert metrics(at)["In the band"] == "2"


def test_cancel_then_resume_from_the_page(ws, db, source, tmp_path):
    at = fill(run_page(PAGE), source=source, destination=tmp_path / "out", labels="entity", threshold=0.9)
    at.button(key="df_launch").click().run()
    [job] = filter_jobs(db)
    at.button(key="df_cancel").click().run()
    assert not at.exception
    assert get_job(db, job["id"])["state"] == "cancelled"
    assert metrics(at)["State"] == "cancelled"
    assert run_job(ws, job_id=job["id"]) is None  # a cancelled job is not picked up
    assert "Nothing was scanned." in texts(at.caption)

    at.button(key="df_resume").click().run()
    assert not at.exception
    assert get_job(db, job["id"])["state"] == "queued"
    run_job(ws, job_id=job["id"])
    at.run()
    assert metrics(at)["State"] == "done" and metrics(at)["Kept"] == "3"
    assert sorted(p.name for p in (tmp_path / "out" / "entity").rglob("*.*")) == [
        "a.jpg", "b.jpg", "c.png", "manifest.jsonl", "report.csv"]


def test_a_failed_job_shows_its_error_and_can_be_resumed(ws, db, source, tmp_path):
    at = fill(run_page(PAGE), source=source, destination=tmp_path / "out", labels="entity", threshold=0.9)
    at.button(key="df_launch").click().run()
    [job] = filter_jobs(db)
    for p in source.rglob("*"):  # the source disappears before the job starts: listing it fails
        if p.is_file():
            p.unlink()
    run_job(ws, job_id=job["id"])
    at.run()
    assert not at.exception
    assert metrics(at)["State"] == "failed"
    assert at.error and "source" in at.error[0].value
    assert at.button(key="df_resume")


def test_s3_source_and_destination_through_the_page(ws, db, s3_bucket, tmp_path):
    store, bucket = s3_bucket
    set_setting(db, key="s3_endpoint_url", value=store.endpoint_url, actor="test")
    set_setting(db, key="storage_roots", value=[f"s3://{bucket}"], actor="test")  # read and write only there
    for name, color in (("a.jpg", (200, 40, 40)), ("sub/b.jpg", (40, 200, 40))):
        store.write(f"s3://{bucket}/in/{name}", Path(write_photo(tmp_path / "photos" / name, color)).read_bytes())
    store.write(f"s3://{bucket}/in/readme.txt", b"not a photo")
    at = fill(run_page(PAGE), source=f"s3://{bucket}/in", destination=f"s3://{bucket}/clean", labels="entity",
              threshold=0.9)
    at.button(key="df_estimate").click().run()
    assert not at.error
    assert metrics(at)["Images in scope"] == "2"
    at.button(key="df_launch").click().run()
    [job] = filter_jobs(db)
    run_job(ws, job_id=job["id"])
    at.run()
    assert not at.exception and not at.error
    assert (metrics(at)["State"], metrics(at)["Kept"]) == ("done", "2")
    assert list(table(at)["copied_to"].dropna()) == [f"s3://{bucket}/clean/entity/a.jpg",
                                                     f"s3://{bucket}/clean/entity/sub/b.jpg"]
    keys = sorted(o.key for o in store.list(f"s3://{bucket}/clean"))
    assert keys == ["entity/a.jpg", "entity/manifest.jsonl", "entity/report.csv", "entity/sub/b.jpg"]
    assert store.read(f"s3://{bucket}/clean/entity/sub/b.jpg") == store.read(f"s3://{bucket}/in/sub/b.jpg")
