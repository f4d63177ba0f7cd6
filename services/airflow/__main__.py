"""`python -m services.airflow <airflow arguments>`: the Airflow CLI with the stack's configuration.

`python -m services.airflow dag-test [DATE]` runs `airflow dags test <dag id> <DATE, default today>` against the
running stack (`make dag-test`). Anything else is passed to `airflow` unchanged, e.g. `dags list`.
"""

from __future__ import annotations

import datetime as dt
import os
import sys

from pipeline.settings import get_settings
from services.airflow.service import airflow_env, migrate_db, venv_bin


def main(argv: list[str]) -> None:
    settings = get_settings()
    migrate_db(settings)  # not prepare(): the login file belongs to the running api-server's settings
    if argv[:1] == ["dag-test"]:
        day = argv[1] if len(argv) > 1 else dt.datetime.now(dt.UTC).date().isoformat()
        argv = ["dags", "test", settings.dag_id, day]
    airflow = str(venv_bin(settings) / "airflow")
    os.execve(airflow, [airflow, *argv], {**os.environ, **airflow_env(settings)})


if __name__ == "__main__":
    main(sys.argv[1:])
