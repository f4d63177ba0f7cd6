#!/usr/bin/env bash
# Entry point of the Airflow image (services/airflow/Dockerfile): the docker-mode twin of `prepare()` in
# services/airflow/service.py. Secrets that .env leaves empty are generated once into $AIRFLOW_HOME/secrets (a named
# volume shared by the three Airflow containers), so every process agrees on them and no default is published; the
# login file for SimpleAuthManager is written; the api-server migrates the metadata DB before it starts (the scheduler
# and dag-processor start only once it is healthy). Then Airflow's own entry point runs the command.
set -euo pipefail
secrets="$AIRFLOW_HOME/secrets"
mkdir -p "$secrets"
chmod 700 "$secrets"

secret() {  # secret NAME GENERATOR: the stored value, generated on first use
  local file="$secrets/$1"
  if [ ! -s "$file" ]; then
    (umask 077 && python -c "$2" >"$file.tmp" && mv "$file.tmp" "$file")
  fi
  cat "$file"
}
token='import secrets; print(secrets.token_urlsafe(32))'
fernet='import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())'

export AIRFLOW__CORE__FERNET_KEY="${AIRFLOW__CORE__FERNET_KEY:-$(secret fernet_key "$fernet")}"
export AIRFLOW__API__SECRET_KEY="${AIRFLOW__API__SECRET_KEY:-$(secret api_secret_key "$token")}"
export AIRFLOW__API_AUTH__JWT_SECRET="${AIRFLOW__API_AUTH__JWT_SECRET:-$(secret jwt_secret "$token")}"
if [ -z "${AIRFLOW_ADMIN_PASSWORD:-}" ]; then
  AIRFLOW_ADMIN_PASSWORD="$(secret admin_password 'import secrets; print(secrets.token_urlsafe(16))')"
  echo "Airflow login: user ${AIRFLOW_ADMIN_USER:-admin}, password in $secrets/admin_password (docker compose exec airflow-api cat $secrets/admin_password)"
fi
export AIRFLOW_ADMIN_PASSWORD
(umask 077 && python -c 'import json, os, sys; json.dump({os.environ.get("AIRFLOW_ADMIN_USER") or "admin": os.environ["AIRFLOW_ADMIN_PASSWORD"]}, sys.stdout)' \
  >"$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")

if [ "${1:-}" = "api-server" ]; then
  airflow db migrate
fi
# AIRFLOW_IMAGE_ENTRYPOINT: the image's own entry point (overridable for tests/unit/test_airflow_docker.py).
exec "${AIRFLOW_IMAGE_ENTRYPOINT:-/entrypoint}" "$@"
