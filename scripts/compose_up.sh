#!/usr/bin/env bash
# `make up` in docker mode: build and start docker-compose.yml, then wait until every long-running service is
# healthy (its healthcheck is a real request) and every one-shot (seed, provision) exited 0. Polls
# `docker compose ps` instead of `up --wait`, whose handling of one-shot services differs between Compose versions.
set -euo pipefail
cd "$(dirname "$0")/.."
timeout_s=${COMPOSE_UP_TIMEOUT:-900}
one_shots=" seed provision "
log() { printf '[compose] %s\n' "$*"; }

log "building images and starting services (first run builds images: several minutes)"
docker compose up -d --build --remove-orphans

deadline=$(( $(date +%s) + timeout_s ))
while :; do
  waiting=()
  failed=()
  while read -r service state health exit_code; do
    [ -n "$service" ] && [ "$service" != emulator ] || continue  # emulator: on-demand runs
    if [[ "$one_shots" == *" $service "* ]]; then
      if [ "$state" = exited ]; then
        [ "$exit_code" = 0 ] || failed+=("$service (exit $exit_code)")
      else
        waiting+=("$service")
      fi
    elif [ "$state" != running ]; then
      failed+=("$service ($state)")
    elif [ "$health" != healthy ]; then
      waiting+=("$service:${health:-no-healthcheck}")
    fi
  done < <(docker compose ps --all --format '{{.Service}} {{.State}} {{.Health}} {{.ExitCode}}')
  if [ ${#failed[@]} -gt 0 ]; then
    log "failed: ${failed[*]}; see \`docker compose logs <service>\`"
    exit 1
  fi
  if [ ${#waiting[@]} -eq 0 ]; then
    break
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    log "not ready after ${timeout_s} s: ${waiting[*]}; see \`docker compose logs <service>\`"
    exit 1
  fi
  log "waiting for: ${waiting[*]}"
  sleep 5
done
docker compose ps
log "ready: the same addresses as native mode (make status); Airflow password: docker compose exec airflow-api cat /opt/airflow/secrets/admin_password"
