"""The background worker's periodic chores, each on its own interval.

- every minute: record the queue size for the dashboard; re-estimate inspectors' reliability when
  enough new answers arrived (kept out of inspectors' submit transactions, where it would hold the lock);
- every few seconds: read new detector frames from the line feed (setting ``line_feed_uri``), count
  them, and evaluate line alerts (also when the feed cannot be read, or lines are fed from elsewhere);
- every five minutes: watch the audited automatic decisions (services.hitl.audit_watch): a class whose audits
  show it below its promised accuracy goes to people, with an alert;
- every 15 seconds: queue the reused-photo check, re-scoring and the shipping-label search when photos wait;
- every hour: prune counted raw frames older than the retention (totals stay).

``services.worker.runner.Worker`` calls ``Housekeeping.run_due`` between jobs; ``cli work`` calls ``run_all``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from services.core import jobs
from services.core.config import Workspace, get_settings, object_store
from services.core.errors import ConsoleError
from services.hitl import audit_watch
from services.hitl.consensus import estimate_reliability, reliability_is_stale
from services.hitl.inspector_stats import (
    SNAPSHOT_SECONDS,  # one interval for the worker and the dashboard
    record_queue_snapshot_if_stale,
)
from services.lines import alerts as line_alerts
from services.lines import feed as lines
from services.lines.targets import list_lines
from services.models import retraining
from services.reuse import detection as reuse
from services.reviews import label_search, rescore

LINE_POLL_SECONDS = 10.0
PRUNE_SECONDS = 3600.0
REUSE_SECONDS = 15.0
RETRAIN_SECONDS = 600.0
AUDIT_WATCH_SECONDS = 300.0


def snapshot_and_reliability(db: Any) -> dict[str, Any]:
    """Queue snapshot (once across processes) and reliability re-estimate when stale."""
    snapshot = record_queue_snapshot_if_stale(db, max_age_seconds=SNAPSHOT_SECONDS) is not None
    stale = reliability_is_stale(db)
    if stale:
        estimate_reliability(db)
    return {"queue_snapshot": snapshot, "reliability_reestimated": stale}


def poll_line_feed(db: Any) -> dict[str, Any]:
    """Ingest and count new frames from the configured line feed, then evaluate alerts, also when the feed
    cannot be read (a feed gone silent is an alert) or none is configured but lines exist (fed from elsewhere,
    e.g. ``cli lines-ingest --watch``). Raises ConsoleError (StorageError for an unreachable feed) for the
    caller to report, after the alerts are evaluated."""

    settings = get_settings(db)
    feed = settings.get("line_feed_uri") or ""
    if not feed:
        if not list_lines(db):
            return {"line_feed": None}
        return {"line_feed": None, "open_alerts": len(line_alerts.evaluate_alerts(db))}
    store = object_store(db)
    try:
        report = lines.ingest_source(db, uri=feed, store=store, actor="system:line-feed")
    except ConsoleError:
        line_alerts.evaluate_alerts(db)
        raise
    alerts = line_alerts.evaluate_alerts(db)
    return {"line_feed": feed, "frames_added": report["frames_added"], "open_alerts": len(alerts)}


def queue_reuse_check(db: Any) -> dict[str, Any]:
    """Queue a reused-photo check when embedded photos are waiting for one and none is queued or running."""
    if not reuse.unchecked_count(db):
        return {"reuse_job": None}
    active = jobs.active_job(db, kind=reuse.KIND)
    if active is not None:
        return {"reuse_job": active}
    return {"reuse_job": jobs.create_job(db, kind=reuse.KIND, params={}, actor="system:reuse")}


def queue_label_search(db: Any) -> dict[str, Any]:
    """Queue a shipping-label search when photos that should be searched were not (services.reviews.label_search:
    queued before any model, re-scored or labelled a package) and none is queued or running."""
    return {"label_search_job": label_search.queue_if_needed(db)}


def queue_retraining(db: Any) -> dict[str, Any]:
    """Queue a gated retraining run when enough new human labels exist (Settings)."""
    return {"retrain_job": retraining.queue(db, actor=retraining.ACTOR)}


def queue_rescore(db: Any) -> dict[str, Any]:
    """Queue re-scoring of the human queue once per newly active model version."""
    return {"rescore_job": rescore.queue_if_needed(db)}


def prune(db: Any) -> dict[str, Any]:
    return {"raw_frames_pruned": lines.prune_raw(db)}


class Housekeeping:
    """Runs each chore when its interval has passed (monotonic clock, per process)."""

    def __init__(self, ws: Workspace, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ws = ws
        self.clock = clock
        self.chores: list[tuple[str, float, Callable[[Any], dict[str, Any]]]] = [
            ("snapshot", SNAPSHOT_SECONDS, snapshot_and_reliability),
            ("line_feed", LINE_POLL_SECONDS, poll_line_feed),
            ("prune", PRUNE_SECONDS, prune),
            ("reuse", REUSE_SECONDS, queue_reuse_check),
            ("retrain", RETRAIN_SECONDS, queue_retraining),
            ("rescore", REUSE_SECONDS, queue_rescore),
            ("label_search", REUSE_SECONDS, queue_label_search),
            ("audit_watch", AUDIT_WATCH_SECONDS, audit_watch.watch),
        ]
        self._last: dict[str, float] = {}
        self.last_errors: dict[str, str] = {}

    def _run(self, names: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        db = self.ws.db()
        try:
            for name, _, chore in self.chores:
                if name not in names:
                    continue
                try:
                    out.update(chore(db))
                    self.last_errors.pop(name, None)
                except ConsoleError as exc:  # e.g. the line feed's folder or bucket is unreachable: retried next time
                    self.last_errors[name] = str(exc)
                    print(f"housekeeping {name}: {exc}", file=sys.stderr)
        finally:
            db.close()
        if self.last_errors:
            out["errors"] = dict(self.last_errors)
        return out

    def run_due(self) -> dict[str, Any]:
        """Run the chores whose interval has passed since they last ran."""
        now = self.clock()
        due = {name for name, every, _ in self.chores if now - self._last.get(name, float("-inf")) >= every}
        if not due:
            return {}
        for name in due:
            self._last[name] = now
        return self._run(due)

    def run_all(self) -> dict[str, Any]:
        """Run every chore now."""
        now = self.clock()
        for name, _, _ in self.chores:
            self._last[name] = now
        return self._run({name for name, _, _ in self.chores})
