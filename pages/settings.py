"""Settings: confidence thresholds, credit rules, audit rate, limits; model versions."""

import pandas as pd
import plotly.express as px
import streamlit as st

from pages.common import current_user, db, ensure_worker, md, show_error
from services.core.config import CLASSES, env_storage_roots, get_settings, set_setting
from services.core.errors import ConsoleError
from services.core.wording import certified_text, thresholds_text
from services.models import retraining
from services.models.registry import activate_version, comparison, list_versions

st.title("Settings")
conn = db(needs="settings.change")
user = current_user()
settings = get_settings(conn)


NAMES = {"max_pixels": "largest image accepted", "max_read_mb": "largest file read", "s3_endpoint_url": "S3 endpoint URL",
         "sso_identity_claim": "SSO identity claim", "sso_groups_claim": "SSO groups claim"}


def save(key: str, value):  # type: ignore[no-untyped-def]
    """Store one setting; returns the stored value, or None after showing why it was refused. A toast names it
    when its value changed (a form saves all its fields; the ones left as they were are not announced)."""
    try:
        before = settings.get(key)
        clean = set_setting(conn, key=key, value=value, actor=user.name)
        if clean != before:
            st.toast(f"Saved {NAMES.get(key, key.replace('_', ' '))}")
        return clean
    except ConsoleError as exc:
        show_error(exc)
        return None


st.subheader("Confidence routing")
st.caption("At or above a class's threshold the model decides; below, the photo goes to the review queue.")
# thresholds applied from a model version below: move the sliders to them before they are drawn, or the
# sliders would keep their old positions and the next "Save routing" would silently undo the change
for cls, applied_value in (st.session_state.pop("set_thr_applied", None) or {}).items():
    st.session_state[f"set_thr_{cls}"] = float(applied_value)
with st.form("thresholds_form"):
    cols = st.columns(len(CLASSES))
    thresholds = {
        c: cols[i].slider(c.replace("_", " "), 0.0, 1.0,
                          None if f"set_thr_{c}" in st.session_state else float(settings["thresholds"][c]), 0.01,
                          key=f"set_thr_{c}")
        for i, c in enumerate(CLASSES)
    }
    audit = st.slider("Audit share of automatic decisions also sent to people", 0.0, 0.2,
                      float(settings["audit_rate"]), 0.005, format="%.3f", key="set_audit")
    hide = st.toggle("Hide the model's suggestion from inspectors (avoids anchoring)", settings["hide_suggestion"], key="set_hide")
    if st.form_submit_button("Save routing", key="set_save_routing"):
        save("thresholds", thresholds)
        save("audit_rate", audit)
        save("hide_suggestion", hide)

st.subheader("Several inspectors and gold checks")
st.caption("A share of queued photos is labelled independently by several inspectors and consolidated by a vote "
           "weighted by each inspector's estimated reliability; gold photos with known answers are mixed in unannounced.")
with st.form("labelling_form"):
    c1, c2 = st.columns(2)
    overlap_rate = c1.slider("Share of photos labelled by several inspectors", 0.0, 1.0, float(settings["overlap_rate"]),
                             0.01, key="set_overlap_rate")
    overlap_k = c2.number_input("Inspectors per such photo", 2, 10, int(settings["overlap_k"]), 1, key="set_overlap_k")
    gold_rate = c1.slider("Share of each inspector's queue drawn from gold photos", 0.0, 0.5, float(settings["gold_rate"]),
                          0.01, key="set_gold_rate")
    min_conf = c2.slider("Consolidated confidence below which an admin adjudicates", 0.0, 1.0,
                         float(settings["consensus_min_confidence"]), 0.01, key="set_consensus_min")
    value_hours = c1.number_input(
        "Hours a low-confidence photo may move ahead for what its label is worth (0 = oldest first)", 0.0, 720.0,
        float(settings["queue_value_hours"]), 1.0, key="set_queue_value_hours",
        help="The photo the model is least sure of passes photos submitted up to this much earlier; no photo waits "
             "behind one submitted more than this after it. Applies to photos routed from now on.")
    if st.form_submit_button("Save labelling settings", key="set_save_labelling"):
        save("overlap_rate", overlap_rate)
        save("overlap_k", int(overlap_k))
        save("gold_rate", gold_rate)
        save("consensus_min_confidence", min_conf)
        save("queue_value_hours", float(value_hours))

st.subheader("Credit rules")
st.caption("Per review type: which photo classes qualify, and whether one qualifying photo is enough or all must qualify.")
with st.form("rules_form"):
    rules = {}
    for rtype, rule in settings["credit_rules"].items():
        c1, c2, c3 = st.columns([2, 3, 2])
        c1.markdown(f"**{md(rtype)}**")
        classes = c2.multiselect("Qualifying classes", CLASSES, rule["classes"], key=f"set_rule_classes_{rtype}")
        mode = c3.radio("Photos", ["any", "all"], index=["any", "all"].index(rule["mode"]), horizontal=True,
                        key=f"set_rule_mode_{rtype}")
        remove = c1.checkbox("remove", key=f"set_rule_remove_{rtype}")
        if not remove:
            rules[rtype] = {"classes": classes, "mode": mode}
    new_type = st.text_input("Add a review type", key="set_rule_new")
    if new_type.strip():
        rules[new_type.strip()] = {"classes": ["product"], "mode": "any"}
    if st.form_submit_button("Save credit rules", key="set_save_rules"):
        save("credit_rules", rules)

st.subheader("Packaging lines")
st.caption("Shifts are in UTC; a shift whose end is before its start runs past midnight. A line more than the set "
           "share under or over its shift target for the set time raises an alert.")
with st.form("lines_form"):
    feed = st.text_input("Line feed: folder or s3:// prefix of detector frame files (empty: off)",
                         settings["line_feed_uri"], key="set_line_feed",
                         help="The background worker reads new files here every few seconds, each once.")
    shifts = st.data_editor(pd.DataFrame(settings["shifts"]), num_rows="dynamic", hide_index=True, key="set_shifts",
                            column_config={"name": "Shift", "start": "Starts (HH:MM)", "end": "Ends (HH:MM)"})
    c1, c2, c3 = st.columns(3)
    alert_pct = c1.number_input("Alert when off target by more than (%)", 0.0, 100.0, float(settings["line_alert_pct"]),
                                1.0, key="set_line_alert_pct")
    alert_minutes = c2.number_input("... for at least (minutes)", 1, 24 * 60, int(settings["line_alert_minutes"]), 1,
                                    key="set_line_alert_minutes")
    silent = c3.number_input("A feed is silent after (seconds)", 1, 24 * 3600, int(settings["line_silent_seconds"]), 10,
                             key="set_line_silent")
    min_conf = c1.slider("Count boxes from this detector confidence", 0.0, 1.0, float(settings["line_min_confidence"]),
                         0.05, key="set_line_min_conf")
    retention = c2.number_input("Keep raw frames for (days)", 1, 3650, int(settings["line_raw_retention_days"]), 1,
                                key="set_line_retention")
    if st.form_submit_button("Save line settings", key="set_save_lines"):
        rows = [{k: str(v).strip() for k, v in row.items() if v is not None} for row in shifts.to_dict("records")]
        save("line_feed_uri", feed)
        save("shifts", [r for r in rows if any(r.values())])
        save("line_alert_pct", float(alert_pct))
        save("line_alert_minutes", int(alert_minutes))
        save("line_silent_seconds", int(silent))
        save("line_min_confidence", float(min_conf))
        save("line_raw_retention_days", int(retention))

st.subheader("Network access")
st.caption("Only clients inside these ranges reach the console (empty: any). The X-Forwarded-For header is "
           "believed only from the trusted proxies listed, so a client cannot forge its way in.")
with st.form("network_form"):
    c1, c2 = st.columns(2)
    allowed = c1.text_area("Allowed networks, one CIDR range per line", "\n".join(settings["allowed_networks"]),
                           key="set_allowed_networks", placeholder="10.0.0.0/8")
    proxies = c2.text_area("Trusted proxies, one address or range per line", "\n".join(settings["trusted_proxies"]),
                           key="set_trusted_proxies", placeholder="10.0.0.2")
    if st.form_submit_button("Save network access", key="set_save_network"):
        save("trusted_proxies", proxies.split())
        save("allowed_networks", allowed.split())

st.subheader("Single sign-on")
st.caption("The identity provider is configured in .streamlit/secrets.toml (see secrets.toml.example); who gets "
           "which role is mapped on the Users and audit page. These name the ID token's claims to read.")
with st.form("sso_form"):
    c1, c2 = st.columns(2)
    identity_claim = c1.text_input("Identity claim (the user name)", settings["sso_identity_claim"], key="set_sso_identity")
    groups_claim = c2.text_input("Groups claim (Cognito: cognito:groups)", settings["sso_groups_claim"], key="set_sso_groups")
    if st.form_submit_button("Save single sign-on", key="set_save_sso"):
        save("sso_identity_claim", identity_claim)
        save("sso_groups_claim", groups_claim)

st.subheader("Reused photos")
with st.form("reuse_form"):
    hold = st.toggle("Hold credit on reviews whose photo is flagged as reused, until an admin clears it",
                     value=bool(settings["hold_credit_on_reuse"]), key="set_hold_reuse",
                     help="Photos are checked against every earlier photo of other reviews (the same bytes, or an "
                          "edited copy: resized, cropped, recompressed, mirrored, recoloured) right after they "
                          "are classified; with this on, no credit is granted before that check.")
    if st.form_submit_button("Save", key="set_save_reuse"):
        save("hold_credit_on_reuse", hold)

st.subheader("Shipping labels")
with st.form("labels_form"):
    labels = st.toggle("Find shipping labels on photos classified as packages (barcodes, QR codes, text blocks)",
                       value=bool(settings["redact_package_labels"]), key="set_redact_labels",
                       help="A step of classification: the boxes to hide are stored with the photo. The Face blur "
                            "job redacts them in copies of any folder (Redact: labels, or faces and labels).")
    if st.form_submit_button("Save", key="set_save_labels"):
        save("redact_package_labels", labels)

st.subheader("Storage and limits")
with st.form("limits_form"):
    max_pixels = st.number_input("Largest image accepted (pixels)", 1_000_000, 1_000_000_000, int(settings["max_pixels"]),
                                 1_000_000, key="set_max_pixels")
    max_read = st.number_input("Largest file read (MB)", 1, 100_000, int(settings["max_read_mb"]), key="set_max_read_mb",
                               help="A photo, manifest or S3 video larger than this fails alone, with the reason.")
    endpoint = st.text_input("S3 endpoint URL (empty for AWS; set for S3-compatible servers)", settings["s3_endpoint_url"],
                             key="set_endpoint")
    roots = st.text_area("Storage roots, one absolute folder or s3://bucket/prefix per line", "\n".join(settings["storage_roots"]),
                         key="set_storage_roots", placeholder="/srv/review-photos\ns3://acme-reviews/uploads",
                         help="Besides the workspace, every photo, manifest and dataset the console reads or writes must "
                              "lie inside one of these (links and '..' are resolved first). Empty: the workspace only.")
    if st.form_submit_button("Save storage and limits", key="set_save_limits"):
        save("max_pixels", int(max_pixels))
        save("max_read_mb", int(max_read))
        save("s3_endpoint_url", endpoint)
        save("storage_roots", roots.split())
        settings = get_settings(conn)  # what the lines below say is what was just saved
if not settings["storage_roots"]:
    st.caption("No storage roots added: the console reads and writes inside its workspace only.")
try:
    if from_env := env_storage_roots():
        st.caption("Also allowed by the server's environment (REVIEW_CONSOLE_STORAGE_ROOTS):")
        st.code("\n".join(from_env), language=None)  # literal, one a line (paths stay out of captions)
except ConsoleError as exc:
    show_error(exc)

st.subheader("Retraining")
st.caption("When enough new human labels exist, a candidate model is trained in the background and promoted only if "
           "its cross-validated macro-F1 is at least the current model's and at least the floor; otherwise it is kept "
           "as an inactive version. Schedulers can run `python -m services.cli.main retrain` instead.")
with st.form("retrain_form"):
    c1, c2, c3 = st.columns(3)
    auto = c1.toggle("Retrain automatically", value=bool(settings["retrain_auto"]), key="set_retrain_auto")
    need = c2.number_input("New human labels before retraining", 1, 1_000_000, int(settings["retrain_min_new_labels"]),
                           key="set_retrain_need")
    floor = c3.number_input("Macro-F1 floor", 0.0, 1.0, float(settings["retrain_min_macro_f1"]), 0.01,
                            key="set_retrain_floor")
    if st.form_submit_button("Save retraining", key="set_save_retrain"):
        save("retrain_auto", auto)
        save("retrain_min_new_labels", int(need))
        save("retrain_min_macro_f1", float(floor))
left, right = st.columns([3, 1])
left.caption(f"{retraining.new_labels(conn):,} new labels since the active model was trained.")
if right.button("Retrain now", key="set_retrain_now"):
    try:
        st.toast(f"Retraining queued (job {retraining.queue(conn, actor=user.name, force=True)})")
        ensure_worker()
    except ConsoleError as exc:
        show_error(exc)
log = retraining.runs(conn, actor=user.name, limit=20)
if log:
    st.dataframe(pd.DataFrame(log)[["started_at", "trigger", "new_labels", "current_version_id", "current_macro_f1",
                                    "candidate_version_id", "candidate_macro_f1", "outcome", "reason"]],
                 hide_index=True, key="set_retrain_log")

st.subheader("Model versions")
versions = list_versions(conn)
if not versions:
    st.info("No model yet. Import labelled photos and train on the Jobs page.")
elif len(versions) > 1:  # side by side: what promoting or rolling back (activating an older one) would change
    table = pd.DataFrame(comparison(versions))
    st.dataframe(table, hide_index=True, key="set_mv_compare",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns
                                if c.startswith(("f1_", "macro", "accuracy", "automatic"))})
    per_class = table.melt(id_vars=["name"], value_vars=[c for c in table.columns if c.startswith("f1_")],
                           var_name="class", value_name="F1")
    per_class["class"] = per_class["class"].str.removeprefix("f1_")
    st.plotly_chart(px.bar(per_class, x="class", y="F1", color="name", barmode="group", range_y=[0, 1],
                           title="Cross-validated F1 per class, by version"), key="set_mv_chart")
for v in versions:
    m = v["metrics"] or {}
    title = f"{'● ' if v['active'] else ''}{v['name']} — macro-F1 {m.get('macro_f1', 0):.3f} on {v['training_data'].get('examples', '?')} photos"
    with st.expander(title, expanded=bool(v["active"])):
        if m.get("per_class"):
            st.dataframe(pd.DataFrame(m["per_class"]).T, key=f"set_mv_pc_{v['id']}")
        if m.get("confusion_matrix"):
            st.caption("Confusion matrix (rows: true, columns: predicted)")
            st.dataframe(pd.DataFrame(m["confusion_matrix"], index=m["classes"], columns=m["classes"]),
                         key=f"set_mv_cm_{v['id']}")
        st.caption(f"Suggested thresholds for {m.get('target_accuracy', 0.98):.0%} accuracy: "
                   f"{thresholds_text(v['thresholds'])}")
        if m.get("at_suggested_thresholds"):
            st.caption(f"Cross-validated at those thresholds: {certified_text(m['at_suggested_thresholds'])}")
        c1, c2 = st.columns(2)
        if not v["path"]:
            c1.caption("Scores on SageMaker (batch transform on the SageMaker page); it cannot classify here.")
        elif not v["active"] and c1.button("Activate", key=f"set_mv_activate_{v['id']}"):
            try:
                activate_version(conn, version_id=v["id"], actor=user.name)
                st.rerun()
            except ConsoleError as exc:
                show_error(exc)
        if c2.button("Use its suggested thresholds", key=f"set_mv_thr_{v['id']}"):
            applied = save("thresholds", v["thresholds"])
            if applied is not None:
                st.session_state["set_thr_applied"] = applied
                st.rerun()
