"""Grid searches and their points, whatever ran them: the local head (C), local fine-tuning (epochs x
trainable blocks) or a SageMaker tuning job (epochs x num_layers). One store, so every backend lands in
the same comparison table.
"""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from services.core.authz import require
from services.core.clock import now_iso
from services.core.errors import NotFound

BACKENDS = ("head", "finetune", "sagemaker")


def start_search(db: sqlite_utils.Database, *, backend: str, grid: dict[str, list[Any]], actor: str,
                 folds: int | None = None, examples: int | None = None, job_id: int | None = None,
                 external_name: str | None = None) -> int:
    """Record a grid search as running; its id. Raises PermissionDenied unless ``actor`` may run jobs,
    ValueError for an unknown backend."""
    require(db, actor=actor, action="jobs.manage")
    if backend not in BACKENDS:
        raise ValueError(f"unknown grid-search backend {backend!r}")
    return int(db.execute(
        "INSERT INTO grid_searches (job_id, backend, created_at, actor, grid, folds, examples, state, external_name) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?)",
        [job_id, backend, now_iso(), actor, json.dumps(grid), folds, examples, external_name]).lastrowid)


def add_point(db: sqlite_utils.Database, *, search_id: int, params: dict[str, Any], metrics: dict[str, Any],
              seconds: float | None = None, error: str | None = None, external_name: str | None = None) -> int:
    """Record one grid point's figures (``metrics`` may hold macro_f1, accuracy, automatic_share and more)."""
    at = metrics.get("at_target") or {}
    return int(db.execute(
        "INSERT INTO grid_points (search_id, params, macro_f1, accuracy, automatic_share, metrics, seconds, state, "
        "error, external_name) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [search_id, json.dumps(params), metrics.get("macro_f1"), metrics.get("accuracy"),
         at.get("automatic_share", metrics.get("automatic_share")), json.dumps(metrics), seconds,
         "failed" if error else "done", error, external_name]).lastrowid)


def finish_search(db: sqlite_utils.Database, *, search_id: int, error: str | None = None,
                  model_version_id: int | None = None) -> None:
    db.execute("UPDATE grid_searches SET finished_at = ?, state = ?, error = ?, model_version_id = ? WHERE id = ?",
               [now_iso(), "failed" if error else "done", error, model_version_id, search_id])


def list_searches(db: sqlite_utils.Database, *, actor: str, limit: int = 50) -> list[dict[str, Any]]:
    """Grid searches, newest first (grid decoded). Raises PermissionDenied."""
    require(db, actor=actor, action="models.manage")
    out = []
    for row in db.query("SELECT * FROM grid_searches ORDER BY id DESC LIMIT ?", [limit]):
        out.append({**row, "grid": json.loads(row["grid"] or "{}")})
    return out


def points(db: sqlite_utils.Database, *, search_id: int, actor: str) -> list[dict[str, Any]]:
    """A search's points, best macro-F1 first (params and metrics decoded). Raises NotFound, PermissionDenied."""
    require(db, actor=actor, action="models.manage")
    if not db.execute("SELECT 1 FROM grid_searches WHERE id = ?", [search_id]).fetchone():
        raise NotFound(f"grid search {search_id} does not exist")
    rows = db.query("SELECT * FROM grid_points WHERE search_id = ? "
                    "ORDER BY macro_f1 IS NULL, macro_f1 DESC, accuracy DESC, id", [search_id])
    return [{**r, "params": json.loads(r["params"]), "metrics": json.loads(r["metrics"] or "{}")} for r in rows]


def comparison_rows(db: sqlite_utils.Database, *, actor: str, search_ids: list[int] | None = None) -> list[dict[str, Any]]:
    """Flat rows across searches for one table: search, backend, each parameter, macro-F1, accuracy, expected
    automatic share, seconds, F1 per class (when the backend reports it). Raises PermissionDenied."""
    require(db, actor=actor, action="models.manage")
    where, args = "", []
    if search_ids:
        where = f"WHERE s.id IN ({', '.join('?' * len(search_ids))})"
        args = list(search_ids)
    sql = (f"SELECT p.*, s.backend FROM grid_points p JOIN grid_searches s ON s.id = p.search_id {where} "
           "ORDER BY p.search_id DESC, p.macro_f1 IS NULL, p.macro_f1 DESC, p.id")
    rows = []
    for r in db.query(sql, args):
        metrics = json.loads(r["metrics"] or "{}")
        row: dict[str, Any] = {"search": r["search_id"], "backend": r["backend"], "point": r["id"]}
        row.update({f"param_{k}": v for k, v in json.loads(r["params"]).items()})
        row.update({"macro_f1": r["macro_f1"], "accuracy": r["accuracy"], "automatic_share": r["automatic_share"],
                    "seconds": r["seconds"], "state": r["state"], "error": r["error"]})
        for cls, figures in (metrics.get("per_class") or {}).items():
            row[f"f1_{cls}"] = figures.get("f1")
        rows.append(row)
    return rows
