#!/usr/bin/env bash
# `make dev`: the worker on loopback (wrangler dev, workerd, local D1/KV/Queue) and, beside it,
# the local sandbox (sandbox/server.mjs): the providers' APIs, `make trigger`, and an endpoint
# that receives and verifies the worker's notifications. Migrations are applied first.
#   PORT          the worker's port (default 8787)
#   SANDBOX_PORT  the sandbox's port (default 8788)
#   PERSIST_DIR   local D1/KV/queue state (default .wrangler/state)
#   DEV_VARS      the local variables (default .dev.vars, written with fresh secrets on first run)
# A provider whose key in DEV_VARS starts with "sandbox_" is served by the sandbox; put a real
# key there to use the real API. Extra arguments go to `wrangler dev` (e.g. --var KEY:VALUE).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PORT:-8787}"
SANDBOX_PORT="${SANDBOX_PORT:-8788}"
PERSIST_DIR="${PERSIST_DIR:-.wrangler/state}"
DEV_VARS="${DEV_VARS:-.dev.vars}"

# CI=true also makes `d1 migrations apply` skip its confirmation prompt.
export CI=true WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false CLOUDFLARE_CF_FETCH_ENABLED=false

node sandbox/init-vars.mjs "$DEV_VARS"
read_var() { sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$DEV_VARS" | tail -n 1; }

worker="http://127.0.0.1:$PORT"
sandbox="http://127.0.0.1:$SANDBOX_PORT"
# LOCAL_DEV lets the worker call the sandbox on loopback; `wrangler deploy` never ships it.
vars=(--var LOCAL_DEV:true)
served=()
if [[ "$(read_var ALIGN_API_KEY)" == sandbox_* ]]; then
  vars+=(--var "ALIGN_API_BASE:$sandbox")
  served+=(Align)
fi
if [[ "$(read_var ARGOS_API_KEY)" == sandbox_* ]]; then
  vars+=(--var "ARGOS_API_BASE:$sandbox" --var "ARGOS_ALLOWED_IPS:127.0.0.1")
  served+=(ARGOS)
fi
if [[ "$(read_var SUMSUB_APP_TOKEN)" == sbx:sandbox_* ]]; then
  vars+=(--var "SUMSUB_API_BASE:$sandbox")
  served+=(Sumsub)
fi
if [[ "$(read_var PERSONA_API_KEY)" == sandbox_* ]]; then
  vars+=(--var "PERSONA_API_BASE:$sandbox")
  served+=(Persona)
fi
# The sandbox's truth moves as fast as you type: every cron run re-checks every subject, so a
# dropped webhook is found by the next run, not in an hour (deployed cadences: README).
if [[ ${#served[@]} -gt 0 ]]; then
  vars+=(--var "RECHECK_STEPS_SECONDS:1" --var "TERMINAL_RECHECK_SECONDS:1")
fi
if [[ -z "$(read_var APP_WEBHOOK_URL)" && -n "$(read_var APP_WEBHOOK_SECRET)" ]]; then
  vars+=(--var "APP_WEBHOOK_URL:$sandbox/_sandbox/sink")
fi

npx wrangler d1 migrations apply kyc-edge --local --persist-to "$PERSIST_DIR"

node sandbox/server.mjs --port "$SANDBOX_PORT" --worker "$worker" --vars "$DEV_VARS" &
sandbox_pid=$!
trap 'kill "$sandbox_pid" 2>/dev/null || true' EXIT

cat <<EOF

kyc-edge: the worker starts on $worker; the sandbox (${served[*]:-no provider}, notifications)
runs on $sandbox. In another terminal (README, "Try it"):
  export API_TOKEN=\$(sed -n 's/^API_TOKEN=//p' $DEV_VARS)
  make trigger PROVIDER=align REF=cust-1 STATUS=approved
  curl -s -H "Authorization: Bearer \$API_TOKEN" $worker/v1/subjects/align/cust-1
  open $worker/dashboard/ (sign in with the API token)

EOF

npx wrangler dev --ip 127.0.0.1 --port "$PORT" --persist-to "$PERSIST_DIR" --env-file "$DEV_VARS" \
  "${vars[@]}" "$@"
