"""Gated retraining: when enough new human labels exist, train a candidate and promote it only if it is at
least as good as the current model (cross-validated macro-F1) and above a floor. Every run is logged.

The worker's housekeeping queues a ``retrain`` job when one is due (``retrain_auto``); a scheduler can run
``python -m services.cli.main retrain`` instead. A failed or refused candidate never touches the current model:
the candidate is saved as an inactive version, kept for comparison.
"""

from __future__ import annotations

from typing import Any

import sqlite_utils

from services.core import jobs
from services.core.authz import require
from services.core.clock import now_iso
from services.core.config import get_settings
from services.core.errors import ConsoleError
from services.models.finetune_model import train_finetuned
from services.models.registry import activate_version, active_version
from services.models.training import train

KIND = "retrain"
ACTOR = "system:retrain"


def new_labels(db: sqlite_utils.Database) -> int:
    """Human decisions and imported labels since the active version was trained (all, before any version)."""
    current = active_version(db)
    since = current["created_at"] if current else ""
    decided = db.execute("SELECT COUNT(*) FROM decisions WHERE source = 'human' AND decided_at > ?", [since]).fetchone()[0]
    imported = db.execute("SELECT COUNT(*) FROM labels WHERE imported_at > ? AND source != 'decision'",
                          [since]).fetchone()[0]
    return int(decided) + int(imported)


def due(db: sqlite_utils.Database) -> bool:
    """True when automatic retraining is on, enough new labels exist and no retrain job is queued or running."""
    settings = get_settings(db)
    if not settings["retrain_auto"] or new_labels(db) < int(settings["retrain_min_new_labels"]):
        return False
    return jobs.active_job(db, kind=KIND) is None


def gate(*, candidate_f1: float | None, current_f1: float | None, floor: float) -> tuple[bool, str]:
    """Whether to promote a candidate, and why (pure)."""
    if candidate_f1 is None:
        return False, "the candidate has no cross-validated macro-F1"
    if candidate_f1 < floor:
        return False, f"candidate macro-F1 {candidate_f1:.3f} is under the floor {floor:.3f}"
    if current_f1 is not None and candidate_f1 < current_f1:
        return False, f"candidate macro-F1 {candidate_f1:.3f} is under the current model's {current_f1:.3f}"
    if current_f1 is None:
        return True, f"first model: macro-F1 {candidate_f1:.3f} clears the floor {floor:.3f}"
    return True, f"candidate macro-F1 {candidate_f1:.3f} is at least the current model's {current_f1:.3f}"


def queue(db: sqlite_utils.Database, *, actor: str, force: bool = False) -> int | None:
    """Queue a retrain job when due (or at once with ``force``); its id, or None. Raises PermissionDenied."""
    require(db, actor=actor, action="models.manage")
    if not force and not due(db):
        return None
    return jobs.create_job(db, kind=KIND, params={"trigger": "forced" if force else "due"}, actor=actor)


class RetrainKind(jobs.SingleTaskKind):
    name = KIND

    def items_for(self, ctx: Any) -> list[str]:
        return ["retrain"]

    def run(self, ctx: Any, item: str) -> dict[str, Any]:
        db, settings = ctx.db, get_settings(ctx.db)
        current = active_version(db)
        current_f1 = (current or {}).get("metrics", {}).get("macro_f1")
        run_id = db.execute("INSERT INTO retrain_runs (job_id, started_at, trigger, new_labels, current_version_id, "
                            "current_macro_f1) VALUES (?, ?, ?, ?, ?, ?)",
                            [ctx.job_id, now_iso(), ctx.params.get("trigger", "due"), new_labels(db),
                             current["id"] if current else None, current_f1]).lastrowid
        try:
            result = _train_like(ctx, current)
        except ConsoleError as exc:  # too few labels, one class, unreadable photos: the current model stays
            db.execute("UPDATE retrain_runs SET finished_at = ?, outcome = 'failed', reason = ? WHERE id = ?",
                       [now_iso(), str(exc), run_id])
            raise
        promote, reason = gate(candidate_f1=result.get("macro_f1"), current_f1=current_f1,
                               floor=float(settings["retrain_min_macro_f1"]))
        with db.atomic():
            if promote:
                activate_version(db, version_id=result["model_version_id"], actor=ctx.actor)
            db.execute("UPDATE retrain_runs SET finished_at = ?, candidate_version_id = ?, candidate_macro_f1 = ?, "
                       "outcome = ?, reason = ? WHERE id = ?",
                       [now_iso(), result["model_version_id"], result.get("macro_f1"),
                        "promoted" if promote else "kept", reason, run_id])
        return {"run": run_id, "outcome": "promoted" if promote else "kept", "reason": reason,
                "candidate_version_id": result["model_version_id"], "candidate_macro_f1": result.get("macro_f1"),
                "current_macro_f1": current_f1}


def _train_like(ctx: Any, current: dict[str, Any] | None) -> dict[str, Any]:
    """A candidate trained the way the current version was (the head with its C, or fine-tuning with its epochs
    and blocks), on every label there is now; the head with defaults before any version. Saved inactive."""

    recipe = (current or {}).get("hyperparams") or {}
    if recipe.get("method") == "finetune":

        return train_finetuned(ctx.ws, ctx.db, actor=ctx.actor, epochs=int(recipe["epochs"]),
                               blocks=int(recipe["blocks"]), folds=int(recipe.get("folds", 5)), activate=False)
    return train(ctx.ws, ctx.db, actor=ctx.actor, c=float(recipe.get("C", 1.0)), activate=False)




def runs(db: sqlite_utils.Database, *, actor: str, limit: int = 50) -> list[dict[str, Any]]:
    """Retraining runs, newest first. Raises PermissionDenied."""
    require(db, actor=actor, action="models.manage")
    return list(db.query("SELECT * FROM retrain_runs ORDER BY id DESC LIMIT ?", [limit]))
