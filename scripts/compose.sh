#!/usr/bin/env bash
# `scripts/compose.sh <args>`: `docker compose <args>` for this repo's stack, with what docker-compose.yml reads from
# the environment: the stack's state folder (DOCKER_STATE_DIR) and the build's CA bundle (DOCKER_EXTRA_CA_BUNDLE,
# assembled by scripts/compose_up.sh; created empty here when missing, since compose reads it with the project).
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${STATE_DIR:-.state}
export DOCKER_STATE_DIR="$STATE/docker-state" DOCKER_EXTRA_CA_BUNDLE="$STATE/docker/extra-ca.pem"
[ -f "$DOCKER_EXTRA_CA_BUNDLE" ] || { mkdir -p "$STATE/docker"; : >"$DOCKER_EXTRA_CA_BUNDLE"; }
exec docker compose "$@"
