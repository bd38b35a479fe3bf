// `make listen`, end to end: the compiled worker in workerd notifies the sandbox
// (sandbox/server.mjs, in process, APP_WEBHOOK_URL pointed at its sink); `node scripts/listen.mjs`
// prints each notification and forwards it to an endpoint of this test, which checks it with the
// official `standardwebhooks` package, as the user's application would.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Webhook } from "standardwebhooks";
import { startStack } from "./support/stack.mjs";
import { startSandbox } from "../sandbox/server.mjs";
import { ALIGN_STATUSES, eventually, fetchJson, freePort, kycsUpdated } from "../sandbox/kit.mjs";

const ROOT = new URL("..", import.meta.url).pathname;
const SECRET = "whsec_R4mMtD8u9t0mMX3bqm1Q7ugO8hbRdeuCqkzFgVDBo4E=";
const started = [];

/** `node scripts/listen.mjs` with `env` added: { child, stdout(), stderr(), lines() }. */
function runListen(env = {}) {
  const child = spawn(process.execPath, ["scripts/listen.mjs"], {
    cwd: ROOT,
    // No SANDBOX_URL, FORWARD_TO or ALL from the caller's environment unless given.
    env: { ...process.env, SANDBOX_URL: "", FORWARD_TO: "", ALL: "", LISTEN_INTERVAL_MS: "200", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const run = {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    lines: () => stdout.split("\n").filter(Boolean),
    /** Waits for listen's banner: it has read where the sandbox's notifications end. */
    ready: () => eventually(() => `listen's banner (stdout ${JSON.stringify(stdout)}, stderr ${JSON.stringify(stderr)})`, () => stdout.includes("Ctrl-C stops")),
    /** Waits for, and returns, the line naming `webhookId`. */
    line: (webhookId) => eventually(() => `listen's line for ${webhookId} (stdout ${JSON.stringify(stdout)})`, () => run.lines().find((l) => l.includes(webhookId))),
    exited: () => eventually(`listen (pid ${child.pid}) to exit`, () => child.exitCode !== null || child.signalCode !== null).then(() => child.exitCode),
  };
  started.push(child);
  return run;
}

/** The test's application endpoint: every request's raw bytes and headers; answers `status`. */
async function startApp() {
  const requests = [];
  const app = { status: 200, requests };
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      requests.push({ body: Buffer.concat(chunks), headers: req.headers, path: req.url });
      res.writeHead(app.status, { "content-type": "application/json" });
      res.end("{}");
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  app.url = `http://127.0.0.1:${server.address().port}/hooks/kyc`;
  app.stop = () => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  };
  return app;
}

const webhookHeaders = (headers) => ({
  "webhook-id": headers["webhook-id"],
  "webhook-timestamp": headers["webhook-timestamp"],
  "webhook-signature": headers["webhook-signature"],
});

after(() => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

describe("make listen against the worker's notifications", () => {
  let sandbox;
  let stack;
  let app;
  before(async () => {
    // No provider key: the sandbox here is only the application endpoint the worker notifies.
    sandbox = await startSandbox({ vars: { APP_WEBHOOK_SECRET: SECRET } });
    stack = await startStack({ vars: { APP_WEBHOOK_URL: `${sandbox.url}/_sandbox/sink`, APP_WEBHOOK_SECRET: SECRET } });
    app = await startApp();
  });
  after(async () => {
    await stack?.stop();
    await sandbox?.stop();
    await app?.stop();
  });

  /** The sandbox's stored notifications after `seq`. */
  const stored = async (seq = 0) => {
    const res = await fetchJson(`${sandbox.url}/_sandbox/notifications?after=${seq}`);
    assert.equal(res.status, 200, res.text);
    return res.json;
  };

  /** POSTs `raw` to the sandbox's sink with these webhook headers, as a sender would. */
  const postToSink = (raw, headers) =>
    fetchJson(`${sandbox.url}/_sandbox/sink`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: raw });

  test("a status change is printed, verified, and forwarded byte for byte with its signature", async () => {
    const listen = runListen({ SANDBOX_URL: sandbox.url, FORWARD_TO: app.url });
    await listen.ready();

    const ref = "listen-approved-1";
    const res = await stack.alignWebhook(kycsUpdated(ref, ALIGN_STATUSES.approved));
    assert.equal(res.status, 200, res.text);
    const note = await eventually(`the sandbox to receive the notification about ${ref}`, async () =>
      (await stored()).notifications.find((n) => n.subject === `align/${ref}`),
    );
    assert.equal(note.seq, 1);
    assert.equal(note.verified, true, "the sandbox verified the worker's signature");
    assert.equal(note.headers["webhook-id"], note.id);
    assert.ok(!JSON.stringify(note).includes(SECRET), "the secret is never stored or answered");

    const line = await listen.line(note.id);
    for (const part of ["kyc.status.changed", `align/${ref}`, "unknown → approved", note.id, "signature verified", "forwarded: HTTP 200"]) {
      assert.ok(line.includes(part), `${JSON.stringify(line)} includes ${JSON.stringify(part)}`);
    }

    const forwarded = await eventually(`${app.url} to receive ${note.id}`, () => app.requests.find((r) => r.headers["webhook-id"] === note.id));
    assert.equal(forwarded.path, "/hooks/kyc");
    assert.equal(forwarded.headers["content-type"], "application/json");
    assert.deepEqual(webhookHeaders(forwarded.headers), note.headers, "the worker's own webhook headers");
    assert.ok(forwarded.body.equals(Buffer.from(note.raw, "utf8")), "the body the sink received, byte for byte");
    const payload = new Webhook(SECRET).verify(forwarded.body.toString("utf8"), webhookHeaders(forwarded.headers));
    assert.deepEqual([payload.type, payload.data.ref, payload.data.status], ["kyc.status.changed", ref, "approved"]);
    assert.ok(!listen.stdout().includes(SECRET) && !listen.stderr().includes(SECRET), "no secret in listen's output");

    // A tampered signature: the sandbox refuses it, listen says so, forwards it, and the
    // application's verifier refuses it too.
    const tamperedId = "msg_listen_tampered_1";
    const tampered = await postToSink(note.raw, { ...note.headers, "webhook-id": tamperedId, "webhook-signature": `v1,${Buffer.alloc(32).toString("base64")}` });
    assert.equal(tampered.status, 401);
    const badLine = await listen.line(tamperedId);
    assert.match(badLine, /SIGNATURE INVALID/);
    assert.doesNotMatch(badLine, /signature verified/);
    const forwardedBad = await eventually(`${app.url} to receive ${tamperedId}`, () => app.requests.find((r) => r.headers["webhook-id"] === tamperedId));
    assert.throws(() => new Webhook(SECRET).verify(forwardedBad.body.toString("utf8"), webhookHeaders(forwardedBad.headers)));

    // A failing forward is printed and the listener goes on: a 503, then connection refused.
    app.status = 503;
    await postToSink(note.raw, { ...note.headers, "webhook-id": "msg_listen_503" });
    assert.match(await listen.line("msg_listen_503"), /forwarded: FORWARD FAILED HTTP 503/);
    await app.stop();
    await postToSink(note.raw, { ...note.headers, "webhook-id": "msg_listen_refused" });
    assert.match(await listen.line("msg_listen_refused"), /forwarded: FORWARD FAILED \(ECONNREFUSED\)/);
    app = await startApp();
    assert.equal(listen.child.exitCode, null, "still listening");

    // Ctrl-C: a clean exit.
    listen.child.kill("SIGINT");
    assert.equal(await listen.exited(), 0);
    assert.match(listen.stdout(), /listen: stopped/);
  });

  test("it starts from the current end unless ALL=1", async () => {
    const before = await stored();
    assert.ok(before.last_seq >= 1, "the previous test left notifications behind");
    const firstId = before.notifications[0].id;

    const fromEnd = runListen({ SANDBOX_URL: sandbox.url });
    const all = runListen({ SANDBOX_URL: sandbox.url, ALL: "1" });
    await Promise.all([fromEnd.ready(), all.ready()]);
    assert.match(fromEnd.stdout(), new RegExp(`${before.last_seq} earlier ones skipped`));

    const ref = "listen-history-2";
    assert.equal((await stack.alignWebhook(kycsUpdated(ref, ALIGN_STATUSES.pending))).status, 200);
    const note = await eventually(`the sandbox to receive the notification about ${ref}`, async () =>
      (await stored(before.last_seq)).notifications.find((n) => n.subject === `align/${ref}`),
    );
    assert.equal(note.seq, before.last_seq + 1, "?after=N answers the ones after N");
    assert.match(await fromEnd.line(note.id), /unknown → pending {2}\S+ {2}signature verified$/);
    await all.line(note.id);
    assert.ok(all.lines().some((l) => l.includes(firstId)), "ALL=1 printed the history");
    assert.ok(!fromEnd.lines().some((l) => l.includes(firstId)), "without ALL only new ones");
    const allIds = all.lines().filter((l) => l.includes("msg_")).map((l) => l.split("  ")[4]);
    assert.equal(allIds.indexOf(firstId), 0, "oldest first");

    fromEnd.child.kill("SIGINT");
    all.child.kill("SIGINT");
    assert.deepEqual([await fromEnd.exited(), await all.exited()], [0, 0]);
  });
});

test("with no sandbox reachable it exits 1 and asks whether make dev runs", async () => {
  const url = `http://127.0.0.1:${await freePort()}`;
  const listen = runListen({ SANDBOX_URL: url });
  assert.equal(await listen.exited(), 1);
  assert.match(listen.stderr(), new RegExp(`no sandbox at ${url}.*is \`make dev\` running\\?`));
});

test("it finds the sandbox through $PERSIST_DIR/dev.json, and waits for it when it goes away", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kyc-edge-listen-"));
  const port = await freePort();
  const vars = { APP_WEBHOOK_SECRET: SECRET };
  let sandbox = await startSandbox({ port, vars });
  const sign = (id, body) => {
    const at = new Date();
    const raw = JSON.stringify(body);
    return [raw, { "content-type": "application/json", "webhook-id": id, "webhook-timestamp": String(Math.floor(at / 1000)), "webhook-signature": new Webhook(SECRET).sign(id, at, raw) }];
  };
  const notify = (id) => {
    const [raw, headers] = sign(id, { type: "kyc.status.changed", data: { provider: "align", ref: "dev-json-1", status: "approved", previous_status: "pending" } });
    return fetchJson(`${sandbox.url}/_sandbox/sink`, { method: "POST", headers, body: raw });
  };
  try {
    await writeFile(join(dir, "dev.json"), JSON.stringify({ sandbox: sandbox.url }));
    const listen = runListen({ PERSIST_DIR: dir });
    await listen.ready();
    assert.match(listen.stdout(), new RegExp(`at ${sandbox.url}/_sandbox/sink`));
    assert.equal((await notify("msg_devjson_1")).status, 200);
    assert.match(await listen.line("msg_devjson_1"), /align\/dev-json-1 {2}pending → approved {2}msg_devjson_1 {2}signature verified/);

    await sandbox.stop();
    await eventually(`listen to say the sandbox went away (stdout ${JSON.stringify(listen.stdout())})`, () => listen.stdout().includes("went away"));
    assert.equal(listen.child.exitCode, null, "still retrying");
    // make dev restarted: a new sandbox on the same port, counting from 1 again.
    sandbox = await startSandbox({ port, vars });
    assert.equal((await notify("msg_devjson_2")).status, 200);
    assert.match(await listen.line("msg_devjson_2"), /signature verified/);
    listen.child.kill("SIGINT");
    assert.equal(await listen.exited(), 0);
  } finally {
    await sandbox.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
