"""SageMaker (admin): settings, dry runs that show the exact AWS requests, training, grid tuning and batch
transform as background jobs, their status, and the tuning results beside the local grid searches."""

import pandas as pd
import streamlit as st

from pages.common import current_user, db, ensure_worker, md, show_error
from pages.job_panel import job_controls, live_job_panel
from services.core.config import get_settings, set_setting
from services.core.errors import ConsoleError
from services.core.wording import name_of
from services.models import grid_search
from services.sagemaker import batch as smb
from services.sagemaker import status as sms
from services.sagemaker import training as smt
from services.sagemaker import tuning as smtu

FIELDS = [("sagemaker_region", "Region", "e.g. eu-west-1; empty: the AWS default region"),
          ("sagemaker_role_arn", "Execution role ARN", "the IAM role SageMaker assumes; it needs S3 access to the bucket"),
          ("sagemaker_bucket", "Bucket", "manifests, models and outputs are written here"),
          ("sagemaker_prefix", "Prefix", "key prefix inside the bucket"),
          ("sagemaker_train_instance_type", "Training instance type", "ml.p3.2xlarge is the algorithm's usual"),
          ("sagemaker_transform_instance_type", "Transform instance type", "CPU instances work for inference")]
NUMBERS = [("sagemaker_train_instance_count", "Training instances", 1, 100),
           ("sagemaker_transform_instance_count", "Transform instances", 1, 100),
           ("sagemaker_max_runtime_seconds", "Training runtime cap (s)", 60, 2_419_200)]

st.title("SageMaker")
conn = db(needs="models.manage")
user = current_user()
settings = get_settings(conn)
st.caption("The built-in image-classification algorithm, trained on the labelled photos that are in S3 (local "
           "photos are left out and counted). Results become inactive model versions; batch transform stores "
           "predictions under them. Every start is a background job that waits on SageMaker.")

with st.expander("Settings", expanded=not (settings["sagemaker_role_arn"] and settings["sagemaker_bucket"])):
    with st.form("sm_settings"):
        c1, c2 = st.columns(2)
        texts = {key: (c1 if n % 2 == 0 else c2).text_input(label, value=settings[key], help=help_, key=f"sm_{key[10:]}")
                 for n, (key, label, help_) in enumerate(FIELDS)}
        cols = st.columns(3)
        numbers = {key: col.number_input(label, min_value=low, max_value=high, value=int(settings[key]), step=1,
                                         key=f"sm_{key[10:]}") for col, (key, label, low, high) in zip(cols, NUMBERS)}
        if st.form_submit_button("Save", key="sm_save", type="primary"):
            try:
                changed = [k for k, v in {**texts, **numbers}.items() if v != settings[k]]
                for key in changed:
                    set_setting(conn, key=key, value={**texts, **numbers}[key], actor=user.name)
                st.success(f"Saved {len(changed)} setting(s)." if changed else "Nothing changed.")
                settings = get_settings(conn)
            except ConsoleError as exc:
                show_error(exc)


def launched(job_id: int, what: str) -> None:
    st.session_state["sm_job"] = job_id
    ensure_worker()
    st.toast(f"Job {job_id} queued: {what}")


train_tab, tune_tab, transform_tab = st.tabs(["Train", "Grid tuning", "Batch transform"])
with train_tab:
    c1, c2 = st.columns(2)
    epochs = c1.number_input("Epochs", min_value=1, max_value=200, value=10, key="sm_epochs")
    layers = c2.selectbox("ResNet layers", smt.NUM_LAYERS, key="sm_layers")
    b1, b2, _ = st.columns([1, 1, 3])
    dry = b1.button("Dry run", key="sm_train_dry")  # both buttons drawn before either acts: an error
    start = b2.button("Start training", key="sm_train_start", type="primary")  # must not hide the other
    try:
        if dry:
            st.json(smt.start_training(conn, actor=user.name, epochs=int(epochs), num_layers=int(layers), dry_run=True))
        if start:
            launched(smt.launch(conn, actor=user.name, epochs=int(epochs), num_layers=int(layers)), "training")
    except ConsoleError as exc:
        show_error(exc)

with tune_tab:
    c1, c2, c3 = st.columns(3)
    grid_epochs = c1.multiselect("Epochs", [5, 10, 15, 20, 30, 50], default=smtu.DEFAULT_GRID["epochs"],
                                 key="sm_grid_epochs")
    grid_layers = c2.multiselect("ResNet layers", list(smt.NUM_LAYERS), default=smtu.DEFAULT_GRID["num_layers"],
                                 key="sm_grid_layers")
    parallel = c3.number_input("Jobs at once", min_value=1, max_value=10, value=3, key="sm_parallel")
    st.caption(f"{len(grid_epochs) * len(grid_layers)} training jobs (Grid strategy, maximising validation accuracy)")
    b1, b2, _ = st.columns([1, 1, 3])
    grid = {"epochs": grid_epochs, "num_layers": grid_layers}
    dry = b1.button("Dry run", key="sm_tune_dry")  # both buttons drawn before either acts: an error
    start = b2.button("Start grid tuning", key="sm_tune_start", type="primary")  # must not hide the other
    try:
        if dry:
            st.json(smtu.start_tuning(conn, actor=user.name, grid=grid, max_parallel=int(parallel), dry_run=True))
        if start:
            launched(smtu.launch(conn, actor=user.name, grid=grid, max_parallel=int(parallel)), "grid tuning")
    except ConsoleError as exc:
        show_error(exc)

with transform_tab:
    versions = sms.model_versions(conn, actor=user.name)
    if not versions:
        st.info("No SageMaker model version yet: train or tune first.")
    else:
        names = {v["id"]: v["name"] for v in versions}
        version = st.selectbox("Model version", list(names), format_func=lambda v: f"#{v} {names[v]}", key="sm_tf_version")
        c1, c2 = st.columns(2)
        source = c1.text_input("Photos: s3://bucket/prefix", key="sm_tf_input")
        output = c2.text_input("Outputs: s3://bucket/prefix (empty: under the SageMaker prefix)", key="sm_tf_output")
        routing = st.toggle("Decide waiting photos with the class thresholds", value=True, key="sm_tf_route",
                            help="Photos queued for want of a confident model are decided at or above their "
                                 "threshold; others only get the prediction.")
        b1, b2, _ = st.columns([1, 1, 3])
        dry = b1.button("Dry run", key="sm_tf_dry")  # both buttons drawn before either acts: an error
        start = b2.button("Start batch transform", key="sm_tf_start", type="primary")  # must not hide the other
        try:
            if dry:
                st.json(smb.start_transform(conn, actor=user.name, input_uri=source, version_id=version,
                                            output_uri=output or None, dry_run=True))
            if start:
                launched(smb.launch(conn, actor=user.name, input_uri=source, version_id=version,
                                    output_uri=output or None, routing=routing), "batch transform")
        except ConsoleError as exc:
            show_error(exc)

st.subheader("Jobs")
recent = sms.recent_jobs(conn, actor=user.name, limit=20)
if not recent:
    st.caption("No SageMaker job yet.")
else:
    table = []
    for j in recent:
        p = j["params"]
        table.append({"job": j["id"], "kind": j["kind"], "state": j["state"], "sagemaker job": p.get("sagemaker_name"),
                      "sagemaker status": p.get("sagemaker_status"), "checked": p.get("polled_at"),
                      "error": (j["error"] or "").splitlines()[0] if j["error"] else None})
    st.dataframe(pd.DataFrame(table), hide_index=True, key="sm_jobs")
    ids = [j["id"] for j in recent]
    if st.session_state.get("sm_job") not in ids:
        st.session_state["sm_job"] = ids[0]
    job_id = st.selectbox("Job", ids, key="sm_job", format_func=lambda j: f"#{j}")

    def render(fresh, job) -> None:  # type: ignore[no-untyped-def]
        p = job["params"]
        st.markdown(f"**#{job['id']}** · {md(job['kind'])} · {md(job['state'])}"
                    + (f" · SageMaker {md(p['sagemaker_name'])}: {md(p.get('sagemaker_status') or 'starting')}"
                       if p.get("sagemaker_name") else ""))
        if job["error"]:
            st.error(md(job["error"].splitlines()[0]), icon=":material/error:")
        if job["result"]:
            st.json(job["result"], expanded=False)
        job_controls(fresh, job, key="sm", actor=user.name)

    live_job_panel(job_id, render)

st.subheader("Tuning results")
sagemaker_searches = [s["id"] for s in grid_search.list_searches(conn, actor=user.name) if s["backend"] == "sagemaker"]
if sagemaker_searches:
    rows = grid_search.comparison_rows(conn, actor=user.name, search_ids=sagemaker_searches)
    st.dataframe(pd.DataFrame(rows).rename(columns=name_of), hide_index=True, key="sm_results")
else:
    st.caption("No SageMaker grid search yet.")
