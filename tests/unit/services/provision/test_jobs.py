"""Provisioning step `job` (services/provision/jobs.py): the job package is reproducible and importable, and on the
aws target (moto's in-process S3 and EMR Serverless) provisioning uploads it, creates or reuses the application,
starts the streaming job run, and teardown removes what it created and nothing else.

The dependency archive is built for real with uv; the provisioning tests build it with one package
(pydantic-settings, which brings the compiled pydantic-core) instead of all four, to keep the archive small.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import boto3
import pytest

from orchestration import runners
from pipeline import layout
from pipeline.settings import Settings
from services.provision import jobs
from tests.unit.services.provision.test_provision_aws import REGION, aws_settings
from tests.unit.services.provision.test_provision_aws import aws_env as aws_env
from tests.unit.services.provision.test_provision_aws import clean_env as clean_env

SMALL_DEPS = ("pydantic-settings",)
# moto accepts only `emr-X.Y.0` release labels, not `emr-spark-8.0.0` (the default, checked by the dry-run test).
MOTO_RELEASE = "emr-7.12.0"
ROLE_ARN = "arn:aws:iam::123456789012:role/7e57c0de0001-batch-job"


def test_code_zip_is_reproducible(tmp_path: Path) -> None:
    first = jobs.build_code_zip(tmp_path / "a.zip")
    second = jobs.build_code_zip(tmp_path / "b.zip")
    assert jobs.sha256(first) == jobs.sha256(second)
    names = zipfile.ZipFile(first).namelist()
    assert {"pipeline/settings.py", "pipeline/layout.py", "spark_jobs/batch.py", "spark_jobs/stream.py"} <= set(names)
    assert all(name.endswith(".py") and "__pycache__" not in name for name in names)


def test_the_jobs_import_from_the_code_zip_alone(tmp_path: Path) -> None:
    """What the entry's addPyFile does on the cluster: the zip on the path, the checkout not."""
    package = jobs.build_code_zip(tmp_path / "code.zip")
    probe = (
        f"import sys; sys.path.insert(0, {str(package)!r}); "
        "import spark_jobs.batch, spark_jobs.stream, spark_jobs.cluster_entry; print(spark_jobs.batch.__file__)"
    )
    result = subprocess.run([sys.executable, "-I", "-c", probe], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(package))


def test_deps_archive_is_reproducible_and_built_for_the_runner_python(tmp_path: Path) -> None:
    settings = aws_settings(tmp_path, job_python_version="3.11")
    first = jobs.build_deps_archive(settings, tmp_path / "a.tar.gz", SMALL_DEPS)
    second = jobs.build_deps_archive(settings, tmp_path / "b.tar.gz", SMALL_DEPS)
    assert jobs.sha256(first) == jobs.sha256(second)
    with tarfile.open(first) as archive:
        members = archive.getmembers()
    names = {member.name for member in members}
    assert "pydantic_settings/__init__.py" in names
    # The compiled part is for the runner's CPython on x86_64 Linux, whatever this machine is.
    assert any(name.startswith("pydantic_core/_pydantic_core.cpython-311-x86_64-linux") for name in names), names
    assert {(member.mtime, member.uid, member.gid) for member in members} == {(0, 0, 0)}


def test_deps_come_pinned_from_the_lock(tmp_path: Path) -> None:
    command = jobs.deps_install_command(aws_settings(tmp_path), tmp_path, runners.JOB_PACKAGES)
    pins = [item for item in command if "==" in item]
    assert [pin.split("==")[0] for pin in pins] == list(runners.JOB_PACKAGES)
    assert command[command.index("--python-version") + 1] == "3.11"
    assert command[command.index("--only-binary") + 1] == ":all:"


def test_databricks_needs_no_dependency_archive(tmp_path: Path) -> None:
    assert jobs.package_files(aws_settings(tmp_path, batch_runner="databricks")) == ("entry.py", "code.zip")
    assert jobs.requires_job(aws_settings(tmp_path, batch_runner="databricks")) == [
        "DATABRICKS_CLUSTER_ID is not set: set it to the cluster that runs the jobs (BATCH_RUNNER=databricks)"
    ]


# --- on the account (moto) -------------------------------------------------------------------------------------
@pytest.fixture
def account(aws_env, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setattr(runners, "JOB_PACKAGES", SMALL_DEPS)
    settings = aws_settings(aws_env, emr_serverless_execution_role_arn=ROLE_ARN, emr_serverless_release=MOTO_RELEASE)
    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket=settings.bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    return settings


def our_applications(settings: Settings) -> list[dict]:
    emr = boto3.client("emr-serverless", region_name=REGION)
    return [
        emr.get_application(applicationId=app["id"])["application"]
        for app in emr.list_applications()["applications"]
        if app["name"] == settings.emr_serverless_application_name and app["state"] != "TERMINATED"
    ]


def job_objects(settings: Settings) -> dict[str, dict]:
    s3 = boto3.client("s3", region_name=REGION)
    listing = s3.list_objects_v2(Bucket=settings.bucket, Prefix=layout.job_key("")).get("Contents", [])
    return {item["Key"]: s3.head_object(Bucket=settings.bucket, Key=item["Key"]) for item in listing}


def test_dry_run_plans_without_touching_the_account(aws_env, account: Settings) -> None:
    lines = jobs.provision_job(aws_settings(aws_env), dry_run=True)
    assert "entry.py, code.zip, deps.tar.gz" in lines[0]
    assert "emr-spark-8.0.0" in lines[1]
    assert job_objects(account) == {} and our_applications(account) == []


def test_provision_uploads_the_package_and_creates_the_application_once(account: Settings) -> None:
    lines = jobs.provision_job(account, dry_run=False)
    objects = job_objects(account)
    assert set(objects) == {"jobs/entry.py", "jobs/code.zip", "jobs/deps.tar.gz"}
    built = jobs.build_package(account)
    for name, path in built.items():
        assert objects[layout.job_key(name)]["Metadata"]["sha256"] == jobs.sha256(path)
    (app,) = our_applications(account)
    assert (app["releaseLabel"], app["type"].upper()) == (MOTO_RELEASE, "SPARK")
    assert app["tags"] == account.resource_tags
    assert f"set EMR_SERVERLESS_APPLICATION_ID={app['applicationId']} in .env" in lines[-1]

    again = jobs.provision_job(account, dry_run=False)
    assert sum("unchanged" in line for line in again) == 3
    assert any("exists" in line for line in again)
    assert len(our_applications(account)) == 1


def test_the_streaming_job_starts_in_streaming_mode(account: Settings) -> None:
    jobs.provision_job(account, dry_run=False)
    (line,) = jobs.start_stream(account, dry_run=False)
    emr = boto3.client("emr-serverless", region_name=REGION)
    (app,) = our_applications(account)
    (run,) = emr.list_job_runs(applicationId=app["applicationId"])["jobRuns"]
    assert run["name"] == f"{account.pipeline_user_id}-stream" and run["id"] in line
    details = emr.get_job_run(applicationId=app["applicationId"], jobRunId=run["id"])["jobRun"]
    arguments = details["jobDriver"]["sparkSubmit"]["entryPointArguments"]
    assert arguments[-1] == "stream" and f"PIPELINE_USER_ID={account.pipeline_user_id}" in arguments
    assert details["jobDriver"]["sparkSubmit"]["entryPoint"] == f"s3://{account.bucket}/jobs/entry.py"


def test_teardown_deletes_the_package_and_only_our_application(account: Settings) -> None:
    jobs.provision_job(account, dry_run=False)
    emr = boto3.client("emr-serverless", region_name=REGION)
    # Same name, no project tags: not ours, so never deleted.
    stranger = emr.create_application(
        name="someone-elses-spark", releaseLabel=MOTO_RELEASE, type="SPARK", tags={"team": "other"}
    )["applicationId"]
    plan = jobs.deprovision_job(account, dry_run=True)
    assert plan[0] == f"would delete 3 object(s) under s3://{account.bucket}/jobs/"
    assert plan[1].startswith(f"would delete EMR Serverless application {account.emr_serverless_application_name}")
    assert len(job_objects(account)) == 3  # the dry run deleted nothing

    jobs.deprovision_job(account, dry_run=False)
    assert job_objects(account) == {} and our_applications(account) == []
    assert emr.get_application(applicationId=stranger)["application"]["state"] != "TERMINATED"
    assert jobs.deprovision_job(account, dry_run=True) == [f"no objects under s3://{account.bucket}/jobs/"]


def test_an_untagged_application_with_our_name_is_left_alone(account: Settings) -> None:
    emr = boto3.client("emr-serverless", region_name=REGION)
    emr.create_application(name=account.emr_serverless_application_name, releaseLabel=MOTO_RELEASE, type="SPARK")
    assert len(jobs.deprovision_job(account, dry_run=True)) == 1  # only the (empty) package line
