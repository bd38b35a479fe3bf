// The README's "Try it", run as written and at a person's pace: `make dev` on a fresh state
// directory and vars file, then every command of the walkthrough in a shell, one at a time with
// pauses between them, asserting each outcome the README promises. Nothing in the commands is
// changed: they find the running `make dev` through PERSIST_DIR's dev.json, as a user's do
// (only the ports, state directory and vars file differ from the defaults, through the
// variables `make dev` honours).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "../sandbox/kit.mjs";

const ROOT = new URL("..", import.meta.url).pathname;

/** The walkthrough's steps, in order: [{ name, script }]. */
async function walkthrough() {
  const readme = await readFile(join(ROOT, "README.md"), "utf8");
  const start = readme.indexOf("<!-- try-it -->");
  const end = readme.indexOf("<!-- /try-it -->");
  assert.ok(start >= 0 && end > start, "README has a try-it section");
  const section = readme.slice(start, end);
  const steps = [...section.matchAll(/<!-- step: ([a-z-]+) -->\s*```sh\n([\s\S]*?)```/g)].map(([, name, script]) => ({ name, script }));
  assert.ok(steps.length >= 10, `found ${steps.length} steps`);
  return steps;
}

const dir = await mkdtemp(join(tmpdir(), "kyc-edge-tryit-"));
const port = await freePort();
const sandboxPort = await freePort();
const varsFile = join(dir, "dev.vars");
let server;
let output = "";

before(async () => {
  server = spawn("make", ["-s", "dev"], {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: String(port),
      SANDBOX_PORT: String(sandboxPort),
      PERSIST_DIR: join(dir, "state"),
      DEV_VARS: varsFile,
    },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  server.stdout.on("data", (d) => (output += d));
  server.stderr.on("data", (d) => (output += d));
  const deadline = Date.now() + 120_000;
  for (;;) {
    const up = await Promise.all(
      [port, sandboxPort].map((p) =>
        fetch(`http://127.0.0.1:${p}/${p === port ? "healthz" : "_sandbox"}`)
          .then((r) => r.ok)
          .catch(() => false),
      ),
    );
    if (up.every(Boolean)) break;
    if (server.exitCode !== null || Date.now() > deadline) throw new Error(`make dev did not come up:\n${output}`);
    await sleep(250);
  }
});

after(async () => {
  if (server?.exitCode === null) {
    process.kill(-server.pid, "SIGTERM");
    await new Promise((resolve) => server.once("exit", resolve));
  }
  await rm(dir, { recursive: true, force: true });
});

/** Runs a step's script in bash, after the exports of the steps before it. */
function run(script, exports) {
  return new Promise((resolve) => {
    execFile(
      "bash",
      ["-euo", "pipefail", "-c", `${exports.join("\n")}\n${script}`],
      { cwd: ROOT, env: { ...process.env, PERSIST_DIR: join(dir, "state") }, timeout: 120_000 },
      (error, stdout, stderr) => resolve({ code: error ? (error.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const json = (text) => JSON.parse(text);

/**
 * What each step promises. A read may need a moment (a queue job or the cron's check runs after
 * the command that caused it returned): those are retried for up to 15 s; nothing else is.
 */
const cronRun = (out) => {
  const match = out.match(/^cron run: (\d+) due, (\d+) checks? queued/m);
  assert.ok(match, `a cron run's figures in: ${out}`);
  return { due: Number(match[1]), enqueued: Number(match[2]) };
};
const PROMISES = {
  token: (out, env) => {
    assert.equal(env.KYC_EDGE, `http://127.0.0.1:${port}`);
    assert.equal(env.KYC_SANDBOX, `http://127.0.0.1:${sandboxPort}`);
    assert.match(env.API_TOKEN, /^dev_[0-9a-f]{32}$/);
  },
  register: (out) => {
    const subject = json(out);
    assert.deepEqual([subject.status, subject.external_id], ["unknown", "user-1"]);
  },
  approve: (out) => {
    assert.match(out, /align cust-1 is now approved at the provider; webhook → HTTP 200/);
    assert.match(out, /"duplicate":false/);
    // It waited for the effect: the status, and the notification the sandbox received.
    assert.match(out, /^kyc-edge: align\/cust-1 is approved \(version \d+, from webhook\)$/m);
    assert.match(out, /^notified: msg_\S+ kyc\.status\.changed align\/cust-1 → approved \(signature verified\)$/m);
  },
  "read-approved": (out) => assert.equal(json(out).status, "approved"),
  replay: (out) => assert.match(out, /HTTP 200 .*"duplicate":true/),
  history: (out) => {
    const events = json(out).events;
    const types = events.map((e) => e.type).sort();
    // The repeat is counted, not stored again.
    assert.deepEqual(types, ["change", "webhook"]);
    assert.equal(events.find((e) => e.type === "change").to_status, "approved");
  },
  // A cron run between the approval and the lost webhook: it checks the subject and confirms.
  cron: (out) => assert.deepEqual(cronRun(out), { due: 1, enqueued: 1 }),
  drop: (out) => {
    assert.match(out, /align cust-1 is now rejected at the provider; webhook dropped/);
    // Whatever ran before, the run after the loss finds the subject due and checks it.
    assert.deepEqual(cronRun(out), { due: 1, enqueued: 1 });
  },
  "read-rejected": (out) => {
    const subject = json(out);
    assert.deepEqual([subject.status, subject.source], ["rejected", "poll"]);
  },
  stats: (out) => {
    const stats = json(out);
    // Suspected until late webhooks have had 10 minutes to arrive; then the cron counts it.
    assert.equal(stats.drift_suspected.align, 1, "the dropped webhook's change is suspected drift");
    assert.equal(stats.changes.align, 2);
  },
  notifications: (out) => {
    const received = json(out).notifications;
    assert.deepEqual(
      received.map((n) => [n.type, n.subject, n.status, n.verified]),
      [
        ["kyc.status.changed", "align/cust-1", "approved", true],
        ["kyc.status.changed", "align/cust-1", "rejected", true],
      ],
    );
  },
  argos: (out) => {
    assert.match(out, /argos user-7 is now approved at the provider; webhook → HTTP 200/);
    assert.match(out, /^kyc-edge: argos\/user-7 is approved \(version \d+, from poll\)$/m);
  },
  "read-argos": (out) => {
    const subject = json(out);
    assert.deepEqual([subject.status, subject.source], ["approved", "poll"]);
  },
  dashboard: (out) => assert.equal(out.trim(), "200"),
};
/** Only the reads after `make cron` wait: its checks run from the queue after it returns. */
const RETRIED = new Set(["read-rejected", "stats", "notifications"]);
/** A person reads the output and types the next command. */
const PAUSE_MS = 2_000;

test("the README's Try it, against make dev at a person's pace: a status change, a duplicate, a cron run, a drift, notifications", async () => {
  const steps = await walkthrough();
  assert.deepEqual(
    steps.map((s) => s.name).filter((name) => !Object.hasOwn(PROMISES, name)),
    [],
    "every step has its promise checked here",
  );
  const exports = [];
  for (const { name, script } of steps) {
    await sleep(PAUSE_MS);
    const deadline = Date.now() + (RETRIED.has(name) ? 15_000 : 0);
    for (;;) {
      const { code, stdout, stderr } = await run(`${script}\nenv | grep -E '^(KYC_EDGE|KYC_SANDBOX|API_TOKEN)=' >&2 || true`, exports);
      const env = Object.fromEntries(
        stderr
          .split("\n")
          .filter((line) => /^(KYC_EDGE|KYC_SANDBOX|API_TOKEN)=/.test(line))
          .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
      );
      try {
        assert.equal(code, 0, `${name}: exit ${code}\n${stderr}`);
        PROMISES[name](stdout, env);
        break;
      } catch (error) {
        if (Date.now() > deadline) {
          error.message = `step ${name}: ${error.message}\nstdout: ${stdout}\nstderr: ${stderr}`;
          throw error;
        }
        await sleep(500);
      }
    }
    exports.push(...script.split("\n").filter((line) => /^(export|eval) /.test(line)));
  }
});
