"""Reused & catalog photos (admin): pairs of photos found to be copies across reviews, and review photos flagged
against the seller's catalog (a copy of a catalog image, or a photo that looks like another product), side by
side with the catalog images, to clear or confirm; the catalog and its import; the customer accounts involved;
whether credit is held meanwhile."""

import json

import pandas as pd
import streamlit as st

from pages.common import current_user, db, md, show_error
from pages.job_panel import failed_table, live_job_panel
from pages.markup import plural, when
from pages.photos import review_name
from pages.photos import show as show_photo
from services.core import jobs
from services.core.config import get_settings
from services.core.errors import ConsoleError
from services.hitl.similar_cases import catalog_images_shown
from services.reuse import catalog
from services.reuse import detection as reuse

st.title("Reused & catalog photos")
conn = db(needs="quality.manage")
user = current_user()
if "rp_flash" in st.session_state:
    st.success(st.session_state.pop("rp_flash"), icon=":material/check:")

hold = get_settings(conn)["hold_credit_on_reuse"]
waiting = reuse.unchecked_count(conn)
st.caption(("Credit is held on reviews with an open or confirmed flag (Settings)." if hold else
            "Credit is not held for flagged photos (Settings → Reused photos).")
           + (f" {plural(waiting, 'classified photo')} {'waits' if waiting == 1 else 'wait'} for the check (the worker "
              "runs it within seconds)." if waiting else ""))

status = st.segmented_control("Show", ["open", "confirmed", "cleared", "all"], default="open", key="rp_status")
flags = reuse.list_flags(conn, actor=user.name, status=None if status in (None, "all") else status)
if not flags:
    st.info("No flagged photos" + ("" if status in (None, "all") else f" with status {status}") + ".")


def resolve(flag_id: int, outcome: str, note: str) -> None:
    try:
        reuse.resolve(conn, flag_id=flag_id, status=outcome, actor=user.name, note=note)
        st.session_state["rp_flash"] = f"Flag {flag_id} {outcome}."
        st.rerun()
    except ConsoleError as exc:
        show_error(exc)


def show_catalog_flag(f: dict) -> None:
    """A review photo flagged against the catalog: the reason, the photo and the catalog images beside it."""
    what = "copies a catalog image" if f["kind"] == "copy" else "does not look like its product"
    st.markdown(f"**Review {md(review_name(f['review_id']))}** (product {md(f['product'] or '?')}) {what}: "
                f"{md(f['reason'] or '')}. Status: **{f['status']}**")
    shown = catalog_images_shown(conn, flag={**f, "uri": f["catalog_uri"], "sha256": f["catalog_sha256"],
                                             "product_id": f["catalog_product"]})
    own = [n for n in shown if n.get("side", "own") == "own"]
    other = [n for n in shown if n.get("side") == "other"]
    cols = st.columns(4)
    show_photo(cols[0], label=f"photo {f['image_id']}", uri=f["uri"], sha256=f["sha256"], size=300,
               caption="the review photo")
    for col, near in zip(cols[1:], own):
        show_photo(col, label="catalog", uri=near["uri"], sha256=near["sha256"] or None, size=300,
                   caption=md(near["caption"]))
    if other:  # a mismatch: the product the photo looks like, under the reviewed product's images
        cols = st.columns(4)
        cols[0].caption("Nearest catalog images of the product it looks like:")
        for col, near in zip(cols[1:], other):
            show_photo(col, label="catalog", uri=near["uri"], sha256=near["sha256"] or None, size=300,
                       caption=md(near["caption"]))


for f in flags:
    with st.container(border=True):
        if f["source"] == "catalog":
            show_catalog_flag(f)
            if f["status"] == "open":
                note = st.text_input("Note (optional)", key=f"rp_note_{f['id']}")
                c1, c2 = st.columns(2)
                held = f["kind"] == "copy"
                if c1.button("Clear: the customer's own photo" + (" (credit flows)" if held else ""),
                             key=f"rp_clear_{f['id']}"):
                    resolve(f["id"], "cleared", note)
                if c2.button("Confirm" + (" (credit stays held)" if held else ""), key=f"rp_confirm_{f['id']}",
                             type="primary"):
                    resolve(f["id"], "confirmed", note)
            elif f["resolved_by"]:
                st.caption(f"{f['status']} by {md(f['resolved_by'])} at {md(when(f['resolved_at']))}"
                           + (f": {md(f['note'])}" if f["note"] else ""))
            continue
        same = "the same account" if f["same_user"] else f"users {md(f['user_id'] or '?')} and {md(f['other_user_id'] or '?')}"
        facts = [f"{f['similarity']:.0%} alike"] if f["similarity"] is not None else []
        facts.append(f"{f['inliers']} matching points" if f["inliers"] else f"hash distance {f['hash_distance']} of 64")
        detail = "the same bytes" if f["kind"] == "exact" else f"an edited copy (found by {f['how']}: {', '.join(facts)})"
        st.markdown(f"**Review {md(review_name(f['review_id']))}** reuses a photo of review "
                    f"**{md(review_name(f['other_review_id']))}**: "
                    f"{detail}, from {same}. Status: **{f['status']}**")
        left, right = st.columns(2)
        show_photo(left, label=f"photo {f['image_id']}", uri=f["uri"], sha256=f["sha256"], size=360, caption="later")
        show_photo(right, label=f"photo {f['other_image_id']}", uri=f["other_uri"], sha256=f["other_sha256"], size=360,
                   caption="earlier")
        if f["status"] == "open":
            note = st.text_input("Note (optional)", key=f"rp_note_{f['id']}")
            c1, c2 = st.columns(2)
            if c1.button("Clear: not a reuse (credit flows)", key=f"rp_clear_{f['id']}"):
                resolve(f["id"], "cleared", note)
            if c2.button("Confirm reuse (credit stays held)", key=f"rp_confirm_{f['id']}", type="primary"):
                resolve(f["id"], "confirmed", note)
        elif f["resolved_by"]:
            st.caption(f"{f['status']} by {md(f['resolved_by'])} at {md(when(f['resolved_at']))}"
                       + (f": {md(f['note'])}" if f["note"] else ""))

st.subheader("Accounts involved")
accounts = reuse.accounts_involved(conn, actor=user.name)
if accounts:
    st.dataframe(pd.DataFrame(accounts), hide_index=True, key="rp_accounts")
else:
    st.caption("No account is part of a flagged pair.")

st.subheader("Catalog")
st.caption("The seller's product images: review photos that copy one, or that look like another product than "
           "the one reviewed, are flagged above. Give a folder or s3:// prefix; each image's product id is its "
           "first folder under it (P123/front.jpg is product P123) or comes from a CSV with columns key,product_id. "
           "Importing again reads only new or changed images; every review photo is then checked against the "
           "catalog again.")
held = catalog.summary(conn)
st.markdown(f"{plural(held['images'], 'catalog image')} of {plural(held['products'], 'product')}"
            + (f", last imported {md(when(held['last_import']))}." if held["last_import"] else "."))
with st.form("rp_catalog_form"):
    source = st.text_input("Folder or s3:// prefix of the catalog images", key="rp_catalog_source")
    product_from = st.radio("Product ids from", ["folder", "manifest"], horizontal=True, key="rp_catalog_from",
                            format_func={"folder": "the first folder level", "manifest": "a manifest CSV"}.get)
    manifest = st.text_input("Manifest CSV (key,product_id), when product ids come from one", key="rp_catalog_manifest")
    if st.form_submit_button("Import catalog", type="primary", key="rp_catalog_import"):
        try:
            st.session_state["rp_catalog_job"] = catalog.start_import(
                conn, source=source, manifest=manifest, product_from=product_from or "folder", actor=user.name)
            st.rerun()
        except ConsoleError as exc:
            show_error(exc)


def render_import(fresh, job: dict) -> None:  # type: ignore[no-untyped-def]
    st.caption(f"Import job {job['id']}: {job['state']}, {job['done'] or 0} of {job['total'] or 0} new or changed "
               f"images read")
    if job["state"] == "done" and job.get("result"):
        r = job["result"]
        st.caption(f"The catalog holds {plural(r.get('images', 0), 'image')} of {plural(r.get('products', 0), 'product')}"
                   f"; {plural(r.get('failed', 0), 'image')} could not be imported.")
    elif job["state"] == "failed":
        st.error(md(job.get("error") or "the import failed"))
    failed = jobs.failed_items(fresh, job["id"], limit=20)
    if failed:
        failed_table([{**x, "item": json.loads(x["item"]).get("uri", x["item"])} for x in failed],
                     key="rp_catalog_failed", what="image")


imports = jobs.job_ids(conn, kind=catalog.KIND, actor=user.name, limit=1)
if imports:
    live_job_panel(st.session_state.get("rp_catalog_job", imports[0]), render_import)
