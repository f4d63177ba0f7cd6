#!/usr/bin/env bash
# Build and install the REST proxy's native produce path (src/: the JSON path and the shared producer, librdkafka)
# into the project's virtualenv as the Python module rest_proxy_produce; idempotent. Needs cargo (rustup's, or
# Debian's cargo-web that scripts/setup.sh installs) and a C toolchain with OpenSSL and zlib headers
# (scripts/setup.sh installs those); maturin comes from PyPI through uv's build isolation, the crates from crates.io
# (cached in ~/.cargo). The proxy cannot run without it. A cold build takes about 2 minutes (librdkafka's C sources).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${STATE_DIR:?}/venv"
stamp="$venv/.rest_proxy_produce.installed"
log() { echo "[setup] $*"; }
newest=$(find "$here/src" "$here/Cargo.toml" "$here/Cargo.lock" "$here/pyproject.toml" -newer "$stamp" 2>/dev/null | head -1 || true)
if [ -f "$stamp" ] && [ -z "$newest" ] && "$venv/bin/python" -c "import rest_proxy_produce" 2>/dev/null; then
  exit 0
fi
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
if ! command -v cargo >/dev/null 2>&1; then
  log "cargo not found: the REST proxy needs its native producer (services/rest_proxy/native). scripts/setup.sh"
  log "installs Debian's rustc-web/cargo-web where apt has them; elsewhere install Rust with rustup (https://rustup.rs),"
  log "then run make setup again."
  exit 1
fi
log "building the REST proxy's native produce path (Rust, maturin; librdkafka from source on a cold build, ~2 min)"
CARGO_TARGET_DIR="$(cd "$STATE_DIR" && pwd)/cargo-target" "$venv/bin/uv" pip install -q --python "$venv/bin/python" --reinstall-package rest-proxy-produce "$here"
touch "$stamp"
