"""The daily batch DAG (docs/contract.md §7): wait for new objects in the bucket, run the batch job, check its nine results.

Only wiring lives here (docs/conventions.md); what each task does is in `orchestration.tasks` and
`orchestration.runners`, tested outside Airflow. The DAG id, bucket, retries and timeouts come from
`pipeline.settings`. `PIPELINE_TARGET=local` runs the job with the project venv's spark-submit; `PIPELINE_TARGET=aws`
submits the job package `make provision` uploaded to `BATCH_RUNNER`: EMR Serverless (the Amazon provider) or
Databricks (same DAG file). It parses on Airflow 3.3 (the local stack) and 3.0.6 (the newest MWAA offers).
"""

from __future__ import annotations

from airflow.providers.standard.operators.python import PythonOperator
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import DAG

from orchestration import runners, tasks
from pipeline.settings import get_settings

settings = get_settings()

with DAG(
    **tasks.daily_dag_kwargs(
        settings, settings.dag_id, "Daily batch: new S3 objects -> Spark batch job -> nine analytics results", "batch"
    )
) as dag:
    wait_for_new_objects = PythonSensor(
        task_id="wait_for_new_objects",
        python_callable=tasks.wait_for_new_objects,
        poke_interval=settings.airflow_sensor_poke_seconds,
        timeout=settings.airflow_sensor_timeout_seconds,
        mode="reschedule",
        soft_fail=True,  # no new data today: skip the run instead of failing it
    )

    if settings.pipeline_target == "aws" and settings.batch_runner == "emr-serverless":
        from airflow.providers.amazon.aws.operators.emr import EmrServerlessStartJobOperator

        run_batch_job = EmrServerlessStartJobOperator(
            task_id="run_batch_job",
            execution_timeout=tasks.BATCH_JOB_TIMEOUT,
            **runners.emr_serverless_operator_kwargs(settings),
        )
    elif settings.pipeline_target == "aws":
        from airflow.providers.databricks.operators.databricks import DatabricksSubmitRunOperator

        run_batch_job = DatabricksSubmitRunOperator(
            task_id="run_batch_job",
            execution_timeout=tasks.BATCH_JOB_TIMEOUT,
            **runners.databricks_operator_kwargs(settings),
        )
    else:
        run_batch_job = PythonOperator(
            task_id="run_batch_job",
            python_callable=tasks.run_local_batch_job,
            execution_timeout=tasks.BATCH_JOB_TIMEOUT,
        )

    check_results = PythonOperator(task_id="check_results", python_callable=tasks.check_results)

    wait_for_new_objects >> run_batch_job >> check_results
