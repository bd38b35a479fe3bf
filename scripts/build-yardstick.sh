#!/usr/bin/env bash
# Builds the bench's yardstick (bench/yardstick) into bench/yardstick/build with the same
# toolchain, profile and post-processing as scripts/build.sh builds kyc-edge. Skips the build
# when its output is newer than its inputs.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

out=bench/yardstick/build
inputs=(bench/yardstick/src bench/yardstick/Cargo.toml Cargo.toml Cargo.lock .cargo scripts/build-yardstick.sh scripts/strip-names.mjs)
if [ -f "$out/index.js" ] && [ -f "$out/index_bg.wasm" ] &&
  [ -z "$(find "${inputs[@]}" \( -newer "$out/index.js" -o -newer "$out/index_bg.wasm" \) -print -quit)" ]; then
  echo "build-yardstick: up to date"
  exit 0
fi

WASM_BINDGEN_BIN="$(command -v wasm-bindgen || true)"
WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
if [ -z "$WASM_BINDGEN_BIN" ] || [ ! -x "$WASM_OPT_BIN" ] || ! command -v worker-build >/dev/null; then
  echo "build-yardstick: toolchain missing; run scripts/bootstrap.sh (make bootstrap)" >&2
  exit 1
fi
export WASM_BINDGEN_BIN WASM_OPT_BIN

(cd bench/yardstick && worker-build --release)
node scripts/strip-names.mjs "$out/index_bg.wasm"
