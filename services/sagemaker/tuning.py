"""Grid tuning on SageMaker (epochs x num_layers) and its results in the console's grid-search store.

A ``HyperparameterTuner`` with ``strategy="Grid"`` runs one training job per combination of the categorical
values, maximising ``validation:accuracy``. The results are read with ``HyperparameterTuningJobAnalytics``
(one summary per training job: its parameters, status, objective, failure reason) and each job's final
metrics, then written through ``services.models.grid_search`` (backend "sagemaker") so they sit in the same
comparison table as local runs. The best completed job becomes an inactive model version.
"""

from __future__ import annotations

import itertools
from typing import Any

import sqlite_utils

from services.core import jobs
from services.core.audit import record
from services.core.authz import require
from services.core.config import object_store
from services.core.errors import InvalidInput, ModelError
from services.models import grid_search
from services.sagemaker.config import (
    Clients,
    SageMakerConfig,
    aws_errors,
    open_clients,
    remember,
    sdk_errors,
    wait_for,
)
from services.sagemaker.training import (
    OBJECTIVE,
    Manifests,
    build_manifests,
    channels,
    check_point,
    describe_training,
    hyperparameters,
    run_name,
    save_version,
    trainer,
)

KIND = "sagemaker-tune"
DEFAULT_GRID: dict[str, list[int]] = {"epochs": [5, 10, 15], "num_layers": [18, 34, 50]}
BASE_TUNING_NAME = "console-grid"


def check_grid(grid: dict[str, list[int]]) -> dict[str, list[int]]:
    """The grid with sorted unique values. Raises InvalidInput for other parameters or bad values."""
    if set(grid) != {"epochs", "num_layers"}:
        raise InvalidInput(f"the grid must give values for epochs and num_layers, got {sorted(grid)}")
    clean = {k: sorted(set(int(v) for v in values)) for k, values in grid.items()}
    if not all(clean.values()):
        raise InvalidInput("every grid parameter needs at least one value")
    for epochs, num_layers in itertools.product(clean["epochs"], clean["num_layers"]):
        check_point(epochs=epochs, num_layers=num_layers)
    return clean


def start_tuning(db: sqlite_utils.Database, *, actor: str, grid: dict[str, list[int]] | None = None,
                 max_parallel: int = 3, dry_run: bool = False) -> dict[str, Any]:
    """Write the manifests and start a Grid tuning job: {"tuning_job_name", "grid", "manifests"}. With
    ``dry_run`` nothing is written or sent: {"requests": {"CreateHyperParameterTuningJob": ...}, ...}.
    Raises PermissionDenied, InvalidInput, ExternalServiceError, StorageError (as ``start_training``)."""
    from sagemaker.core.parameter import CategoricalParameter
    from sagemaker.train.tuner import HyperparameterTuner


    require(db, actor=actor, action="models.manage")
    grid = check_grid(grid or DEFAULT_GRID)
    if not 1 <= max_parallel <= 10:
        raise InvalidInput(f"parallel training jobs must be from 1 to 10, got {max_parallel}")
    cfg = SageMakerConfig.load(db)
    manifests = build_manifests(db, cfg=cfg, run=run_name())
    hp = hyperparameters(num_training_samples=len(manifests.train))
    clients = open_clients(cfg, dry_run=dry_run)
    with aws_errors("start the SageMaker tuning job"):
        try:
            tuner = HyperparameterTuner(
                model_trainer=trainer(clients, cfg, hyperparams=hp), objective_metric_name=OBJECTIVE,
                objective_type="Maximize", strategy="Grid", max_parallel_jobs=max_parallel,
                hyperparameter_ranges={k: CategoricalParameter(v) for k, v in grid.items()},
                base_tuning_job_name=BASE_TUNING_NAME)
            if dry_run:
                req = clients.capture("CreateHyperParameterTuningJob",
                                      lambda: tuner.tune(inputs=channels(manifests), wait=False))
                return {"dry_run": True, "requests": {"CreateHyperParameterTuningJob": req}, "grid": grid,
                        "manifests": manifests.summary(), "not_sent": clients.not_sent}
            store = object_store(db)
            store.write(manifests.train_uri, Manifests.text(manifests.train))
            store.write(manifests.validation_uri, Manifests.text(manifests.validation))
            tuner.tune(inputs=channels(manifests), wait=False)
        except sdk_errors() as exc:
            raise InvalidInput(f"the SageMaker SDK refused the tuning request: {exc}") from None
    name = tuner.latest_tuning_job.hyper_parameter_tuning_job_name
    record(db, actor=actor, action="sagemaker.tune", target=name, detail={"grid": grid})
    return {"tuning_job_name": name, "grid": grid, "manifests": manifests.summary()}


def tuning_points(clients: Clients, name: str) -> list[dict[str, Any]]:
    """One point per training job of the tuning job: params {"epochs", "num_layers"}, metrics {"accuracy": the
    final validation:accuracy, ...}, status, error (the failure reason of a failed or stopped job), seconds.
    Raises ExternalServiceError, InvalidInput (no such tuning job)."""
    from sagemaker.core.analytics import HyperparameterTuningJobAnalytics

    with aws_errors(f"read the results of tuning job {name}"):
        summaries = HyperparameterTuningJobAnalytics(name, sagemaker_session=clients.session).training_job_summaries()
    out = []
    for s in summaries:
        job, status = s["TrainingJobName"], s["TrainingJobStatus"]
        tuned = s.get("TunedHyperParameters") or {}
        params = {k: _number(tuned.get(k)) for k in ("epochs", "num_layers")}
        objective = (s.get("FinalHyperParameterTuningJobObjectiveMetric") or {}).get("Value")
        metrics: dict[str, Any] = {"accuracy": float(objective) if objective is not None else None}
        start, end = s.get("TrainingStartTime"), s.get("TrainingEndTime")
        seconds = (end - start).total_seconds() if start and end else None
        error = None
        if status == "Completed":
            desc = describe_training(clients, job)
            metrics.update(final_metrics=desc["metrics"], train_accuracy=desc["metrics"].get("train:accuracy"))
            if metrics["accuracy"] is None:
                metrics["accuracy"] = desc["metrics"].get(OBJECTIVE)
        elif status in ("Failed", "Stopped"):
            error = f"{status}: {s.get('FailureReason') or 'SageMaker gave no reason'}"
        else:
            error = f"{status}: not finished when the results were read"
        out.append({"name": job, "params": params, "metrics": metrics, "status": status, "error": error,
                    "seconds": seconds})
    return out


def _number(value: Any) -> Any:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return value


def record_points(db: sqlite_utils.Database, *, search_id: int, points: list[dict[str, Any]]) -> int:
    """Add the points not yet recorded for this search (by training job name); how many were added."""
    seen = {r[0] for r in db.execute("SELECT external_name FROM grid_points WHERE search_id = ?", [search_id])}
    added = 0
    for p in points:
        if p["name"] in seen:
            continue
        grid_search.add_point(db, search_id=search_id, params=p["params"], metrics=p["metrics"], seconds=p["seconds"],
                              error=p["error"], external_name=p["name"])
        added += 1
    return added


def best_point(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    done = [p for p in points if p["status"] == "Completed" and p["metrics"].get("accuracy") is not None]
    return max(done, key=lambda p: p["metrics"]["accuracy"]) if done else None


def fetch_results(db: sqlite_utils.Database, *, actor: str, tuning_job_name: str) -> dict[str, Any]:
    """Read a tuning job's results into the grid-search store (a search is made for a tuning job started
    elsewhere): {"search_id", "status", "added", "rows"}. Raises PermissionDenied, InvalidInput,
    ExternalServiceError."""
    require(db, actor=actor, action="models.manage")
    clients = open_clients(SageMakerConfig.load(db))
    with aws_errors(f"read tuning job {tuning_job_name}"):
        desc = clients.sagemaker.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning_job_name)
    row = db.execute("SELECT id FROM grid_searches WHERE backend = 'sagemaker' AND external_name = ? "
                     "ORDER BY id DESC LIMIT 1", [tuning_job_name]).fetchone()
    ranges = desc["HyperParameterTuningJobConfig"].get("ParameterRanges", {}).get("CategoricalParameterRanges", [])
    grid = {r["Name"]: [int(v) if v.isdigit() else v for v in r["Values"]] for r in ranges}
    search_id = int(row[0]) if row else grid_search.start_search(db, backend="sagemaker", grid=grid, actor=actor,
                                                                  external_name=tuning_job_name)
    points = tuning_points(clients, tuning_job_name)
    with db.atomic():
        added = record_points(db, search_id=search_id, points=points)
        status = desc["HyperParameterTuningJobStatus"]
        if status in ("Completed", "Failed", "Stopped"):
            grid_search.finish_search(db, search_id=search_id, error=desc.get("FailureReason") if status != "Completed"
                                      else None)
    return {"search_id": search_id, "status": status, "added": added,
            "rows": grid_search.comparison_rows(db, actor=actor, search_ids=[search_id])}


def launch(db: sqlite_utils.Database, *, actor: str, grid: dict[str, list[int]] | None = None, max_parallel: int = 3,
           poll_seconds: float = 60.0) -> int:
    """Queue a tuning job (the worker starts it, waits, records the points); its id. Raises PermissionDenied,
    InvalidInput."""
    require(db, actor=actor, action="models.manage")
    SageMakerConfig.load(db)
    grid = check_grid(grid or DEFAULT_GRID)
    return jobs.create_job(db, kind=KIND, params={"grid": grid, "max_parallel": max_parallel,
                                                  "poll_seconds": poll_seconds}, actor=actor)


class SageMakerTuneKind(jobs.SingleTaskKind):
    """Start a Grid tuning job, wait on it, record every training job as a grid point, save the best."""

    name = KIND

    def items_for(self, ctx: jobs.JobContext) -> list[str]:
        return ["tune"]

    def run(self, ctx: jobs.JobContext, item: str) -> dict[str, Any]:
        cfg = SageMakerConfig.load(ctx.db)
        if not ctx.params.get("sagemaker_name"):
            started = start_tuning(ctx.db, actor=ctx.actor, grid=ctx.params["grid"],
                                   max_parallel=int(ctx.params.get("max_parallel", 3)))
            search_id = grid_search.start_search(
                ctx.db, backend="sagemaker", grid=started["grid"], actor=ctx.actor, job_id=ctx.job_id,
                examples=started["manifests"]["train_examples"], external_name=started["tuning_job_name"])
            remember(ctx.db, job_id=ctx.job_id, params=ctx.params, sagemaker_name=started["tuning_job_name"],
                     search_id=search_id, manifests=started["manifests"])
        name, search_id = ctx.params["sagemaker_name"], int(ctx.params["search_id"])
        clients = open_clients(cfg)
        n_jobs = len(ctx.params["grid"]["epochs"]) * len(ctx.params["grid"]["num_layers"])
        desc = wait_for(ctx, cfg=cfg, clients=clients, kind="tuning", name=name, default_poll=60.0,
                        runs_in_series=-(-n_jobs // int(ctx.params.get("max_parallel", 3))))
        points = tuning_points(clients, name)
        best = best_point(points)
        version_id = None
        with ctx.db.atomic():
            record_points(ctx.db, search_id=search_id, points=points)
            if best is not None:
                version_id = save_version(ctx.db, desc=describe_training(clients, best["name"]), actor=ctx.actor,
                                          training_data={**(ctx.params.get("manifests") or {}), "tuning_job": name})
            failure = None if desc["HyperParameterTuningJobStatus"] == "Completed" else (
                f"SageMaker tuning job {name} {desc['HyperParameterTuningJobStatus'].lower()}: "
                f"{desc.get('FailureReason') or 'SageMaker gave no reason'}")
            grid_search.finish_search(ctx.db, search_id=search_id, error=failure, model_version_id=version_id)
        if failure:
            raise ModelError(failure + (f" (the best finished point was saved as version {version_id})"
                                        if version_id else ". No model version was changed."))
        return {"tuning_job_name": name, "search_id": search_id, "points": len(points),
                "failed_points": sum(1 for p in points if p["error"]), "best": best and best["name"],
                "best_accuracy": best and best["metrics"]["accuracy"], "model_version_id": version_id}
