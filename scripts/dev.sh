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

# The build, once and quietly (wrangler dev's own [build] then finds it up to date); its output
# is shown when it fails.
scratch="$(mktemp -d)"
# On Ctrl-C or a group-wide TERM, make sends bash a second TERM of its own; bash's default
# disposition during the EXIT trap would let it kill the clean-up half done (dev.json left
# behind for `make trigger` to find). So the signals are caught, then ignored while cleaning.
cleanup() {
  trap '' INT TERM HUP
  kill ${sandbox_pid:-} ${ready_pid:-} 2>/dev/null || true
  rm -f "${dev_file:-}"
  rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
echo "build: checking the worker (a first build takes a few minutes)"
if ! bash scripts/build.sh >"$scratch/build.log" 2>&1; then
  cat "$scratch/build.log"
  exit 1
fi

# Migrations as one line; wrangler's tables only when they fail.
if ! npx wrangler d1 migrations apply kyc-edge --local --persist-to "$PERSIST_DIR" >"$scratch/migrations.log" 2>&1; then
  cat "$scratch/migrations.log"
  exit 1
fi
applied="$(grep -oE '[0-9]{4}_[a-z0-9_]+\.sql' "$scratch/migrations.log" | sort -u || true)"
if [[ -z "$applied" ]]; then
  echo "migrations: up to date ($PERSIST_DIR)"
else
  echo "migrations: applied $(wc -l <<<"$applied") ($(head -n 1 <<<"$applied") … $(tail -n 1 <<<"$applied")) to $PERSIST_DIR"
fi

node sandbox/server.mjs --port "$SANDBOX_PORT" --worker "$worker" --vars "$DEV_VARS" &
sandbox_pid=$!
# Where this `make dev` runs, for `make trigger`, `make cron`, `make env` (scripts/local.mjs).
dev_file="$PERSIST_DIR/dev.json"
vars_path="$(cd "$(dirname "$DEV_VARS")" && pwd)/$(basename "$DEV_VARS")"
printf '{"worker":"%s","sandbox":"%s","vars":"%s"}\n' "$worker" "$sandbox" "$vars_path" >"$dev_file"

# Once the worker answers, what a person needs, once.
(
  until curl -sf -o /dev/null "$worker/healthz"; do sleep 0.5; done
  cat <<EOF

kyc-edge is ready (sandbox serves: ${served[*]:-no provider}):
  API        $worker   (GET / lists the rest; OpenAPI: $worker/openapi.json)
  dashboard  $worker/dashboard/   sign in with the API token
  sandbox    $sandbox   (the providers' APIs and your app's endpoint: make listen)
  API token  API_TOKEN in $DEV_VARS; in another terminal: eval "\$(make -s env)"
Then: make trigger PROVIDER=align REF=cust-1 STATUS=approved, make cron (README, "Try it").

EOF
) &
ready_pid=$!

# Each request, job and cron run as one short line (scripts/devlog.mjs); JSON stays the
# deployed format.
npx wrangler dev --ip 127.0.0.1 --port "$PORT" --persist-to "$PERSIST_DIR" --env-file "$DEV_VARS" \
  "${vars[@]}" "$@" 2>&1 | node scripts/devlog.mjs
