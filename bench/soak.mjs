// `make soak`: a load test that proves nothing is lost under load. The compiled worker runs
// locally (workerd through Miniflare, local D1/KV/Queue, a stand-in Align API on loopback);
// many concurrent clients send signed Align `customer.kycs.updated` webhooks for many subjects,
// about one in ten an exact re-send of an earlier body (some while the original is still in
// flight), while the cron runs every few seconds. Then, once the queue has drained, it checks:
//
//   1. no 5xx, and every non-2xx is listed (there should be none: every body is well formed)
//   2. D1 holds one `webhook` event row per distinct body accepted, keyed by the SHA-256 of the
//      raw body (computed here independently with node:crypto), and every 2xx-acknowledged
//      body is among them; a repeat stores no row (it is tallied: see 4); each body was
//      answered `"duplicate": false` exactly once
//   3. every subject's status (and provider_status, sub_status) in D1, and through
//      GET /v1/subjects/align/{ref}, equals the last status sent for it, which is also the
//      stand-in provider's truth (set before each send, so polls read the latest truth)
//   4. the folded counts in /v1/stats agree with what was sent, repeats included
//
// It prints a compact table, writes .bench/soak.json (figures, checks, every non-2xx) and
// .bench/soak-responses.ndjson (every response), and exits 1 if a check fails.
//
// Knobs: SOAK_WEBHOOKS (20000, duplicates included), SOAK_SUBJECTS (1000), SOAK_CLIENTS (32),
// SOAK_DUPLICATE_RATE (0.1), SOAK_CRON_INTERVAL_MS (3000), SOAK_SETTLE_TIMEOUT_S (600),
// SOAK_SEED (1). The schedule (which subject, which status, which body is repeated where) is
// drawn from a PRNG seeded with SOAK_SEED; `created_at` is the wall clock at send time, since
// the worker orders a webhook against polls stamped with the time they were sent.
// BENCH_VERBOSE=1 shows workerd's log lines.
import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { startStack } from "../tests/support/stack.mjs";
import { ALIGN_STATUSES, kycsUpdated, pool } from "../sandbox/kit.mjs";
import { prng } from "../sandbox/providers.mjs";
import { percentile, quietConsole } from "./metered.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const env = process.env;
const WEBHOOKS = Number(env.SOAK_WEBHOOKS ?? 20_000);
const SUBJECTS = Number(env.SOAK_SUBJECTS ?? 1_000);
const CLIENTS = Number(env.SOAK_CLIENTS ?? 32);
const DUPLICATE_RATE = Number(env.SOAK_DUPLICATE_RATE ?? 0.1);
const CRON_INTERVAL_MS = Number(env.SOAK_CRON_INTERVAL_MS ?? 3_000);
const SETTLE_TIMEOUT_MS = Number(env.SOAK_SETTLE_TIMEOUT_S ?? 600) * 1000;
const SEED = Number(env.SOAK_SEED ?? 1);
/** Of the repeats, this share is queued right behind its original: both are in flight at once. */
const CONCURRENT_REPEATS = 0.3;

const { log, progress } = quietConsole();
const fmt = (n, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "-");

const sha256 = (raw) => createHash("sha256").update(raw).digest("hex");

/** Align's states, with what kyc-edge normalizes each to. */
const STATES = Object.entries(ALIGN_STATUSES).map(([normalized, words]) => ({ ...words, normalized }));

// ---------------------------------------------------------------------------------------
// The schedule: which request is sent in which order. Deterministic for a seed.

function schedule() {
  const random = prng(SEED);
  const pick = (n) => Math.floor(random() * n);
  const repeats = Math.round(WEBHOOKS * DUPLICATE_RATE);
  const distinct = WEBHOOKS - repeats;
  if (distinct < SUBJECTS) throw new Error(`${distinct} distinct webhooks cannot cover ${SUBJECTS} subjects`);
  const refs = Array.from({ length: SUBJECTS }, (_, i) => `soak-${String(i).padStart(6, "0")}`);
  // Every subject gets distinct/SUBJECTS updates (the remainder spread over the first ones),
  // interleaved at random: a Fisher-Yates shuffle of the multiset of subject indexes.
  const order = [];
  for (let s = 0; s < SUBJECTS; s += 1) {
    const count = Math.floor(distinct / SUBJECTS) + (s < distinct % SUBJECTS ? 1 : 0);
    for (let k = 0; k < count; k += 1) order.push(s);
  }
  for (let i = order.length - 1; i > 0; i -= 1) {
    const j = pick(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  // The n-th occurrence of a subject is its n-th update, with a random state.
  const seen = new Array(SUBJECTS).fill(0);
  const originals = order.map((s, id) => ({ kind: "new", id, subject: s, seq: seen[s]++, state: STATES[pick(STATES.length)] }));
  // Repeats: an exact re-send of an earlier body, either right behind it (concurrent with it,
  // given CLIENTS in flight) or anywhere later.
  const after = Array.from({ length: distinct }, () => []);
  for (let r = 0; r < repeats; r += 1) {
    const of = pick(distinct);
    const at = random() < CONCURRENT_REPEATS ? of : of + pick(distinct - of);
    after[at].push({ kind: "repeat", of, subject: originals[of].subject, concurrent: at === of });
  }
  const tasks = [];
  for (let i = 0; i < distinct; i += 1) tasks.push(originals[i], ...after[i]);
  return { refs, tasks, distinct, repeats };
}

// ---------------------------------------------------------------------------------------

async function main() {
  const started = performance.now();
  const { refs, tasks, distinct, repeats } = schedule();
  progress(`soak: ${tasks.length} webhooks (${repeats} repeats) for ${SUBJECTS} subjects, ${CLIENTS} clients`);
  const stack = await startStack({ vars: { WORKERS_PLAN: "paid" } });
  const results = {
    at: new Date().toISOString(),
    node: process.version,
    config: { webhooks: WEBHOOKS, subjects: SUBJECTS, clients: CLIENTS, duplicate_rate: DUPLICATE_RATE, cron_interval_ms: CRON_INTERVAL_MS, settle_timeout_s: SETTLE_TIMEOUT_MS / 1000, seed: SEED },
  };
  try {
    return await soak(stack, { refs, tasks, distinct, repeats, results, started });
  } finally {
    await stack.stop();
  }
}

async function soak(stack, { refs, tasks, distinct, repeats, results, started }) {
  const { standIn } = stack;
  // Per subject: the last state sent (the provider's truth) and the last created_at used.
  const truth = new Array(SUBJECTS).fill(null);
  const lastCreated = new Array(SUBJECTS).fill(0);
  const bodies = new Array(distinct); // raw body of each original, once sent
  const responses = new Array(tasks.length);
  const cron = { runs: 0, during_load: 0, failures: [], durations: [] };

  async function runCron() {
    const t = performance.now();
    try {
      await stack.cron(Date.now());
    } catch (error) {
      cron.failures.push(String(error.message ?? error));
    }
    cron.runs += 1;
    cron.durations.push(performance.now() - t);
  }

  // What the worker logged, read incrementally (the log holds a line per request): each queue
  // delivery ("job" line, with its verdict), and each queue send refused, by a webhook
  // (`queue_error`: it still answers 200, the subject stays due in D1 for the cron) or by the
  // cron (`send_error`: it gives the unsent subjects back, due at once).
  const jobs = { acked: new Set(), retried: new Set(), errors: 0, offset: 0, refused: { webhook: {}, cron: {} } };
  function readJobLogs() {
    const lines = stack.worker.logs();
    for (let i = jobs.offset; i < lines.length; i += 1) {
      const { message } = lines[i];
      const job = message.includes('"kind":"job"');
      if (!job && !message.includes('"queue_error"') && !message.includes('"send_error"')) continue;
      let line;
      try {
        line = JSON.parse(message);
      } catch {
        continue;
      }
      if (line.kind === "job") {
        if (line.verdict === "ack") jobs.acked.add(line.message_id);
        else if (line.verdict === "retry") jobs.retried.add(line.message_id);
        if (line.error) jobs.errors += 1;
      } else if (line.kind === "request" && line.queue_error) {
        jobs.refused.webhook[line.queue_error] = (jobs.refused.webhook[line.queue_error] ?? 0) + 1;
      } else if (line.kind === "cron" && line.send_error) {
        jobs.refused.cron[line.send_error] = (jobs.refused.cron[line.send_error] ?? 0) + 1;
      }
    }
    jobs.offset = lines.length;
  }
  const total = (counts) => Object.values(counts).reduce((a, b) => a + b, 0);

  // The cron, every CRON_INTERVAL_MS while the load runs.
  let loading = true;
  const cronLoop = (async () => {
    for (;;) {
      await sleep(CRON_INTERVAL_MS);
      if (!loading) return;
      await runCron();
      cron.during_load += 1;
    }
  })();

  // The load: CLIENTS clients take tasks in schedule order. A task's body is made (and the
  // stand-in's truth set) synchronously when it is taken, so a repeat, always later in the
  // schedule, finds its original's body, and a subject's updates are dispatched in order.
  let sent = 0;
  const loadStarted = performance.now();
  const loadProgress = [];
  const ticker = setInterval(() => {
    readJobLogs();
    loadProgress.push({ s: (performance.now() - loadStarted) / 1000, sent, jobs_acked: jobs.acked.size, cron_runs: cron.runs });
    progress(`  sent ${sent}/${tasks.length}, jobs acked ${jobs.acked.size}, cron runs ${cron.runs}`);
  }, 10_000);
  await pool(tasks, CLIENTS, async (task, index) => {
    let raw;
    if (task.kind === "new") {
      const { subject, state } = task;
      standIn.setAlign(refs[subject], { status: state.status, sub_status: state.sub_status });
      truth[subject] = { ...state, seq: task.seq };
      // Strictly increasing per subject, so every update is a distinct body.
      const createdAt = Math.max(Date.now(), lastCreated[subject] + 1);
      lastCreated[subject] = createdAt;
      raw = JSON.stringify(
        kycsUpdated(refs[subject], { status: state.status, sub_status: state.sub_status, createdAt: new Date(createdAt) }),
      );
      bodies[task.id] = raw;
    } else {
      raw = bodies[task.of];
    }
    const t = performance.now();
    let response;
    try {
      const res = await stack.alignWebhook(raw);
      response = { status: res.status, duplicate: res.json?.duplicate, queued: res.json?.queued, error: res.status >= 300 ? res.text.slice(0, 300) : undefined };
    } catch (error) {
      // No answer at all (connection reset, ...): recorded as status 0.
      response = { status: 0, error: String(error.cause?.message ?? error.message ?? error) };
    }
    const ms = performance.now() - t;
    const id = task.kind === "new" ? task.id : task.of;
    responses[index] = {
      index,
      kind: task.kind,
      body: id,
      ref: refs[task.subject],
      key: sha256(raw),
      ...response,
      ms,
      at: Date.now(),
    };
    sent += 1;
  });
  const loadMs = performance.now() - loadStarted;
  clearInterval(ticker);
  readJobLogs();
  const ackedDuringLoad = jobs.acked.size;
  loading = false;
  await cronLoop;
  progress(`  load done in ${fmt(loadMs / 1000, 1)} s; settling...`);

  // ---------------------------------------------------------------------------------------
  // Settle: run the cron every couple of seconds until every queued job has been acked and
  // every subject shows its last truth (D1, then the API), or the timeout.
  const expected = new Map(refs.map((ref, s) => [ref, truth[s]]));
  const queuedByWebhooks = responses.filter((r) => r.queued === true).length;
  const compare = (ref, row) => {
    const want = expected.get(ref);
    return row && row.status === want.normalized && (row.provider_status ?? null) === want.status && (row.sub_status ?? null) === want.sub_status;
  };
  async function d1Mismatches() {
    const rows = await stack.sql("SELECT ref, status, provider_status, sub_status FROM subjects WHERE provider = 'align'");
    const byRef = new Map(rows.map((row) => [row.ref, row]));
    const wrong = refs.filter((ref) => !compare(ref, byRef.get(ref))).map((ref) => ({ ref, want: expected.get(ref), got: byRef.get(ref) ?? null }));
    return { rows: rows.length, wrong };
  }
  async function apiMismatches() {
    const wrong = [];
    await pool(refs, 16, async (ref) => {
      const res = await stack.subject("align", ref);
      if (res.status !== 200 || !compare(ref, res.json)) {
        wrong.push({ ref, want: expected.get(ref), got: res.status === 200 ? res.json : { http: res.status, body: res.text.slice(0, 200) }, read: res.headers.get("x-kyc-edge-read") });
      }
    });
    return wrong;
  }
  async function queueState() {
    const runs = await stack.sql("SELECT COALESCE(SUM(enqueued), 0) AS n FROM cron_runs");
    readJobLogs();
    return { enqueued: queuedByWebhooks + Number(runs[0].n), acked: jobs.acked.size, retried: jobs.retried.size, job_errors: jobs.errors };
  }
  // Drained: every job sent has been acked, and no delivery since the previous look (a send
  // the queue refused may still have been enqueued, so acks can exceed sends).
  let lastAcked = -1;
  function drained(queue) {
    const quiet = queue.acked === lastAcked;
    lastAcked = queue.acked;
    return quiet && queue.acked >= queue.enqueued;
  }

  const settleStarted = performance.now();
  let settled = false;
  let d1State;
  let apiWrong = [];
  let queue;
  let settleCrons = 0;
  for (;;) {
    await runCron();
    settleCrons += 1;
    await sleep(2_000);
    queue = await queueState();
    d1State = await d1Mismatches();
    if (drained(queue) && d1State.wrong.length === 0 && d1State.rows === SUBJECTS) {
      apiWrong = await apiMismatches();
      if (apiWrong.length === 0) {
        settled = true;
        break;
      }
    }
    progress(`  settling: ${queue.acked}/${queue.enqueued} jobs acked, ${d1State.wrong.length} subjects differ in D1, ${apiWrong.length} via the API`);
    if (performance.now() - settleStarted > SETTLE_TIMEOUT_MS) {
      if (apiWrong.length === 0) apiWrong = await apiMismatches();
      break;
    }
  }
  const settleMs = performance.now() - settleStarted;

  // ---------------------------------------------------------------------------------------
  // Checks.
  const ok2xx = responses.filter((r) => r.status >= 200 && r.status < 300);
  const non2xx = responses.filter((r) => !(r.status >= 200 && r.status < 300));
  const fivexx = responses.filter((r) => r.status >= 500);
  const byStatus = {};
  for (const r of responses) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
  const ackedKeys = new Set(ok2xx.map((r) => r.key));
  const sentKeys = new Set(responses.map((r) => r.key));

  const eventCounts = await stack.sql(
    "SELECT type, COUNT(*) AS n, COUNT(DISTINCT dedup_key) AS keys FROM events WHERE provider = 'align' GROUP BY type",
  );
  const count = (type) => eventCounts.find((row) => row.type === type) ?? { n: 0, keys: 0 };
  const webhookRows = await stack.sql("SELECT dedup_key, ref FROM events WHERE provider = 'align' AND type = 'webhook'");
  const storedKeys = new Map(webhookRows.map((row) => [row.dedup_key, row.ref]));
  const missing = [...ackedKeys].filter((key) => !storedKeys.has(key));
  const unexpected = [...storedKeys.keys()].filter((key) => !sentKeys.has(key));
  // Each acknowledged body answered "duplicate": false exactly once.
  const fresh = new Map();
  for (const r of ok2xx) if (r.duplicate === false) fresh.set(r.key, (fresh.get(r.key) ?? 0) + 1);
  const freshWrong = [...ackedKeys].filter((key) => fresh.get(key) !== 1);
  const answeredDuplicate = ok2xx.filter((r) => r.duplicate === true).length;
  const stats = await stack.stats();
  const folded = stats?.webhooks?.align ?? {};
  const drift = stats?.drift?.align;

  const checks = [
    ["no 5xx (and no unanswered request)", fivexx.length === 0 && !byStatus[0], `${fivexx.length} 5xx, ${byStatus[0] ?? 0} unanswered`],
    ["every request answered 2xx", non2xx.length === 0, `${ok2xx.length}/${responses.length} 2xx${non2xx.length ? `; non-2xx by status ${JSON.stringify(byStatus)}` : ""}`],
    ["webhook rows = distinct bodies accepted", count("webhook").n === ackedKeys.size && count("webhook").keys === ackedKeys.size, `${count("webhook").n} rows, ${ackedKeys.size} distinct bodies acked`],
    ["every 2xx body is in D1 (sha256 key)", missing.length === 0, `${missing.length} missing`],
    ["no webhook row for a body not sent", unexpected.length === 0, `${unexpected.length} unexpected`],
    ["repeats store no row (tallied, see stats)", count("duplicate").n === 0, `${count("duplicate").n} duplicate rows, ${ok2xx.length - ackedKeys.size} repeats acked`],
    ['each body answered "duplicate": false once', freshWrong.length === 0, `${freshWrong.length} bodies not exactly once; ${answeredDuplicate} answered duplicate`],
    ["stats fold = sent", folded.accepted === ackedKeys.size && folded.duplicate === ok2xx.length - ackedKeys.size, `accepted ${folded.accepted}, duplicate ${folded.duplicate}`],
    ["queue drained", settled || (queue.acked >= queue.enqueued && queue.acked === lastAcked), `${queue.acked}/${queue.enqueued} jobs acked, ${queue.retried} retried, ${queue.job_errors} job errors`],
    ["all subjects tracked", d1State.rows === SUBJECTS, `${d1State.rows}/${SUBJECTS}`],
    ["D1 status = last truth sent", d1State.wrong.length === 0, `${SUBJECTS - d1State.wrong.length}/${SUBJECTS} match`],
    ["GET /v1/subjects = last truth sent", apiWrong.length === 0, `${SUBJECTS - apiWrong.length}/${SUBJECTS} match`],
    ["cron runs succeeded", cron.failures.length === 0, `${cron.runs - cron.failures.length}/${cron.runs}`],
  ].map(([name, pass, detail]) => ({ name, pass, detail }));

  const latencies = responses.map((r) => r.ms).sort((a, b) => a - b);
  const figures = {
    webhooks: responses.length,
    distinct_bodies: distinct,
    repeats_sent: repeats,
    repeats_concurrent: tasks.filter((t) => t.kind === "repeat" && t.concurrent).length,
    answered_duplicate: answeredDuplicate,
    subjects: SUBJECTS,
    clients: CLIENTS,
    load_s: loadMs / 1000,
    webhooks_per_s: (responses.length / loadMs) * 1000,
    p50_ms: percentile(latencies, 50),
    p99_ms: percentile(latencies, 99),
    max_ms: latencies[latencies.length - 1],
    cron_runs: cron.runs,
    cron_runs_during_load: cron.during_load,
    cron_runs_settling: settleCrons,
    cron_p50_ms: percentile([...cron.durations].sort((a, b) => a - b), 50),
    settle_s: settleMs / 1000,
    settled,
    jobs_enqueued: queue.enqueued,
    jobs_acked: queue.acked,
    jobs_queued_by_webhooks: queuedByWebhooks,
    jobs_queued_by_cron: queue.enqueued - queuedByWebhooks,
    jobs_acked_during_load: ackedDuringLoad,
    queue_sends_refused: jobs.refused,
    jobs_retried: queue.retried,
    drift,
    provider_calls: standIn.requests().length,
    wall_s: (performance.now() - started) / 1000,
  };
  Object.assign(results, {
    figures,
    checks,
    passed: checks.every((c) => c.pass),
    events: eventCounts,
    responses_by_status: byStatus,
    non_2xx: non2xx,
    missing_keys: missing,
    subjects_wrong_d1: d1State.wrong.slice(0, 100),
    subjects_wrong_api: apiWrong.slice(0, 100),
    cron_failures: cron.failures,
    load_progress: loadProgress,
  });

  // ---------------------------------------------------------------------------------------
  // Report.
  log(`kyc-edge soak (local: workerd via Miniflare, local D1/KV/Queue, stand-in Align API; seed ${SEED})`);
  log();
  const rows = [
    ["webhooks sent", `${figures.webhooks} (${distinct} distinct + ${repeats} repeats, ${figures.repeats_concurrent} concurrent with the original)`],
    ["subjects / clients", `${SUBJECTS} / ${CLIENTS}`],
    ["load time", `${fmt(figures.load_s, 1)} s`],
    ["throughput", `${fmt(figures.webhooks_per_s, 0)} webhooks/s`],
    ["latency p50 / p99 / max", `${fmt(figures.p50_ms, 1)} / ${fmt(figures.p99_ms, 1)} / ${fmt(figures.max_ms, 0)} ms`],
    ["answered duplicate", `${answeredDuplicate}`],
    ["responses by status", Object.entries(byStatus).map(([s, n]) => `${s}: ${n}`).join(", ")],
    ["cron runs", `${cron.runs} (${cron.during_load} during load, ${settleCrons} settling; p50 ${fmt(figures.cron_p50_ms, 0)} ms)`],
    ["jobs acked / enqueued", `${queue.acked} / ${queue.enqueued} (${queuedByWebhooks} by webhooks, ${queue.enqueued - queuedByWebhooks} by cron; ${ackedDuringLoad} acked during load, ${queue.retried} retried)`],
    ["queue sends refused", `${total(jobs.refused.webhook)} by webhooks, ${total(jobs.refused.cron)} cron runs (${[...new Set([...Object.keys(jobs.refused.webhook), ...Object.keys(jobs.refused.cron)])].join("; ") || "none"})`],
    ["provider calls", `${figures.provider_calls}`],
    ["drift (stats)", `${drift ?? "-"}`],
    ["settle time", `${fmt(figures.settle_s, 1)} s${settled ? "" : " (timed out)"}`],
    ["wall time", `${fmt(figures.wall_s, 1)} s`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) log(`${k.padEnd(width)}  ${v}`);
  log();
  const nameWidth = Math.max(...checks.map((c) => c.name.length));
  for (const c of checks) log(`${c.pass ? "PASS" : "FAIL"}  ${c.name.padEnd(nameWidth)}  ${c.detail}`);
  for (const r of non2xx.slice(0, 20)) log(`  non-2xx: #${r.index} ${r.kind} ${r.ref} -> ${r.status} ${r.error ?? ""}`);
  for (const w of d1State.wrong.slice(0, 10)) log(`  D1 differs: ${w.ref} want ${w.want.normalized} (${w.want.status}/${w.want.sub_status}) got ${JSON.stringify(w.got)}`);
  for (const w of apiWrong.slice(0, 10)) log(`  API differs: ${w.ref} want ${w.want.normalized} got ${JSON.stringify(w.got)} (read ${w.read})`);

  const dir = join(ROOT, ".bench");
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "soak.json"), `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(join(dir, "soak-responses.ndjson"), `${responses.map((r) => JSON.stringify(r)).join("\n")}\n`);
  log();
  log(`${results.passed ? "PASS" : "FAIL"}: results in .bench/soak.json, every response in .bench/soak-responses.ndjson`);
  return results.passed;
}

const passed = await main().catch((error) => {
  log(`soak failed to run: ${error.stack ?? error}`);
  return false;
});
process.exitCode = passed ? 0 : 1;
