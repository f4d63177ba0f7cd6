#!/usr/bin/env bash
# Installs wrk (Debian package), the HTTP load generator of scripts/bench/bench_rest_proxy.py: written in C, it
# leaves the CPU to the proxy under test, which a Python load generator on a 2-core machine would not.
# Idempotent: does nothing when wrk is already on PATH.
set -euo pipefail
command -v wrk >/dev/null 2>&1 && exit 0
echo "[setup] installing wrk (HTTP load generator for the REST proxy benchmark)"
run() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
  echo "[setup] need root to install wrk: $*"; exit 1; fi; }
run apt-get update -qq
DEBIAN_FRONTEND=noninteractive run apt-get install -y -qq --no-install-recommends wrk >/dev/null
