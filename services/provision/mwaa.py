"""`make deploy-dag` (`python -m services.provision.mwaa [--dry-run]`): the daily DAG on an MWAA environment.

Uploads to the environment's bucket (`MWAA_BUCKET`):
- `<MWAA_DAGS_PREFIX>/pinterest_dag.py`: the batch DAG (the local maintenance DAG stays home: on AWS the bucket's
  lifecycle rule and MWAA's log retention keep the bounds);
- `<MWAA_DAGS_PREFIX>/<package>/...`: every project module the DAG imports, found by following its imports
  (Airflow puts the DAGs folder on `sys.path`, so `pipeline` and `orchestration` import from there), and
  `requirements.lock`, from which `orchestration.runners` reads the jobs' pinned versions;
- `<MWAA_DAGS_PREFIX>/.env`: the settings the DAG reads (`pipeline.settings` reads the `.env` next to its
  packages), only those in `DAG_SETTINGS`: never a password or key;
- `MWAA_REQUIREMENTS_KEY`: the requirements MWAA installs, under the constraints of its Airflow version
  (MWAA requires a `--constraint` line since Airflow 2.7.2).

The dry run lists each upload with its size and changes nothing. Point the environment's DAGs folder and
requirements file at these keys once (console or `aws mwaa update-environment`); MWAA picks up DAG changes by itself
and requirement changes on the next environment update.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import boto3

from orchestration import runners
from pipeline.settings import REPO_ROOT, Settings, get_settings

DAG_FILE = REPO_ROOT / "airflow" / "dags" / "pinterest_dag.py"
PROJECT_PACKAGES = ("pipeline", "orchestration", "spark_jobs", "services", "emulator")
# What the DAG needs on MWAA; values left unset keep their defaults there.
DAG_SETTINGS = (
    *runners.CLUSTER_SETTINGS,
    "batch_runner",
    "emr_serverless_application_id",
    "emr_serverless_execution_role_arn",
    "databricks_conn_id",
    "databricks_cluster_id",
    "airflow_retries",
    "airflow_retry_delay_seconds",
    "airflow_sensor_timeout_seconds",
    "airflow_sensor_poke_seconds",
)
MWAA_PROVIDERS = ("apache-airflow-providers-amazon", "apache-airflow-providers-databricks", "pydantic-settings")
CONSTRAINTS_URL = "https://raw.githubusercontent.com/apache/airflow/constraints-{airflow}/constraints-{python}.txt"


def _module_file(name: str) -> Path | None:
    """The file of project module `name` (a package's __init__), None outside the project."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = REPO_ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path) -> set[str]:
    """Every module `path` imports (at module level or inside functions), with each parent package."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {".".join(name.split(".")[:depth]) for name in names for depth in range(1, name.count(".") + 2)}


def dag_modules(dag_file: Path = DAG_FILE) -> list[Path]:
    """The project modules the DAG needs, following imports from `dag_file`, sorted."""
    seen: set[Path] = set()
    pending = [dag_file]
    while pending:
        for name in _imported_names(pending.pop()):
            module = _module_file(name)
            if module and module not in seen:
                seen.add(module)
                pending.append(module)
    return sorted(seen)


def dag_env(settings: Settings, found: dict[str, str | None] | None = None) -> str:
    """The `.env` the DAG reads on MWAA: `DAG_SETTINGS` that have a value (from settings, else `found` in the
    account), one `NAME=value` a line."""
    values = {name: getattr(settings, name) or (found or {}).get(name) for name in DAG_SETTINGS}
    return "".join(f"{name.upper()}={value}\n" for name, value in values.items() if value not in (None, ""))


def requirements_txt(settings: Settings) -> str:
    constraint = CONSTRAINTS_URL.format(airflow=settings.mwaa_airflow_version, python=settings.mwaa_python_version)
    return "\n".join([f'--constraint "{constraint}"', *MWAA_PROVIDERS]) + "\n"


def uploads(settings: Settings, found: dict[str, str | None] | None = None) -> dict[str, bytes]:
    """Key in MWAA_BUCKET -> content, for everything `make deploy-dag` uploads."""
    prefix = settings.mwaa_dags_prefix.strip("/")
    files = {f"{prefix}/{DAG_FILE.name}": DAG_FILE.read_bytes()}
    files |= {f"{prefix}/{path.relative_to(REPO_ROOT).as_posix()}": path.read_bytes() for path in dag_modules()}
    files[f"{prefix}/{runners.REQUIREMENTS_LOCK.name}"] = runners.REQUIREMENTS_LOCK.read_bytes()
    files[f"{prefix}/.env"] = dag_env(settings, found).encode()
    files[settings.mwaa_requirements_key] = requirements_txt(settings).encode()
    return files


def requires_mwaa(settings: Settings) -> list[str]:
    problems = []
    if not settings.mwaa_bucket:
        problems.append("MWAA_BUCKET is not set: set it to the MWAA environment's bucket (its source bucket)")
    if settings.pipeline_target != "aws":
        problems.append("PIPELINE_TARGET is not aws: the DAG on MWAA runs the aws target (set PIPELINE_TARGET=aws)")
    return problems


def found_in_account(settings: Settings) -> dict[str, str | None]:
    """What provisioning created that .env may not name yet: the EMR Serverless application and the job role."""
    if settings.batch_runner != "emr-serverless":
        return {}
    from services.provision.jobs import execution_role_arn, find_application

    client = boto3.client("emr-serverless", **settings.boto3_client_kwargs("emr-serverless"))
    app = None if settings.emr_serverless_application_id else find_application(settings, client)
    return {
        "emr_serverless_application_id": app["id"] if app else None,
        "emr_serverless_execution_role_arn": execution_role_arn(settings),
    }


def deploy_dag(settings: Settings, dry_run: bool) -> list[str]:
    if problems := requires_mwaa(settings):
        raise SystemExit("cannot deploy the DAG:\n" + "\n".join(f"  {line}" for line in problems))
    files = uploads(settings, None if dry_run else found_in_account(settings))
    bucket = settings.mwaa_bucket
    if dry_run:
        return [f"would upload s3://{bucket}/{key} ({len(body):,} bytes)" for key, body in files.items()]
    client = boto3.client("s3", **settings.boto3_client_kwargs("s3"))
    for key, body in files.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    return [f"uploaded {len(files)} files to s3://{bucket}/ (DAGs under {settings.mwaa_dags_prefix.strip('/')}/)"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.provision.mwaa", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="list the uploads, change nothing")
    args = parser.parse_args(argv)
    for line in deploy_dag(get_settings(), args.dry_run):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
