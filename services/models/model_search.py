"""Local grid searches as a background job: the head over frozen embeddings (grid over C) or fine-tuning
(epochs x trainable blocks), both with stratified cross-validation on every labelled photo.

Each grid point is one work item of the job (for fine-tuning, one item per blocks value covers its whole
epochs axis), so a job killed halfway resumes at the first unfinished item, and every finished point is
already in ``services.models.grid_search``'s tables with its full out-of-fold report.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import sqlite_utils

from services.core import jobs
from services.core.authz import require
from services.core.config import CLASSES, object_store
from services.core.errors import ModelError
from services.models import grid_search
from services.models.evaluation import TARGET_ACCURACY, check_counts, oof_metrics, thin_classes
from services.models.finetune import DEFAULT_GRID as FINETUNE_GRID
from services.models.finetune import FineTuneSearch, grid_points
from services.models.finetune_model import photo_inputs
from services.models.training import cross_validate, example_features, training_examples

KIND = "grid-search"
HEAD_GRID = {"C": [0.1, 0.3, 1.0, 3.0]}


def queue(db: sqlite_utils.Database, *, actor: str, backend: str, grid: dict[str, list[Any]] | None = None,
          folds: int = 5, target: float = TARGET_ACCURACY) -> int:
    """Queue a grid search; the job id. Raises PermissionDenied, ModelError for a bad grid or backend."""
    require(db, actor=actor, action="models.manage")
    grid = grid or (HEAD_GRID if backend == "head" else FINETUNE_GRID)
    _items(backend, grid)  # validates
    return jobs.create_job(db, kind=KIND, params={"backend": backend, "grid": grid, "folds": folds, "target": target},
                           actor=actor)


def _items(backend: str, grid: dict[str, list[Any]]) -> list[str]:
    if backend == "head":
        values = sorted({float(c) for c in grid.get("C") or []})
        if not values or min(values) <= 0:
            raise ModelError(f"the head's grid needs positive values of C; got {grid.get('C')}")
        return [f"C={c:g}" for c in values]
    if backend == "finetune":
        return [f"blocks={b}" for b in sorted({p["blocks"] for p in grid_points(grid)})]
    raise ModelError(f"unknown local training backend {backend!r} (head or finetune)")


class GridSearchKind(jobs.BaseKind):
    name = KIND
    batch_size = 1

    def start(self, ctx: jobs.JobContext) -> None:
        backend, grid = ctx.params["backend"], ctx.params["grid"]
        examples = training_examples(ctx.db)
        if not examples:
            raise ModelError("no labelled photos yet: import a folder per class or a Ground Truth manifest first")
        if backend == "head":
            kept, emb, cues, failed = example_features(ctx.ws, ctx.db, examples, object_store(ctx.db))
            data: dict[str, Any] = {"emb": emb, "cues": cues}
        else:
            kept, inputs, failed = photo_inputs(ctx.db, examples)
        y = np.array([e["label"] for e in kept])
        folds = check_counts(y, folds=int(ctx.params.get("folds", 5)))
        classes = [c for c in CLASSES if c in set(y.tolist())]
        if backend == "finetune":
            ints = np.array([classes.index(v) for v in y])
            data = {"search": FineTuneSearch(inputs, ints, grid=grid, folds=folds)}
        row = ctx.db.execute("SELECT id FROM grid_searches WHERE job_id = ?", [ctx.job_id]).fetchone()
        search_id = row[0] if row else grid_search.start_search(
            ctx.db, backend=backend, grid=grid, actor=ctx.actor, folds=folds, examples=len(kept), job_id=ctx.job_id)
        ctx.state.update(data=data, y=y, classes=classes, folds=folds, search_id=search_id, unreadable=failed,
                         target=float(ctx.params.get("target", TARGET_ACCURACY)))

    def list_items(self, ctx: jobs.JobContext) -> list[str]:
        return _items(ctx.params["backend"], ctx.params["grid"])

    def compute(self, ctx: jobs.JobContext, items: list[str]) -> list[tuple[str, dict[str, Any], dict[str, Any], float]]:
        """(item, params, out-of-fold report, seconds) per grid point of the items."""
        y, classes, target, data = ctx.state["y"], ctx.state["classes"], ctx.state["target"], ctx.state["data"]
        out = []
        for item in items:
            key, value = item.split("=", 1)
            if key == "C":
                started = time.perf_counter()
                cv = cross_validate(data["emb"], data["cues"], y, folds=ctx.state["folds"], c=float(value), target=target)
                cv.pop("_proba")
                out.append((item, {"C": float(value)}, cv, time.perf_counter() - started))
            else:
                for params, proba, seconds in data["search"].run_blocks(int(value)):
                    out.append((item, params,
                                {"folds": ctx.state["folds"], **oof_metrics(y, proba, classes, target=target)}, seconds))
        return out

    def write(self, ctx: jobs.JobContext,
              computed: list[tuple[str, dict[str, Any], dict[str, Any], float]]) -> dict[str, str | None]:
        with ctx.db.atomic():
            for _, params, metrics, seconds in computed:
                grid_search.add_point(ctx.db, search_id=ctx.state["search_id"], params=params, metrics=metrics,
                                      seconds=seconds)
        return dict.fromkeys(item for item, *_ in computed)

    def finish(self, ctx: jobs.JobContext) -> dict[str, Any]:
        grid_search.finish_search(ctx.db, search_id=ctx.state["search_id"])
        best = best_point(ctx.db, search_id=ctx.state["search_id"])
        return {"search_id": ctx.state["search_id"], "examples": len(ctx.state["y"]), "folds": ctx.state["folds"],
                "warnings": thin_classes(ctx.state["y"]),
                "unreadable": len(ctx.state["unreadable"]), "best": best}

    def close(self, ctx: jobs.JobContext) -> None:
        search_id = ctx.state.get("search_id")
        if search_id is None:
            return
        job = jobs.get_job(ctx.db, ctx.job_id)
        if job["state"] in ("failed", "cancelled"):
            grid_search.finish_search(ctx.db, search_id=search_id, error=job["error"] or f"the job was {job['state']}")


def best_point(db: sqlite_utils.Database, *, search_id: int) -> dict[str, Any] | None:
    """The point with the highest macro-F1 (ties: the larger automatic share, then the cheaper point)."""
    row = db.execute("SELECT params, macro_f1, accuracy, automatic_share, seconds FROM grid_points "
                     "WHERE search_id = ? AND state = 'done' ORDER BY macro_f1 DESC, automatic_share DESC, seconds "
                     "LIMIT 1", [search_id]).fetchone()
    if row is None:
        return None
    return {"params": json.loads(row[0]), "macro_f1": row[1], "accuracy": row[2], "automatic_share": row[3],
            "seconds": row[4]}
