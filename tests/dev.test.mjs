// `make dev`'s server script, end to end: wrangler dev (workerd) on loopback with migrations
// applied to PERSIST_DIR, the honoured PORT, and state that survives a restart.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { eventually, fetchJson, freePort } from "../sandbox/kit.mjs";

const ROOT = new URL("..", import.meta.url).pathname;
const TOKEN = "dev-smoke-token-81f0-0123456789abcdef";

async function serve(port, persistDir) {
  const child = spawn("bash", ["scripts/dev.sh", "--var", `API_TOKEN:${TOKEN}`], {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: String(port),
      SANDBOX_PORT: String(await freePort()),
      PERSIST_DIR: persistDir,
      DEV_VARS: join(persistDir, "dev.vars"),
    },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (res.ok) {
        return {
          stop: async () => {
            process.kill(-child.pid, "SIGTERM");
            await new Promise((resolve) => child.once("exit", resolve));
          },
        };
      }
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null) break;
    await sleep(250);
  }
  process.kill(-child.pid, "SIGKILL");
  throw new Error(`dev server did not come up:\n${output}`);
}

test("make dev's server applies migrations, honours PORT and PERSIST_DIR, and keeps state across restarts", async () => {
  const persistDir = await mkdtemp(join(tmpdir(), "kyc-edge-dev-"));
  const port = await freePort();
  const api = (method, path, body) =>
    fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: body && JSON.stringify(body),
    });
  try {
    let server = await serve(port, persistDir);
    const created = await api("PUT", "/v1/subjects/align/dev-smoke-1", { external_id: "u-1" });
    assert.equal(created.status, 201, await created.text());
    await server.stop();

    server = await serve(port, persistDir);
    try {
      const res = await api("GET", "/v1/subjects/align/dev-smoke-1");
      assert.equal(res.status, 200);
      assert.equal((await res.json()).external_id, "u-1");
      const again = await api("PUT", "/v1/subjects/align/dev-smoke-1", { external_id: "u-1" });
      assert.equal(again.status, 200, "still tracked after the restart");
    } finally {
      await server.stop();
    }
  } finally {
    await rm(persistDir, { recursive: true, force: true });
  }
});

// A newcomer's first minutes: `make dev` exactly as typed (the Makefile, its bootstrap, the
// log filter), with a vars file that configures Align only. What it prints, what it writes for
// the other targets, `GET /`, and every way of reaching a provider it lacks the keys for.
test("make dev prints little and the addresses once; a provider without its keys says which are missing, everywhere", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kyc-edge-first-"));
  const port = await freePort();
  const sandboxPort = await freePort();
  const persistDir = join(dir, "state");
  const varsFile = join(dir, "dev.vars");
  const token = `dev_${"5".repeat(32)}`;
  await writeFile(
    varsFile,
    `API_TOKEN=${token}\nALIGN_API_KEY=sandbox_align_${"a".repeat(32)}\nAPP_WEBHOOK_SECRET=whsec_${Buffer.alloc(32, 7).toString("base64")}\n`,
  );
  const child = spawn("make", ["-s", "dev"], {
    cwd: ROOT,
    env: { ...process.env, PORT: String(port), SANDBOX_PORT: String(sandboxPort), PERSIST_DIR: persistDir, DEV_VARS: varsFile },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const worker = `http://127.0.0.1:${port}`;
  const api = (method, path, body) =>
    fetchJson(`${worker}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: body && (typeof body === "string" ? body : JSON.stringify(body)),
    });
  const make = (args) =>
    new Promise((resolve) =>
      execFile("make", ["-s", ...args], { cwd: ROOT, env: { ...process.env, PERSIST_DIR: persistDir } }, (error, stdout, stderr) =>
        resolve({ code: error ? (error.code ?? 1) : 0, stdout, stderr }),
      ),
    );
  try {
    await eventually(() => `make dev's "ready" lines; output so far:\n${output}`, () => output.includes("kyc-edge is ready"), {
      timeoutMs: 120_000,
      intervalMs: 250,
    });
    const migrations = (await readdir(join(ROOT, "migrations"))).filter((name) => name.endsWith(".sql")).sort();
    assert.match(output, new RegExp(`^migrations: applied ${migrations.length} \\(${migrations[0]} … ${migrations.at(-1)}\\) to `, "m"));
    assert.doesNotMatch(output, /┌|│/, "no migration tables");
    assert.match(output, new RegExp(`^  API +${worker} `, "m"));
    assert.match(output, new RegExp(`^  dashboard +${worker}/dashboard/ `, "m"));
    assert.match(output, new RegExp(`^  sandbox +http://127\\.0\\.0\\.1:${sandboxPort} `, "m"));
    assert.match(output, new RegExp(`^  API token +API_TOKEN in ${varsFile.replaceAll(".", "\\.")};`, "m"));
    assert.ok(!output.includes(token), "the token itself is never printed");
    assert.doesNotMatch(output, /Installing|apt-get install chromium/, "make dev installs no browser");
    const written = JSON.parse(await readFile(join(persistDir, "dev.json"), "utf8"));
    assert.deepEqual(written, { worker, sandbox: `http://127.0.0.1:${sandboxPort}`, vars: varsFile });

    // GET /: a JSON index, or the dashboard for a browser.
    const index = await fetchJson(`${worker}/`);
    assert.equal(index.status, 200);
    assert.deepEqual(index.json.links, { dashboard: "/dashboard/", health: "/healthz", openapi: "/openapi.json" });
    assert.equal(index.json.name, "kyc-edge");
    assert.match(index.json.version, /^\d+\.\d+\.\d+$/);
    const browser = await fetch(`${worker}/`, { headers: { accept: "text/html,application/xhtml+xml" }, redirect: "manual" });
    assert.equal(browser.status, 302);
    assert.equal(browser.headers.get("location"), "/dashboard/");

    // Which providers are enabled, and what the others lack.
    const health = await fetchJson(`${worker}/healthz`);
    assert.deepEqual(health.json.providers, {
      enabled: ["align"],
      not_configured: {
        argos: ["ARGOS_API_KEY", "ARGOS_WEBHOOK_TOKEN"],
        sumsub: ["SUMSUB_APP_TOKEN", "SUMSUB_SECRET_KEY", "SUMSUB_WEBHOOK_SECRET"],
        persona: ["PERSONA_API_KEY", "PERSONA_WEBHOOK_SECRET"],
      },
    });
    const PERSONA = ["PERSONA_API_KEY", "PERSONA_WEBHOOK_SECRET"];
    const notConfigured = (answer, status, what) => {
      assert.equal(answer.status, status, `${what}: ${answer.text}`);
      assert.equal(answer.json.error.code, "provider_not_configured", what);
      assert.deepEqual(answer.json.error.missing, PERSONA, what);
      assert.match(answer.json.error.message, /persona is not configured: set PERSONA_API_KEY, PERSONA_WEBHOOK_SECRET/, what);
    };
    notConfigured(await api("POST", "/webhooks/persona", { data: {} }), 404, "webhook");
    notConfigured(await api("PUT", "/v1/subjects/persona/inq-1", {}), 409, "PUT");
    notConfigured(await api("POST", "/v1/subjects/persona/inq-1/refresh"), 409, "refresh");
    notConfigured(await api("POST", "/v1/backfill/persona", {}), 409, "backfill");
    const batch = '{"provider":"align","ref":"cust-9"}\n{"provider":"persona","ref":"inq-2"}\n';
    const imported = await api("POST", "/v1/subjects/batch", batch);
    notConfigured(imported, 409, "import");
    assert.match(imported.json.error.message, /^line 2: /);
    // Refused whole: nothing written, not even the configured provider's line.
    assert.equal((await api("GET", "/v1/subjects/align/cust-9")).status, 404);
    assert.equal((await api("GET", "/v1/subjects/persona/inq-1")).status, 404);

    // make trigger says which variables are missing, before sending anything.
    const trigger = await make(["trigger", "PROVIDER=persona", "REF=inq-1", "STATUS=approved"]);
    assert.equal(trigger.code, 2, "make reports the script's failure");
    assert.match(trigger.stderr, /persona is not configured in kyc-edge: set PERSONA_API_KEY, PERSONA_WEBHOOK_SECRET in /);

    // make trigger waits for the effect by default, and not with WAIT=0.
    const waited = await make(["trigger", "PROVIDER=align", "REF=first-1", "STATUS=pending"]);
    assert.equal(waited.code, 0, waited.stderr);
    assert.match(waited.stdout, /^kyc-edge: align\/first-1 is pending \(version \d+, from webhook\)$/m);
    assert.match(waited.stdout, /^notified: msg_\S+ kyc\.status\.changed align\/first-1 → pending \(signature verified\)$/m);
    const quick = await make(["trigger", "PROVIDER=align", "REF=first-2", "STATUS=pending", "WAIT=0"]);
    assert.equal(quick.code, 0, quick.stderr);
    assert.match(quick.stdout, /align first-2 is now pending at the provider; webhook → HTTP 200/);
    assert.doesNotMatch(quick.stdout, /^kyc-edge:|^notified:/m, "WAIT=0 returns once the webhook is answered");

    // Each request is logged once, as one short line (wrangler's own echo is dropped).
    const before = output.split("\n").filter((line) => / request GET index 200 /.test(line)).length;
    for (let i = 0; i < 3; i += 1) await fetch(`${worker}/`);
    await eventually("three more `request GET index` lines", () =>
      output.split("\n").filter((line) => / request GET index 200 /.test(line)).length >= before + 3,
    );
    await sleep(500);
    assert.equal(output.split("\n").filter((line) => / request GET index 200 /.test(line)).length, before + 3);
    assert.doesNotMatch(output, /\[wrangler:info\] (GET|POST|PUT) /);
    assert.doesNotMatch(output, /^\{"kind":/m, "no raw JSON lines locally");
  } finally {
    process.kill(-child.pid, "SIGTERM");
    await new Promise((resolve) => child.once("exit", resolve));
    await assert.rejects(readFile(join(persistDir, "dev.json")), "dev.json is removed when make dev stops");
    await rm(dir, { recursive: true, force: true });
  }
});

// `make dev` runs the bootstrap without a browser; `make test` asks for one. On a machine where
// neither a browser nor apt-get is found, the first still succeeds and the second says what to do.
test("make dev's bootstrap installs no browser; make test's asks for one, and says what to do without apt", async () => {
  const bin = await mkdtemp(join(tmpdir(), "kyc-edge-path-"));
  try {
    // Every command this machine has, except a browser and apt-get (the first on PATH wins).
    const dirs = new Set([join(homedir(), ".cargo", "bin"), ...process.env.PATH.split(":")]);
    for (const dir of dirs) {
      const names = await readdir(dir).catch(() => []);
      for (const name of names) {
        if (["chromium", "chromium-browser", "apt-get"].includes(name)) continue;
        await symlink(join(dir, name), join(bin, name)).catch(() => {});
      }
    }
    const bootstrap = (args) =>
      new Promise((resolve) =>
        execFile("bash", ["scripts/bootstrap.sh", ...args], { cwd: ROOT, env: { ...process.env, PATH: bin } }, (error, stdout, stderr) =>
          resolve({ code: error ? (error.code ?? 1) : 0, stdout, stderr }),
        ),
      );
    const dev = await bootstrap([]);
    assert.equal(dev.code, 0, dev.stderr);
    assert.doesNotMatch(dev.stdout + dev.stderr, /chromium/i, "no browser for make dev");
    const test = await bootstrap(["--browser"]);
    assert.equal(test.code, 1);
    assert.match(test.stderr, /the dashboard's test needs Chromium at \/usr\/bin\/chromium and this machine has no apt-get/);
    assert.match(test.stderr, /install Chromium with your package manager, then run make test again/);
  } finally {
    await rm(bin, { recursive: true, force: true });
  }
});
