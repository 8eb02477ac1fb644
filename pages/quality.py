"""Label quality (admin): adjudication, likely mistakes, gold items, inspector reliability, photo history,
and the consolidated labels exported as a Ground Truth manifest."""

import pandas as pd
import streamlit as st

from pages.common import current_user, db, md, show_error, workspace
from pages.markup import plural
from pages.photos import data_url, review_name
from pages.photos import show as show_photo
from services.core.config import CLASSES, Workspace
from services.core.errors import ConsoleError
from services.hitl import export
from services.hitl.consensus import adjudicate, adjudication_items, estimate_reliability, reliabilities
from services.hitl.gold import gold_accuracy, gold_items, mark_gold, unmark_gold
from services.hitl.history import item_history
from services.hitl.mistakes import KIND_TITLES, likely_mistakes, requeue

st.title("Label quality")
conn = db(needs="quality.manage")
user = current_user()
if "ql_flash" in st.session_state:
    st.success(st.session_state.pop("ql_flash"), icon=":material/check:")
for stale in st.session_state.pop("ql_reset", []):  # widgets whose choices referred to rows that are gone
    st.session_state.pop(stale, None)


def done(message: str, *, reset: tuple[str, ...] = ()) -> None:
    """Show ``message`` after the rerun that redraws the tables; ``reset`` clears those widgets first."""
    st.session_state["ql_flash"] = message
    st.session_state["ql_reset"] = list(reset)
    st.rerun()


def pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def label_name(label: str | None) -> str:
    return (label or "").replace("_", " ")


adj_tab, mistakes_tab, gold_tab, inspectors_tab, history_tab, export_tab = st.tabs(
    ["Adjudication", "Likely mistakes", "Gold items", "Inspectors", "Photo history", "Export"])

# ------------------------------------------------------------------------------------------ adjudication
with adj_tab:
    items = adjudication_items(conn)
    if not items:
        st.info("No photos are waiting for adjudication. When the inspectors of a photo labelled by several "
                "people disagree so much that the consolidated confidence stays below the setting, the photo "
                "appears here with each answer, and you decide its label.")
    for item in items:
        image_id = item["id"]
        cons = item["consensus"] or {}
        with st.container(border=True):
            left, right = st.columns([2, 3])
            show_photo(left, label=f"photo {image_id}", uri=item["uri"], sha256=item["sha256"], size=480)
            with right:
                st.markdown(f"**Photo {image_id}** · {md(item['review_type'])} review {md(review_name(item['review_id']))}")
                if item["text"]:
                    st.text(item["text"])  # customer text, shown literally
                pred = item["prediction"]
                st.caption(f"Model: {label_name(pred['label'])} at {pct(pred['confidence'])}" if pred
                           else "No model prediction for this photo.")
                st.dataframe(
                    pd.DataFrame([{"inspector": a["inspector"], "label": label_name(a["label"]),
                                   "reliability": a["accuracy"], "estimated by": a["method"]} for a in item["answers"]],
                                 columns=["inspector", "label", "reliability", "estimated by"]),
                    hide_index=True, key=f"ql_adj_answers_{image_id}",
                    column_config={"reliability": st.column_config.NumberColumn(format="percent")})
                if cons:
                    st.caption(f"Consensus: {label_name(cons.get('label'))} at {pct(cons.get('confidence'))}, "
                               f"agreement {pct(cons.get('agreement'))} ({cons.get('method')})")
                    probs = cons.get("probabilities") or {}
                    st.dataframe(pd.DataFrame([{"class": label_name(c), "probability": probs.get(c, 0.0)} for c in CLASSES]),
                                 hide_index=True, key=f"ql_adj_probs_{image_id}",
                                 column_config={"probability": st.column_config.ProgressColumn(
                                     format="percent", min_value=0.0, max_value=1.0)})
                default = cons.get("label")
                choice = st.radio("Final label", CLASSES, key=f"ql_adj_label_{image_id}", horizontal=True,
                                  index=CLASSES.index(default) if default in CLASSES else None, format_func=label_name)
                if st.button("Decide", key=f"ql_adj_decide_{image_id}", type="primary", disabled=choice is None):
                    try:
                        decision = adjudicate(conn, image_id=image_id, label=choice, actor=user.name)
                        done(f"Image {image_id} decided as {label_name(choice)}: {md(decision['reason'])}")
                    except ConsoleError as exc:
                        show_error(exc)

# --------------------------------------------------------------------------------------- likely mistakes
with mistakes_tab:
    rows = likely_mistakes(conn)
    if not rows:
        st.info("No likely mistakes. Decided photos where a confident model (at or above its class's threshold) "
                "disagrees with the one inspector who decided them, or where several inspectors split, will be "
                "listed here so you can send them for an independent re-review.")
    else:
        st.caption(f"{plural(len(rows), 'photo')}: a confident model against one inspector first (most confident first), "
                   "then photos where inspectors split (lowest agreement first).")
        table = pd.DataFrame([{
            "photo": data_url(r["uri"], r["sha256"]), "image": r["image_id"], "kind": KIND_TITLES[r["kind"]], "decided": label_name(r["label"]),
            "inspectors": r["human_labels"], "model": label_name(r["model_label"]),
            "model confidence": r["model_confidence"], "agreement": r["agreement"],
            "consensus": label_name(r["consensus_label"]), "outcome": r["outcome"] or "",
            "decided at": r["decided_at"], "review": review_name(r["review_id"]), "type": r["review_type"],
        } for r in rows])
        event = st.dataframe(
            table, hide_index=True, key="ql_mistakes_table", on_select="rerun", selection_mode="multi-row",
            row_height=64,  # the photo itself, to judge who is right
            column_config={"photo": st.column_config.ImageColumn("photo", width="small"),
                           "model confidence": st.column_config.NumberColumn(format="percent"),
                           "agreement": st.column_config.NumberColumn(format="percent")})
        from_table = [rows[i]["image_id"] for i in event.selection.rows if i < len(rows)]
        picked = st.multiselect("Or pick image ids", [r["image_id"] for r in rows], key="ql_mistakes_ids")
        chosen = sorted(set(from_table) | set(picked))
        by_id = {r["image_id"]: r for r in rows}
        if chosen:
            cols = st.columns(min(len(chosen), 6))
            for n, image_id in enumerate(chosen[:6]):
                show_photo(cols[n], label=f"photo {image_id}", uri=by_id[image_id]["uri"],
                           sha256=by_id[image_id]["sha256"], size=200, details=False,
                           caption=f"decided {label_name(by_id[image_id]['label'])}, model "
                                   f"{label_name(by_id[image_id]['model_label'])}")
        reason = st.text_input("Why another look", key="ql_requeue_reason",
                               placeholder="for example: the model is confident it is a product shot")
        if st.button("Send for re-review", key="ql_requeue", type="primary", disabled=not chosen):
            sent, failed = [], []
            for image_id in chosen:
                try:
                    requeue(conn, image_id=image_id, actor=user.name, reason=reason)
                    sent.append(image_id)
                except ConsoleError as exc:
                    failed.append(exc)
            for exc in failed:
                show_error(exc)
            if sent and not failed:
                done(f"Sent {len(sent)} photo(s) for re-review by another inspector: {', '.join(map(str, sent))}",
                     reset=("ql_mistakes_table", "ql_mistakes_ids", "ql_requeue_reason"))
            elif sent:  # keep the errors on screen; clear the choice on the next run
                st.success(f"Sent {', '.join(map(str, sent))} for re-review.")
                st.session_state["ql_reset"] = ["ql_mistakes_table", "ql_mistakes_ids"]

# -------------------------------------------------------------------------------------------- gold items
with gold_tab:
    st.caption("Gold photos have a known answer. They are mixed into inspectors' queues at the gold rate "
               "(Settings) and look like any other photo; answers on them measure each inspector's accuracy.")
    with st.form("ql_gold_form", clear_on_submit=True):
        c1, c2 = st.columns(2)
        gold_id = c1.number_input("Image id", min_value=1, step=1, value=None, key="ql_gold_image")
        gold_label = c2.selectbox("Known label", CLASSES, key="ql_gold_label", format_func=label_name)
        if st.form_submit_button("Mark as gold", key="ql_gold_mark"):
            if gold_id is None:
                st.warning("Enter the id of the photo to mark.")
            else:
                try:
                    marked = mark_gold(conn, image_id=int(gold_id), label=gold_label, actor=user.name)
                    done(f"Image {int(gold_id)} is a gold item ({label_name(gold_label)})"
                         + (" and was decided with that label." if marked["decision_id"] else "."))
                except ConsoleError as exc:
                    show_error(exc)
    golds = gold_items(conn)
    if not golds:
        st.info("No gold items yet. Mark photos whose answer you know above; they will be listed here with how "
                "many inspectors answered them and how many got them right.")
    else:
        st.dataframe(pd.DataFrame([{
            "image": g["image_id"], "label": label_name(g["label"]), "answers": g["answers"], "correct": g["correct"],
            "accuracy": g["correct"] / g["answers"] if g["answers"] else None, "status": g["status"],
            "marked by": g["created_by"], "marked at": g["created_at"],
        } for g in golds]), hide_index=True, key="ql_gold_table",
            column_config={"accuracy": st.column_config.NumberColumn(format="percent")})
        c1, c2 = st.columns([2, 1])
        to_unmark = c1.selectbox("Stop using as gold", [g["image_id"] for g in golds], index=None, key="ql_gold_unmark_id",
                                 placeholder="image id")
        if c2.button("Unmark", key="ql_gold_unmark", disabled=to_unmark is None):
            try:
                unmark_gold(conn, image_id=int(to_unmark), actor=user.name)
                done(f"Image {to_unmark} is no longer a gold item (its decision stays).", reset=("ql_gold_unmark_id",))
            except ConsoleError as exc:
                show_error(exc)
    st.subheader("Accuracy on gold, per inspector")
    accuracy = gold_accuracy(conn)
    if not accuracy:
        st.info("No inspector has answered a gold photo yet. Each inspector's accuracy on gold appears here "
                "once gold photos reach their queues.")
    else:
        st.dataframe(pd.DataFrame([{"inspector": name, "gold answers": a["answers"], "correct": a["correct"],
                                    "accuracy": a["accuracy"]} for name, a in accuracy.items()]),
                     hide_index=True, key="ql_gold_accuracy",
                     column_config={"accuracy": st.column_config.NumberColumn(format="percent")})

# -------------------------------------------------------------------------------------------- inspectors
with inspectors_tab:
    st.caption("Each inspector's estimated reliability weighs their answers in the consensus: Dawid-Skene when they "
               "share enough photos with others, else their accuracy on gold, else a prior.")
    rel = reliabilities(conn)
    if not rel:
        st.info("No reliability estimates yet. They appear once inspectors have answered photos; they are "
                "re-estimated automatically as answers come in, or now with the button below.")
    else:
        st.dataframe(pd.DataFrame([{
            "inspector": name, "method": r["method"], "accuracy": r["accuracy"], "answers": r["n_answers"],
            "shared photos": r["n_overlap_items"], "gold answers": r["gold_answers"], "gold correct": r["gold_correct"],
            "updated": r["updated_at"],
        } for name, r in rel.items()]), hide_index=True, key="ql_reliability_table",
            column_config={"accuracy": st.column_config.NumberColumn(format="percent")})
    if st.button("Re-estimate now", key="ql_reestimate"):
        try:
            estimated = estimate_reliability(conn)
            done(f"Re-estimated the reliability of {len(estimated)} inspector(s).")
        except ConsoleError as exc:
            show_error(exc)

# ----------------------------------------------------------------------------------------- photo history
with history_tab:
    hist_id = st.number_input("Image id", min_value=1, step=1, value=None, key="ql_history_image")
    if hist_id is None:
        st.info("Enter an image id to see everything that happened to the photo, oldest first: model predictions, "
                "decisions, claims, answers, skips, undos, re-reviews and audit entries, with who, when and time spent.")
    else:
        try:
            history = item_history(conn, image_id=int(hist_id))
            if history:
                st.dataframe(pd.DataFrame(history, columns=["at", "who", "what", "label", "seconds", "detail"]),
                             hide_index=True, key="ql_history_table")
            else:
                st.info(f"Nothing has happened to image {int(hist_id)} yet.")
        except ConsoleError as exc:
            show_error(exc)

# ------------------------------------------------------------------------------------------------ export
with export_tab:
    st.caption("Consolidated labels as a SageMaker Ground Truth image-classification manifest: train on it here "
               "(Jobs → import labels) or in SageMaker. Each line carries how sure the label is: the model's "
               "confidence, the consolidated posterior of several inspectors, the inspector's estimated accuracy, "
               "or 1.0 for gold photos and adjudications.")
    c1, c2 = st.columns(2)
    human_only = c1.toggle("People's labels only", value=True, key="ql_export_human")
    min_conf = c2.slider("Leave out labels less sure than", 0.0, 1.0, 0.0, 0.05, key="ql_export_min")
    root = workspace().root  # the file is built on another thread, with a connection of its own

    def manifest() -> str:
        conn_ = Workspace(root).db()
        try:
            return export.to_groundtruth(conn_, actor=user.name, human_only=human_only, min_confidence=min_conf)[0]
        finally:
            conn_.close()

    def table() -> str:
        conn_ = Workspace(root).db()
        try:
            return export.to_csv(conn_, actor=user.name)[0]
        finally:
            conn_.close()

    st.caption("The CSV publishes each decided photo on the way: one with shipping-label boxes to hide gets its "
               "redacted copy written under published/ in the workspace (once per set of boxes; an edit gives a new "
               "copy), named in the published_uri column; the others are published as they are. A package photo "
               "whose labels are still to be searched is not published yet (publish_error says so).")
    d1, d2 = st.columns(2)
    d1.download_button("Download Ground Truth manifest", manifest, file_name="labels.manifest",
                       mime="application/jsonl", key="ql_export_gt", icon=":material/download:")
    d2.download_button("Download every photo as CSV", table, file_name="photos.csv", mime="text/csv",
                       key="ql_export_csv", icon=":material/table:")
