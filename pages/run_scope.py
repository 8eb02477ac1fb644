"""What lives for one script run, or for the thread that runs it: the run's memo (values computed once per run),
this thread's database connection, and whether the run is a person's action or a page refreshing itself.

Streamlit runs each script run (a full run, or a fragment's) on a thread of its own; a sqlite connection belongs to
its thread, so one connection per thread serves every helper of a run (issue 23: a queue page run had opened about
8.5, each with its PRAGMAs and migrations check).

Not a page: ``app.py`` lists pages explicitly with ``st.navigation``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from streamlit.runtime.scriptrunner import get_script_run_ctx

_THREAD = threading.local()  # this thread's connections and the memo of its current script run


def run_memo() -> dict[Any, Any]:
    """A dict for values computed once per script run (a fragment's run is a run of its own; a run restarted by
    ``st.rerun()`` starts a new one), e.g. the signed-in user; outside a script run, an empty one each call."""
    ctx = get_script_run_ctx()
    if ctx is None:
        return {}
    marker = ctx.cursors  # a new dict at the start of every run, full or fragment
    memo = getattr(_THREAD, "memo", None)
    if memo is None or memo[0] is not marker:
        memo = _THREAD.memo = (marker, {})
    return memo[1]


def thread_connection(root: str, open_db: Callable[[], Any]) -> Any:
    """This thread's connection to the workspace at ``root``, opened with ``open_db`` once per thread. At its first
    use in a run, a transaction an earlier (failed) run left open is rolled back; a connection someone closed is
    opened again."""
    conns = _THREAD.__dict__.setdefault("conns", {})
    conn = conns.get(root)
    memo = run_memo()
    if conn is not None:
        try:
            if get_script_run_ctx() is not None and ("db_checked", root) not in memo and conn.conn.in_transaction:
                conn.conn.rollback()
        except sqlite3.ProgrammingError:  # closed
            conn = None
    if conn is None:
        conn = conns[root] = open_db()
    memo[("db_checked", root)] = True
    return conn


def fragment_run() -> bool:
    """True when this run reruns fragments only (``@st.fragment(run_every=...)`` refreshing itself, or a widget
    inside a fragment); a full run (navigation, most widgets, ``st.rerun()``) is False."""
    ctx = get_script_run_ctx()
    return bool(ctx is not None and ctx.fragment_ids_this_run)


def person_acted() -> None:
    """Say that this run is a person's action (called first thing by a widget's callback): a fragment's run then
    counts as activity, like a full run, for the idle timeout."""
    run_memo()["acted"] = True


def refresh_only() -> bool:
    """True for a fragment's run that no person's action started (``run_every``); see ``person_acted``."""
    return fragment_run() and not run_memo().get("acted")
