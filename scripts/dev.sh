#!/usr/bin/env bash
# Serves the worker locally with wrangler dev (workerd), offline and on loopback only.
# Applies D1 migrations to the same persisted state first.
#   PORT         listen port (default 8787)
#   PERSIST_DIR  local D1/KV/queue state (default .wrangler/state)
# Extra arguments go to `wrangler dev` (e.g. --var KEY:VALUE).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PORT:-8787}"
PERSIST_DIR="${PERSIST_DIR:-.wrangler/state}"

# CI=true also makes `d1 migrations apply` skip its confirmation prompt.
export CI=true WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false CLOUDFLARE_CF_FETCH_ENABLED=false

npx wrangler d1 migrations apply kyc-edge --local --persist-to "$PERSIST_DIR"
exec npx wrangler dev --ip 127.0.0.1 --port "$PORT" --persist-to "$PERSIST_DIR" "$@"
