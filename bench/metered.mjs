// A stack (worker + stand-in provider) whose worker runs inside the meter
// (bench/meter-entry.mjs), with the measuring tools the bench sections share: meter
// snapshots and differences, workerd CPU from /proc, waiting for the queue to settle.
import { copyFile, access } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { startStack } from "../tests/support/stack.mjs";
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
export async function startMetered({ checkout: target, ...options }) {
  const stack = await startStack({
    ...options,
    worker: { scriptPath: target.scriptPath, migrationsDir: target.migrationsDir, compatibilityFlags: ["nodejs_als"] },
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

export const per = (meter, n) => Object.fromEntries(FIELDS.map((f) => [f, meter[f] / n]).concat([["cpu_ms", (meter.cpu_ms ?? NaN) / n]]));

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
