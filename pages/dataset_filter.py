"""Dataset filter (admin): keep only the images that show a label, with a cap, early stopping and a human band."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages.common import current_user, db, ensure_worker, md, show_error, workspace
from pages.job_panel import job_controls, live_job_panel, pick_job, result_view
from pages.markup import plural
from services.core import jobs
from services.core.errors import ConsoleError
from services.dataset_filter import job as dataset_filter
from services.dataset_filter import outputs as filter_outputs
from services.dataset_filter import params as filter_params
from services.dataset_filter.calibration import threshold_meaning
from services.dataset_filter.everyday import family_of
from services.dataset_filter.label_detectors import resolve_labels

RESULT_ROWS = 1000  # rows shown in the results table (the report has every one)
DRY_RUN_ROWS = 500  # objects listed by a dry run (the counts cover them all)

st.title("Dataset filter")
conn = db(needs="jobs.manage")
user = current_user()
if "df_flash" in st.session_state:
    st.success(st.session_state.pop("df_flash"), icon=":material/check:")

st.caption("Scan a folder or S3 prefix, keep the images that show one of the labels, copy them to "
           "destination/<output folder>/<original key> with a Ground Truth manifest and a report. "
           "Images whose confidence falls in the band go to people as yes/no checks.")

c1, c2 = st.columns(2)
source = c1.text_input("Source (folder or s3://bucket/prefix)", key="df_source")
destination = c2.text_input("Destination (folder or s3://bucket/prefix)", key="df_destination")
c1, c2 = st.columns(2)
labels_text = c1.text_input("Labels to keep (separate with commas)", key="df_labels", placeholder="bird, dog")
name = c2.text_input("Output folder name (default: the first label)", key="df_name", placeholder="birds")
c1, c2, c3, c4, c5 = st.columns(5)
detector = c1.selectbox("Detector", ["local", "rekognition"], key="df_detector",
                        format_func=lambda d: {"local": "Local (offline models)",
                                               "rekognition": "Amazon Rekognition"}[d])
threshold = c2.number_input("Keep at or above", 0.0, 1.0, 0.8, 0.05, key="df_threshold",
                            help="Confidence (0–1) at which an image is kept. With the local detector, person (people, "
                                 "man, woman, child; person and face detectors), bag (COCO object detector), shoe, box "
                                 "and clothing are calibrated: 0.8 means about 8 in 10 images scored there show the "
                                 "label. Other labels are ImageNet sums.")
band_low = c3.number_input("Ask a person from", 0.0, 1.0, 0.5, 0.05, key="df_band_low",
                           help="Confidences in [this, keep threshold) go to a yes/no check; equal to the threshold: none")
scan_cap = c4.number_input("Scan at most (0: all)", 0, None, 0, 100, key="df_scan_cap")
misses = c5.number_input("Stop after misses in a row (0: never)", 0, None, 0, 50, key="df_misses")

labels = [part.strip() for part in labels_text.split(",") if part.strip()]
if labels:
    st.caption("What the threshold means: " + " · ".join(
        md(threshold_meaning(label, threshold=float(threshold), detector=detector)) for label in labels))
params = {
    "source": source.strip(),
    "destination": destination.strip(),
    "labels": labels,
    "name": name.strip(),
    "detector": detector,
    "threshold": float(threshold),
    "band_low": float(band_low),
    "scan_cap": int(scan_cap) or None,
    "stop_after_misses": int(misses) or None,
}
ready = bool(params["source"] and params["destination"] and labels)


def not_images(n: int) -> str:
    return plural(n, "object that is not an image", "objects that are not images")


def object_store():  # type: ignore[no-untyped-def]
    """The store the filter job itself uses (the S3 endpoint setting, patient retries)."""
    return dataset_filter.store_for(conn)


b1, b2, b3, b4 = st.columns(4)
check_clicked = b1.button("Check labels", key="df_check", disabled=not labels, width="stretch")
estimate_clicked = b2.button("Estimate", key="df_estimate", disabled=not ready, width="stretch")
dry_clicked = b3.button("Dry run", key="df_dry_run", disabled=not ready, width="stretch")
launch_clicked = b4.button("Launch", key="df_launch", disabled=not ready, type="primary", width="stretch")

if check_clicked:
    try:
        matched = resolve_labels(labels, detector=detector)
    except ConsoleError as exc:
        show_error(exc)
    else:
        for label, classes in matched.items():
            family = family_of(label) if detector == "local" else None
            if family is not None and family.people:
                st.success(f"**{md(label)}** is found by the person models: {md(classes[0])}, with boxes.",
                           icon=":material/check:")
            elif family is not None:
                st.success(f"**{md(label)}** (calibrated, as {md(family.name)}) matches: {md(', '.join(classes))}.",
                           icon=":material/check:")
            elif detector == "local":
                shown = ", ".join(classes[:8]) + (f" and {len(classes) - 8} more" if len(classes) > 8 else "")
                st.success(f"**{md(label)}** matches {len(classes)} ImageNet class{'es' if len(classes) != 1 else ''}: "
                           f"{md(shown)}", icon=":material/check:")
            else:
                st.success(f"**{md(label)}** is matched against Rekognition's label names, aliases and parents.",
                           icon=":material/check:")

if estimate_clicked:
    try:
        est = filter_params.estimate(conn, params, object_store())
    except ConsoleError as exc:
        show_error(exc)
    else:
        m1, m2, m3 = st.columns(3)
        m1.metric("Images in scope", f"{est['images_in_scope']:,}")
        m2.metric("Scanned (after the cap)", f"{est['capped_to']:,}")
        cost = est.get("expected_cost_usd")
        m3.metric("Expected cost", f"${cost:,.3f}" if cost else "free (local)",
                  help="The most the scan can cost: stopping early only lowers it")
        st.info(md(est["message"]) + ("" if est["detector"] == "local" else
                " (Settings: Rekognition requests a second and in flight; early stopping only shortens it)."),
                icon=":material/schedule:")
        st.caption(f"Output: {md(est['output'])}"
                   + (f" · {not_images(est['non_images'])} will be skipped" if est["non_images"] else ""))

if dry_clicked:
    try:
        planned = filter_params.dry_run(conn, params, object_store(), limit=DRY_RUN_ROWS)
    except ConsoleError as exc:
        show_error(exc)
    else:
        st.write(f"Dry run: {plural(planned['images'], 'image')} would be scanned, in this order"
                 + (f", and {not_images(planned['non_images'])} skipped" if planned["non_images"] else "")
                 + f"; kept images go to {md(planned['output'])}. No detector was called.")
        st.dataframe(pd.DataFrame({"image": planned["items"], "copy if kept": planned["copies_to"]}),
                     hide_index=True, key="df_dry_table")
        if planned["skipped"]:
            st.caption("Not images, skipped: " + ", ".join(md(u) for u in planned["skipped"][:20])
                       + (" …" if len(planned["skipped"]) > 20 else ""))
        if planned["truncated"]:
            st.caption(f"Only the first {DRY_RUN_ROWS:,} are listed.")

if launch_clicked:
    try:
        clean = dataset_filter.validate_params(conn, params, store=object_store())
        job_id = jobs.create_job(conn, kind="filter", params=clean, actor=user.name)
    except ConsoleError as exc:
        show_error(exc)
    else:
        ensure_worker()
        st.session_state["df_job"] = job_id
        st.toast(f"Filter job {job_id} queued")

st.divider()
job_id = pick_job(conn, kind="filter", actor=user.name, key="df_job", label="Filter job", empty="No filter jobs yet.")


def report_for(job: int):  # type: ignore[no-untyped-def]
    """The report's CSV, made only when the button is clicked (on a thread of its own: its own connection)."""
    ws = workspace()

    def make() -> bytes:
        conn = ws.db()
        try:
            return filter_outputs.report_text(conn, job_id=job)[0].encode()
        finally:
            conn.close()

    return make


def render(fresh, job) -> None:  # type: ignore[no-untyped-def]
    """The chosen job's progress, controls and results."""
    prog = dataset_filter.progress(fresh, job_id=job_id)
    p = job["params"]
    st.markdown(f"**#{job_id}** · {md(p.get('source'))} → {md(p.get('destination'))}/{md(p.get('name'))} · "
                f"labels {md(', '.join(p.get('labels') or []))} · {md(p.get('detector'))} detector"
                + (" · dry run" if p.get("dry_run") else ""))
    m = st.columns(6)
    m[0].metric("State", job["state"])
    m[1].metric("Scanned", f"{prog['scanned']:,}")
    m[2].metric("Kept", f"{prog['kept']:,}")
    m[3].metric("In the band", f"{prog['band']:,}")
    m[4].metric("Misses in a row", f"{prog['misses_in_a_row']:,}")
    m[5].metric("Rate", f"{prog['rate']:.1f}/s" if prog["rate"] else "–", help="Images a second in the latest run")
    if prog["total"]:
        st.progress(min(1.0, prog["processed"] / prog["total"]),
                    text=f"{prog['processed']:,} of {prog['total']:,} objects listed"
                    + (" · stopped early after too many misses in a row" if prog["stopped_early"] else ""))
    if job["state"] == "done" and p.get("dry_run"):
        st.info(f"Dry run: {plural(job['result'].get('would_scan', 0), 'image')} would be scanned.")
    if job["error"]:
        st.error(md(job["error"].splitlines()[0]), icon=":material/error:")
    job_controls(fresh, job, key="df", actor=user.name)
    if job["state"] == "done" and job["result"]:
        why = job["result"].get("nothing_kept")
        if why:
            st.warning(md(why["message"]), icon=":material/search_off:")
        if job["result"].get("manifest"):
            st.caption(f"Manifest: {md(job['result']['manifest'])} ({job['result']['manifest_lines']:,} lines) · "
                       f"report: {md(job['result']['report'])}")
        with st.expander("Result"):
            result_view(job["result"], key="df_result")
    rows = filter_outputs.results(fresh, job_id=job_id, limit=RESULT_ROWS)
    if not rows:
        st.caption("Nothing scanned yet." if jobs.is_active(job) else "Nothing was scanned.")
        return
    table = pd.DataFrame([{
        "seq": r["seq"], "uri": r["uri"], "outcome": r["outcome"], "label": r["label"], "confidence": r["confidence"],
        "check": r["check_status"], "copied_to": r["copied_to"], "error": r["detail"].get("error"),
    } for r in rows])
    st.dataframe(table, hide_index=True, key="df_results",
                 column_config={"confidence": st.column_config.NumberColumn(format="%.2f")})
    if prog["scanned"] + prog["skipped"] > len(rows):
        st.caption(f"The first {len(rows):,} shown; the report lists every one.")
    st.download_button("Download the report (CSV)", data=report_for(job_id), file_name=f"filter-{job_id}-report.csv",
                       mime="text/csv", key="df_report", icon=":material/download:", on_click="ignore")


live_job_panel(job_id, render)
