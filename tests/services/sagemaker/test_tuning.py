"""SageMaker grid tuning: the exact CreateHyperParameterTuningJob request, a tuning job under moto, and the
results (real response shapes through botocore's Stubber) in the grid-search comparison table."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from botocore.stub import Stubber

from services.core.errors import InvalidInput
from services.core.jobs import create_job, get_job, run_job
from services.models import grid_search
from services.sagemaker import tuning as smtu
from services.sagemaker.config import Clients
from tests.conftest_sagemaker import ACTOR, BUCKET, ROLE, add_labels, configure

T0 = dt.datetime(2026, 1, 1, 10, 0, tzinfo=dt.UTC)


def test_grid_dry_run_request(db, aws_env):
    configure(db)
    add_labels(db, per_class=5)
    out = smtu.start_tuning(db, actor=ACTOR, dry_run=True, max_parallel=2)
    req = out["requests"]["CreateHyperParameterTuningJob"]
    config = req["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Grid"
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "validation:accuracy"}
    assert config["ParameterRanges"]["CategoricalParameterRanges"] == [
        {"Name": "epochs", "Values": ["5", "10", "15"]}, {"Name": "num_layers", "Values": ["18", "34", "50"]}]
    assert config["ResourceLimits"] == {"MaxParallelTrainingJobs": 2}  # Grid: the grid sets the number of jobs
    definition = req["TrainingJobDefinition"]
    assert definition["AlgorithmSpecification"]["TrainingImage"].endswith("/image-classification:1")
    static = definition["StaticHyperParameters"]
    assert "epochs" not in static and "num_layers" not in static
    assert static["num_classes"] == "4" and static["num_training_samples"] == "16"
    assert definition["ResourceConfig"]["InstanceType"] == "ml.p3.2xlarge"
    assert definition["RoleArn"] == ROLE
    s3 = definition["InputDataConfig"][0]["DataSource"]["S3DataSource"]
    assert s3["S3DataType"] == "AugmentedManifestFile" and s3["AttributeNames"] == ["source-ref", "class"]
    assert definition["InputDataConfig"][1]["ChannelName"] == "validation"


def test_grid_values_are_checked(db, aws_env):
    configure(db)
    with pytest.raises(InvalidInput, match="num_layers must be one of"):
        smtu.launch(db, actor=ACTOR, grid={"epochs": [5], "num_layers": [19]})
    with pytest.raises(InvalidInput, match="epochs and num_layers"):
        smtu.launch(db, actor=ACTOR, grid={"epochs": [5]})


def test_tuning_job_starts_under_moto(db, moto):
    configure(db)
    add_labels(db, per_class=5)
    out = smtu.start_tuning(db, actor=ACTOR)
    desc = boto3.client("sagemaker", region_name="us-east-1").describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=out["tuning_job_name"])
    assert desc["HyperParameterTuningJobConfig"]["Strategy"] == "Grid"
    body = boto3.client("s3", region_name="us-east-1").get_object(
        Bucket=BUCKET, Key=out["manifests"]["validation_uri"].split("/", 3)[3])["Body"].read()
    assert len(body.splitlines()) == 4


def _summary(name, epochs, layers, status, value=None, reason=None):
    out = {"TrainingJobName": name, "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
           "CreationTime": T0, "TrainingStartTime": T0, "TrainingEndTime": T0 + dt.timedelta(minutes=12),
           "TrainingJobStatus": status, "TunedHyperParameters": {"epochs": str(epochs), "num_layers": str(layers)}}
    if value is not None:
        out["FinalHyperParameterTuningJobObjectiveMetric"] = {"MetricName": "validation:accuracy", "Value": value}
    if reason:
        out["FailureReason"] = reason
    return out


def _training(name, accuracy):
    return {"TrainingJobName": name, "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
            "ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/rc/output/{name}/output/model.tar.gz"},
            "TrainingJobStatus": "Completed", "SecondaryStatus": "Completed", "CreationTime": T0,
            "TrainingStartTime": T0, "TrainingEndTime": T0 + dt.timedelta(minutes=12),
            "HyperParameters": {"epochs": "5", "num_layers": "18", "_tuning_objective_metric": "validation:accuracy"},
            "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "Pipe"},
            "ResourceConfig": {"InstanceType": "ml.p3.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
            "FinalMetricDataList": [{"MetricName": "validation:accuracy", "Value": accuracy, "Timestamp": T0},
                                    {"MetricName": "train:accuracy", "Value": 0.99, "Timestamp": T0}]}


def _tuning(status, reason=None):
    out = {"HyperParameterTuningJobName": "grid-1", "HyperParameterTuningJobStatus": status, "CreationTime": T0,
           "HyperParameterTuningJobArn": "arn:aws:sagemaker:us-east-1:123456789012:hyper-parameter-tuning-job/grid-1",
           "HyperParameterTuningJobConfig": {
               "Strategy": "Grid", "ResourceLimits": {"MaxParallelTrainingJobs": 3},
               "ParameterRanges": {"CategoricalParameterRanges": [{"Name": "epochs", "Values": ["5", "10"]},
                                                                  {"Name": "num_layers", "Values": ["18"]}]}},
           "TrainingJobStatusCounters": {"Completed": 2, "InProgress": 0, "RetryableError": 0,
                                         "NonRetryableError": 1, "Stopped": 0},
           "ObjectiveStatusCounters": {"Succeeded": 2, "Pending": 0, "Failed": 1}}
    if reason:
        out["FailureReason"] = reason
    return out


def _stubbed_clients(monkeypatch, module):
    from sagemaker.core.helper.session_helper import Session

    sm = boto3.client("sagemaker", region_name="us-east-1")
    session = Session(boto_session=boto3.session.Session(region_name="us-east-1"), sagemaker_client=sm)
    monkeypatch.setattr(module, "open_clients", lambda cfg, dry_run=False: Clients(session.boto_session, session, sm))
    return Stubber(sm)


def test_results_land_in_the_comparison_table_with_failures(ws, db, aws_env, monkeypatch):
    configure(db)
    stub = _stubbed_clients(monkeypatch, smtu)
    name = {"HyperParameterTuningJobName": "grid-1"}
    stub.add_response("describe_hyper_parameter_tuning_job", _tuning("Completed"), name)
    stub.add_response("list_training_jobs_for_hyper_parameter_tuning_job", {"TrainingJobSummaries": [
        _summary("grid-1-001", 5, 18, "Completed", 0.81), _summary("grid-1-002", 10, 18, "Completed", 0.88),
        _summary("grid-1-003", 15, 18, "Failed", reason="AlgorithmError: CUDA out of memory")]},
        {**name, "MaxResults": 100})
    stub.add_response("describe_training_job", _training("grid-1-001", 0.81), {"TrainingJobName": "grid-1-001"})
    stub.add_response("describe_training_job", _training("grid-1-002", 0.88), {"TrainingJobName": "grid-1-002"})
    stub.add_response("describe_training_job", _training("grid-1-002", 0.88), {"TrainingJobName": "grid-1-002"})
    stub.activate()
    search = grid_search.start_search(db, backend="sagemaker", grid={"epochs": [5, 10, 15], "num_layers": [18]},
                                      actor=ACTOR, external_name="grid-1")
    job_id = create_job(db, kind=smtu.KIND, params={"grid": {"epochs": [5, 10, 15], "num_layers": [18]},
                                                    "poll_seconds": 0, "sagemaker_name": "grid-1",
                                                    "search_id": search}, actor=ACTOR)
    run_job(ws, job_id=job_id)
    job = get_job(db, job_id)
    assert job["state"] == "done", job["error"]
    assert job["result"]["best"] == "grid-1-002" and job["result"]["failed_points"] == 1
    rows = grid_search.comparison_rows(db, actor=ACTOR, search_ids=[search])
    by_job = {(r["param_epochs"], r["param_num_layers"]): r for r in rows}
    assert by_job[(10, 18)]["accuracy"] == 0.88 and by_job[(10, 18)]["backend"] == "sagemaker"
    assert by_job[(15, 18)]["state"] == "failed"
    assert by_job[(15, 18)]["error"] == "Failed: AlgorithmError: CUDA out of memory"
    (state, version_id) = db.execute("SELECT state, model_version_id FROM grid_searches WHERE id = ?", [search]).fetchone()
    assert state == "done" and version_id == job["result"]["model_version_id"]
    assert db.execute("SELECT name, active FROM model_versions WHERE id = ?", [version_id]).fetchone() == (
        "sm-grid-1-002", 0)
    stub.assert_no_pending_responses()


def test_fetch_results_for_a_tuning_job_started_elsewhere(db, aws_env, monkeypatch):
    configure(db)
    stub = _stubbed_clients(monkeypatch, smtu)
    name = {"HyperParameterTuningJobName": "grid-1"}
    for _ in range(2):  # read twice: the second read adds nothing
        stub.add_response("describe_hyper_parameter_tuning_job", _tuning("Failed", "too many failed jobs"), name)
        stub.add_response("list_training_jobs_for_hyper_parameter_tuning_job", {"TrainingJobSummaries": [
            _summary("grid-1-001", 5, 18, "Stopped", reason="stopped by the user")]}, {**name, "MaxResults": 100})
    stub.activate()
    first = smtu.fetch_results(db, actor=ACTOR, tuning_job_name="grid-1")
    again = smtu.fetch_results(db, actor=ACTOR, tuning_job_name="grid-1")
    assert (first["added"], again["added"], first["search_id"]) == (1, 0, again["search_id"])
    assert first["rows"][0]["error"] == "Stopped: stopped by the user"
    grid = db.execute("SELECT grid, state, error FROM grid_searches").fetchone()
    assert grid == ('{"epochs": [5, 10], "num_layers": [18]}', "failed", "too many failed jobs")
