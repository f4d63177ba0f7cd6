#!/usr/bin/env bash
# `scripts/stack_run.sh <python args>`: runs a project command (seed, emulator, provision, audit, batch job, ...) the
# way the current stack mode needs: natively with the project's venv; in Docker mode in a one-off container of the
# project image on the host's network (`docker compose run --rm cli`), with the stack's state folder mounted, so the
# command, its output and its files are the same in both modes.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${STATE_DIR:-.state}
mode=$(STATE_DIR="$STATE" scripts/stack_mode.sh) || exit 2
if [ "$mode" = docker ]; then
  tty=(-T)
  [ -t 0 ] && [ -t 1 ] && tty=()
  STATE_DIR="$STATE" exec scripts/compose.sh run --rm --no-deps "${tty[@]}" cli python "$@"
fi
exec "$STATE/venv/bin/python" "$@"
