"""SageMaker settings as a typed config, the SDK 3.x sessions built from it, AWS errors in plain words (through
``services.core.aws``), the dry-run capture, and polling SageMaker from a console job.

The SDK (``sagemaker-core``, ``sagemaker-train``) is imported inside the functions that need it: it takes a
second to import and the settings page must not wait for it.

Dry runs capture what the SDK would send: botocore's ``before-parameter-build`` event records the request of
the operation asked for (the exact keyword arguments the SageMaker client gets) and ``before-call`` stops it,
after botocore has validated it against the service model, before anything is signed or sent. Any other call
the SDK would make on the way (an IAM role check) is refused the same way and listed under ``not_sent``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils
from botocore import exceptions as bx

from services.core import aws
from services.core.clock import now_iso
from services.core.config import get_settings
from services.core.errors import ConsoleError, ExternalServiceError, InvalidInput, JobCancelled
from services.core.jobs import LEASE_SECONDS

ALGORITHM = "image-classification"


@dataclass(frozen=True)
class SageMakerConfig:
    """Where and how SageMaker work runs (from Settings)."""

    region: str
    role_arn: str
    bucket: str
    prefix: str
    train_instance_type: str
    train_instance_count: int
    transform_instance_type: str
    transform_instance_count: int
    max_runtime_seconds: int
    endpoint_url: str = ""

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> SageMakerConfig:
        """The config from ``services.core.config.get_settings``; the region falls back to the AWS default."""
        import boto3

        return cls(region=settings["sagemaker_region"] or boto3.session.Session().region_name or "",
                   role_arn=settings["sagemaker_role_arn"], bucket=settings["sagemaker_bucket"],
                   prefix=settings["sagemaker_prefix"].strip("/"),
                   train_instance_type=settings["sagemaker_train_instance_type"],
                   train_instance_count=int(settings["sagemaker_train_instance_count"]),
                   transform_instance_type=settings["sagemaker_transform_instance_type"],
                   transform_instance_count=int(settings["sagemaker_transform_instance_count"]),
                   max_runtime_seconds=int(settings["sagemaker_max_runtime_seconds"]),
                   endpoint_url=settings["sagemaker_endpoint_url"])

    @classmethod
    def load(cls, db: sqlite_utils.Database) -> SageMakerConfig:
        """The config of this workspace, checked complete. Raises InvalidInput naming what is missing."""
        cfg = cls.from_settings(get_settings(db))
        missing = [what for what, v in (("a region", cfg.region), ("an execution role ARN", cfg.role_arn),
                                        ("an S3 bucket", cfg.bucket)) if not v]
        if missing:
            raise InvalidInput(f"SageMaker needs {', '.join(missing)}: set them on the SageMaker page (Settings "
                               "keys sagemaker_region, sagemaker_role_arn, sagemaker_bucket)")
        return cfg

    def uri(self, *parts: str) -> str:
        """``s3://bucket/prefix/part/...``."""
        keys = [p.strip("/") for p in (self.prefix, *parts) if p and p.strip("/")]
        return "s3://" + "/".join([self.bucket, *keys])

    def image_uri(self) -> str:
        """The ECR image of the built-in image-classification algorithm in this region. Raises InvalidInput."""
        from sagemaker.core import image_uris

        try:
            return image_uris.retrieve(ALGORITHM, self.region)
        except ValueError as exc:
            raise InvalidInput(f"the image-classification algorithm is not offered in region {self.region!r}: {exc}") from None


DRY_RUN_MARK = "not sent: dry run"


class _Captured(Exception):
    """Raised by the dry-run hook to stop the SDK once the request it was asked for is built."""

    def __init__(self, operation: str, request: dict[str, Any]) -> None:
        super().__init__(operation)
        self.operation, self.request = operation, request


@dataclass
class Clients:
    """One boto3 session (and the SDK's session over it) per piece of work; with ``dry_run`` nothing is sent."""

    boto_session: Any
    session: Any  # sagemaker.core.helper.session_helper.Session
    sagemaker: Any  # the boto3 SageMaker client
    dry_run: bool = False
    not_sent: list[str] = field(default_factory=list)
    _built: dict[str, dict[str, Any]] = field(default_factory=dict)

    def capture(self, operation: str, start: Callable[[], Any]) -> dict[str, Any]:
        """Run ``start`` (which makes the SDK call ``operation``) and return the exact request it would send.
        Raises ExternalServiceError if the SDK never got to ``operation``."""
        if not self.dry_run:
            raise AssertionError("capture needs clients opened with dry_run=True")
        try:
            start()
        except _Captured as got:
            if got.operation == operation:
                return got.request
            raise
        raise ExternalServiceError(f"the SageMaker SDK did not call {operation}; nothing was sent")

    def _build(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self._built[model.name] = copy.deepcopy(params)

    def _refuse(self, model: Any, **_: Any) -> None:
        service = model.service_model.service_name
        if service == "sagemaker" and model.name in self._built:
            raise _Captured(model.name, self._built.pop(model.name))
        self.not_sent.append(f"{service}:{model.name}")
        # the SDK takes an access-denied answer to its own checks (the IAM role check) as "cannot tell" and goes on
        raise bx.ClientError({"Error": {"Code": "AccessDenied", "Message": DRY_RUN_MARK}}, model.name)


SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


def open_clients(cfg: SageMakerConfig, *, dry_run: bool = False) -> Clients:
    """A fresh boto3 session for ``cfg.region`` (the standard credential chain), the SDK's Session over it, and
    its SageMaker client (at ``cfg.endpoint_url`` when set)."""
    import boto3
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.utils.utils import SageMakerClient

    boto_session = boto3.session.Session(region_name=cfg.region or None)
    clients = Clients(boto_session=boto_session, session=None, sagemaker=None, dry_run=dry_run)
    if dry_run:  # registered before any client exists: every client of this session copies the handlers
        boto_session.events.register("before-parameter-build", clients._build)
        boto_session.events.register("before-call", clients._refuse)
    sm_client = None
    if cfg.endpoint_url:
        # the SDK's resources (TrainingJob, Model) take their client from SageMakerClient's cache, keyed by the
        # session: seed the entry of this session with a client at the endpoint
        cached = SageMakerClient(session=boto_session, region_name=cfg.region)
        sm_client = boto_session.client("sagemaker", region_name=cfg.region, endpoint_url=cfg.endpoint_url,
                                        config=cached.config)
        cached.sagemaker_client = sm_client
    # the console's settings are the whole SDK configuration (no defaults file on the server adds tags, keys or
    # roles unseen by the dry run), and the SDK's usage telemetry is off: a dry run sends nothing at all
    clients.session = Session(boto_session=boto_session, sagemaker_client=sm_client, default_bucket=cfg.bucket or None,
                              sagemaker_config=SDK_CONFIG)
    clients.sagemaker = clients.session.sagemaker_client
    return clients


# what each operation needs, for the access-denied message
PERMISSIONS = {"CreateTrainingJob": "sagemaker:CreateTrainingJob (and iam:PassRole on the execution role)",
               "CreateHyperParameterTuningJob": "sagemaker:CreateHyperParameterTuningJob (and iam:PassRole on the "
                                                "execution role)",
               "CreateModel": "sagemaker:CreateModel (and iam:PassRole on the execution role)",
               "CreateTransformJob": "sagemaker:CreateTransformJob",
               "DescribeTrainingJob": "sagemaker:DescribeTrainingJob",
               "DescribeHyperParameterTuningJob": "sagemaker:DescribeHyperParameterTuningJob",
               "ListTrainingJobsForHyperParameterTuningJob": "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
               "DescribeTransformJob": "sagemaker:DescribeTransformJob",
               "DescribeModel": "sagemaker:DescribeModel"}


@contextlib.contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Turn AWS and SDK failures while doing ``what`` into ConsoleErrors people can act on, through
    ``services.core.aws.translate``: CloudAccessError (no or rejected credentials, access denied naming the
    permission from ``PERMISSIONS``), NotFound (no such job), InvalidInput (a request the service model or
    SageMaker rejects), ExternalServiceError (unreachable, throttled, failing, no region). A dry run that
    stops at a call the SDK makes before the request it was asked for is an ExternalServiceError too."""
    try:
        yield
    except (bx.ClientError, bx.BotoCoreError) as exc:
        if isinstance(exc, bx.ClientError) and exc.response.get("Error", {}).get("Message") == DRY_RUN_MARK:
            raise ExternalServiceError(f"the dry run to {what} stopped at {exc.operation_name}, which the SageMaker "
                                       "SDK calls before building the request; nothing was sent") from None
        operation = getattr(exc, "operation_name", "") or ""
        need = PERMISSIONS.get(operation, f"sagemaker:{operation}") if operation else None
        raise aws.translate(exc, service="SageMaker", action=what, permission=need) from None


def sdk_errors() -> tuple[type[Exception], ...]:
    """The SDK's own refusals (a role that fails its checks, bad arguments it validates), for ``except``."""
    from pydantic import ValidationError
    from sagemaker.core.helper.iam_role_resolver import RoleValidationError

    return (RoleValidationError, ValidationError, ValueError)


# ---------------------------------------------------------------- polling from a console job


def remember(db: sqlite_utils.Database, *, job_id: int, params: dict[str, Any], **values: Any) -> None:
    """Store SageMaker progress in the console job's params (so a resumed job picks up the same SageMaker job
    and the pages show its status) and renew the job's lease, in one statement."""

    params.update(values)
    with db.atomic():
        db.execute("UPDATE jobs SET params = ?, heartbeat_at = ?, lease_expires = ? WHERE id = ?",
                   [json.dumps(params, default=str), now_iso(), time.time() + LEASE_SECONDS, job_id])


def poll(db: sqlite_utils.Database, *, job_id: int, params: dict[str, Any], describe: Callable[[], dict[str, Any]],
         status_key: str, stop: Callable[[], Any] | None, poll_seconds: float, max_polls: int,
         sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Describe a SageMaker job until it ends (Completed, Failed, Stopped) and return the last description.

    Every answer is written to the job's params (``sagemaker_status``, ``polled_at``, ``polls``). Raises
    JobCancelled when the console job is cancelled meanwhile (the SageMaker job is asked to stop),
    ExternalServiceError after ``max_polls`` answers without an end (the SageMaker job keeps running: resume
    the console job to wait on), and what ``describe`` raises."""
    for n in range(1, max_polls + 1):
        desc = describe()
        status = str(desc.get(status_key, ""))
        remember(db, job_id=job_id, params=params, sagemaker_status=status, polled_at=now_iso(), polls=n,
                 secondary_status=desc.get("SecondaryStatus"))
        if status in ("Completed", "Failed", "Stopped"):
            return desc
        state = db.execute("SELECT state FROM jobs WHERE id = ?", [job_id]).fetchone()
        if state and state[0] == "cancelling":
            asked = "the SageMaker job was asked to stop"
            if stop is not None:
                try:
                    stop()
                except ConsoleError as exc:  # the cancel stands; say that SageMaker may still be running it
                    asked = f"asking SageMaker to stop it failed ({exc}): stop it in the AWS console"
                    remember(db, job_id=job_id, params=params, stop_error=str(exc))
            raise JobCancelled(f"cancelled while SageMaker reported {status}; {asked}")
        if n < max_polls and poll_seconds > 0:
            sleep(poll_seconds)
    raise ExternalServiceError(f"SageMaker still reports {status} after {max_polls} checks; it keeps running there. "
                               "Resume this job to go on waiting for it.")


def max_polls_for(cfg: SageMakerConfig, poll_seconds: float, *, jobs: int = 1) -> int:
    """Enough checks to wait out the runtime cap (for ``jobs`` runs in sequence) and an hour of queueing."""
    return max(1, int((cfg.max_runtime_seconds * jobs + 3600) / max(poll_seconds, 1.0)) + 1)


# what describing and stopping each kind of SageMaker job takes: (describe, stop, name parameter, status key)
_JOB_CALLS = {
    "training": ("describe_training_job", "stop_training_job", "TrainingJobName", "TrainingJobStatus"),
    "tuning": ("describe_hyper_parameter_tuning_job", "stop_hyper_parameter_tuning_job",
               "HyperParameterTuningJobName", "HyperParameterTuningJobStatus"),
    "transform": ("describe_transform_job", "stop_transform_job", "TransformJobName", "TransformJobStatus"),
}


def wait_for(ctx: Any, *, cfg: SageMakerConfig, clients: Clients, kind: str, name: str, default_poll: float,
             runs_in_series: int = 1) -> dict[str, Any]:
    """``poll`` the SageMaker ``kind`` job ``name`` (training, tuning, transform) from the console job ``ctx``,
    asking SageMaker to stop it if the console job is cancelled. Returns its last description; raises as
    ``poll`` does."""
    describe_call, stop_call, name_param, status_key = _JOB_CALLS[kind]
    seconds = float(ctx.params.get("poll_seconds", default_poll))

    def describe() -> dict[str, Any]:
        with aws_errors(f"read {kind} job {name}"):
            return getattr(clients.sagemaker, describe_call)(**{name_param: name})

    def stop() -> None:
        with aws_errors(f"stop {kind} job {name}"):
            getattr(clients.sagemaker, stop_call)(**{name_param: name})

    max_polls = int(ctx.params.get("max_polls") or max_polls_for(cfg, seconds, jobs=runs_in_series))
    return poll(ctx.db, job_id=ctx.job_id, params=ctx.params, status_key=status_key, describe=describe, stop=stop,
                poll_seconds=seconds, max_polls=max_polls)
