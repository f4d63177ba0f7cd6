#!/usr/bin/env bash
# Installs LocalStack (open-source runtime, no account needed) into its OWN virtualenv. Its Kinesis backend,
# kinesis-mock, is not installed: LocalStack forwards Kinesis to the stack's store (services/kinesis).
# Why a separate venv: localstack-core pins many packages (boto, werkzeug, ...) that must not move the project's
# venv. Version and pins are the ones measured in docs/architecture.md (4.9.2 is the newest that runs on Python 3.11).
# Idempotent: a stamp file records what was installed; re-running with the same pins does nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
STATE=${STATE_DIR:-.state}
PYTHON=${PYTHON:-python3.11}
venv="$STATE/venvs/localstack"
pins=("localstack-core[runtime]==4.9.2" "cbor2<6" "pyopenssl<25" "cryptography<45" "psutil<7.2" "service-identity")
stamp="$venv/.installed"
want="${pins[*]}"

log() { printf '[setup] %s\n' "$*"; }

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "installing LocalStack 4.9.2 into $venv (about 500 MB, a few minutes)"
  command -v "$PYTHON" >/dev/null || { log "$PYTHON not found: LocalStack 4.9.2 needs Python 3.11"; exit 1; }
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  uv=$(command -v "$STATE/venv/bin/uv" uv 2>/dev/null | head -n1 || true)
  if [ -n "$uv" ]; then
    "$uv" pip install -q --python "$venv/bin/python" "${pins[@]}"
  else
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "${pins[@]}"
  fi
  printf '%s' "$want" >"$stamp"
fi
