"""Loads airflow/dags with Airflow's own DagBag and prints what test_dag_integrity.py checks, as JSON.

Run with the Airflow venv's python (Airflow is not in the project venv, docs/architecture.md); the test starts it once for
several scenarios, because importing Airflow is the slow part. Each scenario sets environment variables (the DAG
reads its settings from them) and may render the batch task for a date: rendered, never executed.
The facts are the last stdout line, after the `DAG_FACTS ` marker (Airflow logs to stdout too).
"""

from __future__ import annotations

import json
import os
import sys

try:
    from airflow.dag_processing.dagbag import DagBag
except ModuleNotFoundError:  # Airflow 3.0 (MWAA's newest) keeps it in airflow.models
    from airflow.models.dagbag import DagBag

from pipeline.settings import REPO_ROOT, get_settings


def _task_facts(task) -> dict:
    facts = {
        "operator": type(task).__name__,
        "retries": task.retries,
        "retry_delay_seconds": task.retry_delay.total_seconds(),
        "downstream": sorted(task.downstream_task_ids),
    }
    if hasattr(task, "poke_interval"):  # a sensor
        facts.update(timeout=task.timeout, poke_interval=task.poke_interval, soft_fail=task.soft_fail, mode=task.mode)
    return facts


def scenario_facts(env: dict[str, str], render: str | None) -> dict:
    os.environ.update(env)
    get_settings.cache_clear()
    bag = DagBag(dag_folder=REPO_ROOT / "airflow" / "dags")
    dag = bag.dags.get(get_settings().dag_id)
    facts: dict = {"import_errors": {str(k): v for k, v in bag.import_errors.items()}, "dag_ids": sorted(bag.dags)}
    maintenance = bag.dags.get(get_settings().maintenance_dag_id)
    if maintenance is not None:
        facts["maintenance"] = {
            "schedule": maintenance.schedule if isinstance(maintenance.schedule, str) else repr(maintenance.schedule),
            "catchup": maintenance.catchup,
            "fileloc": maintenance.fileloc,
            "tasks": {task.task_id: _task_facts(task) for task in maintenance.tasks},
        }
    if dag is None:
        return facts
    facts.update(
        dag_id=dag.dag_id,
        schedule=dag.schedule if isinstance(dag.schedule, str) else repr(dag.schedule),
        catchup=dag.catchup,
        max_active_runs=dag.max_active_runs,
        tags=sorted(dag.tags),
        fileloc=dag.fileloc,
        tasks={task.task_id: _task_facts(task) for task in dag.tasks},
    )
    if render:
        facts["rendered"] = rendered_run(dag.get_task("run_batch_job"), {"ds": render})
    return facts


def rendered_run(task, context: dict) -> dict:
    """What the aws target's batch task would send, rendered for `context`, never sent."""
    task.render_template_fields(context=context)
    if hasattr(task, "job_driver"):  # EmrServerlessStartJobOperator: the arguments of its start_job_run call
        return {
            "region": task.region_name,
            "waiter_seconds": task.waiter_delay * task.waiter_max_attempts,
            "request": {
                "applicationId": task.application_id,
                "executionRoleArn": task.execution_role_arn,
                "jobDriver": task.job_driver,
                "name": task.name,
                "configurationOverrides": task.configuration_overrides,
                **task.config,
            },
        }
    # DatabricksSubmitRunOperator: the exact payload it would POST to /api/2.2/jobs/runs/submit.
    return {"conn_id": task.databricks_conn_id, "payload": task._prepare_submit_json(context)}


def main() -> None:
    scenarios = json.loads(sys.argv[1])  # {name: {"env": {...}, "render": date or null}}
    baseline = dict(os.environ)
    results = {}
    for name, scenario in scenarios.items():
        os.environ.clear()
        os.environ.update(baseline)
        results[name] = scenario_facts(scenario["env"], scenario.get("render"))
    print("DAG_FACTS " + json.dumps(results, default=str))


if __name__ == "__main__":
    main()
