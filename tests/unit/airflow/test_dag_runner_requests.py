"""What the DAG's `run_batch_job` task would send on the aws target, checked against the runner:

- EMR Serverless: the rendered operator's start_job_run arguments are accepted by botocore's service model and
  moto's EMR Serverless (only the application id is moto's own);
- Databricks: the payload is the provider's own request building (`_prepare_submit_json`), the run of the
  uploaded entry file with the same arguments;
- both: the paths in those arguments, parsed by the entry file and the batch job exactly as on the cluster, resolve
  through the job's own `layout.input_glob` to the S3 sink's objects (keys made by `layout.object_key`) and to
  nothing else.
"""

from __future__ import annotations

import re

import boto3
import pytest

from pipeline import layout
from pipeline.settings import TABLES, load_settings
from spark_jobs import batch, cluster_entry
from tests.unit.airflow.dag_probe import DAG_ID, RENDER_DATE, USER_ID
from tests.unit.services.provision.test_provision_aws import aws_env as aws_env
from tests.unit.services.provision.test_provision_aws import clean_env as clean_env

REGION = "eu-west-1"
MOTO_RELEASE = "emr-7.12.0"  # moto accepts only emr-X.Y.0 labels


def entry_arguments(facts: dict, scenario: str) -> list[str]:
    rendered = facts[scenario]["rendered"]
    if scenario == "aws":
        return rendered["request"]["jobDriver"]["sparkSubmit"]["entryPointArguments"]
    (task,) = rendered["payload"]["tasks"]
    return task["spark_python_task"]["parameters"]


def test_the_emr_serverless_run_is_valid_for_the_service(aws_env, aws_facts: dict) -> None:
    request = dict(aws_facts["rendered"]["request"])
    assert (request["name"], request["mode"]) == (f"{DAG_ID}-batch-{RENDER_DATE}", "BATCH")
    emr = boto3.client("emr-serverless", region_name=aws_facts["rendered"]["region"])
    app_id = emr.create_application(name=f"{USER_ID}-spark", releaseLabel=MOTO_RELEASE, type="SPARK")["applicationId"]
    request["applicationId"] = app_id
    run_id = emr.start_job_run(**request)["jobRunId"]  # boto3 validates every field against the service model
    stored = emr.get_job_run(applicationId=app_id, jobRunId=run_id)["jobRun"]
    assert stored["jobDriver"] == request["jobDriver"]
    assert stored["executionRole"] == request["executionRoleArn"]


def test_the_databricks_run_starts_the_uploaded_entry_file(facts: dict) -> None:
    payload = facts["aws_databricks"]["rendered"]["payload"]
    (task,) = payload["tasks"]
    assert task["spark_python_task"]["python_file"] == f"s3://user-{USER_ID}-bucket/jobs/entry.py"
    assert [library["pypi"]["package"].split("==")[0] for library in task["libraries"]] == ["pydantic-settings"]
    assert set(task) == {"task_key", "existing_cluster_id", "spark_python_task", "libraries"}


def glob_pattern(uri: str, bucket: str) -> re.Pattern[str]:
    """A Hadoop glob on `s3a://<bucket>/...` as a key regex (`*` within one path segment)."""
    prefix = f"s3a://{bucket}/"
    assert uri.startswith(prefix), uri
    parts = (re.escape(part) for part in uri.removeprefix(prefix).split("*"))
    return re.compile("[^/]*".join(parts) + "$")


@pytest.mark.parametrize("scenario", ["aws", "aws_databricks"])
def test_the_rendered_paths_resolve_to_the_sink_s_objects(aws_env, facts: dict, scenario: str) -> None:
    settings = load_settings(_env_file=None, pipeline_target="aws", pipeline_user_id=USER_ID, aws_region=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=settings.bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    sink_keys = {
        table: {
            layout.object_key(settings.topic(table), partition, offset) for partition in (0, 2) for offset in (0, 5)
        }
        for table in TABLES
    }
    noise = ["topics/other.pin/partition=0/other.pin+0+0000000000.json", "analytics/report.html", "jobs/code.zip"]
    for key in [*noise, *(key for keys in sink_keys.values() for key in keys)]:
        s3.put_object(Bucket=settings.bucket, Key=key, Body=b"{}\n")
    stored = [item["Key"] for item in s3.list_objects_v2(Bucket=settings.bucket)["Contents"]]

    # On the cluster: the entry file splits its own arguments from the job's, the batch job parses the rest.
    entry, job_args = cluster_entry.parse_args(entry_arguments(facts, scenario))
    assert entry.job == "batch" and entry.code == f"s3a://{settings.bucket}/jobs/code.zip"
    args = batch.parse_args(job_args, settings)
    assert args.results == f"s3a://{settings.bucket}/analytics"
    for table in TABLES:
        pattern = glob_pattern(layout.input_glob(args.input, settings.topic(table), table), settings.bucket)
        assert {key for key in stored if pattern.match(key)} == sink_keys[table], table
