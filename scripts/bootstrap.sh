#!/usr/bin/env bash
# Installs the offline toolchain that builds and runs the worker (crates.io, npm and apt only;
# no GitHub downloads). Idempotent: each step runs only when its check fails.
# Pinned: every `cargo install` names its exact version and uses `--locked` (the crate's own
# Cargo.lock, not whatever its dependencies' latest releases are today) unless a comment says
# why it cannot; npm installs exactly package-lock.json (`npm ci`). tests/security.test.mjs
# checks this file keeps to it.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_BUILD_VERSION=0.8.7
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  echo "bootstrap: adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

if [ "$(worker-build --version 2>/dev/null || true)" != "$WORKER_BUILD_VERSION" ]; then
  # worker-build links native-tls, so building it needs OpenSSL headers and pkg-config.
  missing=()
  for pkg in libssl-dev pkg-config; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "bootstrap: apt-get install ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
  echo "bootstrap: cargo install worker-build $WORKER_BUILD_VERSION"
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked
fi

if [ ! -f Cargo.lock ]; then
  echo "bootstrap: cargo generate-lockfile"
  cargo generate-lockfile
fi

# The wasm-bindgen CLI must match the wasm-bindgen library in Cargo.lock exactly.
bindgen_version="$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
if [ -z "$bindgen_version" ]; then
  echo "bootstrap: no wasm-bindgen package in Cargo.lock" >&2
  exit 1
fi
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $bindgen_version" ]; then
  echo "bootstrap: cargo install wasm-bindgen-cli $bindgen_version"
  # Not --locked: its lockfile pins a webpki-roots release crates.io no longer serves.
  cargo install wasm-bindgen-cli --version "$bindgen_version"
fi

# Only `make test` needs a browser (the dashboard's test drives Debian's Chromium; a browser
# download is not reachable here): `bootstrap.sh --browser`. `make dev` never installs it.
if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: the dashboard's test needs Chromium at /usr/bin/chromium and this machine has no apt-get;" >&2
    echo "bootstrap: install Chromium with your package manager, then run make test again" >&2
    exit 1
  fi
  echo "bootstrap: apt-get install chromium (for the dashboard's test)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "bootstrap: npm ci"
  npm ci --no-audit --no-fund
fi

