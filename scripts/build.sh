#!/usr/bin/env bash
# Builds the worker into build/ with worker-build, using the toolchain installed by
# scripts/bootstrap.sh (no GitHub downloads). Skips the build when build/ is newer than every
# Rust input. Also run by `wrangler dev` as the [build] command, from the project root.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

inputs=()
for path in src core/src build.rs dashboard openapi.yaml Cargo.toml core/Cargo.toml Cargo.lock .cargo \
  scripts/build.sh scripts/strip-names.mjs; do
  [ -e "$path" ] && inputs+=("$path")
done
if [ -f build/index.js ] && [ -f build/index_bg.wasm ] && [ -f Cargo.lock ] &&
  [ -z "$(find "${inputs[@]}" \( -newer build/index.js -o -newer build/index_bg.wasm \) -print -quit)" ]; then
  echo "build: up to date"
  exit 0
fi

# worker-build downloads these from GitHub unless the variables name existing files.
WASM_BINDGEN_BIN="$(command -v wasm-bindgen || true)"
WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
if [ -z "$WASM_BINDGEN_BIN" ] || [ ! -x "$WASM_OPT_BIN" ] || ! command -v worker-build >/dev/null; then
  echo "build: toolchain missing; run scripts/bootstrap.sh (make bootstrap)" >&2
  exit 1
fi
export WASM_BINDGEN_BIN WASM_OPT_BIN

worker-build --release
node scripts/strip-names.mjs build/index_bg.wasm
