"""Review console: page config, identity, then navigation over the pages the user's role allows."""

import streamlit as st

from pages.common import (
    AUTH_KEY,
    ROUTED_KEY,
    current_user,
    data_dir_from_argv,
    ensure_worker,
    guard_network,
    show_error,
    sign_out,
    workspace,
)
from services.errors import ConsoleError

st.set_page_config(page_title="Review console", page_icon=":material/photo_library:", layout="wide")
st.session_state[ROUTED_KEY] = True  # this run goes through the router (see pages.common.through_router)

ws = workspace(data_dir_from_argv())
guard_network(ws.db())  # refused before anything else is shown
user = current_user()
ensure_worker()  # background jobs run on a daemon thread of this process

PAGES = {
    "Inspection": [
        ("pages/overview.py", "Overview", ":material/dashboard:", {"inspector", "ops", "admin"}),
        ("pages/reviews.py", "Reviews", ":material/table_rows:", {"inspector", "admin"}),
        ("pages/queue.py", "Review queue", ":material/fact_check:", {"inspector", "admin"}),
        ("pages/checks.py", "Yes/no checks", ":material/rule:", {"inspector", "admin"}),
        ("pages/dashboard.py", "Inspector dashboard", ":material/monitoring:", {"inspector", "ops", "admin"}),
    ],
    "Operations": [
        ("pages/lines.py", "Line throughput", ":material/conveyor_belt:", {"ops", "admin"}),
    ],
    "Administration": [
        ("pages/quality.py", "Label quality", ":material/verified:", {"admin"}),
        ("pages/dataset_filter.py", "Dataset filter", ":material/filter_alt:", {"admin"}),
        ("pages/jobs.py", "Jobs", ":material/work_history:", {"admin"}),
        ("pages/settings.py", "Settings", ":material/tune:", {"admin"}),
        ("pages/users.py", "Users and audit", ":material/manage_accounts:", {"admin"}),
    ],
}
nav = {
    section: [st.Page(path, title=title, icon=icon) for path, title, icon, roles in pages if user.roles & roles]
    for section, pages in PAGES.items()
}
with st.sidebar:
    st.caption(f"Signed in as **{user.name}** ({', '.join(sorted(user.roles))})")
    if st.session_state.get(AUTH_KEY) and st.button("Sign out", key="signout", icon=":material/logout:"):
        sign_out(user)
        st.rerun()
    st.caption(f"Workspace: `{ws.root}`")
try:
    st.navigation({k: v for k, v in nav.items() if v}).run()
except ConsoleError as exc:  # a page's service refused (the role checks in services) or failed: say why
    show_error(exc)
