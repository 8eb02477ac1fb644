"""Jobs: import reviews and labels, train, classify; watch progress and cancel."""

from pathlib import Path

import streamlit as st

from pages.common import current_user, db, ensure_worker, md, show_error, workspace
from pages.job_panel import failed_table, now_line, result_view
from pages.markup import plural
from services.core import jobs
from services.core.clock import now_iso
from services.core.config import get_settings
from services.core.errors import ConsoleError
from services.core.storage import ObjectStore
from services.models.registry import active_version
from services.models.training import label_count
from services.reviews.classify import pending_count

st.title("Jobs")
conn = db(needs="jobs.manage")
ws = workspace()
user = current_user()
settings = get_settings(conn)


def launch(kind: str, params: dict) -> None:
    try:
        job_id = jobs.create_job(conn, kind=kind, params=params, actor=user.name)
    except ConsoleError as exc:
        show_error(exc)
        return
    ensure_worker()
    st.toast(f"Job {job_id} ({kind}) queued")


imp, lab, cls = st.tabs(["Import reviews", "Labels and training", "Classify"])
with imp:
    st.write("Load a batch of reviews. Re-importing the same batch adds nothing twice; bad rows are reported by line.")
    upload = st.file_uploader("Manifest (CSV or JSON Lines)", type=["csv", "jsonl", "ndjson", "json"], key="jobs_upload")
    st.caption("Columns: review_id, review_type, image_uris (separate several with |), product, user_id, submitted_at, text.")
    if st.button("Import uploaded manifest", key="jobs_import_upload", disabled=upload is None):
        target = ws.objects_dir / "uploads" / f"{now_iso().replace(':', '')}-{Path(upload.name).name}"
        ObjectStore().write(str(target), upload.getvalue())
        launch("ingest", {"manifest": str(target)})
    manifest_uri = st.text_input("…or a manifest path or s3:// URI", key="jobs_manifest_uri")
    if st.button("Import manifest", key="jobs_import_manifest", disabled=not manifest_uri):
        launch("ingest", {"manifest": manifest_uri.strip()})
    c1, c2 = st.columns([3, 1])
    prefix = c1.text_input("…or a folder or s3://bucket/prefix of photos (one review per photo)", key="jobs_prefix")
    rtype = c2.selectbox("Review type", list(settings["credit_rules"]), key="jobs_prefix_type")
    if st.button("Import photos", key="jobs_import_prefix", disabled=not prefix):
        launch("ingest", {"prefix": prefix.strip(), "review_type": rtype})

with lab:
    st.write("Labelled photos train the classifier: a folder with one sub-folder per class "
             "(package, product, full_length, half_length), or a SageMaker Ground Truth manifest. "
             "Inspectors' decisions are used too.")
    label_src = st.text_input("Folder or Ground Truth manifest (path or s3://)", key="jobs_label_src")
    if st.button("Import labels", key="jobs_import_labels", disabled=not label_src):
        launch("import-labels", {"source": label_src.strip()})
    n_labels = label_count(conn, actor=user.name)
    st.caption(f"{n_labels:,} imported labels in this workspace.")
    if st.button("Train a model", key="jobs_train", disabled=n_labels == 0):
        launch("train", {"folds": 5})

with cls:
    model = active_version(conn)
    pending = pending_count(conn, actor=user.name)
    if model is None:
        st.warning("No model yet: classifying now sends every photo to the review queue.")
    else:
        st.caption(f"Active model: {md(model['name'])}")
    st.write(f"{plural(pending, 'photo')} {'waits' if pending == 1 else 'wait'} for classification.")
    if st.button("Classify pending photos", key="jobs_classify", disabled=pending == 0, type="primary"):
        launch("classify", {})


@st.fragment(run_every="2s")
def job_list() -> None:
    fresh = db()
    rows = jobs.list_jobs(fresh, limit=20)
    if not rows:
        st.caption("No jobs yet.")
        return
    for job in rows:
        with st.container(border=True):
            c1, c2 = st.columns([4, 1])
            total = job["total"] or 0
            done = (job["done"] or 0) + (job["failed"] or 0)
            label = f"Job #{job['id']} ({job['kind']}) — {job['state']} · {done:,}/{total:,}" + (
                f" · {job['failed']:,} failed" if job["failed"] else "")
            c1.progress(min(1.0, jobs.progress(job) / total) if total else (1.0 if job["state"] == "done" else 0.0),
                        text=label)
            now_line(c1, job)
            if job["state"] in ("queued", "running") and c2.button("Cancel", key=f"jobs_cancel_{job['id']}"):
                jobs.cancel_job(fresh, job_id=job["id"], actor=user.name)
                st.rerun()
            if job["error"]:
                st.error(md(job["error"].splitlines()[0]))
            if job["result"]:
                with st.expander("Result"):
                    result_view(job["result"], key=f"jobs_result_{job['id']}")
            if job["failed"]:
                with st.expander("Failed items"):
                    failed_table(jobs.failed_items(fresh, job["id"]), key=f"jobs_failed_{job['id']}", what="item")


st.subheader("Recent jobs")
job_list()
