// What each operation costs on Cloudflare's meters, measured on a metered worker (see
// meter-entry.mjs), and what follows for the Free plan's daily limits and the Paid plan's bill.
//
// Every phase runs alone: its queue messages are held back (delaySeconds) while the requests
// are measured, then released and measured as the reconcile that follows. CPU is the workerd
// process's utime+stime over the phase (it includes local D1/KV/Queue simulation, so it is an
// upper bound of the worker's own), also given as a multiple of the yardstick's — a minimal
// worker (bench/yardstick) built with the same toolchain and flags, run beside kyc-edge in its
// own workerd and measured on that process alone, answering `GET /` — and of a /healthz
// request's. Both floors are measured in the same run, alternating, over many requests: the
// kernel counts CPU in 10 ms ticks, so a few hundred sub-millisecond requests would be noise.
//
// The worker's own CPU (own_cpu_ms), without the simulators', is V8's sampling profiler on the
// worker's isolate alone (metered.mjs attachProfiler), running through every phase of a pass
// of its own (`profileUs`): its sampler thread and signals cost workerd a third or more on
// top, so that pass's /proc figures are not the table's. One more round of /healthz, profiled,
// measures that overhead.
import { setTimeout as sleep } from "node:timers/promises";
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { ALIGN_KEY } from "../tests/support/stack.mjs";
import { SUMSUB_STATUSES, kycsUpdated, pool, sumsubEvent } from "../sandbox/kit.mjs";
import { personaEvent } from "../sandbox/providers/persona.mjs";
import { startWorker } from "../tests/support/worker.mjs";
import { ROOT, add, attachProfiler, per, seedSubjects, spent, startMetered, workerdCpuMs, workerdPids } from "./metered.mjs";

const HOLD_SECONDS = 8;
/** Requests of each floor (yardstick, /healthz), in FLOOR_ROUNDS alternating rounds. */
const FLOOR_N = Number(process.env.BENCH_FLOOR_N ?? 4000);
const FLOOR_ROUNDS = 4;
const DAY_MS = 86_400_000;
/** V8's sampling interval for the worker's own CPU, µs (0: not measured). */
export const PROFILE_US = Number(process.env.BENCH_PROFILE_US ?? 500);

/** The operations of the cost table, in print order, with what each one is. */
export const OPERATIONS = [
  ["yardstick", "yardstick: GET / on a minimal Rust worker"],
  ["yardstick_log", "  the same + one request log line (GET /log)"],
  ["healthz", "GET /healthz (the per-request floor)"],
  ["refused", "refused webhook (forged signature)"],
  ["ingress_new", "accepted webhook, new subject: ingress"],
  ["reconcile_new", "  its reconcile (trusted body applied)"],
  ["ingress_duplicate", "duplicate webhook (same body again), all of it"],
  ["ingress_existing", "accepted webhook, status change: ingress"],
  ["reconcile_change", "  its reconcile (change, KV projection)"],
  ["confirm", "  the next cron run's checks, per webhook"],
  ["check_unchanged", "cron-driven check, answer unchanged"],
  ["check_changed", "cron-driven check, answer changed"],
  ["cron_idle", "cron run with nothing due (per run)"],
  ["read_subject", "GET /v1/subjects/{p}/{ref} (KV)"],
  ["sumsub_webhook", "Sumsub webhook, new subject, end to end (digest, signed fetch, change)"],
  ["persona_webhook", "Persona webhook, new subject, end to end (signature, inquiry list, change)"],
  ["change_unheld", "status change end to end at the queue's own pace (ingress, reconcile, next run's fold)"],
];

/**
 * Builds the yardstick if needed (scripts/build-yardstick.sh) and starts it, metered like
 * kyc-edge (the same entry module around it), in a workerd of its own: { url, pids, stop }.
 */
async function startYardstick(vars, inspect) {
  execFileSync("bash", [join(ROOT, "scripts", "build-yardstick.sh")], { stdio: ["ignore", "ignore", "inherit"] });
  const build = join(ROOT, "bench", "yardstick", "build");
  const scriptPath = join(build, "bench-entry.mjs");
  await copyFile(join(ROOT, "bench", "meter-entry.mjs"), scriptPath);
  const dir = await mkdtemp(join(tmpdir(), "kyc-edge-yardstick-"));
  const before = new Set(workerdPids());
  const worker = await startWorker({ persistDir: dir, scriptPath, vars, compatibilityFlags: ["nodejs_als"], inspect });
  const pids = workerdPids().filter((pid) => !before.has(pid));
  return {
    url: worker.url,
    pids,
    inspectorUrl: worker.inspectorUrl,
    async stop() {
      await worker.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Measures every operation of OPERATIONS `n` times (subjects) with `width` clients on the
 * build in `checkout`. Returns { [operation]: per-operation meter incl. cpu_ms and, with
 * `profileUs`, own_cpu_ms }. With an array as `sqlProfile`, also pushes each operation's rows
 * per SQL statement onto it.
 */
export async function measureCosts({ checkout, n, width, progress = () => {}, sqlProfile, profileUs = 0 }) {
  const inspect = profileUs > 0;
  const stack = await startMetered({
    checkout,
    inspect,
    // Sumsub and Persona are enabled for their own rows; a build without one answers 404
    // there (not measured).
    sumsub: true,
    persona: true,
    vars: { WORKERS_PLAN: "paid", RECONCILE_BUDGET: "10000" },
  });
  const costs = {};
  // kyc-edge's workerd, before the yardstick's starts beside it.
  const edgePids = workerdPids();
  const cpu = () => workerdCpuMs(edgePids);
  let yardstick;
  let profiler;
  let yardProfiler;
  try {
    yardstick = await startYardstick({ WORKERS_PLAN: "paid" }, inspect);
    if (inspect) {
      profiler = await attachProfiler(await stack.worker.inspectorUrl(), { intervalUs: profileUs });
      yardProfiler = await attachProfiler(await yardstick.inspectorUrl(), { intervalUs: profileUs });
    }
    /** Runs `fn`; the worker's own CPU meanwhile (ms), NaN when not profiled. */
    const own = async (fn, on = profiler) => {
      if (!on) {
        await fn();
        return NaN;
      }
      return (await on.measure(fn)).own_ms;
    };
    const base = Date.now() - 3_600_000;
    const ids = Array.from({ length: n }, (_, i) => `cost-${String(i).padStart(5, "0")}`);
    const body = (id, i, status, offset) =>
      JSON.stringify(kycsUpdated(id, { status, sub_status: "kyc_form_submission_accepted", createdAt: new Date(base + offset + i) }));
    const statuses = [];
    const webhooks = (bodies, key) =>
      pool(bodies, width, async (raw) => {
        statuses.push((await stack.alignWebhook(raw, { key })).status);
      });

    // Warm-up: the wasm instance, connections, the tables' first pages.
    await pool(Array.from({ length: 50 }), width, () => fetch(`${stack.url}/healthz`).then((r) => r.arrayBuffer()));
    const warm = ids.slice(0, 20).map((id) => `warm-${id}`);
    for (const id of warm) stack.standIn.setAlign(id, { status: "pending", sub_status: "kyc_form_submission_accepted" });
    await webhooks(warm.map((id, i) => body(id, i, "pending", 0)), ALIGN_KEY);
    await stack.settle({ what: "the warm-up's queue to settle" });
    await pool(Array.from({ length: 50 }), width, () => fetch(`${yardstick.url}/`).then((r) => r.arrayBuffer()));
    const idleStart = cpu();
    await sleep(3000);
    const idleCpuPerMs = (cpu() - idleStart) / 3000;

    /**
     * Measures `requests()` as `name` over the fetch kinds, then (`drain`) the queue work it
     * caused as `drainName`, each divided by `count`.
     */
    const statements = () => fetch(`${stack.url}/__bench/statements`).then((r) => r.json());
    /** Rows per run of each SQL text since `before`, for `where` (BENCH_SQL=1). */
    async function profile(name, before, count) {
      if (!sqlProfile) return;
      const after = await statements();
      for (const [sql, entry] of Object.entries(after)) {
        const was = before[sql] ?? { runs: 0, rows_read: 0, rows_written: 0 };
        const runs = entry.runs - was.runs;
        if (runs === 0) continue;
        sqlProfile.push({
          operation: name,
          per_operation_runs: runs / count,
          rows_read: (entry.rows_read - was.rows_read) / count,
          rows_written: (entry.rows_written - was.rows_written) / count,
          sql: sql.replace(/\s+/g, " ").slice(0, 160),
        });
      }
    }

    async function phase(name, requests, { count = n, drainName, holdSeconds = HOLD_SECONDS } = {}) {
      progress(`cost: ${name}`);
      const sql0 = sqlProfile && (await statements());
      await stack.hold(holdSeconds);
      const m0 = await stack.meter();
      const c0 = cpu();
      const ownIngress = await own(requests);
      const c1 = cpu();
      const m1 = await stack.meter();
      await stack.hold(0);
      // Held, only the requests ran meanwhile; unheld, the queue's (and a cron's) work too.
      const during = holdSeconds > 0 ? (kind) => kind.startsWith("fetch") : undefined;
      const ingress = { ...spent(m0, m1, during), cpu_ms: c1 - c0, own_cpu_ms: ownIngress };
      const released = Date.now();
      // The meter polls while it waits are the worker's too (tens of µs each): left in.
      const ownDrained = await own(() => stack.settle({ what: `${name}: the queue to settle` }));
      const c2 = cpu();
      const m2 = await stack.meter();
      // Less what workerd spends idle while the held messages wait.
      const waited = Math.max(0, Math.min(holdSeconds * 1000, Date.now() - released));
      const drained = { ...spent(m1, m2), cpu_ms: c2 - c1 - idleCpuPerMs * waited, own_cpu_ms: ownDrained };
      const batches = drained.invocations;
      if (drainName) {
        costs[name] = per(ingress, count);
        costs[drainName] = per(drained, count);
      } else {
        costs[name] = per({ ...add(ingress, drained), cpu_ms: ingress.cpu_ms + drained.cpu_ms, own_cpu_ms: ownIngress + ownDrained }, count);
      }
      // Per queue invocation (a batch), against the Free plan's 10 ms per invocation.
      if (drained.messages_received > 0) {
        Object.assign(costs[drainName ?? name], {
          batch_cpu_ms: drained.cpu_ms / batches,
          batch_own_cpu_ms: ownDrained / batches,
          batch_messages: drained.messages_received / batches,
        });
      }
      await profile(name, sql0, count);
    }

    /**
     * A cron run at `time` and the checks it caused: per check (per run when none), or per
     * `count` when given.
     */
    async function cron(name, time, count) {
      progress(`cost: ${name}`);
      const sql0 = sqlProfile && (await statements());
      const asked = stack.standIn.requests().length;
      const m0 = await stack.meter();
      // The jobs it queues are held while the run itself is measured: its own invocation's
      // CPU, against the Free plan's 10 ms per invocation.
      await stack.hold(HOLD_SECONDS);
      const c0 = cpu();
      const ownRun = await own(() => stack.cron(time));
      const cRun = cpu();
      const mRun = await stack.meter();
      await stack.hold(0);
      const released = Date.now();
      const ownDrained = await own(() => stack.settle({ what: `${name}: the queue to settle` }));
      const c1 = cpu();
      const m1 = await stack.meter();
      const waited = Math.max(0, Math.min(HOLD_SECONDS * 1000, Date.now() - released));
      const checks = stack.standIn.requests().length - asked;
      const units = count ?? Math.max(checks, 1);
      costs[name] = per({ ...spent(m0, m1), cpu_ms: c1 - c0 - idleCpuPerMs * waited, own_cpu_ms: ownRun + ownDrained }, units);
      costs[name].checks = checks / units;
      // One run is a few ticks of the kernel's 10 ms CPU clock: a bound, not a measurement
      // (the idle run is measured over many runs instead).
      costs[name].run_cpu_ms = cRun - c0;
      costs[name].run_own_cpu_ms = ownRun;
      costs[name].run_leased = spent(m0, mRun, (kind) => kind === "scheduled").queue_messages;
      await profile(name, sql0, units);
    }

    // The floors: the yardstick's GET / and kyc-edge's GET /healthz, alternating.
    progress("cost: yardstick and healthz");
    const get = (url, pids, count) => async () => {
      const c0 = workerdCpuMs(pids);
      await pool(Array.from({ length: count }), width, () =>
        fetch(url).then((r) => {
          statuses.push(r.status);
          return r.arrayBuffer();
        }),
      );
      return workerdCpuMs(pids) - c0;
    };
    const perRound = Math.ceil(FLOOR_N / FLOOR_ROUNDS);
    const yardRound = get(`${yardstick.url}/`, yardstick.pids, perRound);
    const logRound = get(`${yardstick.url}/log`, yardstick.pids, perRound);
    const healthRound = get(`${stack.url}/healthz`, edgePids, perRound);
    let yardMs = 0;
    let logMs = 0;
    let healthMs = 0;
    const m0 = await stack.meter();
    for (let round = 0; round < FLOOR_ROUNDS; round += 1) {
      yardMs += await yardRound();
      healthMs += await healthRound();
      logMs += await logRound();
    }
    const m1 = await stack.meter();
    const floorCount = perRound * FLOOR_ROUNDS;
    costs.yardstick = per({ ...add({ invocations: floorCount }), cpu_ms: yardMs }, floorCount);
    costs.yardstick_log = per({ ...add({ invocations: floorCount }), cpu_ms: logMs }, floorCount);
    costs.healthz = per({ ...spent(m0, m1, (kind) => kind.startsWith("fetch")), cpu_ms: healthMs }, floorCount);
    if (profiler) {
      // One more round of each, profiled: the own CPU of the floors, and (from /proc) what
      // the profiler itself adds to workerd's CPU per request.
      let profiledMs;
      costs.healthz.own_cpu_ms = (await own(async () => (profiledMs = await healthRound()))) / perRound;
      costs.healthz.profiler_overhead_cpu_ms = profiledMs / perRound - costs.healthz.cpu_ms;
      costs.yardstick.own_cpu_ms = (await own(yardRound, yardProfiler)) / perRound;
      costs.yardstick_log.own_cpu_ms = (await own(logRound, yardProfiler)) / perRound;
    }
    // BENCH_FLOOR_ONLY=1: the two floors alone (a quick check of the per-request floor).
    if (process.env.BENCH_FLOOR_ONLY) {
      for (const op of Object.keys(costs)) costs[op].cpu_x_yardstick = costs[op].cpu_ms / costs.yardstick.cpu_ms;
      return costs;
    }

    const pending = ids.map((id, i) => body(id, i, "pending", 0));
    await phase("refused", () => webhooks(pending, "not-the-key"));
    for (const id of ids) stack.standIn.setAlign(id, { status: "pending", sub_status: "kyc_form_submission_accepted" });
    await phase("ingress_new", () => webhooks(pending, ALIGN_KEY), { drainName: "reconcile_new" });
    await phase("ingress_duplicate", () => webhooks(pending, ALIGN_KEY));
    // Two days on, every pending subject is due on its back-off schedule.
    await cron("check_unchanged", Date.now() + 2 * DAY_MS);

    for (const id of ids) stack.standIn.setAlign(id, { status: "approved", sub_status: "kyc_form_submission_accepted" });
    await phase("ingress_existing", () => webhooks(ids.map((id, i) => body(id, i, "approved", 60_000)), ALIGN_KEY), {
      drainName: "reconcile_change",
    });
    // What the webhooks leave for the next cron run: checks that confirm them, if the build makes any.
    await cron("confirm", Date.now() + 60_000, n);
    // A week on, every subject is due; the provider now says otherwise about each.
    for (const id of [...warm, ...ids]) stack.standIn.setAlign(id, { status: "rejected", sub_status: "kyc_form_submission_accepted" });
    await cron("check_changed", Date.now() + 8 * DAY_MS);
    // The first run after activity folds its events into the tallies; the second is idle.
    await stack.cron(Date.now() + 60_000);
    // Idle runs, many of them: one is well below the kernel's 10 ms CPU tick.
    progress("cost: cron_idle");
    {
      const runs = 20;
      const sql0 = sqlProfile && (await statements());
      const m0 = await stack.meter();
      const c0 = cpu();
      // A second apart, within the minutes before anything checked above is due again (the
      // jobs' own clock is the real one): each run has its own id and finds nothing to do.
      const at = Date.now() + 120_000;
      const ownRuns = await own(async () => {
        for (let i = 0; i < runs; i += 1) await stack.cron(at + i * 1000);
      });
      const c1 = cpu();
      const m1 = await stack.meter();
      costs.cron_idle = per({ ...spent(m0, m1), cpu_ms: c1 - c0, own_cpu_ms: ownRuns }, runs);
      costs.cron_idle.run_cpu_ms = costs.cron_idle.cpu_ms;
      costs.cron_idle.run_own_cpu_ms = costs.cron_idle.own_cpu_ms;
      costs.cron_idle.run_leased = 0;
      await profile("cron_idle", sql0, runs);
    }

    await phase("read_subject", () =>
      pool(ids, width, (id) => stack.api("GET", `/v1/subjects/align/${id}`).then((r) => {
        statuses.push(r.status);
      })),
    );
    // A Sumsub webhook end to end: digest check, event row, the signed applicant fetch, the
    // change with its outbox row and KV projection.
    const sumsubIds = ids.map((id) => `sumsub-${id}`);
    for (const id of sumsubIds) stack.standIn.setSumsub(id, SUMSUB_STATUSES.approved.review);
    const sumsubStatuses = [];
    await phase("sumsub_webhook", () =>
      pool(sumsubIds, width, async (id) => {
        const { review, type } = SUMSUB_STATUSES.approved;
        const res = await stack.sumsubWebhook(sumsubEvent(type, id, { review }));
        sumsubStatuses.push(res.status);
      }),
    );
    if (sumsubStatuses.some((s) => s !== 200)) delete costs.sumsub_webhook;
    // A Persona webhook end to end: signature check, event row, the inquiry list fetch (one
    // page), the change with its outbox row and KV projection.
    const personaStatuses = [];
    await phase("persona_webhook", () =>
      pool(ids, width, async (id) => {
        const ref = `persona-${id}`;
        const [inquiry] = stack.standIn.persona.setInquiries(ref, [{ status: "approved" }]);
        const res = await stack.personaWebhook(personaEvent("inquiry.approved", inquiry, { id: `evt_${id}` }));
        personaStatuses.push(res.status);
      }),
    );
    if (personaStatuses.some((s) => s !== 200)) delete costs.persona_webhook;
    // The status change of `ingress_existing` again, at the queue's own pace: its jobs are not
    // held, so each reconcile starts as soon as the queue delivers it, as in production (the
    // hold above makes every carried health look older than a reconcile may trust, which adds
    // a provider-health statement there). Ingress, reconcile and the next run's fold, together.
    // Its bodies are dated now, after the status they replace (found by `check_changed`), as a
    // provider's would be; the run before folds what the phases above left.
    await stack.cron(Date.now() + 60_000);
    for (const id of ids) stack.standIn.setAlign(id, { status: "approved", sub_status: "kyc_form_submission_accepted" });
    const now = Date.now() - base;
    await phase(
      "change_unheld",
      async () => {
        await webhooks(ids.map((id, i) => body(id, i, "approved", now)), ALIGN_KEY);
        await stack.settle({ what: "change_unheld: the queue to settle" });
        await stack.cron(Date.now() + 180_000);
      },
      { holdSeconds: 0 },
    );
    const unexpected = statuses.filter((s) => s !== 200 && s !== 401);
    if (unexpected.length) throw new Error(`unexpected statuses during the cost phases: ${[...new Set(unexpected)]}`);
    for (const op of Object.keys(costs)) {
      costs[op].cpu_x_healthz = costs[op].cpu_ms / costs.healthz.cpu_ms;
      costs[op].cpu_x_yardstick = costs[op].cpu_ms / costs.yardstick.cpu_ms;
    }
    return costs;
  } finally {
    await profiler?.close();
    await yardProfiler?.close();
    await stack.stop();
    await yardstick?.stop();
  }
}

/** Subjects a cron run leases at most on the Free plan (RECONCILE_BUDGET's cap there). */
export const FREE_RECONCILE_BUDGET = 500;

/**
 * The largest cron run the Free plan allows: WORKERS_PLAN=free with its default budget, every
 * subject due (seeded straight into D1), Align's and ARGOS's credentials set as in the other
 * phases. After one run to warm up, `runs` pairs of runs, each leasing the next subjects: one
 * measured on /proc (a few ticks of the kernel's clock: a bound), the next profiled (the
 * profiler's own cost would inflate /proc). The jobs they queue are held past the end. Per
 * pair: { leased, cpu_ms, own_cpu_ms, d1_statements }.
 */
export async function measureLargestCron({ checkout, runs = 3, profileUs = PROFILE_US, progress = () => {} }) {
  progress("cost: largest cron run (Free plan)");
  const dir = await mkdtemp(join(tmpdir(), "kyc-edge-largest-"));
  await seedSubjects(dir, FREE_RECONCILE_BUDGET * (2 * runs + 1), { prefix: "big", dueAt: Date.now() - 60_000 });
  const stack = await startMetered({ checkout, persistDir: dir, inspect: profileUs > 0, vars: { WORKERS_PLAN: "free" } });
  let profiler;
  try {
    const pids = workerdPids();
    if (profileUs > 0) profiler = await attachProfiler(await stack.worker.inspectorUrl(), { intervalUs: profileUs });
    await stack.hold(3600);
    await pool(Array.from({ length: 50 }), 8, () => fetch(`${stack.url}/healthz`).then((r) => r.arrayBuffer()));
    const at = Date.now();
    const results = [];
    for (let i = 0; i <= 2 * runs; i += 1) {
      const m0 = await stack.meter();
      const c0 = workerdCpuMs(pids);
      const run = () => stack.cron(at + i * 1000);
      const profiled = profiler && i > 0 && i % 2 === 0;
      const ownMs = profiled ? (await profiler.measure(run)).own_ms : (await run(), NaN);
      const c1 = workerdCpuMs(pids);
      const used = spent(m0, await stack.meter(), (kind) => kind === "scheduled");
      if (i % 2 === 1) results.push({ leased: used.queue_messages, cpu_ms: c1 - c0, own_cpu_ms: NaN, d1_statements: used.d1_statements });
      else if (i > 0) results[results.length - 1].own_cpu_ms = ownMs;
    }
    return results;
  } finally {
    await profiler?.close();
    await stack.stop();
  }
}

// ---------------------------------------------------------------------------------------
// Plans and prices, as docs/costs.md records them (published November 2026).

export const FREE_PER_DAY = {
  requests: 100_000,
  d1_rows_read: 5_000_000,
  d1_rows_written: 100_000,
  kv_reads: 100_000,
  kv_writes: 1_000,
  kv_deletes: 1_000,
  queue_operations: 10_000,
  analytics_points: 100_000,
};

/** [included per month, $ per million beyond] on Workers Paid ($5/month base). */
export const PAID_PER_MONTH = {
  requests: [10_000_000, 0.3],
  cpu_ms: [30_000_000, 0.02],
  d1_rows_read: [25_000_000_000, 0.001],
  d1_rows_written: [50_000_000, 1.0],
  kv_reads: [10_000_000, 0.5],
  kv_writes: [1_000_000, 5.0],
  kv_deletes: [1_000_000, 5.0],
  queue_operations: [1_000_000, 0.4],
  analytics_points: [10_000_000, 0.25],
};
export const PAID_BASE = 5;
const CRON_RUNS_PER_DAY = 288;

/** The billed quantities of one operation's meter: every invocation is counted as a request. */
export function billed(meter) {
  return {
    requests: meter.invocations,
    cpu_ms: meter.cpu_ms,
    d1_rows_read: meter.d1_rows_read,
    d1_rows_written: meter.d1_rows_written,
    kv_reads: meter.kv_reads,
    kv_writes: meter.kv_writes,
    kv_deletes: meter.kv_deletes,
    // A message is written, read and deleted: 3 operations (one more read per retry).
    queue_operations: 3 * meter.queue_messages + Math.max(0, meter.messages_received - meter.queue_messages),
    analytics_points: meter.analytics_points,
  };
}

const sum = (...parts) => {
  const total = {};
  for (const part of parts) for (const [k, v] of Object.entries(part)) total[k] = (total[k] ?? 0) + v;
  return total;
};
const scale = (part, factor) => Object.fromEntries(Object.entries(part).map(([k, v]) => [k, v * factor]));

/**
 * What one status-changing webhook costs end to end: its ingress, its reconcile and what it
 * leaves for the next cron run (the same model for every build measured).
 */
export function perWebhook(costs) {
  return sum(billed(costs.ingress_existing), billed(costs.reconcile_change), billed(costs.confirm));
}

/** Free plan: how many of `unit` fit a day once the cron's own runs are paid for; and the meter that binds. */
export function freeCapacity(unit, cronRun) {
  const overhead = scale(billed(cronRun), CRON_RUNS_PER_DAY);
  let best = { per_day: Infinity, binding: "none" };
  for (const [meter, limit] of Object.entries(FREE_PER_DAY)) {
    const each = unit[meter] ?? 0;
    if (each <= 0) continue;
    const fits = Math.max(0, limit - (overhead[meter] ?? 0)) / each;
    if (fits < best.per_day) best = { per_day: Math.floor(fits), binding: meter };
  }
  return best;
}

/** The monthly bill on Workers Paid for `count` units plus a month of cron runs, itemised. */
export function paidBill(unit, count, cronRun) {
  const usage = sum(scale(unit, count), scale(billed(cronRun), CRON_RUNS_PER_DAY * 30));
  const items = Object.entries(PAID_PER_MONTH).map(([meter, [included, perMillion]]) => {
    const used = usage[meter] ?? 0;
    return { meter, used, included, over: Math.max(0, used - included), dollars: (Math.max(0, used - included) / 1e6) * perMillion };
  });
  return { items, total: PAID_BASE + items.reduce((s, i) => s + i.dollars, 0) };
}

/** $ per million units once every included amount is used up. */
export function marginalPerMillion(unit) {
  return Object.entries(PAID_PER_MONTH).reduce((s, [meter, [, perMillion]]) => s + (unit[meter] ?? 0) * perMillion, 0);
}
