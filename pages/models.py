"""Models: grid searches (head over C, fine-tuning over epochs x trainable blocks) with their cross-validated
reports, and the thresholds for a target accuracy picked on a version's trade-off curve."""

import pandas as pd
import plotly.express as px
import streamlit as st

from pages.common import current_user, db, ensure_worker, md, show_error
from pages.job_panel import job_controls, live_job_panel
from services.core import jobs
from services.core.config import set_setting
from services.core.errors import ConsoleError
from services.core.wording import name_of, params_text
from services.hitl import audit_watch
from services.models import grid_search, model_search
from services.models.registry import list_versions

TITLES = {"macro_f1": "Cross-validated macro-F1 over the grid", "accuracy": "Validation accuracy over the grid"}

st.title("Models")
conn = db(needs="models.manage")
user = current_user()


def report(metrics: dict, *, key: str) -> None:
    """Per-class precision, recall and F1 (table and chart), the confusion matrix and the trade-off curve."""
    per_class = pd.DataFrame(metrics.get("per_class") or {}).T
    if per_class.empty:
        st.caption("This backend reported no per-class figures.")
        return
    c1, c2 = st.columns(2)
    c1.dataframe(per_class, key=f"{key}_pc", column_config={c: st.column_config.NumberColumn(format="%.3f")
                                                             for c in ("precision", "recall", "f1")})
    long = per_class[["precision", "recall", "f1"]].reset_index(names="class").melt(id_vars="class", var_name="figure")
    c2.plotly_chart(px.bar(long, x="class", y="value", color="figure", barmode="group", range_y=[0, 1], height=300),
                    key=f"{key}_pc_chart")
    classes = metrics.get("classes") or list(per_class.index)
    if metrics.get("confusion_matrix"):
        cm = pd.DataFrame(metrics["confusion_matrix"], index=classes, columns=classes)
        c1.plotly_chart(px.imshow(cm, text_auto=True, labels={"x": "predicted", "y": "true", "color": "photos"},
                                  color_continuous_scale="Blues", height=330), key=f"{key}_cm")
    if metrics.get("tradeoff"):
        curve = pd.DataFrame(metrics["tradeoff"])
        shares = {"automatic_share": "certified"} | ({"point_share": "point estimate"} if "point_share" in curve else {})
        long = curve.rename(columns=shares).melt(id_vars="target", value_vars=list(shares.values()), var_name="share")
        fig = px.line(long, x="target", y="value", color="share", markers=True, range_y=[0, 1], height=330,
                      labels={"target": "target accuracy of automatic decisions", "value": "share decided automatically"})
        at = metrics.get("at_target") or {}
        chosen = at.get("target", metrics.get("target_accuracy"))
        if chosen is not None and at.get("automatic_share") is not None:
            fig.add_scatter(x=[chosen], y=[at["automatic_share"]], mode="markers", name="chosen",
                            marker={"size": 14, "symbol": "star"})
        c2.plotly_chart(fig, key=f"{key}_tradeoff")


# ---------------------------------------------------------------- grid search
st.subheader("Grid search")
st.caption("Cross-validates every combination on all labelled photos (stratified folds) and reports each one; "
           "nothing is activated. The head on frozen embeddings takes seconds; fine-tuning trains the last blocks "
           "of the network on the CPU and takes about a minute per hundred photos for the default grid.")
with st.form("grid_form"):
    backend = st.radio("Backend", ["head", "finetune"], horizontal=True, key="mdl_backend",
                       format_func={"head": "Head on frozen embeddings (C)", "finetune": "Fine-tune last blocks "
                                    "(epochs x blocks)"}.get)
    c1, c2, c3 = st.columns(3)
    c_values = c1.multiselect("C (head)", [0.03, 0.1, 0.3, 1.0, 3.0, 10.0], [0.1, 0.3, 1.0, 3.0], key="mdl_c")
    epochs = c2.multiselect("Epochs (fine-tuning)", [1, 3, 5, 10, 15, 20, 30], [5, 10, 15], key="mdl_epochs")
    blocks = c3.multiselect("Trainable blocks of 16 (fine-tuning)", [1, 2, 3, 4, 6, 8], [1, 2, 4], key="mdl_blocks")
    folds = c1.number_input("Folds", 2, 10, 5, key="mdl_folds")
    target = c2.number_input("Target accuracy of automatic decisions", 0.5, 1.0, 0.98, 0.005, format="%.3f",
                             key="mdl_target")
    if st.form_submit_button("Start grid search", key="mdl_start", type="primary"):
        grid = {"C": c_values} if backend == "head" else {"epochs": epochs, "blocks": blocks}
        try:
            st.session_state["mdl_job"] = model_search.queue(conn, actor=user.name, backend=backend, grid=grid,
                                                             folds=int(folds), target=float(target))
            ensure_worker()
        except ConsoleError as exc:
            show_error(exc)

if st.session_state.get("mdl_job"):
    def job_panel(c, job: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
        st.progress(job["done"] / job["total"] if job["total"] else 0.0,
                    text=f"grid search #{job['id']}: {job['state']}, {job['done']} of {job['total'] or '?'} items")
        if job["error"]:
            st.error(md(job["error"].splitlines()[0]))
        for warning in (job["result"] or {}).get("warnings", []):
            st.warning(warning)
        job_controls(c, job, key="mdl_jc", actor=user.name)
    live_job_panel(st.session_state["mdl_job"], job_panel)

searches = grid_search.list_searches(conn, actor=user.name)
if not searches:
    st.info("No grid search yet.")
else:
    search = st.selectbox("Search", searches, key="mdl_search", format_func=lambda s: (
        f"#{s['id']} {s['backend']} ({params_text(s['grid'])}) — {s['state']} ({s['examples'] or '?'} photos, "
        f"{s['folds'] or '?'} folds)"))
    if search["error"]:
        st.error(md(search["error"].splitlines()[0]))
    rows = pd.DataFrame(grid_search.comparison_rows(conn, actor=user.name, search_ids=[search["id"]]))
    if rows.empty:
        st.caption("No finished grid point yet.")
    else:
        st.dataframe(rows.drop(columns=["search", "point"]).rename(columns=name_of), hide_index=True, key="mdl_points",
                     column_config={name_of(c): st.column_config.NumberColumn(format="%.3f") for c in rows.columns
                                    if c.startswith(("f1_", "macro", "accuracy", "automatic"))})
        params = [c for c in rows.columns if c.startswith("param_")]
        if len(params) == 2:
            figure = "macro_f1" if rows["macro_f1"].notna().any() else "accuracy"  # SageMaker reports accuracy
            heat = rows.pivot_table(index=params[1], columns=params[0], values=figure)
            heat.index = [str(v) for v in heat.index]  # categories: 1, 2, 4 blocks are three rows, not a scale
            heat.columns = [str(v) for v in heat.columns]
            fig = px.imshow(heat, text_auto=".3f", aspect="auto", color_continuous_scale="Viridis",
                            labels={"x": params[0].removeprefix("param_"), "y": params[1].removeprefix("param_"),
                                    "color": figure}, title=TITLES[figure])
            fig.update_xaxes(type="category")
            fig.update_yaxes(type="category")
            st.plotly_chart(fig, key="mdl_heat")
        elif params:
            st.plotly_chart(px.bar(rows.sort_values(params[0]), x=rows.sort_values(params[0])[params[0]].astype(str),
                                   y="macro_f1", labels={"x": params[0].removeprefix("param_")}, range_y=[0, 1],
                                   title="Cross-validated macro-F1"), key="mdl_bar")
        others = [s2 for s2 in searches if s2["id"] != search["id"]]
        if others:
            with st.expander("Compare with other searches (local and SageMaker)"):
                chosen = st.multiselect("Searches", others, key="mdl_compare", format_func=lambda s2: (
                    f"#{s2['id']} {s2['backend']} ({params_text(s2['grid'])})"))
                if chosen:
                    both = pd.DataFrame(grid_search.comparison_rows(
                        conn, actor=user.name, search_ids=[search["id"], *[c["id"] for c in chosen]]))
                    st.dataframe(both.sort_values(["macro_f1", "accuracy"], ascending=False, na_position="last")
                                 .rename(columns=name_of), hide_index=True, key="mdl_compare_table")
        pts = grid_search.points(conn, search_id=search["id"], actor=user.name)
        point = st.selectbox("Grid point", pts, key="mdl_point",
                             format_func=lambda p: f"{params_text(p['params'])} — macro-F1 {p['macro_f1'] or 0:.3f}")
        report(point["metrics"], key="mdl_point_report")
        if search["backend"] == "sagemaker":
            st.caption("SageMaker saves the best point of a tuning job as a version (see the SageMaker page).")
        elif st.button("Train a version from this point", key="mdl_train_best"):
            params = ({"c": point["params"]["C"], "activate": False} if search["backend"] == "head" else
                      {"method": "finetune", **point["params"], "activate": False})
            jobs.create_job(conn, kind="train", params={**params, "folds": search["folds"] or 5}, actor=user.name)
            ensure_worker()
            st.toast("Training queued: the new version appears under Settings > Model versions, inactive")

# ---------------------------------------------------------------- thresholds for a target
st.subheader("Thresholds for a target accuracy")
versions = [v for v in list_versions(conn) if (v["metrics"] or {}).get("tradeoff")]
if not versions:
    st.info("No version with a trade-off curve yet (versions trained from now on have one).")
else:
    version = st.selectbox("Version", versions, key="mdl_version",
                           format_func=lambda v: f"{'● ' if v['active'] else ''}{v['name']}")
    curve = version["metrics"]["tradeoff"]
    chosen = st.select_slider("Target accuracy", [p["target"] for p in curve], value=version["metrics"].get(
        "target_accuracy", 0.98), key="mdl_tgt", format_func=lambda t: f"{t:.0%}")
    p = next(x for x in curve if x["target"] == chosen)
    share, acc = p["automatic_share"], p["automatic_accuracy"]
    c1, c2 = st.columns(2)
    c1.metric("Certified automatic share", f"{share:.1%}",
              help="Photos decided without a person at thresholds whose accuracy is certified: the 95% lower bound "
                   "of their accuracy on held-back photos reaches the target (see README, Certified thresholds)")
    if p.get("point_share") is not None:
        c2.metric("Point estimate", f"{p['point_share']:.1%}",
                  help="The share the observed held-back accuracy alone would allow: what the version would decide "
                       "if its sample told the whole truth. Not promised.")
    certificate = (version["metrics"].get("certificate") or {})
    if chosen == version["metrics"].get("target_accuracy") and certificate.get("text"):
        st.caption(certificate["text"][0].upper() + certificate["text"][1:])
    if acc is None:
        st.caption("Nothing is certified for automatic decisions at this target: every photo goes to people.")
    else:
        st.caption(f"Accuracy of those automatic decisions: {acc:.1%} on {p.get('automatic_photos', '?')} held-back "
                   "photos.")
    st.dataframe(pd.DataFrame([p["thresholds"]]).rename(columns=name_of), hide_index=True, key="mdl_tgt_thr")
    report({**version["metrics"], "at_target": p}, key="mdl_version_report")
    if st.button("Use these thresholds for routing", key="mdl_apply", type="primary"):
        try:
            set_setting(conn, key="thresholds", value=p["thresholds"], actor=user.name)
            st.success(f"Routing now uses the thresholds for {chosen:.0%}")
        except ConsoleError as exc:
            show_error(exc)

# ---------------------------------------------------------------- accuracy in production
st.subheader("Accuracy in production")
st.caption("A share of automatic decisions goes to inspectors as audits (more while a class has few); their answers "
           "measure each class of the active version. A class whose audits show it under its promised accuracy is "
           "sent to people, with an alert here.")
production = audit_watch.production_accuracy(conn)
if production is None:
    st.info("No active model version yet.")
else:
    rows = [{"class": cls, "audited": f["audited"], "agreed": f["right"],
             "accuracy": f["accuracy"], "at least (95%)": f["low95"], "at most (95%)": f["high95"],
             "status": {"certified": "certified in production", "watching": "watching: more audits needed",
                        "below_target": "below target"}[f["status"]]}
            for cls, f in production["classes"].items()]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="mdl_production",
                 column_config={c: st.column_config.NumberColumn(format="%.3f")
                                for c in ("accuracy", "at least (95%)", "at most (95%)")})
    for alert in audit_watch.alerts(conn, actor=user.name):
        st.warning(md(alert["detail"]), icon=":material/warning:")
        if st.button("Mark as dealt with", key=f"mdl_alert_{alert['id']}"):
            try:
                audit_watch.resolve_alert(conn, alert_id=alert["id"], actor=user.name)
                st.rerun()
            except ConsoleError as exc:
                show_error(exc)
