#!/usr/bin/env bash
# Installs everything the native stack needs on a fresh machine. Idempotent: each step checks before it acts.
#   - Debian packages (MariaDB server) via apt-get (as root, or through sudo when available)
#   - the project's virtualenv (.state/venv) from requirements.lock, with uv for speed
#   - Rust (rustc-web/cargo-web on Debian 12) when no cargo is found, for the REST proxy's native part
#   - Maven jars, the Kinesis store (npm), LocalStack's own venv, Airflow's own venv, wrk and Chromium (the steps at the end)
# `scripts/setup.sh STEP...` runs only those steps (the Dockerfile runs them one layer each, so a change to one
# part rebuilds only that part); no argument runs every step. Steps: packages venv rest_proxy spark_jars kafka s3 kinesis
# localstack airflow tools (tools: wrk and Chromium, for benchmarks and browser tests; not in the image).
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${STATE_DIR:-.state}
PYTHON=${PYTHON:-python3.11}
# The state folder holds secrets (Airflow's keys, the API key) and data: its owner's only (pipeline/private.py). A
# traverse right given to MariaDB's account (group, g+x: services/mysql) is kept.
mkdir -p -m 0700 "$STATE"
chmod g-rw,o-rwx "$STATE"
if [ "$(stat -c %g "$STATE")" = "$(id -g)" ]; then chmod g-x "$STATE"; fi

log() { printf '[setup] %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root for: $*"; exit 1; fi
}

step_packages() {
  local apt_packages=()
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || apt_packages+=(mariadb-server mariadb-client)
  # The REST proxy's producer builds librdkafka from source (services/rest_proxy/native): C and C++ compilers (its
  # configure insists on c++), OpenSSL, zlib.
  for package in make gcc g++ libc6-dev pkg-config libssl-dev zlib1g-dev; do
    dpkg -s "$package" >/dev/null 2>&1 || apt_packages+=("$package")
  done
  # Rust for that native part: rustup's cargo when the user has it, else the distribution's (Debian 12: rustc-web and
  # cargo-web, a current Rust from the security and updates suites; the plain rustc package is too old).
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  if ! command -v cargo >/dev/null 2>&1 && command -v apt-cache >/dev/null 2>&1; then
    if [ -z "$(apt-cache policy cargo-web 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -v none)" ]; then
      as_root apt-get update -qq
    fi
    if [ -n "$(apt-cache policy cargo-web 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -v none)" ]; then
      log "cargo not found: installing Rust from the distribution (rustc-web, cargo-web)"
      apt_packages+=(rustc-web cargo-web)
    fi
  fi
  if [ ${#apt_packages[@]} -gt 0 ]; then
    log "installing Debian packages: ${apt_packages[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
  fi
}

step_venv() {
  venv="$STATE/venv"
  stamp="$venv/.installed"
  if [ ! -f "$stamp" ] || [ requirements.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    command -v "$PYTHON" >/dev/null || { log "$PYTHON not found: the project needs Python 3.11"; exit 1; }
    [ -x "$venv/bin/python" ] || { log "creating $venv"; "$PYTHON" -m venv "$venv"; }
    if [ ! -x "$venv/bin/uv" ]; then
      "$venv/bin/python" -m pip --version >/dev/null 2>&1 || "$venv/bin/python" -m ensurepip >/dev/null
      "$venv/bin/python" -m pip install -q --disable-pip-version-check uv
    fi
    log "installing Python packages from requirements.lock"
    "$venv/bin/uv" pip install -q --python "$venv/bin/python" -r requirements.lock
    "$venv/bin/uv" pip install -q --python "$venv/bin/python" --no-deps -e .
    touch "$stamp"
  fi
}

step_rest_proxy() { STATE_DIR="$STATE" services/rest_proxy/native/install.sh; }
step_spark_jars() { STATE_DIR="$STATE" spark_jobs/fetch_jars.sh; }
step_kafka() { STATE_DIR="$STATE" services/kafka/fetch.sh; }
step_s3() { STATE_DIR="$STATE" services/s3/fetch.sh; }
step_kinesis() { STATE_DIR="$STATE" services/kinesis/install.sh; }
step_localstack() { STATE_DIR="$STATE" services/localstack/install.sh; }
step_airflow() { STATE_DIR="$STATE" services/airflow/setup.sh; }
step_tools() {
  scripts/bench/install_wrk.sh
  scripts/install_chromium.sh
}

all_steps=(packages venv rest_proxy spark_jars kafka s3 kinesis localstack airflow tools)
for step in "${@:-${all_steps[@]}}"; do
  if ! declare -F "step_$step" >/dev/null; then
    log "unknown step $step (one of: ${all_steps[*]})"
    exit 2
  fi
  "step_$step"
done
log "ready"
