// A stack (worker + stand-in provider) whose worker runs inside the meter
// (bench/meter-entry.mjs), with the measuring tools the bench sections share: meter
// snapshots and differences, workerd CPU from /proc, waiting for the queue to settle.
import { copyFile, access } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { once } from "node:events";
import WebSocket from "ws";
import { startStack } from "../tests/support/stack.mjs";
import { applyMigrations, openD1 } from "../tests/support/worker.mjs";
import { eventually } from "../sandbox/kit.mjs";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));

/**
 * workerd's console output (a line per webhook and job) reaches our stdout through Miniflare:
 * keeps it out of the tables unless BENCH_VERBOSE is set. Returns `log` (stdout) and
 * `progress` (stderr), which still write.
 */
export function quietConsole() {
  const write = process.stdout.write.bind(process.stdout);
  const writeErr = process.stderr.write.bind(process.stderr);
  if (!process.env.BENCH_VERBOSE) {
    const drop = (_chunk, encoding, callback) => {
      const done = typeof encoding === "function" ? encoding : callback;
      if (done) queueMicrotask(done);
      return true;
    };
    process.stdout.write = drop;
    process.stderr.write = drop;
  }
  return { log: (line = "") => write(`${line}\n`), progress: (line) => writeErr(`${line}\n`) };
}

/**
 * A checkout to measure: this one by default, or another (the baseline) with its own build/
 * and migrations/. The meter is copied next to its build/index.js.
 */
export async function checkout(root = ROOT) {
  const build = join(root, "build");
  await access(join(build, "index.js"));
  const scriptPath = join(build, "bench-entry.mjs");
  await copyFile(join(ROOT, "bench", "meter-entry.mjs"), scriptPath);
  return { root, scriptPath, migrationsDir: join(root, "migrations") };
}

/** Starts a stack whose worker is metered. Options as startStack's, plus `checkout`. */
export async function startMetered({ checkout: target, inspect = false, ...options }) {
  const stack = await startStack({
    ...options,
    worker: { scriptPath: target.scriptPath, migrationsDir: target.migrationsDir, compatibilityFlags: ["nodejs_als"], inspect },
  });
  const meterUrl = `${stack.url}/__bench/meter`;
  return Object.assign(stack, {
    async meter() {
      return (await fetch(meterUrl)).json();
    },
    /** Delays every queue message sent from now on by `seconds` (0: no delay). */
    async hold(seconds) {
      await fetch(`${stack.url}/__bench/hold?seconds=${seconds}`, { method: "POST" });
    },
    /**
     * Waits until every queue message sent has been received, no invocation is running and
     * none has run for `quietMs`; throws (naming `what`) on timeout.
     */
    async settle({ quietMs = 1000, timeoutMs = 600_000, what = "the queue to settle" } = {}) {
      await eventually(
        what,
        async () => {
          const m = await stack.meter();
          const sent = Object.values(m.totals).reduce((sum, kind) => sum + kind.queue_messages, 0);
          const received = m.totals.queue?.messages_received ?? 0;
          return m.running === 0 && m.idle_ms >= quietMs && received >= sent && m.hold_seconds === 0;
        },
        { timeoutMs, intervalMs: 200 },
      );
    },
  });
}

/**
 * Seeds `n` Align subjects straight into D1 (in batches of `chunk`), `status(i)` each, checked an
 * hour ago and due at `dueAt`, and recomputes the status tallies as the migrations do.
 */
export async function seedSubjects(dir, n, { prefix, dueAt, status = () => "pending", chunk = 5000, progress }) {
  await applyMigrations(dir);
  const { db, close } = await openD1(dir);
  try {
    const now = Date.now();
    const insert = db.prepare(
      `INSERT INTO subjects (provider, ref, ref_kind, status, provider_status, sub_status, status_at,
         observed_at, source, created_at, updated_at, last_checked_at, next_check_at, check_step, failures, version)
       SELECT 'align', json_extract(value, '$[0]'), 'user', json_extract(value, '$[1]'), json_extract(value, '$[1]'),
         'kyc_form_submission_accepted', ?2 - json_extract(value, '$[2]'), ?2, 'poll', ?2, ?2, ?2, ?3, 1, 0, 2
       FROM json_each(?1)`,
    );
    for (let i = 0; i < n; i += chunk) {
      const rows = [];
      for (let j = i; j < Math.min(n, i + chunk); j += 1) rows.push([`${prefix}-${String(j).padStart(7, "0")}`, status(j), j]);
      await insert.bind(JSON.stringify(rows), now - 3_600_000, dueAt).run();
      if (n >= 100_000 && (i / chunk) % 20 === 0) progress?.(`  seeded ${i + rows.length} of ${n}`);
    }
    await db.exec("DELETE FROM tallies WHERE name LIKE 'status.%'");
    await db
      .prepare("INSERT INTO tallies (name, value) SELECT 'status.' || provider || '.' || status, COUNT(*) FROM subjects GROUP BY provider, status")
      .run();
  } finally {
    await close();
  }
}

const FIELDS = [
  "invocations",
  "d1_calls",
  "d1_statements",
  "d1_rows_read",
  "d1_rows_written",
  "kv_reads",
  "kv_writes",
  "kv_deletes",
  "kv_lists",
  "queue_messages",
  "messages_received",
  "analytics_points",
  "subrequests",
];

const zero = () => Object.fromEntries(FIELDS.map((f) => [f, 0]));

/** after − before, summed over the kinds `filter` accepts (all by default). */
export function spent(before, after, filter = () => true) {
  const total = zero();
  for (const [kind, meter] of Object.entries(after.totals)) {
    if (!filter(kind)) continue;
    const was = before.totals[kind] ?? zero();
    for (const f of FIELDS) total[f] += (meter[f] ?? 0) - (was[f] ?? 0);
  }
  return total;
}

export const add = (...meters) => {
  const total = zero();
  for (const m of meters) for (const f of FIELDS) total[f] += m[f] ?? 0;
  return total;
};

export const per = (meter, n) =>
  Object.fromEntries(FIELDS.map((f) => [f, meter[f] / n]).concat(["cpu_ms", "own_cpu_ms"].map((f) => [f, (meter[f] ?? NaN) / n])));

const TICKS = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

/** The pids of the workerd processes started by this process. */
export function workerdPids() {
  try {
    return execFileSync("ps", ["-o", "pid=,comm=", "--ppid", String(process.pid)])
      .toString()
      .split("\n")
      .filter((line) => /workerd/.test(line))
      .map((line) => Number(line.trim().split(/\s+/)[0]));
  } catch {
    return [];
  }
}

/**
 * CPU time (ms) used so far (utime+stime) by the workerd processes `pids`, by default every
 * one started by this process. The bench runs two workerds side by side (kyc-edge and the
 * yardstick): each is measured on its own pids.
 */
export function workerdCpuMs(pids = workerdPids()) {
  let total = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // After the parenthesised command name, utime and stime are the 12th and 13th fields.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      total += Number(fields[11]) + Number(fields[12]);
    } catch {
      return NaN;
    }
  }
  return pids.length ? (total * 1000) / TICKS : NaN;
}

export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/**
 * V8's sampling CPU profiler on one worker's isolate, through the DevTools protocol at
 * `inspectorUrl` (startWorker's `inspect`). `measure(fn)` profiles while `fn` runs and returns
 * sampledTime's figures for it.
 */
export async function attachProfiler(inspectorUrl, { intervalUs }) {
  const ws = new WebSocket(inspectorUrl);
  await once(ws, "open");
  let nextId = 1;
  const waiting = new Map();
  ws.on("message", (data) => {
    // Events, and the answers to Miniflare's own keep-alive calls, are not ours.
    const message = JSON.parse(data.toString());
    const call = waiting.get(message.id);
    if (!call) return;
    waiting.delete(message.id);
    if (message.error) call.reject(new Error(`${call.method}: ${message.error.message}`));
    else call.resolve(message.result);
  });
  const send = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      waiting.set(id, { method, resolve, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  await send("Profiler.enable");
  await send("Profiler.setSamplingInterval", { interval: intervalUs });
  /** V8's CPU profile of the isolate while `fn` runs. */
  async function record(fn) {
    await send("Profiler.start");
    let stopped = false;
    try {
      await fn();
      const { profile } = await send("Profiler.stop");
      stopped = true;
      return profile;
    } finally {
      if (!stopped) await send("Profiler.stop");
    }
  }
  return {
    intervalUs,
    record,
    async measure(fn) {
      return sampledTime(await record(fn), intervalUs);
    },
    async close() {
      ws.close();
      await once(ws, "close");
    },
  };
}

const KINDS = { "(idle)": "idle", "(program)": "program", "(garbage collector)": "gc", "(root)": "idle" };

/**
 * The worker's own CPU time in a CPU profile of its isolate (ms). V8 samples the isolate only
 * while the thread has entered it: while workerd runs another isolate (the D1 simulator is a
 * Durable Object in one of its own, KV and Queues in others), its native SQLite, its event loop
 * or nothing, no sample is taken. So a sample's time is not the gap to the next one (that gap
 * spans whatever ran elsewhere) but one sampling period: own CPU = samples × period. The
 * period is measured, not assumed: V8's sampler thread wakes later than asked (timer slack,
 * signal delivery, a busy machine), so it is the median gap between samples that follow each
 * other within two requested intervals. Counted: the worker's JavaScript and wasm, `gc` (its
 * heap's collections) and `program` (V8 or workerd working for the isolate with no JavaScript
 * on the stack: compiling, the runtime's native APIs). Not counted: `idle`.
 */
export function sampledTime(profile, intervalUs) {
  const kindOf = new Map(profile.nodes.map((node) => [node.id, KINDS[node.callFrame.functionName] ?? "js"]));
  const counts = { js: 0, gc: 0, program: 0, idle: 0 };
  for (const id of profile.samples) counts[kindOf.get(id)] += 1;
  const near = profile.timeDeltas.slice(1).filter((gap) => gap > 0 && gap < 2 * intervalUs).sort((a, b) => a - b);
  const periodUs = near.length ? near[Math.floor(near.length / 2)] : intervalUs;
  const ms = (count) => (count * periodUs) / 1000;
  return {
    own_ms: ms(counts.js + counts.gc + counts.program),
    js_ms: ms(counts.js),
    gc_ms: ms(counts.gc),
    program_ms: ms(counts.program),
    idle_ms: ms(counts.idle),
    samples: counts.js + counts.gc + counts.program,
    period_us: periodUs,
  };
}
