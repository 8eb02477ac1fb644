"""Face blurring (admin): anonymised copies of a folder or S3 prefix of images and videos; live progress, cancel,
resume; the faces found per file, the files flagged for a human look, and before/after for every file done, page
by page."""

from functools import partial

import pandas as pd
import streamlit as st

from pages.common import current_user, db, ensure_worker, md, show_error, show_photo, store
from pages.job_panel import failed_table, job_controls, live_job_panel, now_line, pick_job
from pages.markup import plural
from services.core import jobs
from services.core.errors import ConsoleError, InvalidInput
from services.core.storage import join
from services.core.wording import duration_text
from services.faces import job as face_blur
from services.faces.detection import DEFAULT_THRESHOLD
from services.faces.masks import MODES, SHAPES
from services.faces.report import CROWD, WEAK_MIN
from services.faces.search import SURE

PLAYABLE = (".mp4", ".m4v", ".webm", ".ogv", ".ogg")  # what a browser plays; AVI, MOV, MKV mostly not
FLAG_HELP = (f"A file is flagged for a look when it is a crowd ({CROWD} faces or more, in a photo or in one frame of "
             f"a video), when at least {WEAK_MIN} faces were found and a third or more of them were weak, or when a "
             "mask left detail in a face.")


def store_bytes(uri: str) -> bytes:
    return store().read(uri)


st.title("Face blurring")
conn = db(needs="jobs.manage")
user = current_user()

with st.form("fb_form"):
    c1, c2 = st.columns(2)
    source = c1.text_input("Source folder or s3://bucket/prefix", key="fb_source")
    destination = c2.text_input("Destination folder or s3://bucket/prefix", key="fb_destination",
                                help="Each image is written under the same relative path, with a .faces.json beside it.")
    c1, c2, c3 = st.columns(3)
    detector = c1.selectbox("Detector", ["local", "rekognition"], key="fb_detector",
                            help="local: CenterFace, offline, searching each image at its own size, mirrored, and at "
                                 "twice its size in tiles, so faces 10 pixels wide in crowds are found. rekognition: "
                                 "Amazon Rekognition DetectFaces, about $0.001 an image.")
    mode = c2.selectbox("Anonymise by", MODES, key="fb_mode",
                        help="Each removes a small face's detail as surely as a large one's. blur: a Gaussian blur "
                             "scaled to the face; pixelate: soft blocks of a tenth of the face, never under 5 pixels; "
                             "fill: solid black.")
    shape = c3.selectbox("Mask", SHAPES, key="fb_shape", help="ellipse follows a face; box covers its whole rectangle.")
    c1, c2, c3 = st.columns(3)
    scale = c1.slider("Mask scale", 1.0, 2.0, 1.3, 0.05, key="fb_scale",
                      help="How much larger than the detected face the mask is, to cover hair, ears and chin.")
    threshold = c2.slider("Detection threshold", 0.05, 0.95, DEFAULT_THRESHOLD, 0.05, key="fb_threshold",
                          help="Lower finds more faces (and more false ones); for anonymisation a miss costs more. "
                               "The default was chosen recall first on annotated crowd photos; a face scored under "
                               f"{SURE} is kept only when two passes agree (in a video, two views: the whole frame "
                               "or a tile, upright or mirrored).")
    keep = c3.toggle("Keep EXIF metadata (GPS included)", value=False, key="fb_keep",
                     help="Off by default: camera, time and location data are dropped from every output.")
    redact = st.radio("Redact", face_blur.REDACT, horizontal=True, key="fb_redact",
                      help="faces; labels: shipping labels on parcels (barcodes, QR codes and text blocks, hidden in "
                           "boxes with the same mode); both. Videos get faces only: a labels job takes images alone.")
    every = st.slider("Videos: look for faces every k-th frame", 1, 10, 3, key="fb_every",
                      help="Faces found are tracked, and their masks filled in between and held a little before and "
                           "after, so a face seen at frames 9 and 12 is masked at 10 and 11 too. 1 is the surest and "
                           "slowest; 3 keeps a 720p video faster than real time here; higher misses faces that "
                           "appear only briefly. Rekognition samples videos itself.")
    replace = st.toggle("Replace files already in the destination", value=False, key="fb_replace",
                        help="Outputs keep their source's names: a file of the same name in the destination is "
                             "written over. Off, a destination that holds files already is refused.")
    if st.form_submit_button("Start", key="fb_start", type="primary"):
        try:
            there = face_blur.files_in_destination(conn, destination=destination, actor=user.name) \
                if destination.strip() and not replace else 0
            if there:
                raise InvalidInput(f"the destination already holds {plural(there, 'file')}"
                                   f"{' or more' if there >= 1000 else ''}, which outputs of the same names would "
                                   "replace: choose an empty folder, or turn on 'Replace files already in the "
                                   "destination'")
            job_id = face_blur.launch(conn, {"source": source, "destination": destination, "detector": detector,
                                             "mode": mode, "shape": shape, "mask_scale": scale, "threshold": threshold,
                                             "keep_metadata": keep, "detect_every": every, "redact": redact},
                                            actor=user.name)
            st.session_state["fb_job"] = job_id
            ensure_worker()
            st.toast(f"Job {job_id} queued")
        except ConsoleError as exc:
            show_error(exc)

job_id = pick_job(conn, kind=face_blur.KIND, actor=user.name, key="fb_job", label="Job",
                  empty="No face-blurring job yet.", notice=st.info)


def render(fresh, job) -> None:  # type: ignore[no-untyped-def]
    """Progress and controls, then the failures and before and after for the files done."""
    p = job["params"]
    st.markdown(f"**#{job_id}** · {md(p['source'])} → {md(p['destination'])} · {md(p['detector'])} · {md(p['mode'])} "
                f"{md(p['shape'])} ×{p['mask_scale']} · threshold {p['threshold']}"
                + (" · metadata kept" if p.get("keep_metadata") else " · metadata dropped")
                + (f" · redact {md(p['redact'])}" if p.get("redact", "faces") != "faces" else ""))
    m = st.columns(4)
    m[0].metric("State", job["state"])
    m[1].metric("Done", f"{job['done']:,}")
    m[2].metric("Failed", f"{job['failed']:,}")
    m[3].metric("Files", f"{job['total']:,}", help="Images and videos listed in the source")
    if job["total"]:
        finished = job["done"] + job["failed"]
        left = duration_text(jobs.time_left(fresh, job_id=job_id))
        st.progress(min(1.0, jobs.progress(job) / job["total"]),  # a video in hand counts by its frames
                    text=f"{finished:,} of {plural(job['total'], 'file')}" + (f" · {left} left" if left else
                         " · time left: known after the first files" if job["state"] == "running" else ""))
    now_line(st, job)
    if job["error"]:
        st.error(md(job["error"].splitlines()[0]), icon=":material/error:")
    job_controls(fresh, job, key="fb", actor=user.name)
    failed = jobs.failed_items(fresh, job_id=job_id)
    if failed:
        with st.expander(f"{plural(len(failed), 'file')} failed"):
            failed_table(failed, key="fb_failed")
    summary(job.get("result") or {})
    browse(fresh, job)


def summary(result: dict) -> None:
    """The job's report: faces found and the files flagged for a human look, with the reasons."""
    if "faces_found" not in result:
        return
    m = st.columns(2)
    m[0].metric("Faces found", f"{result['faces_found']:,}",
                help="A photo's faces; in a video, each face followed from where it is first seen until it is lost: "
                     "a face lost (turned away, hidden, after a cut) and found again counts again.")
    m[1].metric("Flagged for a look", f"{result['files_flagged']:,}", help=FLAG_HELP)
    if result["flagged"]:
        with st.expander(f"{plural(result['files_flagged'], 'file')} flagged for a human look", expanded=True):
            rows = [{"file": f["key"], "faces": f["faces"], "why": "; ".join(f["reasons"])} for f in result["flagged"]]
            st.dataframe(pd.DataFrame(rows), hide_index=True, key="fb_flagged", width="stretch",
                         column_config={"why": st.column_config.TextColumn("why", width="large")})


def browse(fresh, job) -> None:  # type: ignore[no-untyped-def]
    """Every finished file, a page at a time: what was found, and before and after."""
    result = job.get("result") or {}
    c1, c2, c3 = st.columns(3)
    only = c1.toggle("Only files flagged for a look", key="fb_only_flagged", disabled="flagged" not in result,
                     help="Available once the job has finished.")
    per = c2.selectbox("Files per page", (6, 12, 24, 48), key="fb_per_page")
    total = face_blur.results(fresh, job_id=job_id, actor=user.name, limit=0, flagged_only=only)["total"]
    if not total:
        st.caption("No files finished yet." if not only else "No file was flagged.")
        return
    pages = max(1, -(-total // per))
    if st.session_state.get("fb_page", 1) > pages:  # fewer pages than before (more per page, or the filter)
        st.session_state["fb_page"] = pages
    page = int(c3.number_input(f"Page (of {pages})", min_value=1, max_value=pages, step=1, key="fb_page"))
    shown = face_blur.results(fresh, job_id=job_id, actor=user.name, offset=(page - 1) * per, limit=per,
                              flagged_only=only)["items"]
    st.subheader("Before and after")
    first, last = (page - 1) * per + 1, (page - 1) * per + len(shown)
    st.caption(f"File {first} of {total}" if first == last else f"Files {first}-{last} of {total}")
    st.dataframe(pd.DataFrame([{"file": d["key"], "faces": d.get("faces_found", len(d.get("faces", []))),
                                "weak": d.get("weak"), "look": "; ".join(d.get("review", []))} for d in shown]),
                 hide_index=True, key="fb_results", width="stretch",
                 column_config={"weak": st.column_config.NumberColumn(
                                    "weak", help=f"Faces scored under {SURE}, kept because two passes or two views "
                                                 "agreed: where a false or a missed face is likeliest."),
                                "look": st.column_config.TextColumn("look", width="large", help=FLAG_HELP)})
    for d in shown:
        show_result(fresh, job["params"], d)


def show_result(fresh, p: dict, d: dict) -> None:  # type: ignore[no-untyped-def]
    """One file before and after (a video: its output and two masked frames)."""
    left, right = st.columns(2)
    flag = f" · look: {md('; '.join(d['review']))}" if d.get("review") else ""
    if d["video"]:  # the source may not play in a browser (AVI, MOV); the output is H.264 MP4
        if d["key"].lower().endswith(PLAYABLE):
            try:
                left.video(store_bytes(join(p["source"], d["key"])))
            except ConsoleError as exc:
                left.error(md(exc))
        else:
            left.info(f"The source ({md(d['key'].rsplit('.', 1)[-1].upper())}) does not play in a browser: the frames "
                      "below show it before and after.", icon=":material/movie:")
        left.caption(f"before: {md(d['key'])} · {d['frames']:,} frames at {d['fps']:.3f} fps, {d['duration']:,} s"
                     + (f", rotated {d['rotation']}°" if d["rotation"] else "") + (f", audio {md(d['audio'])}" if d["audio"] else ""))
        try:
            right.video(store_bytes(d["output"]))
        except ConsoleError as exc:
            right.error(md(exc))
        looks = "in every frame" if d["detect_every"] == 1 else f"every {d['detect_every']} frames"
        most = d.get("most_in_a_frame")
        right.caption(f"after: {plural(d.get('faces_found', d['tracks']), 'face')} followed"
                      + (f", at most {most:,} in one frame" if most is not None else "")
                      + f", masked on {len(d['masked']):,} of {d['frames']:,} frames (detected {looks}){flag}")
        download(right, d)
        for frame_no, before_jpg, after_jpg in face_blur.video_samples(fresh, job_id=job_id, key=d["key"], actor=user.name):
            a, b = st.columns(2)
            a.image(before_jpg, caption=f"frame {frame_no}, before")
            b.image(after_jpg, caption=f"frame {frame_no}, after")
        return
    show_photo(left, uri=join(p["source"], d["key"]), sha256=None, size=480, caption=f"before: {md(d['key'])}")
    show_photo(right, uri=d["output"], sha256=None, size=480,
               caption=f"after: {plural(len(d['faces']), 'face')}"
                       + (f" and {plural(d['labels_found'], 'label item')}" if "labels_found" in d else "")
                       + f" hidden ({md(p['mode'])}) · {d['width']}×{d['height']}, {md(d['format'])}{flag}")
    download(right, d)


def download(container, d: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    """The anonymised file as written, read from the store only when the button is pressed. Streamlit reads it on
    a thread of its own, outside this session: the store is taken here, in the session, and only its ``read``
    runs there (a call to ``store()`` there would need the session and broke every page after it)."""
    name = d["output"].rstrip("/").rsplit("/", 1)[-1]
    container.download_button(f"Download {name}", data=partial(store().read, d["output"]), file_name=name,
                              key=f"fb_dl_{d['output']}", on_click="ignore", icon=":material/download:")


live_job_panel(job_id, render)
