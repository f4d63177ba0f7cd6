"""Provisioning step `job`: the Spark jobs' package for the aws runners, uploaded to the bucket, and the EMR
Serverless application that runs it.

    python -m services.provision.jobs --build [--out DIR]        # build the package only (default .state/jobs)
    python -m services.provision.jobs --start-stream [--dry-run] # start the streaming job on BATCH_RUNNER

The package (under `jobs/` in the bucket, `pipeline.layout.job_key`), started by `orchestration.runners`' requests:
- `entry.py`: spark_jobs/cluster_entry.py, the file the runner starts;
- `code.zip`: the `pipeline` and `spark_jobs` packages, which the entry adds to the Spark session;
- `deps.tar.gz` (EMR Serverless): the jobs' third-party packages (`runners.JOB_PACKAGES` at requirements.lock's
  versions) installed by uv for CPython `JOB_PYTHON_VERSION` on x86_64 Linux (manylinux wheels only), unpacked by
  the runner (`spark.archives`) onto the driver's and executors' PYTHONPATH. Databricks installs them from PyPI
  instead (`runners.databricks_libraries`).

Reproducible: the same sources and lock give the same bytes (sorted entries, fixed timestamps and owners, gzip
without a timestamp), so a re-run compares each file's SHA-256 (kept as object metadata) and uploads nothing that
did not change. The archives are written here with zipfile/tarfile rather than a packaging tool because the
runners want a plain zip on the Python path and a tarball to unpack, not an installable wheel.

EMR Serverless: the application `<id>-spark` (`settings.emr_serverless_application_name`) is created with
`EMR_SERVERLESS_RELEASE` on x86_64 (the dependencies' platform), stopping itself when idle, tagged with the
project's tags; an existing one with that name is reused. Teardown deletes only an application with that name and
the project's tags, and the objects under `jobs/`.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

import boto3

from orchestration import runners
from pipeline import layout
from pipeline.settings import REPO_ROOT, Settings, get_settings

CODE_PACKAGES = ("pipeline", "spark_jobs")
ENTRY_SOURCE = REPO_ROOT / "spark_jobs" / "cluster_entry.py"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the oldest time a zip entry can hold
DEPS_PLATFORM = "x86_64-manylinux_2_28"  # EMR Serverless x86_64 runs Amazon Linux 2023 (glibc 2.34)
EMR_ARCHITECTURE = "X86_64"
EMR_IDLE_MINUTES = 15
EMR_MAXIMUM_CAPACITY = {"cpu": "16 vCPU", "memory": "64 GB"}
# A rough size of one daily batch run, for the cost line (driver + 1 executor of 4 vCPU / 16 GB, 15 minutes).
RUN_VCPUS, RUN_MEMORY_GB, RUN_HOURS, RUNS_PER_MONTH = 8, 32, 0.25, 30
SHA_METADATA = "sha256"
GONE_STATES = ("TERMINATED",)


# --- building ----------------------------------------------------------------------------------------------------
def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_files(root: Path = REPO_ROOT) -> list[tuple[str, Path]]:
    """(name in the zip, file) of every module of the packages the jobs import, sorted."""
    return sorted(
        (path.relative_to(root).as_posix(), path)
        for package in CODE_PACKAGES
        for path in (root / package).rglob("*.py")
        if "__pycache__" not in path.parts
    )


def build_code_zip(target: Path, root: Path = REPO_ROOT) -> Path:
    """The project's code as a zip for the Python path, byte-identical for identical sources."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in code_files(root):
            entry = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, path.read_bytes())
    return target


def uv_command() -> str:
    """The uv next to this interpreter (the project venv has it), else the one on PATH."""
    local = Path(sys.executable).with_name("uv")
    found = str(local) if local.exists() else shutil.which("uv")
    if not found:
        raise SystemExit("uv not found: run `make setup` (it installs uv into the project venv)")
    return found


def deps_install_command(settings: Settings, folder: Path, packages: tuple[str, ...]) -> list[str]:
    """uv's install of `packages` (pinned by requirements.lock) for the runner's Python and platform into `folder`."""
    return [
        uv_command(),
        "pip",
        "install",
        "--quiet",
        "--target",
        str(folder),
        "--python-platform",
        DEPS_PLATFORM,
        "--python-version",
        settings.job_python_version,
        "--only-binary",
        ":all:",
        *runners.locked_requirements(packages),
    ]


def _reset_owner_and_time(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def build_deps_archive(settings: Settings, target: Path, packages: tuple[str, ...] | None = None) -> Path:
    """The jobs' third-party packages as a tar.gz the runner unpacks (spark.archives), byte-identical per lock."""
    with tempfile.TemporaryDirectory(prefix="job-deps-") as scratch:
        folder = Path(scratch) / "site"
        command = deps_install_command(settings, folder, packages or runners.JOB_PACKAGES)
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"building the job's dependencies failed ({' '.join(command)}):\n{result.stderr[-2000:]}")
        with (
            target.open("wb") as raw,
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0, compresslevel=6) as zipped,
            tarfile.open(fileobj=zipped, mode="w") as archive,
        ):
            for path in sorted(folder.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    archive.add(path, arcname=path.relative_to(folder).as_posix(), filter=_reset_owner_and_time)
    return target


def package_files(settings: Settings) -> tuple[str, ...]:
    """The package's file names for the configured runner (Databricks installs the dependencies from PyPI)."""
    files = (runners.ENTRY_FILE, runners.CODE_ZIP)
    return (*files, runners.DEPS_ARCHIVE) if settings.batch_runner == "emr-serverless" else files


def build_package(settings: Settings, out: Path | None = None) -> dict[str, Path]:
    """Build the package for the configured runner into `out` (default `<state>/jobs`); name -> file."""
    out = out or settings.state_dir / "jobs"
    out.mkdir(parents=True, exist_ok=True)
    builders = {
        runners.ENTRY_FILE: lambda target: Path(shutil.copyfile(ENTRY_SOURCE, target)),
        runners.CODE_ZIP: build_code_zip,
        runners.DEPS_ARCHIVE: lambda target: build_deps_archive(settings, target),
    }
    return {name: builders[name](out / name) for name in package_files(settings)}


# --- uploading ---------------------------------------------------------------------------------------------------
def _client(settings: Settings, service: str):
    return boto3.client(service, **settings.boto3_client_kwargs(service))


def _stored_sha(client, bucket: str, key: str) -> str | None:
    try:
        return client.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get(SHA_METADATA)
    except client.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def upload_package(settings: Settings, files: dict[str, Path], client=None) -> list[str]:
    """Upload each file unless the bucket holds the same bytes already (same SHA-256)."""
    client = client or _client(settings, "s3")
    lines = []
    for name, path in files.items():
        key, digest = layout.job_key(name), sha256(path)
        where = f"s3://{settings.bucket}/{key}"
        if _stored_sha(client, settings.bucket, key) == digest:
            lines.append(f"{where} unchanged (sha256 {digest[:12]})")
            continue
        client.upload_file(str(path), settings.bucket, key, ExtraArgs={"Metadata": {SHA_METADATA: digest}})
        lines.append(f"uploaded {where} ({path.stat().st_size / 1e6:.1f} MB, sha256 {digest[:12]})")
    return lines


# --- the EMR Serverless application ------------------------------------------------------------------------------
def find_application(settings: Settings, client) -> dict | None:
    """The application named `settings.emr_serverless_application_name` that still exists, if any."""
    for page in client.get_paginator("list_applications").paginate():
        for app in page.get("applications", []):
            if app["name"] == settings.emr_serverless_application_name and app["state"] not in GONE_STATES:
                return app
    return None


def create_application_request(settings: Settings) -> dict:
    return {
        "name": settings.emr_serverless_application_name,
        "releaseLabel": settings.emr_serverless_release,
        "type": "SPARK",
        "architecture": EMR_ARCHITECTURE,
        "autoStartConfiguration": {"enabled": True},
        "autoStopConfiguration": {"enabled": True, "idleTimeoutMinutes": EMR_IDLE_MINUTES},
        "maximumCapacity": EMR_MAXIMUM_CAPACITY,
        "tags": settings.resource_tags,
    }


def ensure_application(settings: Settings, client=None) -> tuple[str, str]:
    """(application id, what was done): reuse the application with our name, else create it."""
    client = client or _client(settings, "emr-serverless")
    name, release = settings.emr_serverless_application_name, settings.emr_serverless_release
    app = find_application(settings, client)
    if app is None:
        app_id = client.create_application(**create_application_request(settings))["applicationId"]
        return app_id, f"created EMR Serverless application {name} ({app_id}, {release})"
    line = f"EMR Serverless application {name} ({app['id']}) exists"
    if app.get("releaseLabel") != release:
        line += f"; its release is {app.get('releaseLabel')}, not EMR_SERVERLESS_RELEASE={release} (not changed)"
    return app["id"], line


def job_role_name(settings: Settings) -> str:
    """The EMR Serverless job role services/provision/iam.py creates (`settings.iam_name("emr-job")` there)."""
    return f"{settings.pipeline_user_id}-emr-job"


def execution_role_arn(settings: Settings) -> str | None:
    """EMR_SERVERLESS_EXECUTION_ROLE_ARN, else the ARN of the job role provisioning created, if it exists."""
    if settings.emr_serverless_execution_role_arn:
        return settings.emr_serverless_execution_role_arn
    iam = _client(settings, "iam")
    try:
        return iam.get_role(RoleName=job_role_name(settings))["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        return None


# --- the step ----------------------------------------------------------------------------------------------------
def provision_job(settings: Settings, dry_run: bool) -> list[str]:
    """Build and upload the job package; on EMR Serverless, create or reuse the application."""
    if settings.pipeline_target != "aws":
        return ["the job package is for the aws runners (PIPELINE_TARGET=aws); locally the DAG runs spark-submit"]
    runner = settings.batch_runner
    names = ", ".join(package_files(settings))
    if dry_run:
        lines = [f"would build the job package ({names}) and upload what changed to s3://{settings.bucket}/jobs/"]
        if runner == "emr-serverless":
            lines.append(
                f"would create EMR Serverless application {settings.emr_serverless_application_name} "
                f"({settings.emr_serverless_release}, {EMR_ARCHITECTURE}, stops after {EMR_IDLE_MINUTES} idle "
                "minutes) unless it exists"
            )
        return lines
    lines = upload_package(settings, build_package(settings))
    if runner == "emr-serverless":
        app_id, line = ensure_application(settings)
        lines.append(line)
        if settings.emr_serverless_application_id != app_id:
            lines.append(f"set EMR_SERVERLESS_APPLICATION_ID={app_id} in .env (the DAG submits the batch job to it)")
        role = execution_role_arn(settings)
        if not role:
            lines.append(
                f"no job role: create {job_role_name(settings)} (the iam step) or set EMR_SERVERLESS_EXECUTION_ROLE_ARN"
            )
        elif role != settings.emr_serverless_execution_role_arn:
            lines.append(f"set EMR_SERVERLESS_EXECUTION_ROLE_ARN={role} in .env (the job runs with it)")
    else:
        lines.append(f"Databricks runs {runners.package_uri(settings, runners.ENTRY_FILE)} on DATABRICKS_CLUSTER_ID")
    return lines


def _owned_application(settings: Settings, client) -> dict | None:
    """Our application: our name AND the project's tags (teardown never touches anything else)."""
    app = find_application(settings, client)
    if app is None:
        return None
    tags = client.get_application(applicationId=app["id"])["application"].get("tags", {})
    return app if all(tags.get(key) == value for key, value in settings.resource_tags.items()) else None


def deprovision_job(settings: Settings, dry_run: bool) -> list[str]:
    """Delete the uploaded package (everything under `jobs/`, run logs included) and our EMR Serverless application."""
    if settings.pipeline_target != "aws":
        return []
    s3 = _client(settings, "s3")
    try:
        keys = [
            item["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=layout.job_key(""))
            for item in page.get("Contents", [])
        ]
    except s3.exceptions.NoSuchBucket:
        keys = []  # torn down already (the bucket step deletes it last): the package went with it
    emr = _client(settings, "emr-serverless")
    app = _owned_application(settings, emr)
    verb = "would delete" if dry_run else "deleted"
    where = f"s3://{settings.bucket}/{layout.job_key('')}"
    lines = [f"{verb} {len(keys)} object(s) under {where}" if keys else f"no objects under {where}"]
    if app:
        lines.append(f"{verb} EMR Serverless application {app['name']} ({app['id']})")
    if dry_run:
        return lines
    for start in range(0, len(keys), 1000):
        batch = [{"Key": key} for key in keys[start : start + 1000]]
        s3.delete_objects(Bucket=settings.bucket, Delete={"Objects": batch, "Quiet": True})
    if app:
        stop_application(emr, app["id"])
        emr.delete_application(applicationId=app["id"])
    return lines


def stop_application(client, app_id: str, timeout_s: float = 600) -> None:
    """Stop the application and wait until it is (deletion needs CREATED or STOPPED; botocore has no waiter)."""
    if client.get_application(applicationId=app_id)["application"]["state"] in ("CREATED", "STOPPED"):
        return
    client.stop_application(applicationId=app_id)
    deadline = time.monotonic() + timeout_s
    while (state := client.get_application(applicationId=app_id)["application"]["state"]) != "STOPPED":
        if time.monotonic() > deadline:
            raise SystemExit(f"EMR Serverless application {app_id} still {state} after {timeout_s:.0f} s; retry later")
        time.sleep(5)


def requires_job(settings: Settings) -> list[str]:
    """Settings the job step needs on the aws target (no AWS call)."""
    if settings.batch_runner == "databricks" and not settings.databricks_cluster_id:
        return ["DATABRICKS_CLUSTER_ID is not set: set it to the cluster that runs the jobs (BATCH_RUNNER=databricks)"]
    return []


def costs_job(settings: Settings) -> list[str]:
    """What running the jobs costs (services/provision/costs.py holds the prices)."""
    from services.provision import costs

    if settings.batch_runner == "databricks":
        return ["Databricks: DBUs and instances of DATABRICKS_CLUSTER_ID (yours, not created here) while it runs"]
    return costs.emr_serverless(RUN_VCPUS, RUN_MEMORY_GB, RUN_HOURS, RUNS_PER_MONTH)


# --- the streaming job -------------------------------------------------------------------------------------------
def start_stream(settings: Settings, dry_run: bool) -> list[str]:
    """Start the streaming job on the runner: an EMR Serverless job run in STREAMING mode, or print the Databricks
    runs/submit request (`databricks jobs submit --json @file`)."""
    if settings.batch_runner == "databricks":
        return [json.dumps(runners.databricks_submit_run(settings, "stream"), indent=2)]
    emr = _client(settings, "emr-serverless")
    app = None if settings.emr_serverless_application_id else find_application(settings, emr)
    app_id = settings.emr_serverless_application_id or (app or {}).get("id")
    if not app_id:
        raise SystemExit("no EMR Serverless application: run `make provision` first (it creates it)")
    request = runners.emr_serverless_job_run(settings, "stream", app_id)
    if dry_run:
        return [f"would start job run {request['name']} ({request['mode']}) on {app_id}"]
    run = emr.start_job_run(**request)
    return [f"started {request['name']} ({request['mode']}): job run {run['jobRunId']} on {app_id}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.provision.jobs", description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--build", action="store_true", help="build the job package (no AWS call)")
    action.add_argument("--start-stream", action="store_true", help="start the streaming job on BATCH_RUNNER")
    parser.add_argument("--out", type=Path, default=None, help="where --build writes (default .state/jobs)")
    parser.add_argument("--dry-run", action="store_true", help="with --start-stream: print, start nothing")
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.build:
        for name, path in build_package(settings, args.out).items():
            print(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB, sha256 {sha256(path)[:12]})")
    else:
        print("\n".join(start_stream(settings, args.dry_run)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
