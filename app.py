"""Review console: page config, identity, then navigation over the pages the user's role allows."""

from pathlib import Path

import streamlit as st

from pages.common import (
    AUTH_KEY,
    ROUTED_KEY,
    current_user,
    data_dir_from_argv,
    ensure_worker,
    guard_network,
    md,
    refusal_page,
    show_error,
    sign_out,
    thread_db,
    workspace,
)
from services.core.authz import PERMISSIONS
from services.core.errors import ConsoleError

PAGES = {  # sections by the work they are for; each role's own section comes first (FIRST), all shown at once
    "Inspection": [
        ("pages/overview.py", "Overview", ":material/dashboard:", "stats.read"),
        ("pages/queue.py", "Review queue", ":material/fact_check:", "reviews.label"),
        ("pages/checks.py", "Yes/no checks", ":material/rule:", "reviews.label"),
        ("pages/reviews.py", "Reviews", ":material/table_rows:", "reviews.read"),
        ("pages/dashboard.py", "Inspector dashboard", ":material/monitoring:", "stats.read"),
    ],
    "Operations": [
        ("pages/lines.py", "Line throughput", ":material/conveyor_belt:", "lines.read"),
    ],
    "Administration": [  # the README's first steps start at Jobs
        ("pages/jobs.py", "Jobs", ":material/work_history:", "jobs.manage"),
        ("pages/quality.py", "Label quality", ":material/verified:", "quality.manage"),
        ("pages/reused.py", "Reused & catalog photos", ":material/content_copy:", "quality.manage"),
        ("pages/models.py", "Models", ":material/model_training:", "models.manage"),
        ("pages/settings.py", "Settings", ":material/tune:", "settings.change"),
        ("pages/users.py", "Users and audit", ":material/manage_accounts:", "users.manage"),
    ],
    "Tools": [
        ("pages/dataset_filter.py", "Dataset filter", ":material/filter_alt:", "jobs.manage"),
        ("pages/face_blur.py", "Face blurring", ":material/face_retouching_off:", "jobs.manage"),
        ("pages/sagemaker.py", "SageMaker", ":material/cloud:", "models.manage"),
    ],
}
FIRST = {"admin": "Administration", "ops": "Operations", "inspector": "Inspection"}  # a role's daily section

st.set_page_config(page_title="Review console", page_icon=":material/photo_library:", layout="wide")
st.session_state[ROUTED_KEY] = True  # this run goes through the router (see pages.common.through_router)

ws = workspace(data_dir_from_argv())
guard_network(thread_db())  # refused before anything else is shown (the run's connection: one per thread)
user = current_user(deep_links=[Path(path).stem for pages in PAGES.values() for path, *_ in pages])
ensure_worker()  # background jobs run on a daemon thread of this process

first = [FIRST[role] for role in ("admin", "ops", "inspector") if role in user.roles]
nav = {  # a page is listed for the roles that may do its action (the page and its services check it too);
    # the others answer at their address with the role they need, unlisted. Overview stays the home page.
    section: [st.Page(path, title=title, icon=icon, default=path == "pages/overview.py")
              if user.roles & PERMISSIONS[action]
              else st.Page(refusal_page(title, action), title=title, url_path=Path(path).stem, visibility="hidden")
              for path, title, icon, action in PAGES[section]]
    for section in sorted(PAGES, key=lambda s: first.index(s) if s in first else len(first))
}
with st.sidebar:
    st.caption(f"Signed in as **{md(user.name)}** ({', '.join(sorted(user.roles))})")
    if st.session_state.get(AUTH_KEY) and st.button("Sign out", key="signout", icon=":material/logout:"):
        sign_out(user)
        st.rerun()
    if user.roles & PERMISSIONS["settings.change"]:  # a server path: for admins only
        st.caption(f"Workspace: `{ws.root}`")
try:
    st.navigation(nav, expanded=True).run()  # every page the role has at once, no "View 5 more"
except ConsoleError as exc:  # a page's service refused (the role checks in services) or failed: say why
    show_error(exc)
