"""A Spark standalone cluster, one master and one worker, run by Spark's own launcher (`spark-class`) from the
project venv's pyspark distribution: the cluster Docker mode submits the batch job to (`SPARK_MASTER`), the way a
job reaches EMR or Databricks. Native mode runs jobs in `local[*]` and starts the cluster only on demand
(`python -m services.runner up --only spark-master spark-worker`).

Ready means the master's JSON status page answers and, for the worker, lists it as ALIVE with its cores.
"""

from __future__ import annotations

import httpx

from pipeline.settings import REPO_ROOT, Settings
from services.contract import NotReady, Service


def master_url(settings: Settings) -> str:
    return f"spark://{settings.bind_host}:{settings.spark_master_port}"


def _status(settings: Settings) -> dict:
    url = f"http://127.0.0.1:{settings.spark_master_ui_port}/json/"
    try:
        response = httpx.get(url, timeout=5)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as error:
        raise NotReady(f"GET {url} failed: {error}") from error


def master_ready(settings: Settings) -> None:
    status = _status(settings)
    if status.get("status") != "ALIVE":
        raise NotReady(f"the master's status is {status.get('status')}")


def worker_ready(settings: Settings) -> None:
    workers = [w for w in _status(settings).get("workers", []) if w.get("state") == "ALIVE"]
    if not any(w.get("webuiaddress", "").endswith(f":{settings.spark_worker_ui_port}") for w in workers):
        raise NotReady(f"no ALIVE worker with web UI port {settings.spark_worker_ui_port} at {master_url(settings)}")


def _spark_class(settings: Settings) -> str:
    return str(settings.tools_dir / "venv" / "bin" / "spark-class")


def services(settings: Settings) -> list[Service]:
    env = {"SPARK_LOCAL_IP": settings.bind_host, "SPARK_LOG_DIR": str(settings.log_dir)}
    common = {"directory": REPO_ROOT, "env": env, "on_demand": True, "stop_timeout": 20}
    return [
        Service(
            name="spark-master",
            command=[
                _spark_class(settings),
                "org.apache.spark.deploy.master.Master",
                "--host",
                settings.bind_host,
                "--port",
                str(settings.spark_master_port),
                "--webui-port",
                str(settings.spark_master_ui_port),
            ],
            ports=(settings.spark_master_port, settings.spark_master_ui_port),
            ready=master_ready,
            where=f"{master_url(settings)} (UI http://127.0.0.1:{settings.spark_master_ui_port})",
            **common,
        ),
        Service(
            name="spark-worker",
            command=[
                _spark_class(settings),
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                settings.bind_host,
                "--webui-port",
                str(settings.spark_worker_ui_port),
                "--work-dir",
                str(settings.data_dir / "spark-worker"),
                master_url(settings),
            ],
            ports=(settings.spark_worker_ui_port,),
            ready=worker_ready,
            where=f"worker of {master_url(settings)} (UI http://127.0.0.1:{settings.spark_worker_ui_port})",
            depends_on=("spark-master",),
            **common,
        ),
    ]
