#!/usr/bin/env bash
# `make down`: stops the stack in whichever mode runs it, both if both do (a native stack and a compose stack left
# by an earlier `STACK=...` run), so `make down` never leaves the other mode's processes running. Data is kept.
# `scripts/stack_down.sh --volumes` (make clean) also deletes the data of both modes.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${STATE_DIR:-.state}
clean=${1:-}
stopped=0
pidfile="$STATE/run/supervisord.pid"
if [ -x "$STATE/venv/bin/python" ]; then
  if [ -n "$clean" ]; then
    "$STATE/venv/bin/python" -m services.runner clean
    stopped=1
  elif [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    "$STATE/venv/bin/python" -m services.runner down
    stopped=1
  fi
fi
if command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  export DOCKER_STATE_DIR="$STATE/docker-state" DOCKER_EXTRA_CA_BUNDLE="$STATE/docker/extra-ca.pem"
  [ -f "$DOCKER_EXTRA_CA_BUNDLE" ] || { mkdir -p "$STATE/docker"; : >"$DOCKER_EXTRA_CA_BUNDLE"; }
  if [ -n "$(docker compose ps --all -q 2>/dev/null)" ]; then
    echo "stopping the Docker stack (data is kept in $DOCKER_STATE_DIR) ..."
    docker compose --profile '*' down
    stopped=1
  fi
  if [ -n "$clean" ] && [ -d "$DOCKER_STATE_DIR" ]; then
    rm -rf "$DOCKER_STATE_DIR"
    echo "removed $DOCKER_STATE_DIR"
  fi
fi
rm -f "$STATE/stack_mode"
[ "$stopped" = 1 ] || echo "stack is not running"
