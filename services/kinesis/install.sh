#!/usr/bin/env bash
# Installs the stack's Kinesis store, kinesalite 3.3.3 on LevelDB (why this store: docs/design/kinesis-store.md), with
# `npm ci` from the committed lockfile into <state>/kinesis-store. Idempotent: a stamp records the lockfile installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
STATE=${STATE_DIR:-.state}
target="$STATE/kinesis-store"
stamp="$target/.installed"
want=$(sha256sum services/kinesis/package-lock.json | cut -d' ' -f1)

log() { printf '[setup] %s\n' "$*"; }

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
command -v npm >/dev/null || { log "npm not found: the Kinesis store needs node and npm (apt-get install nodejs npm)"; exit 1; }
log "installing the Kinesis store (kinesalite 3.3.3, LevelDB) into $target"
mkdir -p "$target"
cp services/kinesis/package.json services/kinesis/package-lock.json "$target/"
(cd "$target" && npm ci --no-audit --no-fund --omit=dev --loglevel=error)
# leveldown ships prebuilt binaries; fail here, not at the first start, if none loads on this machine.
node -e "require(process.argv[1])" "$(cd "$target" && pwd)/node_modules/leveldown" \
  || { log "LevelDB (leveldown) does not load on this machine's node $(node --version)"; exit 1; }
printf '%s' "$want" >"$stamp"
