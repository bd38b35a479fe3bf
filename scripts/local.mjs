// Where the running `make dev` is, for the scripts that talk to it (`make trigger`, `make cron`,
// `make env`). `make dev` writes $PERSIST_DIR/dev.json (default .wrangler/state/dev.json) with
// its worker and sandbox URLs and its vars file, and removes it when it stops. KYC_EDGE_URL and
// SANDBOX_URL override what the file says; without file or variables, PORT and SANDBOX_PORT
// (default 8787 and 8788) on 127.0.0.1.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { readVars } from "../sandbox/server.mjs";

export const DEV_FILE = "dev.json";

export function devFile(env = process.env) {
  return join(env.PERSIST_DIR || ".wrangler/state", DEV_FILE);
}

/** { worker, sandbox, vars (path), running (dev.json found) }. */
export function localStack(env = process.env) {
  const file = devFile(env);
  let written = {};
  if (existsSync(file)) {
    try {
      written = JSON.parse(readFileSync(file, "utf8"));
    } catch {
      written = {};
    }
  }
  return {
    worker: env.KYC_EDGE_URL || written.worker || `http://127.0.0.1:${env.PORT || 8787}`,
    sandbox: env.SANDBOX_URL || written.sandbox || `http://127.0.0.1:${env.SANDBOX_PORT || 8788}`,
    vars: written.vars || env.DEV_VARS || ".dev.vars",
    running: Boolean(written.worker || written.sandbox),
  };
}

/** The first admin token of the vars file, or null. Never printed by the scripts that use it. */
export function adminToken(stack) {
  if (!existsSync(stack.vars)) return null;
  const tokens = readVars(stack.vars).API_TOKEN ?? "";
  return tokens.split(",")[0].trim() || null;
}

/** Prints `message` to stderr, prefixed with the script's name, and exits 1. */
export function failWith(name) {
  return (message) => {
    process.stderr.write(`${name}: ${message}\n`);
    process.exit(1);
  };
}

// `make -s env`: the exports the README's walkthrough uses, for `eval "$(make -s env)"`.
if (import.meta.url === `file://${process.argv[1]}`) {
  const stack = localStack();
  const token = adminToken(stack);
  if (!token) failWith("env")(`no API_TOKEN in ${stack.vars}: run \`make dev\` first`);
  const quote = (value) => `'${value.replaceAll("'", "'\\''")}'`;
  process.stdout.write(`export KYC_EDGE=${quote(stack.worker)} KYC_SANDBOX=${quote(stack.sandbox)} API_TOKEN=${quote(token)}\n`);
}
