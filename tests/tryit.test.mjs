// The README's "Try it", run as written: `make dev` on a fresh state directory and vars file,
// then every command of the walkthrough in a shell, asserting each outcome the README
// promises. Only what must differ on a shared machine is changed in the commands: the ports
// (free ones instead of 8787/8788) and the vars file (a fresh one instead of ./.dev.vars);
// `make trigger` finds the sandbox through SANDBOX_URL.
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
  const adapted = `${exports.join("\n")}\n${script}`
    .replaceAll("127.0.0.1:8787", `127.0.0.1:${port}`)
    .replaceAll("127.0.0.1:8788", `127.0.0.1:${sandboxPort}`)
    .replaceAll(".dev.vars", varsFile);
  return new Promise((resolve) => {
    execFile(
      "bash",
      ["-euo", "pipefail", "-c", adapted],
      { cwd: ROOT, env: { ...process.env, SANDBOX_URL: `http://127.0.0.1:${sandboxPort}` }, timeout: 120_000 },
      (error, stdout, stderr) => resolve({ code: error ? (error.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const json = (text) => JSON.parse(text);

/**
 * What each step promises. A read may need a moment (a queue job or the cron's check runs after
 * the command that caused it returned): those are retried for up to 15 s; nothing else is.
 */
const PROMISES = {
  token: () => {},
  register: (out) => {
    const subject = json(out);
    assert.deepEqual([subject.status, subject.external_id], ["unknown", "user-1"]);
  },
  approve: (out) => {
    assert.match(out, /align cust-1 is now approved at the provider; webhook → HTTP 200/);
    assert.match(out, /"duplicate":false/);
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
  drop: (out) => {
    assert.match(out, /align cust-1 is now rejected at the provider; webhook dropped/);
    assert.match(out, /^ok$/m, "the cron ran");
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
  argos: (out) => assert.match(out, /argos user-7 is now approved at the provider; webhook → HTTP 200/),
  "read-argos": (out) => {
    const subject = json(out);
    assert.deepEqual([subject.status, subject.source], ["approved", "poll"]);
  },
  dashboard: (out) => assert.equal(out.trim(), "200"),
};
const RETRIED = new Set(["read-approved", "read-rejected", "stats", "notifications", "read-argos"]);

test("the README's Try it, against make dev: a status change, a duplicate, a drift, notifications", async () => {
  const steps = await walkthrough();
  assert.deepEqual(
    steps.map((s) => s.name).filter((name) => !Object.hasOwn(PROMISES, name)),
    [],
    "every step has its promise checked here",
  );
  const exports = [];
  for (const { name, script } of steps) {
    const deadline = Date.now() + (RETRIED.has(name) ? 15_000 : 0);
    for (;;) {
      const { code, stdout, stderr } = await run(script, exports);
      try {
        assert.equal(code, 0, `${name}: exit ${code}\n${stderr}`);
        PROMISES[name](stdout);
        break;
      } catch (error) {
        if (Date.now() > deadline) {
          error.message = `step ${name}: ${error.message}\nstdout: ${stdout}\nstderr: ${stderr}`;
          throw error;
        }
        await sleep(500);
      }
    }
    exports.push(...script.split("\n").filter((line) => line.startsWith("export ")));
  }
});
