"""What the Airflow DAG's tasks do (airflow/dags/ only wires them): importable and unit-tested outside Airflow."""
