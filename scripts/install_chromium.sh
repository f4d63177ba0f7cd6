#!/usr/bin/env bash
# Installs headless Chromium for the report rendering test (tests/unit/spark_jobs/test_report_render.py). Idempotent.
# CI runs it once; developers only need it to run that test (it is skipped, with the reason, without Chromium).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then exit 0; fi
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
echo "[chromium] installing chromium from Debian (about 100 MB)"
as_root apt-get update -qq
DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "[chromium] $(chromium --version)"
