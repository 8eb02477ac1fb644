"""Training the built-in SageMaker image-classification algorithm on the console's labelled photos.

The labelled examples (``services.models.training.training_examples``) whose photos are in S3 are split, stratified
by class, into train and validation augmented manifests (``{"source-ref": "s3://...", "class": index}``, the
index in ``CLASSES`` order) under ``s3://bucket/prefix/manifests/<run>/``, read by the algorithm in Pipe mode as
RecordIO-wrapped records. Photos stored locally are left out and reported: SageMaker reads only S3, so they
must be uploaded and labelled from there (the console does not copy customer photos to another place by
itself). A finished job becomes an inactive model version (backbone ``sagemaker:image-classification``, no
local file) whose artifacts batch transform uses; a failed or stopped job changes no model version.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from services.core import jobs
from services.core.audit import record
from services.core.authz import require
from services.core.clock import now_iso
from services.core.config import CLASSES, get_settings, object_store
from services.core.errors import InvalidInput, ModelError
from services.core.storage import is_s3
from services.models.training import training_examples
from services.sagemaker.config import (
    Clients,
    SageMakerConfig,
    aws_errors,
    open_clients,
    remember,
    sdk_errors,
    wait_for,
)

BACKBONE = "sagemaker:image-classification"
OBJECTIVE = "validation:accuracy"
NUM_LAYERS = (18, 34, 50, 101, 152, 200)
VALIDATION_SHARE = 0.2
KIND = "sagemaker-train"
BASE_JOB_NAME = "console-image-classification"
ATTRIBUTES = ["source-ref", "class"]


@dataclass
class Manifests:
    """The train/validation split as augmented-manifest lines, where they go, and what was left out."""

    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    train_uri: str
    validation_uri: str
    not_in_s3: list[str] = field(default_factory=list)

    @staticmethod
    def text(lines: list[dict[str, Any]]) -> bytes:
        return "".join(json.dumps(line) + "\n" for line in lines).encode("utf-8")

    def summary(self) -> dict[str, Any]:
        counts = {split: {c: sum(1 for x in lines if x["class"] == i) for i, c in enumerate(CLASSES)}
                  for split, lines in (("train", self.train), ("validation", self.validation))}
        note = (f"{len(self.not_in_s3)} labelled photos are not in S3 and were left out: SageMaker reads only "
                "S3, so upload them and import their labels from there" if self.not_in_s3 else "")
        return {"train_uri": self.train_uri, "validation_uri": self.validation_uri, "per_class": counts,
                "train_examples": len(self.train), "validation_examples": len(self.validation),
                "not_in_s3": len(self.not_in_s3), "not_in_s3_sample": self.not_in_s3[:20], "note": note}


def split(examples: list[dict[str, Any]], *, share: float = VALIDATION_SHARE,
          seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Stratified (train, validation): about ``share`` of each class, at least one photo of a class with two or
    more, in a fixed order (by sha256, then a seeded shuffle) so the same labels always split alike."""
    train, validation = [], []
    for cls in CLASSES:
        items = sorted((e for e in examples if e["label"] == cls), key=lambda e: e["sha256"])
        random.Random(f"{seed}:{cls}").shuffle(items)
        n_val = 0 if len(items) < 2 else max(1, round(len(items) * share))
        validation += items[:n_val]
        train += items[n_val:]
    return train, validation


def build_manifests(db: sqlite_utils.Database, *, cfg: SageMakerConfig, run: str,
                    share: float = VALIDATION_SHARE) -> Manifests:
    """The manifests of the labelled photos in S3. Raises InvalidInput when fewer than two classes have two
    photos in S3 (saying how many were left out for being local)."""

    examples = [e for e in training_examples(db) if e["label"] in CLASSES]
    in_s3 = [e for e in examples if is_s3(e["uri"])]
    local = sorted(e["uri"] for e in examples if not is_s3(e["uri"]))
    counts = {c: sum(1 for e in in_s3 if e["label"] == c) for c in CLASSES}
    if sum(1 for n in counts.values() if n >= 2) < 2:
        raise InvalidInput(f"SageMaker training needs at least two classes with two or more labelled photos in S3; "
                           f"have {counts}" + (f" ({len(local)} labelled photos are local files: upload them to S3 and "
                                               "import their labels from there)" if local else ""))
    train, validation = split(in_s3, share=share)
    line = lambda e: {"source-ref": e["uri"], "class": CLASSES.index(e["label"])}  # noqa: E731
    return Manifests(train=[line(e) for e in train], validation=[line(e) for e in validation],
                     train_uri=cfg.uri("manifests", run, "train.manifest"),
                     validation_uri=cfg.uri("manifests", run, "validation.manifest"), not_in_s3=local)


def hyperparameters(*, num_training_samples: int, epochs: int = 10, num_layers: int = 18) -> dict[str, Any]:
    """The algorithm's hyperparameters: a pretrained ResNet fine-tuned on the four classes.

    Photos are resized to a 256-pixel short side before the random 224-pixel crop, so crops stay mild (the
    algorithm has no letterboxing: a tall photo loses some of its top and bottom)."""
    check_point(epochs=epochs, num_layers=num_layers)
    return {"num_layers": num_layers, "use_pretrained_model": 1, "epochs": epochs, "num_classes": len(CLASSES),
            "num_training_samples": num_training_samples, "image_shape": "3,224,224", "resize": 256,
            "augmentation_type": "crop_color", "mini_batch_size": max(1, min(32, num_training_samples)),
            "learning_rate": 0.01, "optimizer": "sgd"}


def check_point(*, epochs: int, num_layers: int) -> None:
    """Raise InvalidInput for epochs outside 1-200 or a depth the algorithm does not build."""
    if not isinstance(epochs, int) or isinstance(epochs, bool) or not 1 <= epochs <= 200:
        raise InvalidInput(f"epochs must be a whole number from 1 to 200, got {epochs!r}")
    if num_layers not in NUM_LAYERS:
        raise InvalidInput(f"num_layers must be one of {', '.join(map(str, NUM_LAYERS))}, got {num_layers!r}")


def channels(m: Manifests) -> list[Any]:
    """The "train" and "validation" channels: augmented manifests, RecordIO-wrapped, in Pipe mode."""
    from sagemaker.core.training.configs import Channel, DataSource, S3DataSource

    def one(name: str, uri: str) -> Channel:
        return Channel(channel_name=name, input_mode="Pipe", content_type="application/x-recordio",
                       record_wrapper_type="RecordIO",
                       data_source=DataSource(s3_data_source=S3DataSource(
                           s3_data_type="AugmentedManifestFile", s3_uri=uri, attribute_names=ATTRIBUTES,
                           s3_data_distribution_type="FullyReplicated")))

    return [one("train", m.train_uri), one("validation", m.validation_uri)]


def trainer(clients: Clients, cfg: SageMakerConfig, *, hyperparams: dict[str, Any]) -> Any:
    """A ``ModelTrainer`` for the algorithm with the instances, runtime cap and output place of ``cfg``."""
    from sagemaker.core.training.configs import Compute, OutputDataConfig, StoppingCondition
    from sagemaker.train import ModelTrainer

    return ModelTrainer(sagemaker_session=clients.session, role=cfg.role_arn, training_image=cfg.image_uri(),
                        base_job_name=BASE_JOB_NAME, training_input_mode="Pipe", hyperparameters=hyperparams,
                        compute=Compute(instance_type=cfg.train_instance_type, instance_count=cfg.train_instance_count,
                                        volume_size_in_gb=50),
                        stopping_condition=StoppingCondition(max_runtime_in_seconds=cfg.max_runtime_seconds),
                        output_data_config=OutputDataConfig(s3_output_path=cfg.uri("output")))


def run_name() -> str:
    return now_iso().replace(":", "").replace("-", "").replace(".", "")[:15].lower()


def start_training(db: sqlite_utils.Database, *, actor: str, epochs: int = 10, num_layers: int = 18,
                   dry_run: bool = False) -> dict[str, Any]:
    """Write the manifests and start a training job (nothing waits for it): {"training_job_name", "manifests"}.
    With ``dry_run``, nothing is written or sent: {"requests": {"CreateTrainingJob": the exact request},
    "manifests", "not_sent"}. Raises PermissionDenied, InvalidInput (settings, labels, a refused request),
    ExternalServiceError (credentials, access denied, SageMaker unreachable or failing), StorageError."""
    require(db, actor=actor, action="models.manage")
    cfg = SageMakerConfig.load(db)
    manifests = build_manifests(db, cfg=cfg, run=run_name())
    hp = hyperparameters(num_training_samples=len(manifests.train), epochs=epochs, num_layers=num_layers)
    clients = open_clients(cfg, dry_run=dry_run)
    with aws_errors("start the SageMaker training job"):
        try:
            model_trainer = trainer(clients, cfg, hyperparams=hp)
            if dry_run:
                req = clients.capture("CreateTrainingJob", lambda: model_trainer.train(
                    input_data_config=channels(manifests), wait=False, logs=False))
                return {"dry_run": True, "requests": {"CreateTrainingJob": req}, "manifests": manifests.summary(),
                        "not_sent": clients.not_sent}
            store = object_store(db)
            store.write(manifests.train_uri, Manifests.text(manifests.train))
            store.write(manifests.validation_uri, Manifests.text(manifests.validation))
            model_trainer.train(input_data_config=channels(manifests), wait=False, logs=False)
        except sdk_errors() as exc:
            raise InvalidInput(f"the SageMaker SDK refused the training request: {exc}") from None
    name = model_trainer._latest_training_job.training_job_name
    record(db, actor=actor, action="sagemaker.train", target=name, detail={"epochs": epochs, "num_layers": num_layers})
    return {"training_job_name": name, "manifests": manifests.summary(), "hyperparameters": hp}


def describe_training(clients: Clients, name: str) -> dict[str, Any]:
    """A training job's state in the console's words: status, failure reason, final metrics, artifacts.
    Raises ExternalServiceError, NotFound (no such job)."""
    with aws_errors(f"read training job {name}"):
        d = clients.sagemaker.describe_training_job(TrainingJobName=name)
    start, end = d.get("TrainingStartTime"), d.get("TrainingEndTime")
    return {"name": name, "status": d.get("TrainingJobStatus"), "secondary_status": d.get("SecondaryStatus"),
            "failure_reason": d.get("FailureReason"),
            "metrics": {m["MetricName"]: float(m["Value"]) for m in d.get("FinalMetricDataList") or []},
            "model_artifacts": (d.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
            "training_image": (d.get("AlgorithmSpecification") or {}).get("TrainingImage"),
            "hyperparameters": d.get("HyperParameters") or {},
            "seconds": (end - start).total_seconds() if start and end else d.get("TrainingTimeInSeconds")}


def ended_badly(desc: dict[str, Any]) -> str | None:
    """The message for a training job that Failed or was Stopped, else None."""
    if desc["status"] in ("Failed", "Stopped"):
        reason = desc.get("failure_reason") or ("stopped before it finished" if desc["status"] == "Stopped"
                                                 else "SageMaker gave no reason")
        return f"SageMaker training job {desc['name']} {desc['status'].lower()}: {reason}"
    return None


def save_version(db: sqlite_utils.Database, *, desc: dict[str, Any], actor: str,
                 training_data: dict[str, Any]) -> int:
    """An inactive model_versions row for a completed training job (no local file: ``path`` is empty); its id.
    Raises PermissionDenied unless ``actor`` may manage models, ModelError unless the job completed with
    model artifacts."""
    require(db, actor=actor, action="models.manage")
    if desc["status"] != "Completed" or not desc.get("model_artifacts"):
        raise ModelError(ended_badly(desc) or f"training job {desc['name']} has no model artifacts")
    metrics = {"accuracy": desc["metrics"].get(OBJECTIVE), "train_accuracy": desc["metrics"].get("train:accuracy"),
               "final_metrics": desc["metrics"], "seconds": desc.get("seconds")}
    hp = {**{k: v for k, v in desc["hyperparameters"].items() if not k.startswith("_")},
          "training_job_name": desc["name"], "training_image": desc["training_image"],
          "model_artifacts": desc["model_artifacts"]}
    thresholds = get_settings(db)["thresholds"]
    with db.atomic():
        version_id = int(db.execute(
            "INSERT INTO model_versions (name, created_at, backbone, classes, hyperparams, metrics, thresholds, "
            "training_data, path, active) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '', 0)",
            [f"sm-{desc['name']}", now_iso(), BACKBONE, json.dumps(list(CLASSES)), json.dumps(hp),
             json.dumps(metrics), json.dumps(thresholds), json.dumps(training_data)]).lastrowid)
        record(db, actor=actor, action="model.train", target=str(version_id),
               detail={"name": f"sm-{desc['name']}", "backend": "sagemaker"})
    return version_id


def launch(db: sqlite_utils.Database, *, actor: str, epochs: int = 10, num_layers: int = 18,
           poll_seconds: float = 30.0) -> int:
    """Queue a training job (the worker starts it and waits on SageMaker); its id. Raises PermissionDenied,
    InvalidInput (incomplete settings, bad epochs or depth)."""
    require(db, actor=actor, action="models.manage")
    SageMakerConfig.load(db)
    check_point(epochs=epochs, num_layers=num_layers)
    return jobs.create_job(db, kind=KIND, params={"epochs": epochs, "num_layers": num_layers,
                                                  "poll_seconds": poll_seconds}, actor=actor)


class SageMakerTrainKind(jobs.SingleTaskKind):
    """Start one SageMaker training job, wait on it (state in the job's params), save the version."""

    name = KIND

    def items_for(self, ctx: jobs.JobContext) -> list[str]:
        return ["train"]

    def run(self, ctx: jobs.JobContext, item: str) -> dict[str, Any]:
        cfg = SageMakerConfig.load(ctx.db)
        if not ctx.params.get("sagemaker_name"):  # a resumed job waits on the job it started
            started = start_training(ctx.db, actor=ctx.actor, epochs=int(ctx.params["epochs"]),
                                     num_layers=int(ctx.params["num_layers"]))
            remember(ctx.db, job_id=ctx.job_id, params=ctx.params, sagemaker_name=started["training_job_name"],
                     manifests=started["manifests"])
        name = ctx.params["sagemaker_name"]
        clients = open_clients(cfg)
        wait_for(ctx, cfg=cfg, clients=clients, kind="training", name=name, default_poll=30.0)
        desc = describe_training(clients, name)
        if (bad := ended_badly(desc)) is not None:
            remember(ctx.db, job_id=ctx.job_id, params=ctx.params, failure_reason=desc["failure_reason"])
            raise ModelError(bad + ". No model version was changed.")
        version_id = save_version(ctx.db, desc=desc, actor=ctx.actor, training_data=ctx.params.get("manifests") or {})
        return {"training_job_name": name, "model_version_id": version_id, "metrics": desc["metrics"],
                "seconds": desc["seconds"]}
