#!/usr/bin/env bash
# Build and install the REST proxy's native hot path (src/lib.rs) into the project's virtualenv; idempotent.
# Needs cargo (rustup); maturin comes from PyPI through uv's build isolation, the crates from crates.io
# (cached in ~/.cargo). Without cargo the proxy still works, on its Python path, about 2-3 us per record slower.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${STATE_DIR:?}/venv"
stamp="$venv/.rest_proxy_json.installed"
log() { echo "[setup] $*"; }
newest=$(find "$here/src" "$here/Cargo.toml" "$here/Cargo.lock" "$here/pyproject.toml" -newer "$stamp" 2>/dev/null | head -1 || true)
if [ -f "$stamp" ] && [ -z "$newest" ] && "$venv/bin/python" -c "import rest_proxy_json" 2>/dev/null; then
  exit 0
fi
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if ! command -v cargo >/dev/null 2>&1; then
  log "cargo not found: the REST proxy runs without its native JSON path (install Rust with rustup to get it)"
  exit 0
fi
log "building the REST proxy's native JSON path (Rust, maturin)"
CARGO_TARGET_DIR="$(cd "$STATE_DIR" && pwd)/cargo-target" "$venv/bin/uv" pip install -q --python "$venv/bin/python" --reinstall-package rest-proxy-json "$here"
touch "$stamp"
