"""The daily maintenance DAG of the local target: bounds what the stack would otherwise keep for good.

- `optimize_and_vacuum_delta`: compaction and VACUUM of the streaming job's Delta tables (spark_jobs/maintenance.py,
  retention `DELTA_VACUUM_RETAIN_HOURS`);
- `prune_topics`: the S3 sink's objects older than `S3_TOPICS_RETENTION_DAYS` (the local S3 store has no lifecycle
  rules; on AWS provisioning sets one on the bucket);
- `prune_airflow_logs`: Airflow's logs older than `AIRFLOW_LOG_RETENTION_DAYS`.

Only wiring lives here (docs/conventions.md); the tasks are in `orchestration.maintenance` and `orchestration.tasks`.
On `PIPELINE_TARGET=aws` there is no such DAG: the bucket's lifecycle rule, MWAA's log retention and Databricks'
predictive optimization (or a scheduled OPTIMIZE/VACUUM job there) do the same (docs/design/streaming.md).
"""

from __future__ import annotations

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG

from orchestration import maintenance, tasks
from pipeline.settings import get_settings

settings = get_settings()

if settings.pipeline_target == "local":
    description = "Daily retention: Delta OPTIMIZE + VACUUM, old sink objects, old Airflow logs"
    with DAG(**tasks.daily_dag_kwargs(settings, settings.maintenance_dag_id, description, "maintenance")) as dag:
        PythonOperator(
            task_id="optimize_and_vacuum_delta",
            python_callable=tasks.run_local_delta_maintenance,
            execution_timeout=tasks.DELTA_MAINTENANCE_TIMEOUT,
        )
        PythonOperator(task_id="prune_topics", python_callable=maintenance.prune_topics_task)
        PythonOperator(task_id="prune_airflow_logs", python_callable=maintenance.prune_airflow_logs_task)
