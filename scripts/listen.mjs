// `make listen`: prints every notification the worker sends to `make dev`'s sandbox, as it
// arrives, and optionally forwards each to your application (like `stripe listen --forward-to`).
//
//   make listen                                        one line per new notification
//   make listen FORWARD_TO=http://localhost:3000/hooks   and POST each to your endpoint
//   make listen ALL=1                                  the ones already received first
//
// A forwarded notification is the sandbox's copy byte for byte: the same raw body and the
// worker's own webhook-id, webhook-timestamp and webhook-signature, so your application verifies
// it with APP_WEBHOOK_SECRET exactly as it would in production. (Standard Webhooks libraries
// refuse a timestamp more than five minutes old: old history forwarded with ALL=1 fails there.)
//
// The sandbox: the running `make dev`'s, as scripts/local.mjs finds it (SANDBOX_URL overrides).
// FORWARD_TO and ALL may also be given as environment variables; the arguments win.
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import { fetchJson } from "../sandbox/kit.mjs";
import { devFile, localStack } from "./local.mjs";

const INTERVAL_MS = Number(process.env.LISTEN_INTERVAL_MS ?? 500);
const FORWARD_TIMEOUT_MS = 10_000;

const { values } = parseArgs({
  options: {
    "forward-to": { type: "string", default: process.env.FORWARD_TO ?? "" },
    all: { type: "string", default: process.env.ALL ?? "" },
  },
});
const yes = (flag) => flag !== "" && flag !== "0";
const forwardTo = values["forward-to"];
const out = (line) => process.stdout.write(`${line}\n`);
const fail = (message) => {
  process.stderr.write(`listen: ${message}\n`);
  process.exit(1);
};

if (forwardTo) {
  let url;
  try {
    url = new URL(forwardTo);
  } catch {
    fail(`FORWARD_TO is not a URL: ${forwardTo}`);
  }
  if (!["http:", "https:"].includes(url.protocol)) fail(`FORWARD_TO must be http or https: ${forwardTo}`);
}

/** Where the sandbox is (scripts/local.mjs), and how that was decided. */
const stack = localStack();
const sandbox = {
  url: stack.sandbox.replace(/\/$/, ""),
  from: process.env.SANDBOX_URL ? "SANDBOX_URL" : stack.running ? devFile() : "the default",
};

/** GET a sandbox path: the parsed answer, or null when the sandbox cannot be reached. */
async function ask(path) {
  try {
    const res = await fetchJson(`${sandbox.url}${path}`, { signal: AbortSignal.timeout(5_000) });
    if (res.status !== 200 || !res.json) return { error: `${path} answered HTTP ${res.status}` };
    return { json: res.json };
  } catch (error) {
    return { error: error?.cause?.code ?? error?.name ?? "unreachable" };
  }
}

/** POSTs one notification to FORWARD_TO exactly as the sandbox received it: "HTTP 200", or why not. */
async function forward(note) {
  const headers = { "content-type": "application/json" };
  for (const name of ["webhook-id", "webhook-timestamp", "webhook-signature"]) {
    if (note.headers?.[name] != null) headers[name] = note.headers[name];
  }
  try {
    const res = await fetch(forwardTo, {
      method: "POST",
      headers,
      body: note.raw,
      redirect: "manual",
      signal: AbortSignal.timeout(FORWARD_TIMEOUT_MS),
    });
    await res.arrayBuffer().catch(() => {});
    return `${res.status >= 200 && res.status < 300 ? "" : "FORWARD FAILED "}HTTP ${res.status}`;
  } catch (error) {
    const why = error?.name === "TimeoutError" ? `no answer in ${FORWARD_TIMEOUT_MS / 1000} s` : (error?.cause?.code ?? error?.cause?.message ?? error?.message);
    return `FORWARD FAILED (${why})`;
  }
}

async function show(note) {
  const change = note.previous_status ? `${note.previous_status} → ${note.status}` : `→ ${note.status}`;
  const fields = [
    note.received_at,
    note.type ?? "(not a notification)",
    note.subject ?? "-",
    change,
    note.id ?? "(no webhook-id)",
    note.verified ? "signature verified" : "SIGNATURE INVALID",
  ];
  if (forwardTo) fields.push(`forwarded: ${await forward(note)}`);
  out(fields.join("  "));
}

let stopping = false;
const stop = () => {
  stopping = true;
  out("listen: stopped");
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

const first = await ask("/_sandbox");
if (first.error) {
  fail(`no sandbox at ${sandbox.url} (from ${sandbox.from}; ${first.error}): is \`make dev\` running?`);
}
let after = yes(values.all) ? 0 : Number(first.json.last_seq ?? first.json.notifications ?? 0);
let instance = first.json.instance;
out(
  `listen: notifications arriving at ${sandbox.url}/_sandbox/sink${forwardTo ? `, forwarded to ${forwardTo}` : ""}` +
    `${after === 0 ? "" : ` (${after} earlier ones skipped; ALL=1 shows them)`}. Ctrl-C stops.`,
);

let away = false;
while (!stopping) {
  const answer = await ask(`/_sandbox/notifications?after=${after}`);
  if (answer.error) {
    if (!away) out(`listen: the sandbox at ${sandbox.url} went away (${answer.error}); retrying until it is back`);
    away = true;
    await sleep(INTERVAL_MS);
    continue;
  }
  const { notifications = [], last_seq: lastSeq = 0 } = answer.json;
  if (answer.json.instance !== instance || lastSeq < after) {
    // A new sandbox (make dev restarted) counts from 1 again: all of its notifications are new.
    out(`listen: the sandbox at ${sandbox.url} restarted; following it from its first notification`);
    instance = answer.json.instance;
    after = 0;
    away = false;
    continue;
  }
  if (away) out(`listen: the sandbox at ${sandbox.url} is back`);
  away = false;
  for (const note of notifications) {
    await show(note);
    after = Math.max(after, note.seq);
  }
  await sleep(INTERVAL_MS);
}
