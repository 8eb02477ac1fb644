"""Users and audit (admin): accounts, their roles, disabling and unlocking; single sign-on role mappings; the
audit log, filtered and exported."""

import pandas as pd
import streamlit as st

from pages.common import current_user, db, md, show_error, sso_providers
from services.access import sso
from services.access.accounts import ROLES, create_user, list_users, set_disabled, set_roles
from services.core import audit
from services.core.errors import ConsoleError

st.title("Users and audit")
conn = db(needs="users.manage")
user = current_user()
if "us_flash" in st.session_state:
    st.success(st.session_state.pop("us_flash"), icon=":material/check:")


def done(message: str) -> None:
    st.session_state["us_flash"] = message
    st.rerun()


users_tab, sso_tab, audit_tab = st.tabs(["Users", "Single sign-on", "Audit log"])
with users_tab:
    accounts = list_users(conn, actor=user.name)
    if accounts:
        st.dataframe(pd.DataFrame(accounts), hide_index=True, key="us_table")
    else:
        st.info("No accounts yet: the console is in set-up mode and trusts the local operator. Create the first "
                "admin here or with `python -m services.cli.main create-user --username NAME --role admin`.")
    with st.form("us_create", clear_on_submit=True):
        st.markdown("**New account**")
        c1, c2, c3 = st.columns(3)
        name = c1.text_input("User name", key="us_new_name")
        password = c2.text_input("Password (12+ characters)", type="password", key="us_new_password")
        roles = c3.multiselect("Roles", ROLES, key="us_new_roles")
        if st.form_submit_button("Create", key="us_create_submit"):
            try:
                created = create_user(conn, username=name, password=password, roles=roles, actor=user.name)
                done(f"Created {md(created['username'])} ({', '.join(created['roles'])}).")
            except ConsoleError as exc:
                show_error(exc)
    for account in accounts:
        with st.expander(f"{md(account['username'])} · {', '.join(account['roles'])}"
                         + (" · disabled" if account["disabled"] else "")):
            oidc = account["auth"] == "oidc"
            if oidc:
                st.caption("Signs in through single sign-on: roles come from the mappings on the Single sign-on tab.")
            picked = st.multiselect("Roles", ROLES, account["roles"], key=f"us_roles_{account['username']}", disabled=oidc)
            c1, c2 = st.columns(2)
            if c1.button("Save roles", key=f"us_save_{account['username']}", disabled=oidc):
                try:
                    set_roles(conn, username=account["username"], roles=picked, actor=user.name)
                    done(f"Roles of {md(account['username'])} saved.")
                except ConsoleError as exc:
                    show_error(exc)
            label = "Enable (and unlock)" if account["disabled"] or account["failed_count"] else "Disable"
            if c2.button(label, key=f"us_toggle_{account['username']}"):
                try:
                    set_disabled(conn, username=account["username"], disabled=label == "Disable", actor=user.name)
                    done(f"{md(account['username'])}: {'disabled' if label == 'Disable' else 'enabled'}.")
                except ConsoleError as exc:
                    show_error(exc)

with sso_tab:
    providers = sso_providers()
    if providers:
        st.caption(f"Single sign-on is on ({', '.join(md(p) if p else 'one provider' for p in providers)}). A person's roles are "
                   "those mapped to their identity and to each of their groups; without one they are refused.")
    else:
        st.info("Single sign-on is off: configure an OIDC provider under [auth] in .streamlit/secrets.toml "
                "(see .streamlit/secrets.toml.example). Mappings made now apply once it is on.")
    maps = sso.mappings(conn, actor=user.name)
    if maps:
        st.dataframe(pd.DataFrame(maps), hide_index=True, key="us_sso_table")
    with st.form("us_sso_map", clear_on_submit=True):
        st.markdown("**Map an identity or a group to roles**")
        c1, c2, c3 = st.columns(3)
        kind = c1.selectbox("Kind", sso.KINDS, key="us_sso_kind",
                            help="identity: the value of the identity claim (Settings; by default the email). "
                                 "group: a value of the groups claim.")
        subject = c2.text_input("Identity or group", key="us_sso_subject")
        map_roles = c3.multiselect("Roles", ROLES, key="us_sso_roles")
        if st.form_submit_button("Save mapping", key="us_sso_submit"):
            try:
                saved = sso.set_mapping(conn, kind=kind, subject=subject, roles=map_roles, actor=user.name)
                done(f"{saved['kind']} {md(saved['subject'])} → {', '.join(saved['roles'])}.")
            except ConsoleError as exc:
                show_error(exc)
    if maps:
        labels = {f"{m['kind']}: {m['subject']}": m for m in maps}
        c1, c2 = st.columns([3, 1])
        gone = c1.selectbox("Remove a mapping", list(labels), index=None, key="us_sso_remove")
        if c2.button("Remove", key="us_sso_remove_submit", disabled=gone is None):
            try:
                sso.remove_mapping(conn, kind=labels[gone]["kind"], subject=labels[gone]["subject"], actor=user.name)
                done(f"Removed the mapping for {md(gone)}.")
            except ConsoleError as exc:
                show_error(exc)

with audit_tab:
    c1, c2, c3, c4 = st.columns(4)
    actor = c1.text_input("Who", key="us_audit_actor")
    action = c2.text_input("Action starts with", key="us_audit_action", placeholder="sign_in")
    since = c3.date_input("From", value=None, key="us_audit_since")
    until = c4.date_input("Until (inclusive)", value=None, key="us_audit_until")
    rows = audit.entries(conn, actor=user.name, who=actor.strip(), action=action.strip(), since=str(since) if since else "",
                         until=(str(pd.Timestamp(until) + pd.Timedelta(days=1))[:10] if until else ""))
    st.caption(f"{len(rows)} entries (newest first, at most 500). The log is append-only: the database refuses "
               "updates and deletes.")
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="us_audit_table")
    st.download_button("Download as CSV", audit.to_csv(rows), file_name="audit.csv", mime="text/csv",
                       key="us_audit_csv", icon=":material/download:")
