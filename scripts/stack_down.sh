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
  export STATE_DIR="$STATE"
  if [ -n "$(scripts/compose.sh ps --all -q 2>/dev/null)" ]; then
    echo "stopping the Docker stack (data is kept in $STATE/docker-state) ..."
    scripts/compose.sh --profile '*' down
    stopped=1
  fi
  if [ -n "$clean" ] && [ -d "$STATE/docker-state" ]; then
    rm -rf "$STATE/docker-state"
    echo "removed $STATE/docker-state"
  fi
fi
rm -f "$STATE/stack_mode"
[ "$stopped" = 1 ] || echo "stack is not running"
