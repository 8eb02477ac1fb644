"""Batch inference on SageMaker over an S3 prefix of photos, and its predictions in the console's database.

A SageMaker model is made (``Model.create``) from a SageMaker model version's artifacts and the algorithm
image; a ``Transformer`` runs it over every object under the input prefix (``application/x-image``, one
request per photo). SageMaker writes ``<relative key>.out`` under the output prefix, each holding
``{"prediction": [p0, p1, p2, p3]}`` in ``CLASSES`` order. Each output is matched to the console's photo by
its URI (``s3://bucket/<input prefix>/<relative key>``) and stored as a prediction carrying the version;
photos waiting in the queue for want of a confident model (as re-scoring picks them) are routed with the
class thresholds: decided automatically at or above them (an audit share stays queued), else left queued
with the new suggestion. An output for an unknown photo, or one that cannot be parsed, is reported and
skipped; the others are kept.
"""

from __future__ import annotations

import json
import math
from typing import Any

import sqlite_utils

from services.core import jobs
from services.core.audit import record
from services.core.authz import require
from services.core.clock import now_iso
from services.core.config import CLASSES, get_settings, object_store
from services.core.errors import ConsoleError, ExternalServiceError, InvalidInput, NotFound
from services.core.storage import ObjectStore, is_s3, join, split_s3
from services.models.registry import list_versions
from services.reviews.decisions import audit_rate_of, decide, route
from services.reviews.queue_value import rank_in_queue
from services.reviews.rescore import ELIGIBLE_SQL
from services.sagemaker.config import (
    SageMakerConfig,
    aws_errors,
    open_clients,
    remember,
    sdk_errors,
    wait_for,
)
from services.sagemaker.training import BACKBONE, run_name

KIND = "sagemaker-transform"
CONTENT_TYPE = "application/x-image"
MAX_PROBLEMS = 200


def sagemaker_version(db: sqlite_utils.Database, version_id: int | None = None) -> dict[str, Any]:
    """A SageMaker model version (the newest when ``version_id`` is None), JSON decoded. Raises NotFound."""
    versions = [v for v in list_versions(db) if v["backbone"] == BACKBONE
                and (version_id is None or v["id"] == version_id)]
    if not versions:
        raise NotFound(f"SageMaker model version {version_id} does not exist" if version_id else
                       "no SageMaker model version yet: train or tune on SageMaker first")
    return versions[0]


def _prefix(uri: str, what: str) -> str:
    if not is_s3(uri):
        raise InvalidInput(f"the {what} must be an s3://bucket/prefix URI (batch transform reads and writes S3), "
                           f"got {uri!r}")
    bucket, key = split_s3(uri)
    return f"s3://{bucket}/{key.strip('/')}/" if key.strip("/") else f"s3://{bucket}/"


def start_transform(db: sqlite_utils.Database, *, actor: str, input_uri: str, version_id: int | None = None,
                    output_uri: str | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Make the SageMaker model and start the transform job: {"model_name", "transform_job_name", "input_uri",
    "output_uri", "version_id"}. With ``dry_run`` nothing is sent: {"requests": {"CreateModel": ...,
    "CreateTransformJob": ...}}. Raises PermissionDenied, InvalidInput, NotFound, ExternalServiceError."""
    from pydantic import ValidationError
    from sagemaker.core.resources import Model
    from sagemaker.core.shapes import ContainerDefinition
    from sagemaker.core.transformer import Transformer

    require(db, actor=actor, action="models.manage")
    cfg = SageMakerConfig.load(db)
    version = sagemaker_version(db, version_id)
    input_uri = _prefix(input_uri, "input")
    run = run_name()
    output_uri = _prefix(output_uri or cfg.uri("transform", run), "output")
    model_name = f"console-{version['id']}-{run}"
    artifacts = version["hyperparams"]["model_artifacts"]
    image = version["hyperparams"].get("training_image") or cfg.image_uri()
    clients = open_clients(cfg, dry_run=dry_run)

    def create_model() -> None:
        Model.create(model_name=model_name, execution_role_arn=cfg.role_arn, session=clients.boto_session,
                     region=cfg.region, primary_container=ContainerDefinition(image=image, model_data_url=artifacts))

    transformer = Transformer(model_name=model_name, instance_count=cfg.transform_instance_count,
                              instance_type=cfg.transform_instance_type, output_path=output_uri,
                              accept="application/json", base_transform_job_name="console-transform",
                              max_payload=6, sagemaker_session=clients.session)

    def transform() -> None:
        transformer.transform(data=input_uri, data_type="S3Prefix", content_type=CONTENT_TYPE, wait=False, logs=False)

    with aws_errors("start the SageMaker batch transform"):
        try:
            if dry_run:
                return {"dry_run": True, "version_id": version["id"], "not_sent": clients.not_sent,
                        "requests": {"CreateModel": clients.capture("CreateModel", create_model),
                                     "CreateTransformJob": clients.capture("CreateTransformJob", transform)}}
            try:
                create_model()
            except ValidationError:  # the model was made; the SDK could not read DescribeModel's answer back
                clients.sagemaker.describe_model(ModelName=model_name)  # (moto answers an empty VpcConfig)
            transform()
        except sdk_errors() as exc:
            raise InvalidInput(f"the SageMaker SDK refused the batch transform request: {exc}") from None
    name = transformer.latest_transform_job.transform_job_name
    record(db, actor=actor, action="sagemaker.transform", target=name,
           detail={"input": input_uri, "output": output_uri, "version_id": version["id"]})
    return {"model_name": model_name, "transform_job_name": name, "input_uri": input_uri, "output_uri": output_uri,
            "version_id": version["id"]}


def parse_output(data: bytes) -> list[float]:
    """The class probabilities of one ``.out`` file. Raises InvalidInput when it is not
    ``{"prediction": [four probabilities]}``."""
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"not JSON ({exc})") from None
    probs = body.get("prediction") if isinstance(body, dict) else None
    if not isinstance(probs, list) or len(probs) != len(CLASSES):
        raise InvalidInput(f"expected {{\"prediction\": [{len(CLASSES)} probabilities]}}, got {str(body)[:120]}")
    if not all(isinstance(p, (int, float)) and not isinstance(p, bool) and math.isfinite(p) and 0 <= p <= 1
               for p in probs):
        raise InvalidInput(f"the probabilities must be numbers from 0 to 1, got {probs}")
    if abs(sum(probs) - 1.0) > 0.01:
        raise InvalidInput(f"the probabilities add up to {sum(probs):.3f}, not 1")
    return [float(p) for p in probs]


def read_outputs(store: ObjectStore, *, input_uri: str, output_uri: str) -> tuple[dict[str, list[float]], list[dict[str, str]]]:
    """({photo uri: probabilities}, problems) for every ``.out`` under ``output_uri``."""
    found: dict[str, list[float]] = {}
    problems: list[dict[str, str]] = []
    for obj in store.list(output_uri, suffixes=(".out",)):
        photo = join(input_uri, obj.key[: -len(".out")])
        try:
            found[photo] = parse_output(store.read(obj.uri))
        except ConsoleError as exc:
            problems.append({"output": obj.uri, "photo": photo, "reason": str(exc)})
    return found, problems


def write_predictions(db: sqlite_utils.Database, *, version: dict[str, Any], outputs: dict[str, list[float]],
                      routing: bool = True) -> dict[str, Any]:
    """Store one prediction per known photo under ``version`` and (with ``routing``) route the photos waiting in
    the queue; unknown photos are reported. Returns counts and the unknown URIs."""
    settings = get_settings(db)
    now, counts = now_iso(), {"predictions": 0, "decided": 0, "queued": 0, "unknown": 0}
    unknown = []
    actor = f"model:{version['name']}"
    with db.atomic():
        for uri, probs in outputs.items():
            rows = db.execute("SELECT id, sha256 FROM images WHERE uri = ?", [uri]).fetchall()
            if not rows:
                counts["unknown"] += 1
                unknown.append(uri)
                continue
            k = max(range(len(CLASSES)), key=lambda i: probs[i])
            label, confidence = CLASSES[k], probs[k]
            for image_id, sha in rows:  # one photo can be in several reviews
                pred = db.execute(
                    "INSERT INTO predictions (image_id, model_version_id, label, confidence, probabilities, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [image_id, version["id"], label, confidence, json.dumps(dict(zip(CLASSES, probs))), now]).lastrowid
                counts["predictions"] += 1
                if not routing or db.execute(ELIGIBLE_SQL + " AND i.id = ?", [image_id]).fetchone() is None:
                    continue
                r = route(label=label, confidence=confidence, thresholds=settings["thresholds"],
                          audit_rate=audit_rate_of(settings, label), sha256=sha or "0" * 8)
                if r.automatic:
                    decide(db, image_id=image_id, label=label, actor=actor, source="auto", prediction_id=pred,
                           note=f"SageMaker batch transform: {r.reason}", settings=settings, keep_queued=r.audit)
                    counts["decided"] += 1
                    if r.audit:
                        db.execute("UPDATE images SET queue_reason = 'audit' WHERE id = ?", [image_id])
                else:
                    rank = rank_in_queue(db, image_id=image_id, probabilities=probs, hours=settings["queue_value_hours"])
                    db.execute("UPDATE images SET queue_reason = 'low_confidence', queue_rank = ? WHERE id = ?",
                               [rank, image_id])
                    counts["queued"] += 1
    return {**counts, "unknown_sample": unknown[:MAX_PROBLEMS]}


def import_outputs(db: sqlite_utils.Database, *, actor: str, input_uri: str, output_uri: str,
                   version_id: int | None = None, routing: bool = True) -> dict[str, Any]:
    """Read a finished transform's outputs into predictions (see ``write_predictions``). Raises PermissionDenied,
    NotFound, InvalidInput, StorageError."""
    require(db, actor=actor, action="models.manage")
    version = sagemaker_version(db, version_id)
    found, problems = read_outputs(object_store(db), input_uri=_prefix(input_uri, "input"),
                                   output_uri=_prefix(output_uri, "output"))
    written = write_predictions(db, version=version, outputs=found, routing=routing)
    return {"version_id": version["id"], "outputs": len(found) + len(problems), "unparsable": len(problems),
            "problems": problems[:MAX_PROBLEMS], **written}


def launch(db: sqlite_utils.Database, *, actor: str, input_uri: str, version_id: int | None = None,
           output_uri: str | None = None, routing: bool = True, poll_seconds: float = 30.0) -> int:
    """Queue a batch transform (the worker starts it, waits, imports the outputs); its id. Raises
    PermissionDenied, InvalidInput, NotFound."""
    require(db, actor=actor, action="models.manage")
    SageMakerConfig.load(db)
    version = sagemaker_version(db, version_id)
    _prefix(input_uri, "input")
    if output_uri:
        _prefix(output_uri, "output")
    return jobs.create_job(db, kind=KIND, params={"input_uri": input_uri, "version_id": version["id"],
                                                  "output_uri": output_uri, "routing": routing,
                                                  "poll_seconds": poll_seconds}, actor=actor)


class SageMakerTransformKind(jobs.SingleTaskKind):
    """Start a batch transform, wait on it, then turn its outputs into predictions."""

    name = KIND

    def items_for(self, ctx: jobs.JobContext) -> list[str]:
        return [ctx.params["input_uri"]]

    def run(self, ctx: jobs.JobContext, item: str) -> dict[str, Any]:
        cfg = SageMakerConfig.load(ctx.db)
        if not ctx.params.get("sagemaker_name"):
            started = start_transform(ctx.db, actor=ctx.actor, input_uri=item, version_id=ctx.params["version_id"],
                                      output_uri=ctx.params.get("output_uri"))
            remember(ctx.db, job_id=ctx.job_id, params=ctx.params, sagemaker_name=started["transform_job_name"],
                     model_name=started["model_name"], output_uri=started["output_uri"])
        name = ctx.params["sagemaker_name"]
        clients = open_clients(cfg)
        desc = wait_for(ctx, cfg=cfg, clients=clients, kind="transform", name=name, default_poll=30.0)
        if desc["TransformJobStatus"] != "Completed":
            raise ExternalServiceError(f"SageMaker transform job {name} {desc['TransformJobStatus'].lower()}: "
                                       f"{desc.get('FailureReason') or 'SageMaker gave no reason'}. No prediction "
                                       "was stored.")
        out = import_outputs(ctx.db, actor=ctx.actor, input_uri=item, output_uri=ctx.params["output_uri"],
                             version_id=ctx.params["version_id"], routing=bool(ctx.params.get("routing", True)))
        return {"transform_job_name": name, **out}
