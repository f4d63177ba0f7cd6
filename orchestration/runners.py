"""What the aws target sends to its Spark runner: the EMR Serverless job run and the Databricks one-time run.

The DAG's `run_batch_job` task (airflow/dags/pinterest_dag.py) passes these to the Amazon provider's
`EmrServerlessStartJobOperator` or the Databricks provider's `DatabricksSubmitRunOperator`; provisioning
(services/provision/jobs.py) builds the same requests to start the streaming job. Nothing here imports Airflow or
boto3, so the requests are tested against botocore's service model and the provider's own request building.

Both runners start the job package that `make provision` uploaded under `jobs/` in the bucket
(`pipeline.layout.job_key`): the entry file (spark_jobs/cluster_entry.py) adds the project's code zip to the session,
sets the settings the job reads from `--setting NAME=VALUE`, and runs `batch` or `stream` with the job's own
arguments. The batch job's `--input`/`--results` come from `pipeline.layout.batch_job_arguments`, the same function
the job's defaults use, so the DAG and the job cannot disagree on where the data is.

Runtime pins: EMR Serverless `emr-spark-8.0.0` has Spark 4.0.2 and Delta 4.0.0 (docs: "AWS runtime for Apache Spark
(emr-spark-8.0.0)"); its Delta jars are on the image under /usr/share/aws/delta/lib ("Using Delta Lake OSS with EMR
Serverless"), so no Maven download is needed; S3A is EMR's S3 connector since 7.10.0, so `s3a://` paths work as
they do locally. tests/unit/spark_jobs/test_runtime_pins.py keeps the job code within what that release offers.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from orchestration.tasks import BATCH_JOB_TIMEOUT
from pipeline import layout
from pipeline.settings import REPO_ROOT, Settings

ENTRY_FILE = "entry.py"
CODE_ZIP = "code.zip"
DEPS_ARCHIVE = "deps.tar.gz"
DEPS_FOLDER = "deps"  # where the runner unpacks DEPS_ARCHIVE (spark.archives `#deps`)
LOGS_DIR = "logs"
JOBS = ("batch", "stream")
# What the release in EMR_SERVERLESS_RELEASE offers (see the module docstring).
EMR_SERVERLESS_RELEASE = "emr-spark-8.0.0"
EMR_SPARK_VERSION = "4.0.2"
EMR_DELTA_VERSION = "4.0.0"
EMR_DELTA_JARS = ("/usr/share/aws/delta/lib/delta-spark.jar", "/usr/share/aws/delta/lib/delta-storage.jar")
DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
# What the jobs import beyond pyspark and the standard library; their versions come from requirements.lock.
JOB_PACKAGES = ("pydantic-settings", "pandas", "matplotlib", "boto3")
# Databricks Runtime ships these (pandas, matplotlib, boto3); only the rest is installed from PyPI there.
DATABRICKS_PACKAGES = ("pydantic-settings",)
REQUIREMENTS_LOCK = REPO_ROOT / "requirements.lock"
# How often the EMR Serverless operator asks whether the run finished (it waits up to the batch job's timeout).
EMR_WAITER_DELAY_SECONDS = 60
# The settings a job reads on the cluster (the rest keep their defaults there); passed as `--setting NAME=VALUE`.
CLUSTER_SETTINGS = ("pipeline_target", "pipeline_user_id", "aws_region", "stream_max_bytes_per_shard_per_batch")


def package_uri(settings: Settings, name: str, scheme: str = "s3") -> str:
    """Where one file of the uploaded job package is: `s3://` for the runners' own fields, `s3a://` for Spark."""
    return f"{scheme}://{settings.bucket}/{layout.job_key(name)}"


def job_arguments(settings: Settings, job: str) -> list[str]:
    """The entry file's arguments: the code zip, the settings, the job and the job's own arguments."""
    if job not in JOBS:
        raise ValueError(f"unknown job {job!r}; expected one of {', '.join(JOBS)}")
    pairs = [f"{name.upper()}={getattr(settings, name)}" for name in CLUSTER_SETTINGS]
    own = layout.batch_job_arguments(settings.bucket_uri) if job == "batch" else []
    return [
        "--code",
        package_uri(settings, CODE_ZIP, "s3a"),
        *(item for pair in pairs for item in ("--setting", pair)),
        job,
        *own,
    ]


def run_name(settings: Settings, job: str) -> str:
    return f"{settings.dag_id}-{job}-{{{{ ds }}}}" if job == "batch" else f"{settings.pipeline_user_id}-{job}"


def locked_requirements(names: tuple[str, ...], lock: Path = REQUIREMENTS_LOCK) -> list[str]:
    """`name==version` of each of `names` as requirements.lock pins it (the versions the tests ran with)."""
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", lock.read_text(), flags=re.MULTILINE))
    pins = {name.lower().replace("_", "-"): version for name, version in pins.items()}
    missing = [name for name in names if name not in pins]
    if missing:
        raise ValueError(f"{lock} pins no version of {', '.join(missing)}: regenerate it (command at its top)")
    return [f"{name}=={pins[name]}" for name in names]


# --- EMR Serverless ----------------------------------------------------------------------------------------------
def emr_spark_submit_parameters(settings: Settings) -> str:
    """The job's `--conf`s: the packaged dependencies on the driver's and executors' path, the release's Delta."""
    deps = f"./{DEPS_FOLDER}"
    conf = {
        "spark.archives": f"{package_uri(settings, DEPS_ARCHIVE)}#{DEPS_FOLDER}",
        "spark.emr-serverless.driverEnv.PYTHONPATH": deps,
        "spark.executorEnv.PYTHONPATH": deps,
        "spark.jars": ",".join(EMR_DELTA_JARS),
        **DELTA_CONF,
    }
    return " ".join(f"--conf {key}={value}" for key, value in conf.items())


def emr_serverless_job_run(settings: Settings, job: str, application_id: str | None = None) -> dict[str, Any]:
    """StartJobRun's request (boto3 names) for `job`; the batch job's name holds the `{{ ds }}` template."""
    application_id = application_id or settings.emr_serverless_application_id
    missing = [
        variable
        for variable, value in (
            ("EMR_SERVERLESS_APPLICATION_ID", application_id),
            ("EMR_SERVERLESS_EXECUTION_ROLE_ARN", settings.emr_serverless_execution_role_arn),
        )
        if not value
    ]
    if missing:
        raise ValueError(
            f"BATCH_RUNNER=emr-serverless: set {' and '.join(missing)} in .env (`make provision` prints both)"
        )
    return {
        "applicationId": application_id,
        "executionRoleArn": settings.emr_serverless_execution_role_arn,
        "name": run_name(settings, job),
        "mode": "BATCH" if job == "batch" else "STREAMING",
        "jobDriver": {
            "sparkSubmit": {
                "entryPoint": package_uri(settings, ENTRY_FILE),
                "entryPointArguments": job_arguments(settings, job),
                "sparkSubmitParameters": emr_spark_submit_parameters(settings),
            }
        },
        "configurationOverrides": {
            "monitoringConfiguration": {
                "s3MonitoringConfiguration": {"logUri": f"s3://{settings.bucket}/{layout.job_key(LOGS_DIR)}/"}
            }
        },
        "tags": {**settings.resource_tags, "job": job},
    }


def emr_serverless_operator_kwargs(settings: Settings) -> dict[str, Any]:
    """EmrServerlessStartJobOperator's arguments for the batch job: the same request, in the operator's names."""
    request = emr_serverless_job_run(settings, "batch")
    return {
        "region_name": settings.aws_region,
        "application_id": request["applicationId"],
        "execution_role_arn": request["executionRoleArn"],
        "name": request["name"],
        "job_driver": request["jobDriver"],
        "configuration_overrides": request["configurationOverrides"],
        "config": {"mode": request["mode"], "tags": request["tags"]},
        "waiter_delay": EMR_WAITER_DELAY_SECONDS,
        "waiter_max_attempts": int(BATCH_JOB_TIMEOUT.total_seconds() // EMR_WAITER_DELAY_SECONDS),
    }


# --- Databricks --------------------------------------------------------------------------------------------------
def databricks_libraries() -> list[dict[str, Any]]:
    """The job's third-party packages Databricks Runtime lacks, pinned, installed by Databricks from PyPI."""
    return [{"pypi": {"package": requirement}} for requirement in locked_requirements(DATABRICKS_PACKAGES)]


def databricks_submit_run(settings: Settings, job: str) -> dict[str, Any]:
    """The one-time run (Jobs API runs/submit, one task) of the uploaded entry file on `DATABRICKS_CLUSTER_ID`."""
    if not settings.databricks_cluster_id:
        raise ValueError("BATCH_RUNNER=databricks: set DATABRICKS_CLUSTER_ID in .env (the cluster that runs the job)")
    return {
        "run_name": run_name(settings, job),
        "tasks": [
            {
                "task_key": f"{job}_job",
                "existing_cluster_id": settings.databricks_cluster_id,
                "spark_python_task": {
                    "python_file": package_uri(settings, ENTRY_FILE),
                    "parameters": job_arguments(settings, job),
                },
                "libraries": databricks_libraries(),
            }
        ],
    }


def databricks_operator_kwargs(settings: Settings) -> dict[str, Any]:
    """DatabricksSubmitRunOperator's arguments for the batch job."""
    return {"databricks_conn_id": settings.databricks_conn_id, **databricks_submit_run(settings, "batch")}
