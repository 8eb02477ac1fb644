"""Widgets for a background job on a page: pick one, follow it live, cancel or resume it, and list what failed.

The job's state is in the database (``services.core.jobs``); these only read it and poll it. Not a page.
"""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from pages.common import db, ensure_worker, show_error
from pages.markup import md, when
from services.core import jobs
from services.core.errors import ConsoleError
from services.core.wording import name_of, value_text


def live_job_panel(job_id: int, render) -> None:  # type: ignore[no-untyped-def]
    """Draw ``render(conn, job)`` in a fragment that refreshes every two seconds while the job is active and
    redraws the page once when it ends; a ConsoleError from ``render`` is shown, not raised."""
    live = jobs.is_active(jobs.get_job(db(), job_id))

    @st.fragment(run_every=2 if live else None)
    def panel() -> None:
        fresh = db()  # a fragment rerun runs on a thread of its own, with that thread's connection
        try:
            job = jobs.get_job(fresh, job_id)
            if live and not jobs.is_active(job):
                st.rerun()  # it has just ended: redraw the page once, and stop polling
            render(fresh, job)
        except ConsoleError as exc:
            show_error(exc)

    panel()


def pick_job(conn, *, kind: str, actor: str, key: str, label: str, empty: str, notice=st.caption) -> int:  # type: ignore[no-untyped-def]
    """The job of ``kind`` chosen in a select box (the newest by default, or the one just launched, kept in
    session state under ``key``); with none yet, ``notice(empty)`` is shown and the run stops."""
    choices = {j["id"]: j for j in jobs.job_choices(conn, kind=kind, actor=actor)}
    if not choices:
        notice(empty)
        st.stop()
    if st.session_state.get(key) not in choices:
        st.session_state[key] = next(iter(choices))

    def name(job_id: int) -> str:  # "#4 · 2026-12-06 01:03 UTC · photos/": no state, which a live panel outdates
        j = choices.get(job_id)
        if j is None:
            return f"#{job_id}"
        source = j["source"] if len(j["source"]) <= 48 else "…" + j["source"][-47:]
        return " · ".join(x for x in (f"#{job_id}", when(j["created_at"]), source) if x)

    return st.selectbox(label, list(choices), key=key, format_func=name)


def failed_table(rows: list[dict], *, key: str, what: str = "file") -> None:  # type: ignore[type-arg]
    """A job's failed items (``jobs.failed_items``) as a person reads them: the item, why in full, and when."""
    table = pd.DataFrame([{what: r["item"], "why": r["error"], "when": when(r["updated_at"])} for r in rows],
                         columns=[what, "why", "when"])
    st.dataframe(table, hide_index=True, key=key, width="stretch",
                 column_config={"why": st.column_config.TextColumn("why", width="large")})


def now_line(container, job: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    """What an active job is doing inside the item in hand (``jobs.current``: a video's frame), under its bar."""
    if job.get("current") and jobs.is_active(job):
        container.caption(f"Now: {md(job['current'])}")


def job_controls(conn, job: dict, *, key: str, actor: str) -> None:  # type: ignore[no-untyped-def,type-arg]
    """Cancel (while queued or running) and resume (after a failure or a cancel) buttons for one job."""
    b1, _ = st.columns([1, 5])  # one button at a time: where Cancel was, Resume comes
    if job["state"] in ("queued", "running") and b1.button("Cancel", key=f"{key}_cancel"):
        jobs.cancel_job(conn, job_id=job["id"], actor=actor)
        st.rerun()
    if job["state"] in ("failed", "cancelled") and b1.button("Resume", key=f"{key}_resume", type="primary"):
        jobs.resume_job(conn, job_id=job["id"], actor=actor)
        ensure_worker()
        st.rerun()


STORED_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")  # as jobs store times


def figures(result: dict, prefix: str = "") -> tuple[list[dict], dict[str, list[dict]]]:  # type: ignore[type-arg]
    """A job's result as a person reads it: (its figures as rows of what and value, a nested part's names
    joined with " · "; its lists of records by name, as tables take them). Pure."""
    rows, tables = [], {}
    for key, value in result.items():
        name = f"{prefix}{name_of(key)}"
        if isinstance(value, dict):
            inner, more = figures(value, prefix=f"{name} · ")
            rows += inner
            tables.update(more)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables[name] = [{name_of(k): _cell(v) for k, v in r.items()} for r in value]
        else:
            rows.append({"what": name, "value": _cell(value)})
    return rows, tables


def _cell(value: object) -> str:
    """One value in a table: a record inside a record as "name value; ...", a stored time as the app shows times,
    anything else by ``value_text``."""
    if isinstance(value, str) and STORED_TIME.fullmatch(value):
        return when(value)
    if isinstance(value, dict):
        return "; ".join(f"{name_of(str(k))} {_cell(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    return value_text(value)


def result_view(result: dict, *, key: str) -> None:  # type: ignore[type-arg]
    """A job's result as tables (``figures``), not as the JSON the job stored."""
    rows, tables = figures(result)
    if rows:
        st.dataframe(pd.DataFrame(rows, columns=["what", "value"]), hide_index=True, key=f"{key}_figures")
    for name, records in tables.items():
        st.caption(f"{name} ({len(records):,})")
        st.dataframe(pd.DataFrame(records), hide_index=True, key=f"{key}_{name}")
