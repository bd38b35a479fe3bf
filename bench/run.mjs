// `make bench`: figures for the compiled worker, run locally (workerd through Miniflare, local
// D1/KV/Queue, a stand-in provider API on loopback). Not a test: it prints a table and
// writes the figures to .bench/last.json.
//
//   1. wasm size, raw and gzip -9 (what Cloudflare's size limits count)
//   2. webhook ingress: signed Align webhooks from N concurrent clients: req/s, latency
//      percentiles, and workerd CPU per request
//   3. reconcile throughput: N due subjects (seeded straight into D1), one cron run, a stand-in
//      answering after 50 ms; time until every job has reported, for N = 1,000 and 10,000
//
// Environment knobs: BENCH_RECONCILE_N (default "1000,10000"), BENCH_RECONCILE_TIMEOUT_S
// (default 600 per case; a case that runs out reports what it reached and an extrapolation,
// labelled as such), BENCH_WEBHOOKS (default 2000), BENCH_CLIENTS (default "1,16"),
// BENCH_LATENCY_MS (default 50).
import { readFile, mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { gzipSync, constants as zlib } from "node:zlib";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execFileSync } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { Miniflare } from "miniflare";
import { unstable_getMiniflareWorkerOptions, unstable_readConfig } from "wrangler";
import { applyMigrations } from "../tests/support/worker.mjs";
import { kycsUpdated, startStack } from "../tests/support/kit.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const env = process.env;
const RECONCILE_N = (env.BENCH_RECONCILE_N ?? "1000,10000").split(",").map(Number);
const RECONCILE_TIMEOUT_MS = Number(env.BENCH_RECONCILE_TIMEOUT_S ?? 600) * 1000;
const WEBHOOKS = Number(env.BENCH_WEBHOOKS ?? 2000);
const CLIENTS = (env.BENCH_CLIENTS ?? "1,16").split(",").map(Number);
const LATENCY_MS = Number(env.BENCH_LATENCY_MS ?? 50);
const CRON_PERIOD_MS = 5 * 60_000;

// workerd's console output (a line per webhook and job) reaches our stdout through Miniflare;
// keep it out of the table unless BENCH_VERBOSE is set.
const write = process.stdout.write.bind(process.stdout);
const writeErr = process.stderr.write.bind(process.stderr);
if (!env.BENCH_VERBOSE) {
  const drop = (_chunk, encoding, callback) => {
    const done = typeof encoding === "function" ? encoding : callback;
    if (done) queueMicrotask(done);
    return true;
  };
  process.stdout.write = drop;
  process.stderr.write = drop;
}
const log = (line = "") => write(`${line}\n`);
const progress = (line) => writeErr(`${line}\n`);
const fmt = (n, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "-");
const kib = (bytes) => `${(bytes / 1024).toFixed(1)} KiB`;

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** CPU time (ms) used so far by the workerd processes this process started. */
function workerdCpuMs() {
  let pids = [];
  try {
    pids = execFileSync("ps", ["-o", "pid=,comm=", "--ppid", String(process.pid)])
      .toString()
      .split("\n")
      .filter((line) => /workerd/.test(line))
      .map((line) => Number(line.trim().split(/\s+/)[0]));
  } catch {
    return NaN;
  }
  const ticks = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;
  let total = 0;
  for (const pid of pids) {
    try {
      const stat = execFileSync("cat", [`/proc/${pid}/stat`]).toString();
      // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      total += Number(fields[11]) + Number(fields[12]);
    } catch {
      return NaN;
    }
  }
  return pids.length ? (total * 1000) / ticks : NaN;
}

/** Runs `fn` over `items` with at most `width` in flight. */
async function pool(items, width, fn) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i], i);
      }
    }),
  );
}

async function waitFor(check, { timeoutMs, intervalMs = 250 }) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value || Date.now() > deadline) return value;
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------
// 1. Size

async function wasmSize() {
  const wasm = await readFile(join(ROOT, "build", "index_bg.wasm"));
  const js = await readFile(join(ROOT, "build", "index.js"));
  return {
    wasm_raw: wasm.length,
    wasm_gzip: gzipSync(wasm, { level: zlib.Z_BEST_COMPRESSION }).length,
    js_raw: js.length,
    total_gzip: gzipSync(Buffer.concat([wasm, js]), { level: zlib.Z_BEST_COMPRESSION }).length,
  };
}

// ---------------------------------------------------------------------------------------
// 2. Webhook ingress

async function ingress(clients) {
  const stack = await startStack({ vars: { WORKERS_PLAN: "paid" } });
  try {
    // Distinct subjects and timestamps: every request is a new event (no duplicates), with
    // entity_object, so its job applies the body without calling the provider.
    const base = Date.now() - 60_000;
    const make = (i, prefix) =>
      JSON.stringify(
        kycsUpdated(`${prefix}-${clients}-${i}`, {
          status: i % 3 === 0 ? "approved" : "pending",
          sub_status: "kyc_form_submission_accepted",
          createdAt: new Date(base + i),
        }),
      );
    // Warm-up: instantiate the wasm, open connections, create the tables' first pages.
    await pool(Array.from({ length: 100 }, (_, i) => make(i, "warm")), clients, async (raw) => {
      const res = await stack.alignWebhook(raw);
      if (res.status !== 200) throw new Error(`warm-up webhook: ${res.status} ${res.text}`);
    });
    await sleep(1500);
    const bodies = Array.from({ length: WEBHOOKS }, (_, i) => make(i, "bench"));
    const latencies = [];
    let failures = 0;
    const cpuBefore = workerdCpuMs();
    const started = performance.now();
    await pool(bodies, clients, async (raw) => {
      const t = performance.now();
      const res = await stack.alignWebhook(raw);
      latencies.push(performance.now() - t);
      if (res.status !== 200 || res.json?.duplicate !== false) failures += 1;
    });
    const wall = performance.now() - started;
    const cpuIngress = workerdCpuMs() - cpuBefore;
    // Let the queue consumer finish those jobs, to split ingress CPU from job CPU.
    const expected = 100 + WEBHOOKS;
    await waitFor(
      async () => {
        const s = await stack.stats();
        return Object.values(s.subjects.align).reduce((a, b) => a + b, 0) === expected && (s.subjects.align.unknown ?? 0) === 0;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    await sleep(1500);
    const cpuAll = workerdCpuMs() - cpuBefore;
    latencies.sort((a, b) => a - b);
    return {
      clients,
      requests: WEBHOOKS,
      failures,
      wall_ms: wall,
      req_per_s: (WEBHOOKS / wall) * 1000,
      mean_ms: latencies.reduce((a, b) => a + b, 0) / latencies.length,
      p50_ms: percentile(latencies, 50),
      p90_ms: percentile(latencies, 90),
      p99_ms: percentile(latencies, 99),
      max_ms: latencies[latencies.length - 1],
      cpu_ms_per_request: cpuIngress / WEBHOOKS,
      cpu_ms_per_request_with_job: cpuAll / WEBHOOKS,
    };
  } finally {
    await stack.stop();
  }
}

// ---------------------------------------------------------------------------------------
// 3. Reconcile throughput

/** Seeds `n` tracked Align subjects, all due, straight into the local D1 database. */
async function seed(dir, n) {
  await applyMigrations(dir);
  const level = env.WRANGLER_LOG;
  env.WRANGLER_LOG = "error";
  const config = unstable_readConfig({ config: join(ROOT, "wrangler.toml") });
  const { workerOptions } = unstable_getMiniflareWorkerOptions(config);
  if (level === undefined) delete env.WRANGLER_LOG;
  else env.WRANGLER_LOG = level;
  const binding = config.d1_databases[0].binding;
  const mf = new Miniflare({
    modules: true,
    script: "",
    cf: false,
    defaultPersistRoot: join(dir, "v3"),
    d1Databases: { [binding]: workerOptions.d1Databases[binding] },
  });
  try {
    const db = await mf.getD1Database(binding);
    const now = Date.now();
    const ids = Array.from({ length: n }, (_, i) => `rec-${String(i).padStart(6, "0")}`);
    // Pending, last checked an hour ago, due a minute ago: the steady state the cron meets.
    const insert = db.prepare(
      `INSERT INTO subjects (provider, ref, ref_kind, status, provider_status, sub_status, status_at,
         observed_at, source, created_at, updated_at, last_checked_at, next_check_at, check_step, failures, version)
       SELECT 'align', value, 'user', 'pending', 'pending', 'kyc_form_submission_accepted', ?2, ?2, 'poll',
         ?2, ?2, ?2, ?3, 1, 0, 2 FROM json_each(?1)`,
    );
    for (let i = 0; i < n; i += 1000) {
      await insert.bind(JSON.stringify(ids.slice(i, i + 1000)), now - 3_600_000, now - 60_000).run();
    }
    return ids;
  } finally {
    await mf.dispose();
  }
}

async function reconcile(n) {
  const dir = await mkdtemp(join(tmpdir(), "kyc-edge-bench-"));
  let stack;
  try {
    const seedStarted = performance.now();
    const ids = await seed(dir, n);
    const seedMs = performance.now() - seedStarted;
    stack = await startStack({ persistDir: dir, latencyMs: LATENCY_MS, vars: { WORKERS_PLAN: "paid" } });
    // One in ten has changed at the provider: those checks write a change and a KV projection.
    ids.forEach((id, i) =>
      stack.standIn.setAlign(id, i % 10 === 0 ? { status: "approved", sub_status: "kyc_form_submission_accepted" } : { status: "pending", sub_status: "kyc_form_submission_accepted" }),
    );
    const cpuBefore = workerdCpuMs();
    const started = performance.now();
    await stack.cron(Date.now());
    const cronMs = performance.now() - started;
    let last;
    let firstFetchMs;
    const samples = [];
    const done = await waitFor(
      async () => {
        if (firstFetchMs === undefined && stack.standIn.requests().length > 0) firstFetchMs = performance.now() - started;
        last = (await stack.stats()).last_cron_run;
        const finished = last.reconciled + last.failed;
        samples.push([performance.now() - started, finished]);
        return finished >= last.enqueued;
      },
      { timeoutMs: RECONCILE_TIMEOUT_MS, intervalMs: 500 },
    );
    const elapsed = performance.now() - started;
    const cpu = workerdCpuMs() - cpuBefore;
    const finished = last.reconciled + last.failed;
    // Steady rate over the middle of the run (10 %..90 % of jobs), free of start-up effects.
    const at = (fraction) => samples.find(([, k]) => k >= fraction * last.enqueued);
    const [t10, k10] = at(0.1) ?? [NaN, 0];
    const [t90, k90] = at(0.9) ?? samples[samples.length - 1];
    return {
      n,
      completed: Boolean(done),
      seed_ms: seedMs,
      cron_handler_ms: cronMs,
      cron_duration_ms: last.duration_ms,
      due: last.due,
      enqueued: last.enqueued,
      reconciled: last.reconciled,
      changed: last.changed,
      failed: last.failed,
      first_fetch_ms: firstFetchMs,
      elapsed_ms: elapsed,
      per_s: (finished / elapsed) * 1000,
      steady_per_s: ((k90 - k10) / (t90 - t10)) * 1000,
      provider_calls: stack.standIn.requests().length,
      cpu_ms_per_subject: cpu / Math.max(finished, 1),
      // Labelled as an extrapolation wherever it is printed.
      extrapolated_ms: done ? undefined : (last.enqueued / Math.max(finished, 1)) * elapsed,
    };
  } finally {
    await stack?.stop({ keepState: true });
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------

function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => String(c).padStart(widths[i])).join("  ");
  log(line(headers));
  log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const row of rows) log(line(row));
}

const results = { at: new Date().toISOString(), node: process.version };

log("kyc-edge bench (local: workerd via Miniflare, local D1/KV/Queue, stand-in provider on loopback)");
log();
results.size = await wasmSize();
log("## Bundle");
table(
  ["file", "raw", "gzip -9"],
  [
    ["build/index_bg.wasm", kib(results.size.wasm_raw), kib(results.size.wasm_gzip)],
    ["build/index.js", kib(results.size.js_raw), "-"],
    ["wasm + js", kib(results.size.wasm_raw + results.size.js_raw), kib(results.size.total_gzip)],
  ],
);
log("(Workers limits, compressed: 3 MiB Free, 10 MiB Paid)");
log();

log(`## Webhook ingress (${WEBHOOKS} signed Align customer.kycs.updated, distinct events)`);
results.ingress = [];
for (const clients of CLIENTS) {
  progress(`ingress: ${clients} client(s)...`);
  results.ingress.push(await ingress(clients));
}
table(
  ["clients", "req/s", "mean ms", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors", "CPU ms/req", "CPU ms/req +job"],
  results.ingress.map((r) => [
    r.clients,
    fmt(r.req_per_s, 0),
    fmt(r.mean_ms, 2),
    fmt(r.p50_ms, 2),
    fmt(r.p90_ms, 2),
    fmt(r.p99_ms, 2),
    fmt(r.max_ms, 1),
    r.failures,
    fmt(r.cpu_ms_per_request, 2),
    fmt(r.cpu_ms_per_request_with_job, 2),
  ]),
);
log("CPU = utime+stime of the workerd process (/proc) over the run / requests: it includes the");
log("local D1/KV/Queue simulators and the queue consumer running concurrently, so it is an upper");
log("bound on the worker's own CPU. '+job' adds the reconcile jobs those webhooks queued.");
log();

log(`## Reconcile throughput (one cron run, stand-in latency ${LATENCY_MS} ms, WORKERS_PLAN=paid)`);
results.reconcile = [];
for (const n of RECONCILE_N) {
  progress(`reconcile: ${n} subjects...`);
  results.reconcile.push(await reconcile(n));
}
table(
  ["due", "enqueued", "done", "cron ms", "1st fetch ms", "total s", "subjects/s", "steady/s", "changed", "failed", "CPU ms/subj", "fits 5 min"],
  results.reconcile.map((r) => [
    r.n,
    r.enqueued,
    r.completed ? r.reconciled + r.failed : `${r.reconciled + r.failed} (timed out)`,
    fmt(r.cron_duration_ms, 0),
    fmt(r.first_fetch_ms, 0),
    r.completed ? fmt(r.elapsed_ms / 1000, 1) : `~${fmt(r.extrapolated_ms / 1000, 0)} (extrapolated)`,
    fmt(r.per_s, 1),
    fmt(r.steady_per_s, 1),
    r.changed,
    r.failed,
    fmt(r.cpu_ms_per_subject, 2),
    (r.completed ? r.elapsed_ms : r.extrapolated_ms) <= CRON_PERIOD_MS ? "yes" : "no",
  ]),
);
const done = results.reconcile.filter((r) => r.enqueued > 0);
if (done.length >= 2) {
  const [a, b] = [done[0], done[done.length - 1]];
  const time = (r) => (r.completed ? r.elapsed_ms : r.extrapolated_ms);
  results.growth = { from: a.n, to: b.n, count_ratio: b.n / a.n, time_ratio: time(b) / time(a) };
  log(
    `Growth: ${b.n / a.n}x the subjects took ${fmt(time(b) / time(a), 2)}x the time` +
      `${a.completed && b.completed ? "" : " (partly extrapolated)"}; ${fmt(time(b) / time(a) / (b.n / a.n), 2)} = time ratio / count ratio (1.00 is linear).`,
  );
}
for (const r of results.reconcile) {
  log(`${r.n} due: ~${fmt((r.steady_per_s * LATENCY_MS) / 1000, 1)} provider calls in flight on average (steady rate x latency).`);
}
for (const r of results.reconcile) {
  const time = r.completed ? r.elapsed_ms : r.extrapolated_ms;
  log(
    `${r.n} due: ${r.completed ? "" : "EXTRAPOLATED from a partial run: "}${fmt(time / 1000, 1)} s, ` +
      `${time <= CRON_PERIOD_MS ? "within" : "NOT within"} one 5-minute cron period.`,
  );
}
log("Local figures: one workerd process on this machine, Miniflare's queue consumer and SQLite-backed");
log("D1; Cloudflare runs consumers concurrently (max_concurrency) against remote D1.");

await mkdir(join(ROOT, ".bench"), { recursive: true });
await writeFile(join(ROOT, ".bench", "last.json"), `${JSON.stringify(results, null, 2)}\n`);
log();
log("figures written to .bench/last.json");
