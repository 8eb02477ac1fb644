"""Face blurring page: launch with checked parameters, progress and failures, before and after."""

from __future__ import annotations

from PIL import Image

from services.core.jobs import run_job
from tests.pages.helpers import start_app, texts, write_photo
from tests.pages.markdown_check import shown_text


def test_launch_run_and_before_after(ws, db, tmp_path):
    src = tmp_path / "src"
    write_photo(src / "a.jpg", (200, 30, 30))
    Image.new("RGBA", (40, 30), (0, 0, 255, 128)).save(src / "b.png")
    (src / "bad.jpg").write_bytes(b"nope")
    at = start_app("pages/face_blur.py")
    assert texts(at.info) == ["No face-blurring job yet."]
    at.text_input(key="fb_source").set_value(str(src))
    at.text_input(key="fb_destination").set_value(str(src / "inside"))
    at.button(key="fb_start").click().run()
    assert any("must not be inside the source" in e for e in texts(at.error))
    at.text_input(key="fb_destination").set_value(str(tmp_path / "out"))
    at.selectbox(key="fb_mode").set_value("pixelate")
    at.button(key="fb_start").click().run()
    (job_id, params) = db.execute("SELECT id, params FROM jobs WHERE kind = 'faces'").fetchone()
    assert '"mode": "pixelate"' in params and '"keep_metadata": false' in params
    assert run_job(ws, job_id=job_id) == job_id
    at.run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["State"], metrics["Done"], metrics["Failed"], metrics["Files"]) == ("done", "2", "1", "3")
    assert "Before and after" in texts(at.subheader)
    captions = [c for img in at.image for c in img.captions]
    assert sum(c.startswith("before:") for c in captions) == 2 and sum(c.startswith("after:") for c in captions) == 2
    import re

    assert all(re.search(r"^after: (1 face|\d+ faces) hidden \(pixelate\) · \d+×\d+, (JPEG|PNG)", c.replace("\\", ""))
               for c in captions if c.startswith("after:")), captions
    assert (tmp_path / "out" / "a.jpg").exists() and (tmp_path / "out" / "b.png.faces.json").exists()
    downloads = at.get("download_button")  # the anonymised files themselves, read when pressed
    assert sorted(b.proto.label for b in downloads) == ["Download a.jpg", "Download b.png"]


def test_a_video_shows_the_output_and_sample_frames(ws, db, tmp_path):
    import shutil
    from pathlib import Path

    import pytest

    videos = Path(__file__).resolve().parents[3] / "shared" / "samples" / "video"
    if not videos.is_dir():
        pytest.skip("../shared/samples/video not found (a fresh clone)")
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(videos / "fr_short_hamilton_clip.mp4", src / "clip.mp4")
    from services.faces import job as face_blur

    job_id = face_blur.launch(db, {"source": str(src), "destination": str(tmp_path / "out"), "detect_every": 5},
                              actor="cli:test")
    assert run_job(ws, job_id=job_id) == job_id
    at = start_app("pages/face_blur.py")
    assert not at.exception, at.exception
    import re

    after = [c for c in texts(at.caption) if c.startswith("after: ")]
    assert len(after) == 1 and re.search(r"^after: \d+ faces followed, at most \d+ in one frame, masked on \d+ of "
                                          r"\d+ frames \(detected every 5 frames\)", after[0]), after
    captions = [c for img in at.image for c in img.captions]
    assert any(c.endswith(", before") for c in captions) and any(c.endswith(", after") for c in captions)
    assert len(at.get("video")) == 2  # issue 20 item 7: the source plays beside the output, not only a caption


def test_a_running_job_says_how_long_is_left(ws, db, tmp_path):
    """Issue 20 item 7: the progress bar gives the time left, at the pace of the files done so far."""
    from datetime import UTC, datetime, timedelta

    from services.faces import job as face_blur

    (tmp_path / "src").mkdir()
    job_id = face_blur.launch(db, {"source": str(tmp_path / "src"), "destination": str(tmp_path / "out")},
                              actor="cli:test")
    db.execute("UPDATE jobs SET state = 'running', total = 70, done = 10 WHERE id = ?", [job_id])
    now = datetime.now(UTC)
    for n in range(10):  # a file every 12 seconds, the last one just now: 60 left take about 12 minutes
        db.execute("INSERT INTO job_items (job_id, item, state, updated_at) VALUES (?, ?, 'done', ?)",
                   [job_id, f"f{n}.jpg", (now - timedelta(seconds=12 * (9 - n))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")])
    at = start_app("pages/face_blur.py")
    assert not at.exception, at.exception
    assert [p.proto.text for p in at.get("progress")] == ["10 of 70 files · about 12 min left"]


def test_every_result_can_be_paged_through_and_flagged_files_come_first(ws, db, tmp_path):
    import shutil

    import pytest

    from services.faces import job as face_blur
    from tests.services.faces.test_report import CHEERING, FACES

    if not (FACES / CHEERING).is_file():
        pytest.skip("../shared/samples/faces not found (a fresh clone)")
    src = tmp_path / "src"
    for n in range(6):
        write_photo(src / f"p{n}.jpg", (20 * n, 90, 140))
    shutil.copy(FACES / CHEERING, src / "p3_crowd.jpg")
    job_id = face_blur.launch(db, {"source": str(src), "destination": str(tmp_path / "out")}, actor="cli:test")
    assert run_job(ws, job_id=job_id) == job_id
    at = start_app("pages/face_blur.py")
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Flagged for a look"] == "1" and int(metrics["Faces found"].replace(",", "")) >= 12
    flagged = next(df.value for df in at.dataframe if "why" in df.value.columns)
    assert flagged["file"].tolist() == ["p3_crowd.jpg"] and flagged["why"][0].startswith("crowd: ")

    def page_files() -> list[str]:
        return next(df.value for df in at.dataframe if "look" in df.value.columns)["file"].tolist()

    assert at.selectbox(key="fb_per_page").value == 6 and len(page_files()) == 6
    at.number_input(key="fb_page").set_value(2).run()
    assert not at.exception, at.exception
    assert len(page_files()) == 1 and any("File 7 of 7" in c for c in texts(at.caption))
    at.toggle(key="fb_only_flagged").set_value(True).run()
    assert page_files() == ["p3_crowd.jpg"] and at.number_input(key="fb_page").value == 1
    captions = [c for img in at.image for c in img.captions]
    assert any(c.startswith("after: ") and "look: crowd" in c for c in captions)


def test_the_job_picker_names_each_job_by_time_and_source_not_its_state_which_goes_stale(ws, db, tmp_path):
    from services.faces import job as face_blur

    src = tmp_path / "holiday"
    write_photo(src / "a.jpg", (40, 90, 160))
    first = face_blur.launch(db, {"source": str(src), "destination": str(tmp_path / "out1")}, actor="cli:test")
    run_job(ws, job_id=first)
    second = face_blur.launch(db, {"source": str(src), "destination": str(tmp_path / "out2")}, actor="cli:test")
    at = start_app("pages/face_blur.py")
    assert not at.exception, at.exception
    names = at.selectbox(key="fb_job").options
    assert names[0].startswith(f"#{second} · 20") and names[1].startswith(f"#{first} · 20"), names
    assert all(" UTC · " in n and n.endswith("holiday") for n in names), names
    assert not any(state in n for n in names for state in ("queued", "done")), names


def test_a_download_reads_the_output_outside_the_session(ws, db, tmp_path, monkeypatch):
    """Streamlit runs a download's data function on a thread of its own, with no session: it must read the file
    without asking the session for anything (asking broke every page of the app after one press)."""
    import threading

    from streamlit.delta_generator import DeltaGenerator

    from services.faces import job as face_blur

    src = tmp_path / "src"
    write_photo(src / "a.jpg", (90, 40, 160))
    job_id = face_blur.launch(db, {"source": str(src), "destination": str(tmp_path / "out")}, actor="cli:test")
    run_job(ws, job_id=job_id)
    pressed = {}
    real = DeltaGenerator.download_button

    def keep(self, label, data, **kwargs):  # type: ignore[no-untyped-def]
        pressed[label] = data
        return real(self, label, data, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", keep)
    at = start_app("pages/face_blur.py")
    assert not at.exception, at.exception
    import pages.common

    def no_session(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the download thread has no session")  # what the real server's thread meets

    monkeypatch.setattr(pages.common, "db", no_session)
    monkeypatch.setattr(pages.common, "current_user", no_session)
    got = {}
    reader = threading.Thread(target=lambda: got.update(data=pressed["Download a.jpg"]()))  # no script run context
    reader.start()
    reader.join()
    assert got["data"] == (tmp_path / "out" / "a.jpg").read_bytes()


def test_a_running_job_says_how_far_it_is_inside_a_long_file(ws, db, tmp_path):
    from services.core import jobs
    from services.faces import job as face_blur

    src = tmp_path / "src"
    write_photo(src / "a.jpg", (10, 120, 60))
    job_id = face_blur.launch(db, {"source": str(src), "destination": str(tmp_path / "out")}, actor="cli:test")
    with db.atomic():
        db.execute("UPDATE jobs SET state = 'running', total = 3 WHERE id = ?", [job_id])
    jobs.set_current(db, job_id=job_id, text="talk.mp4: frame 1,200 of about 4,500", share=1200 / 4500)
    at = start_app("pages/face_blur.py")
    assert not at.exception, at.exception
    assert "Now: talk.mp4: frame 1,200 of about 4,500" in [shown_text(c) for c in texts(at.caption)]
    (bar,) = at.get("progress")
    assert bar.proto.value == int(100 * (1200 / 4500) / 3)  # the video in hand counts by its frames


def test_a_destination_that_holds_files_is_refused_unless_replacing_is_turned_on(ws, db, tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    write_photo(src / "a.jpg", (150, 60, 20))
    write_photo(out / "a.jpg", (20, 60, 150))  # an earlier run's output, or someone's own photo
    at = start_app("pages/face_blur.py")
    at.text_input(key="fb_source").set_value(str(src))
    at.text_input(key="fb_destination").set_value(str(out))
    at.button(key="fb_start").click().run()
    assert any("already holds 1 file, which outputs" in shown_text(e) for e in texts(at.error)), texts(at.error)
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
    at.toggle(key="fb_replace").set_value(True)
    at.button(key="fb_start").click().run()
    assert not at.error and db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 1
