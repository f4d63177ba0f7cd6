"""Healthcheck of the Airflow containers (docker-compose.yml): the same real requests as native readiness.

`python -m services.airflow.docker_healthcheck api|scheduler|dag_processor` logs in like `services/airflow/service.py`
does (POST /auth/token) and asks the REST API: the api-server lists DAGs; the scheduler and the dag-processor must be
`healthy` in /api/v2/monitor/health. A healthcheck runs outside the container's entry point, so the generated admin
password is read from the secrets folder the entry point wrote (services/airflow/docker-entrypoint.sh).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from services.runner import NotReady

CHECKS = ("api", "scheduler", "dag_processor")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in CHECKS:
        print(f"usage: python -m services.airflow.docker_healthcheck {'|'.join(CHECKS)}", file=sys.stderr)
        return 2
    if not os.environ.get("AIRFLOW_ADMIN_PASSWORD"):
        stored = Path(os.environ["AIRFLOW_HOME"]) / "secrets" / "admin_password"
        os.environ["AIRFLOW_ADMIN_PASSWORD"] = stored.read_text().strip()
    from pipeline.settings import load_settings
    from services.airflow.service import _api_ready, _component_ready

    # Every Airflow container reaches the api-server where tasks do: the execution API URL names its host.
    api_host = urlsplit(os.environ["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]).hostname
    settings = load_settings(bind_host=api_host)
    check = _api_ready if argv[0] == "api" else _component_ready(argv[0])
    try:
        check(settings)
    except NotReady as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
