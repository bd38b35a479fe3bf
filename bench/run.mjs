// `make bench`: figures for the compiled worker, run locally (workerd through Miniflare, local
// D1/KV/Queue, a stand-in provider API on loopback). Not a test: it prints tables and writes
// the figures to .bench/last.json.
//
//   1. bundle: wasm size, raw and gzip -9 (what Cloudflare's size limits count)
//   2. cost: every operation on Cloudflare's meters (bench/costs.mjs), against the committed
//      baseline (bench/baseline.json); the Free plan's capacity and the price of 1M webhooks
//   3. ingress: signed Align webhooks from N concurrent clients: req/s, latency percentiles
//   4. reconcile: N due subjects, one cron run, a stand-in answering after 50 ms: subjects/s
//   5. notify: status changes delivered to an endpoint answering after 50 ms: deliveries/s and
//      the time from webhook to notification
//   6. scale: the operator's reads (list, filters, stuck, stats) over 1,000,000 subjects
//   7. cold start: loading the worker in workerd, first request
//   8. soak: `make soak` run whole (20,000 webhooks), its counts and checks
//
// `node bench/run.mjs --baseline DIR` measures only the cost table on the checkout in DIR (built,
// with its own migrations) and writes bench/baseline.json: how the "before" figures were made.
//
// Knobs: BENCH_ONLY (comma list of section names), BENCH_COST_N (200), BENCH_WEBHOOKS (2000),
// BENCH_CLIENTS ("1,16"), BENCH_RECONCILE_N ("1000,10000"), BENCH_NOTIFY_N (1000),
// BENCH_SCALE_N (1000000), BENCH_LATENCY_MS (50), BENCH_FLOOR_N (4000 requests of each floor),
// BENCH_FLOOR_ONLY=1 (the cost section measures only the yardstick and /healthz), BENCH_SQL=1 (rows per SQL statement per
// operation), BENCH_PROFILE_US (500: V8's sampling interval for the worker's own CPU; 0 = not
// measured), BENCH_LARGEST_CRON_RUNS (3 Free-plan cron runs leasing the most subjects allowed),
// BENCH_VERBOSE=1 (workerd's own output).
import { readFile, mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { gzipSync, constants as zlib } from "node:zlib";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFile, execFileSync } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { applyMigrations, startWorker } from "../tests/support/worker.mjs";
import { startStack } from "../tests/support/stack.mjs";
import { WaitTimeout, eventually, kycsUpdated, pool, startSink } from "../sandbox/kit.mjs";
import { ROOT, checkout, percentile, quietConsole, seedSubjects, startMetered, spent, workerdCpuMs } from "./metered.mjs";
import {
  FREE_PER_DAY,
  FREE_RECONCILE_BUDGET,
  OPERATIONS,
  PROFILE_US,
  PAID_BASE,
  PAID_PER_MONTH,
  billed,
  freeCapacity,
  marginalPerMillion,
  measureCosts,
  measureLargestCron,
  paidBill,
  perWebhook,
} from "./costs.mjs";

const env = process.env;
const args = process.argv.slice(2);
const BASELINE_DIR = args[0] === "--baseline" ? args[1] : undefined;
const ONLY = env.BENCH_ONLY?.split(",").map((s) => s.trim());
const COST_N = Number(env.BENCH_COST_N ?? 200);
const WEBHOOKS = Number(env.BENCH_WEBHOOKS ?? 2000);
const CLIENTS = (env.BENCH_CLIENTS ?? "1,16").split(",").map(Number);
const RECONCILE_N = (env.BENCH_RECONCILE_N ?? "1000,10000").split(",").map(Number);
const NOTIFY_N = Number(env.BENCH_NOTIFY_N ?? 1000);
const SCALE_N = Number(env.BENCH_SCALE_N ?? 1_000_000);
const LATENCY_MS = Number(env.BENCH_LATENCY_MS ?? 50);
const CRON_PERIOD_MS = 5 * 60_000;
const WIDTH = 8;

const { log, progress } = quietConsole();
const fmt = (n, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "-");
const int = (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "-");
const kib = (bytes) => `${(bytes / 1024).toFixed(1)} KiB`;
const wanted = (section) => !ONLY || ONLY.includes(section);

function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join("  ");
  log(line(headers));
  log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const row of rows) log(line(row));
}

/** Whether `check` came true within `timeoutMs`: for a figure that reports a timeout rather than failing on it. */
async function within(what, check, options) {
  try {
    await eventually(what, check, options);
    return true;
  } catch (error) {
    if (error instanceof WaitTimeout) return false;
    throw error;
  }
}

// ---------------------------------------------------------------------------------------
// 1. Bundle

async function bundle() {
  const wasm = await readFile(join(ROOT, "build", "index_bg.wasm"));
  const js = await readFile(join(ROOT, "build", "index.js"));
  const size = {
    wasm_raw: wasm.length,
    wasm_gzip: gzipSync(wasm, { level: zlib.Z_BEST_COMPRESSION }).length,
    js_raw: js.length,
    total_gzip: gzipSync(Buffer.concat([wasm, js]), { level: zlib.Z_BEST_COMPRESSION }).length,
  };
  log("## Bundle");
  table(
    ["file", "raw", "gzip -9"],
    [
      ["build/index_bg.wasm", kib(size.wasm_raw), kib(size.wasm_gzip)],
      ["build/index.js", kib(size.js_raw), "-"],
      ["wasm + js", kib(size.wasm_raw + size.js_raw), kib(size.total_gzip)],
    ],
  );
  log("(Workers limits, compressed: 3 MiB Free, 10 MiB Paid)");
  return size;
}

// ---------------------------------------------------------------------------------------
// 2. Cost

const COLUMNS = [
  ["CPU ms", (m) => fmt(m.cpu_ms, 2)],
  ["own CPU ms", (m) => fmt(m.own_cpu_ms, 2)],
  ["x yardstick", (m) => fmt(m.cpu_x_yardstick, 2)],
  ["x healthz", (m) => fmt(m.cpu_x_healthz, 1)],
  ["D1 stmts", (m) => fmt(m.d1_statements, 1)],
  ["rows read", (m) => fmt(m.d1_rows_read, 1)],
  ["rows written", (m) => fmt(m.d1_rows_written, 1)],
  ["KV r/w", (m) => `${fmt(m.kv_reads, 2)}/${fmt(m.kv_writes + m.kv_deletes, 2)}`],
  ["queue msgs", (m) => fmt(m.queue_messages, 2)],
  ["subreq", (m) => fmt(m.subrequests, 2)],
  ["AE pts", (m) => fmt(m.analytics_points, 2)],
];

function costTable(after, before) {
  const cell = (op, render) => {
    const now = after[op] ? render(after[op]) : "-";
    if (!before) return now;
    const was = before[op] ? render(before[op]) : "-";
    return was === now ? now : `${was} → ${now}`;
  };
  table(
    ["operation (per unit)", ...COLUMNS.map(([h]) => h)],
    OPERATIONS.map(([op, label]) => [label, ...COLUMNS.map(([, render]) => cell(op, render))]),
  );
}

function capacityLines(name, costs) {
  const webhook = perWebhook(costs);
  const check = billed(costs.check_unchanged);
  const free = freeCapacity(webhook, costs.cron_idle);
  const freeChecks = freeCapacity(check, costs.cron_idle);
  const bill = paidBill(webhook, 1_000_000, costs.cron_idle);
  return { name, webhook, free, freeChecks, bill, marginal: marginalPerMillion(webhook) };
}

/**
 * The cost table of the build in `target`; with BENCH_PROFILE_US > 0 the same phases run again
 * under the profiler for the worker's own CPU alone (the profiler would distort /proc's).
 */
async function measureCostsAndOwnCpu(target, what, sqlProfile) {
  progress(`cost: ${what}`);
  const costs = await measureCosts({ checkout: target, n: COST_N, width: WIDTH, progress, sqlProfile });
  if (PROFILE_US > 0) {
    progress(`cost: ${what} again, profiled`);
    const profiled = await measureCosts({ checkout: target, n: COST_N, width: WIDTH, progress, profileUs: PROFILE_US });
    for (const [op, m] of Object.entries(profiled)) {
      if (!costs[op]) continue;
      for (const [key, value] of Object.entries(m)) if (key.includes("own_cpu_ms") || key === "profiler_overhead_cpu_ms") costs[op][key] = value;
    }
  }
  return costs;
}

async function cost() {
  log(`## Cost on Cloudflare's meters (${COST_N} subjects per operation, ${WIDTH} clients)`);
  const sqlProfile = env.BENCH_SQL ? [] : undefined;
  const costs = await measureCostsAndOwnCpu(await checkout(), "this build", sqlProfile);
  let baseline;
  try {
    baseline = JSON.parse(await readFile(join(ROOT, "bench", "baseline.json"), "utf8"));
  } catch {
    baseline = undefined;
  }
  if (baseline) log(`before → after: baseline ${baseline.commit.slice(0, 7)} (${baseline.subject}) → this build; one figure where equal`);
  costTable(costs, baseline?.costs);
  if (costs.yardstick && costs.healthz) {
    log(`Per-request floor: GET /healthz = ${fmt(costs.healthz.cpu_x_yardstick, 2)} x the yardstick (target <= 1.3).`);
    if (costs.yardstick_log) {
      const line = costs.yardstick_log.cpu_ms - costs.yardstick.cpu_ms;
      log(`A request's log line (built in Rust, one console.log; workerd's handling included): ${fmt(line * 1000, 0)} µs = ${fmt(line / costs.yardstick.cpu_ms, 2)} x the yardstick.`);
    }
  }
  log("CPU: workerd's utime+stime over the phase / operations, local D1/KV/Queue simulation included");
  log("(an upper bound of the worker's own CPU); 'x yardstick' is that over a GET / on bench/yardstick (a");
  log("minimal worker, same toolchain and flags, its own workerd beside kyc-edge) and 'x healthz' that over");
  log("a GET /healthz, both measured in the same run. D1 rows from each result's meta. A reconcile's share");
  log("of a queue invocation shows as fractional KV/queue figures. Queue messages are billed 3 operations each (write, read, delete).");
  log(ownCpuNote(costs));
  if (env.BENCH_FLOOR_ONLY) return { costs };
  if (sqlProfile) {
    log();
    log("Rows per operation by SQL statement (BENCH_SQL=1):");
    for (const p of sqlProfile) {
      log(`  ${p.operation.padEnd(18)} x${fmt(p.per_operation_runs, 2)}  read ${fmt(p.rows_read, 1).padStart(6)}  written ${fmt(p.rows_written, 1).padStart(5)}  ${p.sql}`);
    }
  }
  const largestRuns = Number(env.BENCH_LARGEST_CRON_RUNS ?? 3);
  const largestCron = largestRuns > 0 ? await measureLargestCron({ checkout: await checkout(), runs: largestRuns, progress }) : [];
  log();
  log("Per invocation, against the Free plan's 10 ms CPU. 'CPU ms': workerd's CPU over the invocation");
  log("alone, local D1/KV/Queue simulation included (an upper bound); 'own CPU ms': the worker's own,");
  log("from V8's sampling profiler on its isolate (above). A batch's figures are the mean over the");
  log("phase's batches, which the consumer receives full (max_batch_size 7) but for the last:");
  const invocations = [];
  for (const op of ["reconcile_new", "reconcile_change", "sumsub_webhook", "persona_webhook"]) {
    const m = costs[op];
    if (m?.batch_cpu_ms === undefined) continue;
    invocations.push([
      `queue batch: ${op.replace("_", " ")} (mean ${fmt(m.batch_messages, 1)} msgs)`,
      fmt(m.batch_cpu_ms, 2),
      fmt(m.batch_own_cpu_ms, 2),
      `${fmt(m.batch_cpu_ms / m.batch_messages, 2)} / ${fmt(m.batch_own_cpu_ms / m.batch_messages, 2)}`,
    ]);
  }
  for (const op of ["check_unchanged", "check_changed", "cron_idle"]) {
    const m = costs[op];
    if (m?.run_cpu_ms === undefined) continue;
    invocations.push([`cron run leasing ${fmt(m.run_leased, 0)} subjects (${op}, paid)`, fmt(m.run_cpu_ms, 2), fmt(m.run_own_cpu_ms, 2), "-"]);
  }
  for (const [i, run] of largestCron.entries()) {
    invocations.push([`cron run leasing ${fmt(run.leased, 0)} subjects (Free plan's largest, run ${i + 1})`, fmt(run.cpu_ms, 2), fmt(run.own_cpu_ms, 2), "-"]);
  }
  table(["invocation", "CPU ms", "own CPU ms", "per message (CPU / own)"], invocations);
  if (largestCron.length) {
    log(`The Free plan's largest cron run: WORKERS_PLAN=free leases at most ${FREE_RECONCILE_BUDGET} subjects; every subject due,`);
    log("seeded into D1, one run to warm up first; each row is two runs, one on /proc and the next profiled. A");
    log("single run's workerd CPU is a few of the kernel's 10 ms ticks.");
  }
  log();
  const rows = [capacityLines("this build", costs)];
  if (baseline) rows.unshift(capacityLines(`baseline ${baseline.commit.slice(0, 7)}`, baseline.costs));
  log("One status-changing webhook, end to end = its ingress + its reconcile + the checks the next cron");
  log("run makes because of it (the same model for both builds). Per webhook:");
  table(
    ["build", "requests", "CPU ms", "D1 rows read", "D1 rows written", "KV writes", "queue ops"],
    rows.map((r) => [r.name, fmt(r.webhook.requests, 2), fmt(r.webhook.cpu_ms, 1), fmt(r.webhook.d1_rows_read, 1), fmt(r.webhook.d1_rows_written, 1), fmt(r.webhook.kv_writes + r.webhook.kv_deletes, 2), fmt(r.webhook.queue_operations, 1)]),
  );
  log();
  log("Workers Free plan (per day; less 288 cron runs' own use), capacity = min over meters of");
  log("(daily limit − cron runs) / use per unit:");
  table(
    ["build", "webhooks/day", "bound by", "subjects re-checked/day", "bound by"],
    rows.map((r) => [r.name, int(r.free.per_day), r.free.binding, int(r.freeChecks.per_day), r.freeChecks.binding]),
  );
  log(`Free limits used: ${Object.entries(FREE_PER_DAY).map(([k, v]) => `${k} ${int(v)}`).join(", ")}; 10 ms CPU per invocation.`);
  log();
  log("Workers Paid, 1,000,000 such webhooks in a month plus 8,640 cron runs:");
  log("  bill = $5 + Σ over meters max(0, used − included) × price; every invocation counted as a request.");
  table(
    ["build", ...Object.keys(PAID_PER_MONTH), "bill $", "$/M after inclusions"],
    rows.map((r) => [
      r.name,
      ...r.bill.items.map((i) => (i.over > 0 ? `${int(i.used)} ($${fmt(i.dollars, 2)})` : int(i.used))),
      fmt(r.bill.total, 2),
      fmt(r.marginal, 2),
    ]),
  );
  log(`Prices: $${PAID_BASE}/month; ${Object.entries(PAID_PER_MONTH).map(([k, [inc, p]]) => `${k} ${int(inc)} incl. then $${p}/M`).join("; ")}.`);
  log("(developers.cloudflare.com /workers/platform/pricing/, /d1/platform/pricing/, /kv/platform/pricing/,");
  log(" /queues/platform/pricing/, /analytics/analytics-engine/pricing/; November 2026)");
  return { costs, largest_cron: largestCron, baseline: baseline && { commit: baseline.commit }, capacity: rows };
}

/** How the own CPU column is measured, with this run's interval and profiler overhead. */
function ownCpuNote(costs) {
  if (!(PROFILE_US > 0)) return "Own CPU: not measured (BENCH_PROFILE_US=0).";
  const h = costs.healthz;
  return [
    "Own CPU: V8's sampling CPU profiler on the kyc-edge isolate alone, through workerd's inspector",
    `(${PROFILE_US} µs interval asked; samples x the sampling period measured in the same profile). V8 samples`,
    "the isolate only while workerd's thread is inside it: the local D1 (a Durable Object in another",
    "isolate, native SQLite), KV and Queue simulators are excluded, the worker's JavaScript, wasm, GC and",
    "V8/runtime work with no JavaScript on the stack are counted, and so is the meter's wrapper around",
    "the bindings (bench only), a thread descheduled while inside the isolate, and the sampling itself.",
    "Measured in a second pass of the same phases: the profiler adds",
    `${fmt(h?.profiler_overhead_cpu_ms * 1000, 0)} µs of workerd CPU to a /healthz (this run), which would distort 'CPU ms'.`,
  ].join("\n");
}

async function measureBaseline(dir) {
  const commit = execFileSync("git", ["-C", dir, "rev-parse", "HEAD"]).toString().trim();
  const subject = execFileSync("git", ["-C", dir, "log", "-1", "--format=%s"]).toString().trim();
  log(`## Baseline cost table: ${commit.slice(0, 7)} ${subject}`);
  const costs = await measureCostsAndOwnCpu(await checkout(dir), "the baseline");
  costTable(costs);
  const file = {
    commit,
    subject,
    measured_at: new Date().toISOString(),
    how: `node bench/run.mjs --baseline <checkout of ${commit.slice(0, 7)}, built> (BENCH_COST_N=${COST_N}, BENCH_PROFILE_US=${PROFILE_US})`,
    costs,
  };
  await writeFile(join(ROOT, "bench", "baseline.json"), `${JSON.stringify(file, null, 2)}\n`);
  log("written to bench/baseline.json");
}

// ---------------------------------------------------------------------------------------
// 3. Ingress

async function ingressRun(clients) {
  const stack = await startStack({ vars: { WORKERS_PLAN: "paid" } });
  try {
    const base = Date.now() - 60_000;
    // Distinct subjects and bodies: every request is a new event whose body is applied by its job.
    const make = (i, prefix) =>
      JSON.stringify(
        kycsUpdated(`${prefix}-${clients}-${i}`, {
          status: i % 3 === 0 ? "approved" : "pending",
          sub_status: "kyc_form_submission_accepted",
          createdAt: new Date(base + i),
        }),
      );
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
    const cpu = workerdCpuMs() - cpuBefore;
    const applied = await within(
      "every webhook's body applied",
      async () => (await stack.sql("SELECT COUNT(*) AS n FROM subjects WHERE status != 'unknown'"))[0].n >= WEBHOOKS + 100,
      { timeoutMs: 180_000, intervalMs: 500 },
    );
    latencies.sort((a, b) => a - b);
    return {
      clients,
      requests: WEBHOOKS,
      failures,
      all_applied: applied,
      req_per_s: (WEBHOOKS / wall) * 1000,
      mean_ms: latencies.reduce((a, b) => a + b, 0) / latencies.length,
      p50_ms: percentile(latencies, 50),
      p90_ms: percentile(latencies, 90),
      p99_ms: percentile(latencies, 99),
      max_ms: latencies[latencies.length - 1],
      cpu_ms_per_request: cpu / WEBHOOKS,
    };
  } finally {
    await stack.stop();
  }
}

async function ingress() {
  log(`## Webhook ingress (${WEBHOOKS} signed Align customer.kycs.updated, distinct events)`);
  const results = [];
  for (const clients of CLIENTS) {
    progress(`ingress: ${clients} client(s)...`);
    results.push(await ingressRun(clients));
  }
  table(
    ["clients", "req/s", "mean ms", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors", "all applied", "CPU ms/req"],
    results.map((r) => [r.clients, fmt(r.req_per_s, 0), fmt(r.mean_ms, 2), fmt(r.p50_ms, 2), fmt(r.p90_ms, 2), fmt(r.p99_ms, 2), fmt(r.max_ms, 1), r.failures, r.all_applied ? "yes" : "NO", fmt(r.cpu_ms_per_request, 2)]),
  );
  log("CPU/req: workerd's CPU during the requests / requests; the queue consumer applying them runs");
  log("concurrently and is included (see the cost table for ingress alone).");
  return results;
}

// ---------------------------------------------------------------------------------------
// 4. Reconcile

async function reconcileRun(n) {
  const dir = await mkdtemp(join(tmpdir(), "kyc-edge-bench-"));
  let stack;
  try {
    const seedStarted = performance.now();
    await seedSubjects(dir, n, { prefix: "rec", dueAt: Date.now() - 60_000 });
    const seedMs = performance.now() - seedStarted;
    stack = await startStack({ persistDir: dir, latencyMs: LATENCY_MS, vars: { WORKERS_PLAN: "paid", RECONCILE_BUDGET: "10000" } });
    // One in ten has changed at the provider: those checks write a change and a KV projection.
    for (let i = 0; i < n; i += 1) {
      const id = `rec-${String(i).padStart(7, "0")}`;
      stack.standIn.setAlign(id, { status: i % 10 === 0 ? "approved" : "pending", sub_status: "kyc_form_submission_accepted" });
    }
    const cpuBefore = workerdCpuMs();
    const started = performance.now();
    await stack.cron(Date.now());
    const cronMs = performance.now() - started;
    const samples = [];
    let checked = 0;
    const done = await within(
      `${n} subjects checked`,
      async () => {
        checked = (await stack.sql("SELECT COUNT(*) AS n FROM subjects WHERE last_checked_at >= ?", Date.now() - (performance.now() - started) - 1000))[0].n;
        samples.push([performance.now() - started, checked]);
        return checked >= n;
      },
      { timeoutMs: Number(env.BENCH_RECONCILE_TIMEOUT_S ?? 600) * 1000, intervalMs: 500 },
    );
    const elapsed = performance.now() - started;
    const cpu = workerdCpuMs() - cpuBefore;
    const changed = (await stack.sql("SELECT COUNT(*) AS n FROM subjects WHERE status = 'approved'"))[0].n;
    const at = (fraction) => samples.find(([, k]) => k >= fraction * n);
    const [t10, k10] = at(0.1) ?? [NaN, 0];
    const [t90, k90] = at(0.9) ?? samples[samples.length - 1];
    return {
      n,
      completed: done,
      seed_ms: seedMs,
      cron_handler_ms: cronMs,
      checked,
      changed,
      elapsed_ms: elapsed,
      per_s: (checked / elapsed) * 1000,
      steady_per_s: ((k90 - k10) / (t90 - t10)) * 1000,
      provider_calls: stack.standIn.requests().length,
      cpu_ms_per_subject: cpu / Math.max(checked, 1),
      extrapolated_ms: done ? undefined : (n / Math.max(checked, 1)) * elapsed,
    };
  } finally {
    await stack?.stop({ keepState: true });
    await rm(dir, { recursive: true, force: true });
  }
}

async function reconcile() {
  log(`## Reconcile rate (one cron run, stand-in latency ${LATENCY_MS} ms, WORKERS_PLAN=paid, budget 10,000)`);
  const results = [];
  for (const n of RECONCILE_N) {
    progress(`reconcile: ${n} subjects...`);
    results.push(await reconcileRun(n));
  }
  table(
    ["due", "checked", "cron ms", "total s", "subjects/s", "steady/s", "provider calls", "changed", "CPU ms/subj", "within 5 min"],
    results.map((r) => {
      const time = r.completed ? r.elapsed_ms : r.extrapolated_ms;
      return [
        r.n,
        r.completed ? r.checked : `${r.checked} (timed out)`,
        fmt(r.cron_handler_ms, 0),
        r.completed ? fmt(time / 1000, 1) : `~${fmt(time / 1000, 0)} (extrapolated)`,
        fmt(r.per_s, 1),
        fmt(r.steady_per_s, 1),
        r.provider_calls,
        r.changed,
        fmt(r.cpu_ms_per_subject, 2),
        time <= CRON_PERIOD_MS ? "yes" : "no",
      ];
    }),
  );
  if (results.length >= 2) {
    const [a, b] = [results[0], results[results.length - 1]];
    const time = (r) => (r.completed ? r.elapsed_ms : r.extrapolated_ms);
    log(`Growth: ${b.n / a.n}x the subjects took ${fmt(time(b) / time(a), 2)}x the time (1.00 per 1x is linear).`);
  }
  log("Local: one workerd process, Miniflare's queue consumer and SQLite-backed D1; Cloudflare runs");
  log("consumers concurrently (max_concurrency) against remote D1.");
  return results;
}

// ---------------------------------------------------------------------------------------
// 5. Notifications

/** When each subject's first notification arrived at `sink` (ms since the epoch), by ref. */
function arrivals(sink) {
  const first = new Map();
  for (const { ref, arrivedAt } of sink.received()) if (!first.has(ref)) first.set(ref, arrivedAt);
  return first;
}

async function notify() {
  log(`## Notifications (status changes delivered to an endpoint answering after ${LATENCY_MS} ms)`);
  progress("notify...");
  const secret = `whsec_${Buffer.from("kyc-edge-bench-notification-key!").toString("base64")}`;
  const sink = await startSink({ secrets: [secret], delayMs: LATENCY_MS });
  const stack = await startStack({ vars: { WORKERS_PLAN: "paid", APP_WEBHOOK_URL: sink.url, APP_WEBHOOK_SECRET: secret } });
  try {
    const sentAt = new Map();
    const bodies = Array.from({ length: NOTIFY_N }, (_, i) => [
      `notify-${i}`,
      JSON.stringify(kycsUpdated(`notify-${i}`, { status: "approved", sub_status: "kyc_form_submission_accepted", createdAt: new Date(Date.now() - 60_000 + i) })),
    ]);
    const started = Date.now();
    await pool(bodies, 16, async ([ref, raw]) => {
      sentAt.set(ref, Date.now());
      const res = await stack.alignWebhook(raw);
      if (res.status !== 200) throw new Error(`notify webhook: ${res.status}`);
    });
    const burst = await eventually(`${NOTIFY_N} notifications delivered`, () => {
      const first = arrivals(sink);
      return first.size >= NOTIFY_N && first;
    }, { timeoutMs: 300_000, intervalMs: 200 });
    const delays = [...burst].filter(([ref]) => sentAt.has(ref)).map(([ref, t]) => t - sentAt.get(ref)).sort((a, b) => a - b);
    const times = [...burst.values()].sort((a, b) => a - b);
    // Unloaded: one change at a time, the next sent once the previous was delivered.
    const single = [];
    for (let i = 0; i < 20; i += 1) {
      const ref = `notify-alone-${i}`;
      const t = Date.now();
      const res = await stack.alignWebhook(
        JSON.stringify(kycsUpdated(ref, { status: "approved", sub_status: "kyc_form_submission_accepted", createdAt: new Date(Date.now() - 1000) })),
      );
      if (res.status !== 200) throw new Error(`notify webhook: ${res.status}`);
      const note = await eventually(`the notification about ${ref}`, () => sink.received().find((r) => r.ref === ref), { timeoutMs: 60_000, intervalMs: 20 });
      single.push(note.arrivedAt - t);
    }
    single.sort((a, b) => a - b);
    const result = {
      changes: NOTIFY_N,
      delivered: burst.size,
      deliveries_per_s: (NOTIFY_N / (times[times.length - 1] - started)) * 1000,
      p50_ms: percentile(delays, 50),
      p99_ms: percentile(delays, 99),
      max_ms: delays[delays.length - 1],
      alone_p50_ms: percentile(single, 50),
      alone_p99_ms: percentile(single, 99),
    };
    table(
      ["load", "changes", "delivered", "deliveries/s", "webhook→notification p50 ms", "p99 ms"],
      [
        [`burst, 16 clients`, result.changes, result.delivered, fmt(result.deliveries_per_s, 1), fmt(result.p50_ms, 0), fmt(result.p99_ms, 0)],
        ["one at a time", single.length, single.length, "-", fmt(result.alone_p50_ms, 0), fmt(result.alone_p99_ms, 0)],
      ],
    );
    log("Each change: ingress, its reconcile writes the change and its outbox row in one batch, a notify");
    log("job signs and POSTs it (Standard Webhooks): two queue hops, each waiting up to max_batch_timeout");
    log("(1 s) for a batch. Deliveries/s counts from the first webhook sent; in a burst the latency is the");
    log("local queue's backlog (one consumer here; Cloudflare runs up to max_concurrency).");
    return result;
  } finally {
    await stack.stop();
    await sink.stop();
  }
}

// ---------------------------------------------------------------------------------------
// 6. Scale

async function scale() {
  log(`## Operator reads over ${int(SCALE_N)} subjects (p50 of 20 calls each; D1 rows read per call)`);
  const dir = await mkdtemp(join(tmpdir(), "kyc-edge-scale-"));
  let stack;
  try {
    progress(`scale: seeding ${SCALE_N} subjects...`);
    const statuses = ["approved", "approved", "approved", "pending", "rejected", "incomplete", "unknown", "approved"];
    const seedStarted = performance.now();
    await seedSubjects(dir, SCALE_N, { prefix: "sc", dueAt: Date.now() + 86_400_000, status: (i) => statuses[i % statuses.length], progress });
    const seedMs = performance.now() - seedStarted;
    stack = await startMetered({ checkout: await checkout(), persistDir: dir, vars: { WORKERS_PLAN: "paid" } });
    const mid = `sc-${String(Math.floor(SCALE_N / 2)).padStart(7, "0")}`;
    const calls = [
      ["list, first page (100)", "/v1/subjects?limit=100"],
      ["list, a page in the middle", `/v1/subjects?limit=100&cursor=align/${mid}`],
      ["list, status=pending (100)", "/v1/subjects?status=pending&limit=100"],
      ["list, provider+status (100)", "/v1/subjects?provider=align&status=incomplete&limit=100"],
      ["stuck subjects (50)", "/v1/subjects/stuck?limit=50"],
      ["one subject from D1", `/v1/subjects/align/${mid}?consistency=strong`],
      ["stats", "/v1/stats"],
      ["dashboard page", "/dashboard/"],
    ];
    const results = [];
    for (const [name, path] of calls) {
      await stack.api("GET", path);
      const times = [];
      const before = await stack.meter();
      let status;
      for (let i = 0; i < 20; i += 1) {
        const t = performance.now();
        status = (await stack.api("GET", path)).status;
        times.push(performance.now() - t);
      }
      const used = spent(before, await stack.meter(), (kind) => kind.startsWith("fetch"));
      times.sort((a, b) => a - b);
      results.push({ name, path, status, p50_ms: percentile(times, 50), rows_read: used.d1_rows_read / 20 });
    }
    table(
      ["read", "status", "p50 ms", "D1 rows read"],
      results.map((r) => [r.name, r.status, fmt(r.p50_ms, 1), fmt(r.rows_read, 0)]),
    );
    log(`(seeding ${int(SCALE_N)} rows took ${fmt(seedMs / 1000, 0)} s; rows read stay bounded by the page, not the table)`);
    return { subjects: SCALE_N, seed_ms: seedMs, results };
  } finally {
    await stack?.stop({ keepState: true });
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------
// 7. Cold start

async function coldStart() {
  log("## Cold start");
  progress("cold start...");
  const dir = await mkdtemp(join(tmpdir(), "kyc-edge-cold-"));
  const runs = [];
  try {
    await applyMigrations(dir);
    // The same workerd start, bindings and all, with a one-line worker: the difference is
    // loading ours.
    const helloPath = join(ROOT, "build", "bench-hello.mjs");
    await writeFile(helloPath, "export default { fetch() { return new Response('ok'); }, queue() {} };\n");
    for (let i = 0; i < 5; i += 1) {
      const t0 = performance.now();
      const hello = await startWorker({ persistDir: dir, scriptPath: helloPath });
      const helloReady = performance.now() - t0;
      await hello.stop();
      const t1 = performance.now();
      const worker = await startWorker({ persistDir: dir, vars: { API_TOKEN: "cold-start-bench-token-0123456789ab" } });
      const ready = performance.now() - t1;
      try {
        const t2 = performance.now();
        await fetch(`${worker.url}/healthz`).then((r) => r.arrayBuffer());
        const first = performance.now() - t2;
        const warm = [];
        for (let j = 0; j < 20; j += 1) {
          const t = performance.now();
          await fetch(`${worker.url}/healthz`).then((r) => r.arrayBuffer());
          warm.push(performance.now() - t);
        }
        warm.sort((a, b) => a - b);
        runs.push({ hello_ready_ms: helloReady, ready_ms: ready, first_ms: first, warm_p50_ms: percentile(warm, 50) });
      } finally {
        await worker.stop();
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const median = (key) => runs.map((r) => r[key]).sort((a, b) => a - b)[Math.floor(runs.length / 2)];
  const result = {
    hello_ready_ms: median("hello_ready_ms"),
    ready_ms: median("ready_ms"),
    load_ms: median("ready_ms") - median("hello_ready_ms"),
    first_request_ms: median("first_ms"),
    warm_request_ms: median("warm_p50_ms"),
  };
  table(
    ["workerd start, 1-line worker", "workerd start, kyc-edge", "difference (load)", "first request", "warm request p50"],
    [[`${fmt(result.hello_ready_ms, 0)} ms`, `${fmt(result.ready_ms, 0)} ms`, `${fmt(result.load_ms, 0)} ms`, `${fmt(result.first_request_ms, 1)} ms`, `${fmt(result.warm_request_ms, 2)} ms`]],
  );
  log("Medians of 5. workerd compiles and instantiates the wasm when it loads the worker, before the");
  log("first request: the difference between the two starts is that load; the first GET /healthz on the");
  log("fresh isolate then runs the panic-hook start and the first request's code.");
  return result;
}

// ---------------------------------------------------------------------------------------
// 8. Soak

/** `make soak` (bench/soak.mjs) in a child process: its table, and whether every check passed. */
async function soak() {
  log("## Soak (make soak: signed webhooks at saturation, duplicates, cron interleaved)");
  progress("soak...");
  const { code, stdout } = await new Promise((resolve) => {
    execFile(process.execPath, [join(ROOT, "bench", "soak.mjs")], { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 }, (error, out) =>
      resolve({ code: error ? (error.code ?? 1) : 0, stdout: out }),
    );
  });
  for (const line of stdout.trimEnd().split("\n")) log(line);
  return { passed: code === 0, figures: JSON.parse(await readFile(join(ROOT, ".bench", "soak.json"), "utf8")) };
}

// ---------------------------------------------------------------------------------------

async function main() {
  if (BASELINE_DIR) {
    await measureBaseline(BASELINE_DIR);
    return;
  }
  const results = { at: new Date().toISOString(), node: process.version };
  log("kyc-edge bench (local: workerd via Miniflare, local D1/KV/Queue, stand-in provider on loopback)");
  const sections = [
    ["bundle", bundle],
    ["cost", cost],
    ["ingress", ingress],
    ["reconcile", reconcile],
    ["notify", notify],
    ["scale", scale],
    ["cold", coldStart],
    ["soak", soak],
  ];
  for (const [name, run] of sections) {
    if (!wanted(name)) continue;
    log();
    results[name] = await run();
  }
  await mkdir(join(ROOT, ".bench"), { recursive: true });
  await writeFile(join(ROOT, ".bench", "last.json"), `${JSON.stringify(results, null, 2)}\n`);
  log();
  log("figures written to .bench/last.json");
}

try {
  await main();
} catch (error) {
  progress(`bench failed: ${error?.stack ?? error}`);
  process.exitCode = 1;
}
