#!/bin/sh
# A container's healthcheck (docker-compose.yml): healthy while `services.runner run` (services/foreground.py) keeps
# the service's ready marker fresh, which it does only while the service's readiness probe (a real request) passes.
marker="${STATE_DIR:-/app/.state}/run/$1.ready"
[ -n "$(find "$marker" -newermt '-20 seconds' 2>/dev/null)" ] || { echo "$1 not ready (no fresh $marker)"; exit 1; }
