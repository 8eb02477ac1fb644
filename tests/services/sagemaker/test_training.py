"""SageMaker training: manifests from the labels, the exact CreateTrainingJob request, a run under moto into a
model version, a failed job's reason (Stubber), credentials and access-denied messages, settings checks."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pytest
from botocore.stub import Stubber

from services.core.config import CLASSES, get_settings, set_setting
from services.core.errors import CloudAccessError, ExternalServiceError, InvalidInput, PermissionDenied
from services.core.jobs import create_job, get_job, run_job
from services.sagemaker import training as smt
from services.sagemaker.config import Clients, SageMakerConfig, aws_errors, open_clients
from tests.conftest_sagemaker import ACTOR, BUCKET, ROLE, add_labels, configure


def test_settings_are_checked(db):
    with pytest.raises(InvalidInput, match="IAM role ARN"):
        set_setting(db, key="sagemaker_role_arn", value="SageMakerRole", actor=ACTOR)
    with pytest.raises(InvalidInput, match="S3 bucket name"):
        set_setting(db, key="sagemaker_bucket", value="s3://bucket", actor=ACTOR)
    with pytest.raises(InvalidInput, match="from 1 to 100"):
        set_setting(db, key="sagemaker_train_instance_count", value=0, actor=ACTOR)
    with pytest.raises(InvalidInput, match="instance type"):
        set_setting(db, key="sagemaker_transform_instance_type", value="m5.xlarge", actor=ACTOR)
    assert set_setting(db, key="sagemaker_prefix", value="/a/b/", actor=ACTOR) == "a/b"
    assert get_settings(db)["sagemaker_train_instance_type"] == "ml.g4dn.xlarge"  # the default


def test_incomplete_settings_are_named(db, aws_env):
    with pytest.raises(InvalidInput, match="an execution role ARN, an S3 bucket"):
        smt.start_training(db, actor=ACTOR, dry_run=True)


def test_stratified_split_and_local_photos_reported(db, aws_env):
    configure(db)
    add_labels(db, per_class=5, local=3)
    m = smt.build_manifests(db, cfg=SageMakerConfig.load(db), run="r1")
    assert m.train_uri == f"s3://{BUCKET}/rc/manifests/r1/train.manifest"
    summary = m.summary()
    assert summary["per_class"]["validation"] == dict.fromkeys(CLASSES, 1)
    assert summary["per_class"]["train"] == dict.fromkeys(CLASSES, 4)
    assert summary["not_in_s3"] == 3 and "upload them" in summary["note"]
    line = m.train[0]
    assert set(line) == {"source-ref", "class"} and CLASSES[line["class"]] in line["source-ref"]
    assert not {x["source-ref"] for x in m.train} & {x["source-ref"] for x in m.validation}


def test_too_few_photos_in_s3(db, aws_env):
    configure(db)
    add_labels(db, per_class=0, local=4)
    with pytest.raises(InvalidInput, match="4 labelled photos are local files"):
        smt.build_manifests(db, cfg=SageMakerConfig.load(db), run="r1")


def test_dry_run_is_the_exact_request_and_sends_nothing(db, aws_env, monkeypatch):
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "true")  # the SDK's IAM checks are refused too, and listed
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")  # nothing is signed: no credentials needed
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    configure(db)
    add_labels(db, per_class=5)
    out = smt.start_training(db, actor=ACTOR, epochs=7, num_layers=34, dry_run=True)
    req = out["requests"]["CreateTrainingJob"]
    assert req["AlgorithmSpecification"] == {
        "TrainingInputMode": "Pipe", "TrainingImage": "811284229777.dkr.ecr.us-east-1.amazonaws.com/image-classification:1"}
    hp = req["HyperParameters"]
    assert all(isinstance(v, str) for v in hp.values())
    assert (hp["num_layers"], hp["epochs"], hp["num_classes"], hp["num_training_samples"], hp["image_shape"],
            hp["use_pretrained_model"]) == ("34", "7", "4", "16", "3,224,224", "1")
    assert [c["ChannelName"] for c in req["InputDataConfig"]] == ["train", "validation"]
    for channel in req["InputDataConfig"]:
        s3 = channel["DataSource"]["S3DataSource"]
        assert s3["S3DataType"] == "AugmentedManifestFile" and s3["AttributeNames"] == ["source-ref", "class"]
        assert s3["S3Uri"].startswith(f"s3://{BUCKET}/rc/manifests/") and s3["S3Uri"].endswith(".manifest")
        assert (channel["RecordWrapperType"], channel["InputMode"]) == ("RecordIO", "Pipe")
    assert req["ResourceConfig"] == {"InstanceType": "ml.p3.2xlarge", "InstanceCount": 2, "VolumeSizeInGB": 50}
    assert req["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200}
    assert req["RoleArn"] == ROLE and req["OutputDataConfig"]["S3OutputPath"] == f"s3://{BUCKET}/rc/output"
    assert any(n.startswith("iam:") for n in out["not_sent"])
    assert out["manifests"]["train_examples"] == 16
    assert db.execute("SELECT COUNT(*) FROM model_versions").fetchone()[0] == 0
    json.dumps(out)  # shown with st.json and printed by the CLI


def test_the_sdk_reads_only_the_console_settings_and_sends_no_telemetry(db, aws_env):
    from sagemaker.core.common_utils import resolve_value_from_config
    from sagemaker.core.config.config_schema import TELEMETRY_OPT_OUT_PATH

    configure(db)
    clients = open_clients(SageMakerConfig.load(db), dry_run=True)
    assert resolve_value_from_config(direct_input=None, config_path=TELEMETRY_OPT_OUT_PATH, default_value=False,
                                     sagemaker_session=clients.session) is True


def test_dry_run_needs_the_models_role(db, aws_env):
    from services.access.accounts import create_user

    configure(db)
    create_user(db, username="ines", password="a long enough passphrase", roles=["inspector"], actor=ACTOR)
    with pytest.raises(PermissionDenied, match="manage models"):
        smt.start_training(db, actor="ines", dry_run=True)


def test_training_job_under_moto_becomes_an_inactive_version(ws, db, moto):
    configure(db)
    add_labels(db, per_class=5)
    job_id = smt.launch(db, actor=ACTOR, epochs=5, num_layers=18, poll_seconds=0)
    assert run_job(ws, job_id=job_id) == job_id
    job = get_job(db, job_id)
    assert job["state"] == "done", job["error"]
    name = job["params"]["sagemaker_name"]
    assert job["params"]["sagemaker_status"] == "Completed" and job["result"]["training_job_name"] == name
    s3 = boto3.client("s3", region_name="us-east-1")
    train = s3.get_object(Bucket=BUCKET, Key=job["params"]["manifests"]["train_uri"].split("/", 3)[3])["Body"].read()
    assert len(train.decode().splitlines()) == 16
    version = db.execute("SELECT * FROM model_versions").fetchone()
    cols = [c[1] for c in db.execute("PRAGMA table_info(model_versions)")]
    row = dict(zip(cols, version))
    assert (row["backbone"], row["path"], row["active"]) == (smt.BACKBONE, "", 0)
    hp = json.loads(row["hyperparams"])
    assert hp["training_job_name"] == name and hp["model_artifacts"].startswith("s3://")
    assert json.loads(row["classes"]) == list(CLASSES)


def _described(status: str, reason: str | None = None) -> dict:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    out = {"TrainingJobName": "tj-1", "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/tj-1",
           "ModelArtifacts": {"S3ModelArtifacts": ""}, "TrainingJobStatus": status, "SecondaryStatus": status,
           "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "Pipe"},
           "ResourceConfig": {"InstanceType": "ml.p3.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
           "StoppingCondition": {"MaxRuntimeInSeconds": 3600}, "CreationTime": now}
    if reason:
        out["FailureReason"] = reason
    return out


def _stubbed(clients: Clients) -> Stubber:
    return Stubber(clients.sagemaker)


def test_a_failed_job_shows_its_reason_and_saves_no_version(ws, db, aws_env, monkeypatch):
    configure(db)
    reason = "ClientError: Data download failed: AccessDenied on s3://console-sm/photos/product/1.jpg"
    sm = boto3.client("sagemaker", region_name="us-east-1")
    stub = Stubber(sm)
    stub.add_response("describe_training_job", _described("InProgress"), {"TrainingJobName": "tj-1"})
    stub.add_response("describe_training_job", _described("Failed", reason), {"TrainingJobName": "tj-1"})
    stub.add_response("describe_training_job", _described("Failed", reason), {"TrainingJobName": "tj-1"})
    stub.activate()

    def clients(cfg, *, dry_run=False):
        return Clients(boto_session=None, session=None, sagemaker=sm, dry_run=dry_run)

    monkeypatch.setattr(smt, "open_clients", clients)  # the AWS edge: a client answering real response shapes
    job_id = create_job(db, kind=smt.KIND, params={"epochs": 5, "num_layers": 18, "poll_seconds": 0,
                                                   "sagemaker_name": "tj-1"}, actor=ACTOR)
    run_job(ws, job_id=job_id)
    job = get_job(db, job_id)
    assert job["state"] == "failed"
    assert job["error"] == f"SageMaker training job tj-1 failed: {reason}. No model version was changed."
    assert job["params"]["polls"] == 2 and job["params"]["failure_reason"] == reason
    assert db.execute("SELECT COUNT(*) FROM model_versions").fetchone()[0] == 0
    stub.assert_no_pending_responses()


def test_waiting_is_capped(ws, db, aws_env, monkeypatch):
    configure(db)
    sm = boto3.client("sagemaker", region_name="us-east-1")
    stub = Stubber(sm)
    for _ in range(3):
        stub.add_response("describe_training_job", _described("InProgress"), {"TrainingJobName": "tj-1"})
    stub.activate()
    monkeypatch.setattr(smt, "open_clients", lambda cfg, dry_run=False: Clients(None, None, sm))
    job_id = create_job(db, kind=smt.KIND, params={"epochs": 5, "num_layers": 18, "poll_seconds": 0,
                                                   "max_polls": 3, "sagemaker_name": "tj-1"}, actor=ACTOR)
    run_job(ws, job_id=job_id)
    job = get_job(db, job_id)
    assert job["state"] == "failed" and "still reports InProgress after 3 checks" in job["error"]
    assert "Resume this job" in job["error"]


def test_missing_credentials_and_access_denied_are_plain(db, aws_env, monkeypatch):
    configure(db)
    add_labels(db, per_class=3)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    clients = open_clients(SageMakerConfig.load(db))
    with pytest.raises(CloudAccessError, match="no AWS credentials to read training job x"):
        with aws_errors("read training job x"):
            clients.sagemaker.describe_training_job(TrainingJobName="x")

    sm = boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    with Stubber(sm) as stub:
        stub.add_client_error("create_training_job", service_error_code="AccessDeniedException",
                              service_message="User: arn:aws:iam::123456789012:user/ci is not authorized to perform: "
                                              "sagemaker:CreateTrainingJob", http_status_code=400)
        with pytest.raises(CloudAccessError) as err:
            with aws_errors("start the SageMaker training job"):
                sm.create_training_job(TrainingJobName="x", RoleArn=ROLE, AlgorithmSpecification={
                    "TrainingImage": "img", "TrainingInputMode": "Pipe"}, OutputDataConfig={"S3OutputPath": "s3://b/o"},
                    ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 5},
                    StoppingCondition={"MaxRuntimeInSeconds": 60})
    assert "needs sagemaker:CreateTrainingJob (and iam:PassRole on the execution role)" in str(err.value)
    assert "nothing was changed" in str(err.value)


def test_endpoint_setting_reaches_every_client(db, aws_env):
    configure(db, sagemaker_endpoint_url="http://127.0.0.1:5999")
    clients = open_clients(SageMakerConfig.load(db))
    from sagemaker.core.resources import Base

    assert clients.sagemaker.meta.endpoint_url == "http://127.0.0.1:5999"
    resources_client = Base.get_sagemaker_client(session=clients.boto_session, region_name="us-east-1")
    assert resources_client is clients.sagemaker


def test_a_cancel_asks_sagemaker_to_stop_and_says_when_that_failed(db, aws_env):
    from services.core.errors import JobCancelled
    from services.sagemaker.config import poll

    job_id = create_job(db, kind=smt.KIND, params={"epochs": 5, "num_layers": 18}, actor=ACTOR)
    db.execute("UPDATE jobs SET state = 'cancelling' WHERE id = ?", [job_id])
    stopped = []
    with pytest.raises(JobCancelled, match="the SageMaker job was asked to stop"):
        poll(db, job_id=job_id, params={}, describe=lambda: {"TrainingJobStatus": "InProgress"},
             status_key="TrainingJobStatus", stop=lambda: stopped.append(True), poll_seconds=0, max_polls=5)
    assert stopped == [True]

    def refuse():
        raise ExternalServiceError("AccessDenied: sagemaker:StopTrainingJob")

    params: dict = {}
    with pytest.raises(JobCancelled, match="asking SageMaker to stop it failed .*StopTrainingJob.*AWS console"):
        poll(db, job_id=job_id, params=params, describe=lambda: {"TrainingJobStatus": "InProgress"},
             status_key="TrainingJobStatus", stop=refuse, poll_seconds=0, max_polls=5)
    assert "StopTrainingJob" in params["stop_error"]  # kept on the job for the page
