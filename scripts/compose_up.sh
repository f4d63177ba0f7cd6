#!/usr/bin/env bash
# `make up` in Docker mode: engine, compose and base image where missing (scripts/docker_engine.sh), the project
# image (cached layers: a second run rebuilds nothing), every service of docker-compose.yml until healthy (each
# container's health is its readiness probe, a real request), then provisioning, as native `make up` does.
# Idempotent. Refuses with the fix when the native stack or another process holds the stack's ports.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${STATE_DIR:-.state}
timeout_s=${COMPOSE_UP_TIMEOUT:-900}
log() { printf '[compose] %s\n' "$*"; }

scripts/docker_engine.sh

# Extra CA certificates for the image build (a TLS-intercepting proxy between the build and the registries):
# DOCKER_EXTRA_CA_CERTS names files or folders of PEM certificates; default: the machine's locally added CAs.
extra_ca=${DOCKER_EXTRA_CA_CERTS:-$(grep -s '^DOCKER_EXTRA_CA_CERTS=' .env | tail -n1 | cut -d= -f2- || true)}
extra_ca=${extra_ca:-/usr/local/share/ca-certificates}
mkdir -p "$STATE/docker" "$STATE/docker-state"
bundle="$STATE/docker/extra-ca.pem"
: >"$bundle.new"
for source in $extra_ca; do
  if [ -d "$source" ]; then
    find "$source" -type f \( -name '*.crt' -o -name '*.pem' \) -exec cat {} + >>"$bundle.new"
  elif [ -f "$source" ]; then
    cat "$source" >>"$bundle.new"
  fi
done
# Only a changed bundle may invalidate the build cache.
if cmp -s "$bundle.new" "$bundle"; then rm "$bundle.new"; else mv "$bundle.new" "$bundle"; fi
[ -s "$bundle" ] && log "extra CA certificates for the build: $(grep -c 'BEGIN CERTIFICATE' "$bundle") from $extra_ca"
export STATE_DIR="$STATE"
compose() { scripts/compose.sh "$@"; }  # docker compose with the stack's state folder and this bundle

# The other mode's stack, or any other process, on our ports: say which and how to fix it.
pidfile="$STATE/run/supervisord.pid"
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  log "the native stack is running and holds the stack's ports: stop it with \`make down STACK=native\`, then run this again"
  exit 1
fi
running=$(compose ps --services --status running 2>/dev/null || true)
if [ -z "$running" ]; then
  busy=()
  ports="3306 9000 4566 4567 9092 9093 8082 8083 8080"
  if [ -x "$STATE/venv/bin/python" ]; then  # the ports of .env, where the host has the project's venv
    ports=$("$STATE/venv/bin/python" -c 'from pipeline.settings import get_settings; from services.registry import all_services
print(*sorted({p for s in all_services(get_settings()) for p in s.ports}))' 2>/dev/null || echo "$ports")
  fi
  for port in $ports; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then busy+=("$port"); fi
  done
  if [ ${#busy[@]} -gt 0 ]; then
    log "port(s) ${busy[*]} on 127.0.0.1 are already taken by another process; find it with \`ss -ltnp 'sport = :PORT'\`,"
    log "stop it (or \`make down STACK=native\` if it is the native stack) or change the port in .env"
    exit 1
  fi
fi

started=$(date +%s)
# Every service runs the one image: building it for one service builds it for all (quietly when it exists: only
# changed layers run).
if docker image inspect pinterest-pipeline:local >/dev/null 2>&1; then
  log "bringing the project image up to date (unchanged layers are reused)"
  build=(compose build --quiet cli)
else
  log "building the project image (first run: about 6 minutes on 2 cores; later runs reuse every unchanged layer)"
  build=(compose build --progress plain cli)
fi
if ! "${build[@]}"; then
  log "the image build failed (output above); fix the cause and run make up again: finished layers are kept"
  exit 1
fi
log "image built in $(( $(date +%s) - started )) s; starting the services"
compose up -d --remove-orphans

deadline=$(( $(date +%s) + timeout_s ))
last=""
# The services `up` starts; on-demand ones (the stream profile, the tools) are not waited for.
started_services=" $(compose config --services | tr '\n' ' ') "
while :; do
  waiting=()
  failed=()
  while read -r service state health; do
    [ -n "$service" ] && [[ "$started_services" == *" $service "* ]] || continue
    if [ "$state" != running ] && [ "$state" != restarting ]; then
      failed+=("$service ($state)")
    elif [ "$health" != healthy ]; then
      waiting+=("$service")
    fi
  done < <(compose ps --all --format '{{.Service}} {{.State}} {{.Health}}')
  if [ ${#failed[@]} -gt 0 ]; then
    log "failed: ${failed[*]}; see \`docker compose logs <service>\`"
    exit 1
  fi
  [ ${#waiting[@]} -eq 0 ] && break
  if [ "$(date +%s)" -ge "$deadline" ]; then
    log "not ready after ${timeout_s} s: ${waiting[*]}; see \`docker compose logs <service>\`"
    exit 1
  fi
  if [ "${waiting[*]}" != "$last" ]; then
    log "waiting for: ${waiting[*]} ($(( $(date +%s) - started )) s)"
    last="${waiting[*]}"
  fi
  sleep 2
done
log "every service is healthy ($(( $(date +%s) - started )) s); provisioning"
compose run --rm provision
compose run --rm cli python -m services.runner status
log "stack is up (Docker mode); logs: \`docker compose logs <service>\`, state in $STATE/docker-state"
