"""Accuracy watched in production: the audited share of automatic decisions is an unbiased sample of them, so
their agreement with inspectors is the realised accuracy of each class of the active model version.

Per class, with the one-sided 95% Clopper-Pearson bounds of that accuracy:

- **certified in production**: the lower bound reaches the target (enough audits agree);
- **watching**: neither bound settles it yet; the class is audited at a higher rate while evidence is thin;
- **below target**: the upper bound is under the target (clear evidence the promise no longer holds: a new
  product line, a new phone camera, drift). The class is sent to people (its threshold becomes 1.0), an alert is
  raised for admins and the reason is written to the audit log.

``watch`` runs in the worker's housekeeping; it writes its conclusions into Settings (``thresholds``,
``class_audit_rates``), which routing reads.
"""

from __future__ import annotations

from typing import Any

import sqlite_utils
from scipy.stats import beta

from services.core.audit import record
from services.core.authz import require
from services.core.clock import now_iso
from services.core.config import CLASSES, get_settings, set_setting
from services.core.errors import NotFound
from services.models.certify import ALPHA, clopper_pearson_low
from services.models.evaluation import TARGET_ACCURACY
from services.models.registry import active_version

ACTOR = "system:audit-watch"
THIN_RATE_FACTOR = 5  # while a class is not certified in production, audit it this many times the base rate ...
MAX_AUDIT_RATE = 0.25  # ... but never more than this share of its automatic decisions


def upper_bound(right: int, n: int, *, alpha: float = ALPHA) -> float:
    """The one-sided exact upper confidence bound of an accuracy of ``right`` of ``n`` (1.0 when n is 0)."""
    if n <= 0 or right >= n:
        return 1.0
    return float(beta.ppf(1 - alpha, right + 1, n - right))


def _audited(db: sqlite_utils.Database, version_id: int) -> list[tuple[str, str]]:
    """(predicted, agreed human label) per audited photo of the version: the inspectors' majority; ties left out."""
    votes: dict[int, tuple[str, dict[str, int]]] = {}
    for image_id, predicted, answered in db.execute(
        "SELECT a.image_id, p.label, a.label FROM active_answers a JOIN predictions p ON p.id = a.prediction_id "
        "WHERE a.queue_reason = 'audit' AND p.model_version_id = ? ORDER BY a.id", [version_id]):
        counts = votes.setdefault(image_id, (predicted, {}))[1]
        counts[answered] = counts.get(answered, 0) + 1
    out = []
    for predicted, counts in votes.values():
        top = sorted(counts.items(), key=lambda kv: -kv[1])
        if len(top) == 1 or top[0][1] > top[1][1]:
            out.append((predicted, top[0][0]))
    return out


def production_accuracy(db: sqlite_utils.Database) -> dict[str, Any] | None:
    """Per class of the active version: audited photos, agreed, accuracy, both bounds and the status; None
    without an active version."""
    version = active_version(db)
    if version is None:
        return None
    target = float((version.get("metrics") or {}).get("target_accuracy") or TARGET_ACCURACY)
    pairs = _audited(db, version["id"])
    classes = {}
    for cls in CLASSES:
        mine = [human for predicted, human in pairs if predicted == cls]
        n, right = len(mine), sum(1 for human in mine if human == cls)
        low, high = clopper_pearson_low(right, n), upper_bound(right, n)
        status = "certified" if low >= target else "below_target" if high < target else "watching"
        classes[cls] = {"audited": n, "right": right, "accuracy": right / n if n else None, "low95": low,
                        "high95": high, "status": status}
    return {"version_id": version["id"], "version": version["name"], "target": target, "classes": classes}


def watch(db: sqlite_utils.Database) -> dict[str, Any]:
    """Act on the audits: send a class below target to people and raise an alert; audit more where evidence is
    thin. Returns what it did."""
    state = production_accuracy(db)
    if state is None:
        return {"audit_watch": None}
    settings = get_settings(db)
    sent = []
    with db.atomic():
        thresholds = dict(settings["thresholds"])
        for cls, figures in state["classes"].items():
            if figures["status"] == "below_target" and thresholds.get(cls, 1.0) < 1.0:
                thresholds[cls] = 1.0
                sent.append(cls)
                _raise_alert(db, state=state, cls=cls, figures=figures)
        if sent:
            set_setting(db, key="thresholds", value=thresholds, actor=ACTOR)
        rates = audit_rates(state, base=float(settings["audit_rate"]))
        if rates != settings["class_audit_rates"]:
            set_setting(db, key="class_audit_rates", value=rates, actor=ACTOR)
    return {"audit_watch": state["version"], "sent_to_people": sent, "class_audit_rates": rates}


def audit_rates(state: dict[str, Any], *, base: float) -> dict[str, float]:
    """Per class: the base audit rate once certified in production, a higher one while evidence is thin."""
    thin = min(MAX_AUDIT_RATE, max(base, base * THIN_RATE_FACTOR))
    return {cls: base if f["status"] == "certified" else thin for cls, f in state["classes"].items()}


def _raise_alert(db: sqlite_utils.Database, *, state: dict[str, Any], cls: str, figures: dict[str, Any]) -> None:
    detail = (f"{cls}: {figures['right']} of {figures['audited']} audited automatic decisions of {state['version']} "
              f"were right ({figures['accuracy']:.1%}; at most {figures['high95']:.1%} with 95% confidence), under "
              f"the {state['target']:.0%} promised: {cls} photos now go to people until the model is retrained "
              "or an admin sets its threshold again")
    db.execute("INSERT INTO model_alerts (created_at, version_id, class, audited, right, upper95, target, action, "
               "detail) VALUES (?, ?, ?, ?, ?, ?, ?, 'sent_to_people', ?)",
               [now_iso(), state["version_id"], cls, figures["audited"], figures["right"], figures["high95"],
                state["target"], detail])
    record(db, actor=ACTOR, action="model.class_sent_to_people", target=cls,
           detail={"version": state["version"], "audited": figures["audited"], "right": figures["right"],
                   "upper95": figures["high95"], "target": state["target"]})


def alerts(db: sqlite_utils.Database, *, actor: str, open_only: bool = True) -> list[dict[str, Any]]:
    """Model alerts, newest first. Raises PermissionDenied."""
    require(db, actor=actor, action="models.manage")
    sql = "SELECT * FROM model_alerts" + (" WHERE resolved_at IS NULL" if open_only else "") + " ORDER BY id DESC"
    return list(db.query(sql))


def resolve_alert(db: sqlite_utils.Database, *, alert_id: int, actor: str) -> None:
    """Mark an alert seen and dealt with (the threshold stays as it is). Raises NotFound, PermissionDenied."""
    require(db, actor=actor, action="models.manage")
    with db.atomic():
        if db.execute("SELECT 1 FROM model_alerts WHERE id = ?", [alert_id]).fetchone() is None:
            raise NotFound(f"model alert {alert_id} does not exist")
        db.execute("UPDATE model_alerts SET resolved_at = ?, resolved_by = ? WHERE id = ? AND resolved_at IS NULL",
                   [now_iso(), actor, alert_id])
        record(db, actor=actor, action="model.alert_resolved", target=str(alert_id))
