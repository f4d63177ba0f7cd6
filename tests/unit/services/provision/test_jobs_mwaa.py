"""`make deploy-dag` (services/provision/mwaa.py): in moto's S3, the MWAA bucket receives the DAG, the project
modules it imports, its settings (no secrets) and the requirements; the uploaded DAGs folder alone, read by the
Airflow version MWAA runs (3.0.6), yields the daily DAG with the EMR Serverless run and no import error.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import boto3
import pytest

from services.provision import jobs, mwaa
from tests.unit.airflow.test_dag_on_mwaa import MWAA_PYTHON
from tests.unit.services.provision.test_provision_aws import REGION, USER_ID, aws_settings
from tests.unit.services.provision.test_provision_aws import aws_env as aws_env
from tests.unit.services.provision.test_provision_aws import clean_env as clean_env

MWAA_BUCKET = "airflow-7e57c0de0001-env"
SETTINGS = {
    "mwaa_bucket": MWAA_BUCKET,
    "emr_serverless_application_id": "00fabcdef1234567",
    "emr_serverless_execution_role_arn": "arn:aws:iam::123456789012:role/7e57c0de0001-batch-job",
    "mysql_password": "do-not-upload",
    "aws_access_key_id": "AKIADONOTUPLOAD",
    "aws_secret_access_key": "do-not-upload-either",
}
PROBE = """
import json, sys
try:
    from airflow.dag_processing.dagbag import DagBag
except ModuleNotFoundError:
    from airflow.models.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1], include_examples=False)
dag = next(iter(bag.dags.values()), None)
print("PROBE " + json.dumps({
    "errors": {str(k): v for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dags),
    "operator": type(dag.get_task("run_batch_job")).__name__ if dag else None,
}))
"""


@pytest.fixture
def mwaa_bucket(aws_env) -> str:
    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket=MWAA_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    return MWAA_BUCKET


def stored(bucket: str) -> dict[str, bytes]:
    s3 = boto3.client("s3", region_name=REGION)
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def test_the_dry_run_lists_every_upload_and_uploads_nothing(aws_env, mwaa_bucket: str) -> None:
    settings = aws_settings(aws_env, **SETTINGS)
    lines = mwaa.deploy_dag(settings, dry_run=True)
    assert len(lines) == len(mwaa.uploads(settings))
    for key in ("dags/pinterest_dag.py", "dags/pipeline/settings.py", "dags/orchestration/runners.py", "dags/.env"):
        assert any(line.startswith(f"would upload s3://{mwaa_bucket}/{key} (") for line in lines), key
    assert stored(mwaa_bucket) == {}


def test_deploy_uploads_the_dag_its_modules_settings_and_requirements(aws_env, mwaa_bucket: str) -> None:
    settings = aws_settings(aws_env, **SETTINGS)
    mwaa.deploy_dag(settings, dry_run=False)
    files = stored(mwaa_bucket)
    assert "dags/maintenance_dag.py" not in files
    assert {"dags/pipeline/layout.py", "dags/orchestration/tasks.py", "dags/requirements.lock"} <= set(files)
    env = files["dags/.env"].decode()
    assert f"PIPELINE_USER_ID={USER_ID}\n" in env and "BATCH_RUNNER=emr-serverless\n" in env
    assert "do-not-upload" not in env and "AKIA" not in env
    requirements = files["requirements.txt"].decode().splitlines()
    assert requirements[0] == (
        '--constraint "https://raw.githubusercontent.com/apache/airflow/constraints-3.0.6/constraints-3.12.txt"'
    )
    assert "apache-airflow-providers-databricks" in requirements


def test_deploy_refuses_without_the_mwaa_bucket(aws_env) -> None:
    with pytest.raises(SystemExit, match="MWAA_BUCKET is not set"):
        mwaa.deploy_dag(aws_settings(aws_env), dry_run=True)


def test_the_uploaded_dags_folder_alone_parses_on_mwaa_s_airflow(aws_env, mwaa_bucket: str, tmp_path: Path) -> None:
    setup = subprocess.run(["bash", "services/airflow/mwaa_venv.sh"], capture_output=True, text=True)
    assert setup.returncode == 0, setup.stderr
    mwaa.deploy_dag(aws_settings(aws_env, **SETTINGS), dry_run=False)
    dags = tmp_path / "mwaa" / "dags"
    for key, body in stored(mwaa_bucket).items():
        if key.startswith("dags/"):
            (dags / key.removeprefix("dags/")).parent.mkdir(parents=True, exist_ok=True)
            (dags / key.removeprefix("dags/")).write_bytes(body)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "AIRFLOW", "EMR_", "BATCH_"))}
    env |= {"AIRFLOW_HOME": str(tmp_path / "home"), "PYTHONPATH": str(dags)}  # as MWAA: the DAGs folder on the path
    result = subprocess.run(
        [str(MWAA_PYTHON), "-c", PROBE, str(dags)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("PROBE ")]
    assert lines, result.stderr[-3000:]
    facts = json.loads(lines[-1].removeprefix("PROBE "))
    assert facts == {"errors": {}, "dags": [f"{USER_ID}_dag"], "operator": "EmrServerlessStartJobOperator"}


def test_deploy_names_the_application_and_role_provisioning_created(aws_env, mwaa_bucket: str) -> None:
    """.env without EMR_SERVERLESS_*: the DAG's settings name what provisioning made (found by name)."""
    settings = aws_settings(aws_env, mwaa_bucket=MWAA_BUCKET, emr_serverless_release="emr-7.12.0")
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(RoleName=jobs.job_role_name(settings), AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    app_id, _ = jobs.ensure_application(settings)
    mwaa.deploy_dag(settings, dry_run=False)
    env = stored(mwaa_bucket)["dags/.env"].decode()
    assert f"EMR_SERVERLESS_APPLICATION_ID={app_id}\n" in env
    assert f"EMR_SERVERLESS_EXECUTION_ROLE_ARN={role}\n" in env
