#!/usr/bin/env bash
# Prints how `make up/down/status/clean` run the stack: `docker` (docker-compose.yml) or `native` (supervisord,
# services/runner.py). Exit 0 with the mode on stdout, or 2 with the reason on stderr.
# Precedence: STACK=native|docker forces one (docker without an engine: `make up` sets one up, scripts/docker_engine.sh);
# else the mode the last `make up` recorded in $STATE_DIR/stack_mode (so `make down` stops what `make up` started);
# else `docker` when a Docker engine answers `docker info` and the compose plugin is there, `native` otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
recorded="${STATE_DIR:-.state}/stack_mode"

engine_answers() {
  command -v docker >/dev/null 2>&1 || return 1
  # `docker info` asks the daemon itself; a CLI without a reachable engine fails here (bounded: a hung socket).
  timeout "${STACK_DETECT_TIMEOUT:-10}" docker info >/dev/null 2>&1 || return 1
  docker compose version >/dev/null 2>&1
}

case "${STACK:-auto}" in
  native) echo native ;;
  docker)
    # Without an engine, `make up` installs and starts one (scripts/docker_engine.sh); other commands say so.
    engine_answers || echo "note: no Docker engine with the compose plugin answers yet; \`STACK=docker make up\` sets one up" >&2
    echo docker
    ;;
  auto | "")
    if [ -f "$recorded" ] && grep -qxE 'native|docker' "$recorded"; then
      cat "$recorded"
    elif engine_answers; then
      echo docker
    else
      echo native
    fi
    ;;
  *)
    echo "STACK=${STACK} is not one of native, docker, auto" >&2
    exit 2
    ;;
esac
