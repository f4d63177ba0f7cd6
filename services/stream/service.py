"""The Spark streaming job (`python -m spark_jobs.stream`) as a supervised service, started on demand.

Why a service at all: the job runs until stopped, and supervisor gives it a log, restarts on crash (exactly-once
survives restarts: see spark_jobs/delta_writer.py) and a clean stop: SIGINT, which the Spark JVM ignores, so the driver
can stop its queries between micro-batches. It is `on_demand`: `make up` does not start it; `make stream`
(`python -m services.runner up --only stream`) does, and `make stream-stop` stops it.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime

from pipeline.settings import REPO_ROOT, Settings
from services.contract import NotReady, Service

# The job rewrites its status file every 2 s; older than this means the driver is stuck or gone.
STALE_AFTER_SECONDS = 60


def ready(settings: Settings) -> None:
    path = settings.stream_status_file
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise NotReady(f"no status in {path} yet ({error}); the queries are starting") from error
    age = time.time() - datetime.fromisoformat(status["updated_at"]).timestamp()
    if age > STALE_AFTER_SECONDS:
        raise NotReady(f"{path} was last written {age:.0f} s ago")
    queries = status["queries"]
    inactive = [q["name"] for q in queries if not q["active"]]
    if len(queries) < 3 or inactive:
        raise NotReady(f"{len(queries)} of 3 queries started; inactive: {', '.join(inactive) or 'none'}")


def service(settings: Settings) -> Service:
    return Service(
        name="stream",
        command=[sys.executable, "-m", "spark_jobs.stream"],
        ports=(),
        ready=ready,
        where=(
            f"Kinesis {', '.join(settings.streams)} -> Delta {settings.warehouse_uri}/ "
            f"({', '.join(settings.delta_tables)}); status {settings.stream_status_file}"
        ),
        depends_on=("s3", "kinesis"),
        env={"PYTHONPATH": str(REPO_ROOT), "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": settings.bind_host},
        directory=REPO_ROOT,
        # A first start on a busy laptop: JVM, Delta tables, three queries, each with a Python worker.
        ready_timeout=600,
        stop_timeout=60,
        on_demand=True,
        stop_signal="INT",
    )
