// `make dev`'s log, for a person at a terminal: wrangler dev's output piped through this filter.
// The worker's JSON lines (one per request, job and cron run; JSON stays the deployed format,
// read with `wrangler tail`) become one short line each; wrangler's own line for the same
// request, its bindings table, blank lines and the "scheduled workers are not triggered"
// banner (`make cron` does that) are dropped. Anything else passes through unchanged, so an
// error is never hidden. Costs the worker nothing: it runs in the terminal, not in workerd.
import { createInterface } from "node:readline";

const ANSI = /\x1b\[[0-9;]*m/g;
/** wrangler's own line per request or queue batch: the worker's JSON line says more. */
const WRANGLER_ECHO = /^\[wrangler:info\] (GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS|QUEUE) /;
const NOISE = [
  /^\s*$/,
  /^─+$/,
  /^\[custom build\]\s*(build: up to date)?\s*$/,
  /^\[custom build\] Running: bash scripts\/build\.sh$/,
  /^Your Worker has access to the following bindings:$/,
  /^Binding\s+Resource\s+Mode$/,
  /^env\.[A-Z0-9_]+ .*\blocal$/,
  /Scheduled Workers are not automatically triggered/,
  /^\s*To manually trigger a scheduled event, run:$/,
  /^\s*curl "http:\/\/[^"]+\/cdn-cgi\/handler\/scheduled"$/,
  /^\s*For more details, see .*cron-triggers/,
];
/** Fields shown first, in this order, without their names. */
const LEAD = ["method", "route", "job", "outcome"];
/** Fields the compact line leaves out: ids and timings a person does not read here. */
const QUIET = new Set(["kind", "request_id", "message_id", "scheduled_at", "duration_ms", "meter", "verdict", "from", "status"]);
/** Zeros, falses and empty lists say nothing on a line read by a person. */
const empty = (value) =>
  value === null || value === 0 || value === false || (typeof value === "object" && Object.keys(value).length === 0);

const time = () => new Date().toTimeString().slice(0, 8);

function meter(m = {}) {
  const parts = [];
  if (m.d1_statements) parts.push(`d1 ${m.d1_statements} stmt ${m.d1_rows_read}r/${m.d1_rows_written}w`);
  if (m.kv_reads || m.kv_writes) parts.push(`kv ${m.kv_reads}r/${m.kv_writes}w`);
  if (m.queue_messages) parts.push(`queue ${m.queue_messages}`);
  if (m.fetches) parts.push(`fetch ${m.fetches}`);
  return parts.join(", ");
}

const show = (value) => (typeof value === "object" && value !== null ? JSON.stringify(value) : String(value));

/** One worker log line, compact; null when `line` is not one. */
export function compact(line) {
  if (!line.startsWith('{"kind":')) return null;
  let entry;
  try {
    entry = JSON.parse(line);
  } catch {
    return null;
  }
  const subject = entry.provider && entry.ref ? `${entry.provider}/${entry.ref}` : entry.provider;
  const words = [time(), entry.kind];
  for (const key of LEAD) if (entry[key] !== undefined) words.push(show(entry[key]));
  if (entry.status !== undefined) words.push(entry.from ? `${entry.from}→${entry.status}` : show(entry.status));
  if (subject) words.push(subject);
  const shown = new Set([...LEAD, "provider", "ref"]);
  for (const [key, value] of Object.entries(entry)) {
    if (shown.has(key) || QUIET.has(key) || empty(value)) continue;
    words.push(`${key}=${show(value)}`);
  }
  if (entry.duration_ms !== undefined) words.push(`${entry.duration_ms}ms`);
  const cost = meter(entry.meter);
  return cost ? `${words.join(" ")} · ${cost}` : words.join(" ");
}

export function filter(raw) {
  const plain = raw.replace(ANSI, "");
  const short = compact(plain.trim());
  if (short) return short;
  if (WRANGLER_ECHO.test(plain) || NOISE.some((pattern) => pattern.test(plain))) return null;
  return raw;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (raw) => {
    const out = filter(raw);
    if (out !== null) process.stdout.write(`${out}\n`);
  });
}
