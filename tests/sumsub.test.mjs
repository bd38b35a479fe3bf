// Sumsub end to end: the compiled worker in workerd with local D1/KV/Queue, a stand-in Sumsub
// API on loopback that refuses any request not signed as Sumsub documents (401 "Invalid
// signature"), and a stand-in application endpoint verifying notifications with the official
// Standard Webhooks library. Webhook digests are computed here with node:crypto
// (sandbox/sign.mjs), never by the verifier under test. A Sumsub webhook is only a trigger:
// every status must come from the stand-in API's answer.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { readPersistedFiles } from "./support/worker.mjs";
import { sumsubDigest } from "../sandbox/sign.mjs";
import { SUMSUB_WEBHOOK_SECRET, skippedEnabled, startStack } from "./support/stack.mjs";
import { eventually, freePort, kycsUpdated, startSink, sumsubEvent } from "../sandbox/kit.mjs";

const SECRET = "whsec_R4mMtD8u9t0mMX3bqm1Q7ugO8hbRdeuCqkzFgVDBo4E=";
const SECOND = 1000;

const reviewed = (ref, reviewAnswer, reviewRejectType, extra = {}) =>
  sumsubEvent("applicantReviewed", ref, {
    reviewStatus: "completed",
    reviewResult: reviewRejectType ? { reviewAnswer, reviewRejectType, rejectLabels: ["FORGERY"] } : { reviewAnswer },
    ...extra,
  });

const applicantPath = (ref) => `/resources/applicants/-;externalUserId=${encodeURIComponent(ref)}/one`;
const fetches = (stack, ref) => stack.standIn.requests().filter((r) => r.path === applicantPath(ref));

const reaches = (stack, ref, status, check) => stack.reaches("sumsub", ref, status, check);

async function eventsOf(stack, ref) {
  const res = await stack.api("GET", `/v1/subjects/sumsub/${encodeURIComponent(ref)}/events`);
  assert.equal(res.status, 200, res.text);
  return res.json.events;
}

/**
 * Waits until earlier tests' work is done: no notification pending and D1 unchanged for 2.5 s
 * (the queue batches for up to a second at each hop).
 */
async function quiet(stack) {
  const deadline = Date.now() + 40_000;
  let last = await stack.fingerprint();
  let stableSince = Date.now();
  while (Date.now() < deadline) {
    await sleep(250);
    const now = await stack.fingerprint();
    const [{ n }] = await stack.sql("SELECT COUNT(*) AS n FROM notifications WHERE state = 'pending'");
    if (now !== last || n > 0) {
      last = now;
      stableSince = Date.now();
    } else if (Date.now() - stableSince >= 2500) {
      return;
    }
  }
  assert.fail("D1 never went quiet");
}

async function accepted(res, { event, ref, queued = true } = {}) {
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json.ok, true);
  if (event !== undefined) assert.equal(res.json.event, event);
  if (ref !== undefined) assert.equal(res.json.ref, ref);
  assert.equal(res.json.queued, queued, res.text);
}

describe("Sumsub webhooks and checks", () => {
  let stack;
  let app;
  before(async () => {
    app = await startSink({ secrets: [SECRET] });
    stack = await startStack({ sumsub: true, vars: { APP_WEBHOOK_URL: app.url, APP_WEBHOOK_SECRET: SECRET } });
  });
  after(async () => {
    await stack.stop();
    await app.stop();
  });

  test("the route is enabled and listed", async () => {
    const stats = await stack.stats();
    assert.equal(stats.providers.sumsub.enabled, true, JSON.stringify(stats.providers));
  });

  test("missing or wrong digest, or an unknown algorithm, is 401 and writes nothing", async () => {
    const ref = "ext-refused:0001";
    stack.standIn.setSumsub(ref, { reviewStatus: "completed", reviewAnswer: "GREEN" });
    const raw = JSON.stringify(reviewed(ref, "GREEN"));
    await quiet(stack);
    const before = await stack.fingerprint();
    const cases = [
      ["no digest", await stack.sumsubWebhook(raw, { digest: null })],
      ["no digest, no alg", await stack.sumsubWebhook(raw, { digest: null, alg: null })],
      ["empty digest", await stack.sumsubWebhook(raw, { digest: "" })],
      ["another secret", await stack.sumsubWebhook(raw, { secret: "not-the-webhook-secret" })],
      ["a digest of other bytes", await stack.sumsubWebhook(raw, { digest: sumsubDigest(SUMSUB_WEBHOOK_SECRET, `${raw} `) })],
      ["SHA-512 digest named SHA-256", await stack.sumsubWebhook(raw, { digest: sumsubDigest(SUMSUB_WEBHOOK_SECRET, raw, "HMAC_SHA512_HEX"), alg: "HMAC_SHA256_HEX" })],
      ["truncated", await stack.sumsubWebhook(raw, { digest: sumsubDigest(SUMSUB_WEBHOOK_SECRET, raw).slice(0, 40) })],
      ["unknown algorithm", await stack.sumsubWebhook(raw, { alg: "HMAC_MD5_HEX", digest: sumsubDigest(SUMSUB_WEBHOOK_SECRET, raw) })],
    ];
    for (const [why, res] of cases) {
      assert.equal(res.status, 401, `${why}: ${res.text}`);
      assert.equal(res.json.error.code, "unauthorized", why);
      assert.ok(!res.text.includes(SUMSUB_WEBHOOK_SECRET), why);
    }
    assert.equal(await stack.fingerprint(), before, "nothing was written");
    assert.equal((await stack.subject("sumsub", ref)).status, 404);
    assert.equal(fetches(stack, ref).length, 0, "a refused webhook triggers no fetch");
    // The same bytes, correctly signed, are new: the refusals left no event row.
    const genuine = await stack.sumsubWebhook(raw);
    await accepted(genuine, { event: "applicantReviewed", ref });
    assert.equal(genuine.json.duplicate, false);
    await reaches(stack, ref, "approved");
  });

  test("SHA-512 and SHA-1 digests are accepted, and SHA-256 is the default without the header", async () => {
    for (const [alg, ref] of [
      ["HMAC_SHA512_HEX", "ext-sha512-0002"],
      ["HMAC_SHA1_HEX", "ext-sha1-0002"],
      [null, "ext-default-0002"],
    ]) {
      stack.standIn.setSumsub(ref, { reviewStatus: "completed", reviewAnswer: "GREEN" });
      const res = await stack.sumsubWebhook(reviewed(ref, "GREEN"), { alg });
      await accepted(res, { event: "applicantReviewed", ref });
      await reaches(stack, ref, "approved");
    }
  });

  test("a body over the limit is 413, an authenticated non-Sumsub body 400, both writing nothing", async () => {
    await quiet(stack);
    const before = await stack.fingerprint();
    const big = JSON.stringify(sumsubEvent("applicantPending", "ext-big-0003", { padding: "x".repeat(300 * 1024) }));
    const tooLarge = await stack.sumsubWebhook(big);
    assert.equal(tooLarge.status, 413, tooLarge.text);
    for (const [why, body] of [
      ["an Align body", JSON.stringify(kycsUpdated("ext-align-0003", { status: "approved" }))],
      ["not JSON", "applicantReviewed ext-x"],
      ["a JSON array", "[]"],
      ["no type", JSON.stringify({ externalUserId: "ext-notype-0003", reviewStatus: "completed" })],
      ["an externalUserId that cannot be a ref", JSON.stringify(sumsubEvent("applicantReviewed", "Jane Doe <jane@example.com>"))],
    ]) {
      const res = await stack.sumsubWebhook(body);
      assert.equal(res.status, 400, `${why}: ${res.text}`);
      assert.equal(res.json.error.code, "bad_request", why);
      assert.ok(!res.text.includes("jane@example.com"), `${why}: not quoted`);
    }
    assert.equal(await stack.fingerprint(), before, "nothing was written");
  });

  test("unknown event types are acknowledged and ignored", async () => {
    const ref = "ext-unknown-0004";
    const before = (await stack.stats()).webhooks.sumsub;
    for (const type of ["applicantKytTxnApproved", "applicantPersonalInfoChanged", "someFutureEvent"]) {
      const res = await stack.sumsubWebhook(sumsubEvent(type, ref));
      await accepted(res, { event: type, ref: null, queued: false });
    }
    const after = (await stack.stats()).webhooks.sumsub;
    assert.equal(after.accepted - before.accepted, 3);
    assert.equal((await stack.subject("sumsub", ref)).status, 404, "no subject was created");
    await sleep(300);
    assert.equal(fetches(stack, ref).length, 0, "nothing was fetched");
  });

  test("a body from the other environment (sandboxMode false, sbx: token) is acknowledged, counted and ignored", async () => {
    const ref = "ext-prod-0005";
    stack.standIn.setSumsub(ref, { reviewStatus: "completed", reviewAnswer: "GREEN" });
    const before = (await stack.stats()).webhooks.sumsub;
    const body = reviewed(ref, "GREEN", undefined, { sandboxMode: false });
    const res = await stack.sumsubWebhook(body);
    await accepted(res, { event: "sandbox_mismatch", ref: null, queued: false });
    const again = await stack.sumsubWebhook(body);
    assert.equal(again.json.duplicate, true, "its correlationId dedups redeliveries");
    const after = (await stack.stats()).webhooks.sumsub;
    assert.equal(after.accepted - before.accepted, 1);
    const counted = await stack.sql("SELECT COUNT(*) AS n FROM events WHERE provider = 'sumsub' AND kind = 'sandbox_mismatch'");
    assert.equal(counted[0].n, 1, "counted as its own kind of event");
    assert.equal((await stack.subject("sumsub", ref)).status, 404, "ignored: no subject");
    await sleep(300);
    assert.equal(fetches(stack, ref).length, 0, "ignored: no fetch");
  });

  test("the status is fetched with signed requests and mapped step by step, reset included", async () => {
    const ref = "ext-flow:0006@example";
    const steps = [
      ["applicantCreated", { reviewStatus: "init" }, "not_started", "init", null],
      ["applicantPending", { reviewStatus: "pending" }, "pending", "pending", null],
      ["applicantOnHold", { reviewStatus: "onHold" }, "pending", "onHold", null],
      ["applicantAwaitingService", { reviewStatus: "awaitingService" }, "pending", "awaitingService", null],
      ["applicantReviewed", { reviewStatus: "completed", reviewAnswer: "RED", reviewRejectType: "RETRY" }, "resubmission_required", "completed", "RED_RETRY"],
      ["applicantPending", { reviewStatus: "queued" }, "pending", "queued", null],
      ["applicantReviewed", { reviewStatus: "completed", reviewAnswer: "GREEN" }, "approved", "completed", "GREEN"],
      ["applicantReset", { reviewStatus: "init" }, "not_started", "init", null],
    ];
    for (const [type, review, status, providerStatus, subStatus] of steps) {
      stack.standIn.setSumsub(ref, review);
      // The body claims something else: only the API's answer counts.
      const res = await stack.sumsubWebhook(sumsubEvent(type, ref, { reviewStatus: "completed", reviewResult: { reviewAnswer: "GREEN" } }));
      await accepted(res, { event: type, ref });
      const subject = await reaches(stack, ref, status, (s) => s.provider_status === providerStatus);
      assert.equal(subject.sub_status, subStatus, type);
      assert.equal(subject.source, "poll", type);
    }
    const answered = fetches(stack, ref);
    assert.equal(answered.length, steps.length, "one signed fetch per webhook");
    assert.ok(answered.every((r) => r.status === 200), JSON.stringify(answered.map((r) => r.status)));
    assert.equal(stack.standIn.sumsubSignatureFailures(), 0, "every request was signed as Sumsub wants");
    const changes = (await eventsOf(stack, ref)).filter((e) => e.type === "change").reverse();
    assert.deepEqual(
      changes.map((e) => e.to_status),
      ["not_started", "pending", "pending", "pending", "resubmission_required", "pending", "approved", "not_started"],
    );
    assert.ok(changes.every((e) => !e.drift), "each change was announced");
  });

  test("GREEN then RED (fraud found later) lands and is notified; applicantDeleted keeps the decision", async () => {
    const ref = "ext-flip-0007";
    stack.standIn.setSumsub(ref, { reviewStatus: "completed", reviewAnswer: "GREEN" });
    await accepted(await stack.sumsubWebhook(reviewed(ref, "GREEN")), { ref });
    await reaches(stack, ref, "approved");
    await eventually(`the application notified of ${ref} approved`, () => app.received().some((r) => r.ref === ref && r.body?.data?.status === "approved"));

    stack.standIn.setSumsub(ref, { reviewStatus: "completed", reviewAnswer: "RED", reviewRejectType: "FINAL" });
    await accepted(await stack.sumsubWebhook(reviewed(ref, "RED", "FINAL")), { ref });
    const subject = await reaches(stack, ref, "rejected");
    assert.equal(subject.sub_status, "RED_FINAL");
    const told = await eventually(`the flip of ${ref} to rejected notified`, () => app.received().find((r) => r.ref === ref && r.body?.data?.status === "rejected"));
    assert.equal(told.body.data.previous_status, "approved");
    assert.equal(told.body.data.provider, "sumsub");
    assert.ok(told.verified.every(Boolean), "validly signed");

    // Deleted at Sumsub: the API now answers 404; the decision on record stays.
    stack.standIn.removeSumsub(ref);
    await accepted(await stack.sumsubWebhook(sumsubEvent("applicantDeleted", ref)), { event: "applicantDeleted", ref });
    await eventually("the deletion checked (a 404 from the API)", () => fetches(stack, ref).some((r) => r.status === 404));
    await sleep(500);
    const kept = (await stack.subject("sumsub", ref)).json;
    assert.equal(kept.status, "rejected", "a deletion never erases the decision");
    assert.equal(app.received().filter((r) => r.ref === ref).length, 2, "nothing more was told");
  });

  test("PUT /v1/subjects/sumsub/{ref}, refresh and the cron poll the API", async () => {
    const ref = "ext-put-0008";
    stack.standIn.setSumsub(ref, { reviewStatus: "pending" });
    const put = await stack.api("PUT", `/v1/subjects/sumsub/${ref}`, { body: { external_id: "app-user-8" } });
    assert.equal(put.status, 201, put.text);
    // A PUT checks the new subject at once.
    await reaches(stack, ref, "pending");
    assert.ok(fetches(stack, ref).length >= 1, "the PUT's check asked the API");

    stack.standIn.setSumsub(ref, { reviewStatus: "completed", reviewAnswer: "RED", reviewRejectType: "RETRY" });
    assert.equal((await stack.api("POST", `/v1/subjects/sumsub/${ref}/refresh`)).status, 202);
    const subject = await reaches(stack, ref, "resubmission_required");
    assert.equal(subject.external_id, "app-user-8");

    // The cron finds the next change by itself, with no webhook and no refresh.
    stack.standIn.setSumsub(ref, { reviewStatus: "completed", reviewAnswer: "GREEN" });
    const before = fetches(stack, ref).length;
    await stack.cron(Date.now() + 2 * 24 * 3600 * SECOND);
    await reaches(stack, ref, "approved");
    assert.equal(fetches(stack, ref).length, before + 1, "the cron's check");
    assert.equal(stack.standIn.sumsubSignatureFailures(), 0);
  });

  test("no planted PII from the applicant answer reaches D1, KV, notifications or logs", async () => {
    const ref = "ext-pii-0009";
    const pii = {
      firstName: "PLANTEDFIRSTNAME Mariana",
      lastName: "PLANTEDLASTNAME Okonkwo",
      dob: "1987-04-23",
      documentNumber: "PLANTEDDOC X9981237",
      street: "PLANTEDSTREET 17 Rue Oberkampf",
      email: "planted.mariana.okonkwo@example.com",
      phone: "+33 6 12 34 56 78",
    };
    stack.standIn.setSumsub(ref, { reviewStatus: "completed", reviewAnswer: "GREEN" }, { pii });
    // A body with PII planted in it too (Sumsub documents none; a future field might carry some).
    const res = await stack.sumsubWebhook(reviewed(ref, "GREEN", undefined, { info: { firstName: pii.firstName, dob: pii.dob } }));
    await accepted(res, { ref });
    await reaches(stack, ref, "approved");
    await eventually(`a notification about ${ref}`, () => app.received().some((r) => r.ref === ref));
    const applicant = stack.standIn.requests().find((r) => r.path === applicantPath(ref) && r.status === 200);
    assert.ok(applicant, "the answer carrying PII was read");

    const notifications = app.received().filter((r) => r.ref === ref).map((r) => r.raw).join("\n");
    const logs = stack.worker.logs().map((l) => l.message).join("\n");
    assert.ok(logs.includes(ref), "control: the logs name the ref");
    await stack.worker.restart();
    const files = await readPersistedFiles(stack.dir);
    assert.ok(files.some((f) => f.path.includes("/d1/") && f.bytes.includes(Buffer.from(ref))), "control: the ref is in D1");
    assert.ok(files.some((f) => f.path.includes("/kv/") && f.bytes.includes(Buffer.from(ref))), "control: the ref is in KV");
    for (const [field, value] of Object.entries(pii)) {
      const hit = files.find((f) => f.bytes.includes(Buffer.from(value)));
      assert.equal(hit, undefined, `${field} found in ${hit?.path}`);
      assert.ok(!notifications.includes(value), `${field} in a notification`);
      assert.ok(!logs.includes(value), `${field} in the logs`);
    }
  });
});

describe("Sumsub rate limit", () => {
  test("429 with Retry-After pauses Sumsub checks until it has passed", async () => {
    // A fresh stack: the cron runs above moved that one's clock days ahead.
    const stack = await startStack({ sumsub: true });
    try {
      // A subject that comes due while Sumsub is paused.
      const other = "ext-429-other";
      stack.standIn.setSumsub(other, { reviewStatus: "pending" });
      assert.equal((await stack.api("PUT", `/v1/subjects/sumsub/${other}`, { body: {} })).status, 201);
      await reaches(stack, other, "pending");

      const ref = "ext-429-0010";
      stack.standIn.setSumsub(ref, { reviewStatus: "pending" });
      stack.standIn.failNext(1, { status: 429, retryAfter: 600, provider: "sumsub" });
      const asked = Date.now();
      await accepted(await stack.sumsubWebhook(sumsubEvent("applicantPending", ref)), { ref });
      const paused = await eventually("Sumsub paused (paused_until set)", async () => (await stack.stats()).providers.sumsub.paused_until);
      const pausedUntil = Date.parse(paused);
      assert.ok(pausedUntil >= asked + 600 * SECOND, paused);
      assert.equal((await stack.stats()).providers.sumsub.last_error, "HTTP 429");
      assert.equal((await stack.subject("sumsub", ref)).json.status, "unknown", "a failure learns nothing");

      // The other subject is due (~5 min after its check) while Sumsub is paused: nothing is asked.
      const due = Date.parse((await stack.row("sumsub", other)).next_check_at) + SECOND;
      assert.ok(due < pausedUntil, "due within the pause");
      stack.standIn.resetCounts();
      await stack.cron(due);
      const run = (await stack.stats()).last_cron_run;
      assert.deepEqual(skippedEnabled(run), ["sumsub:paused"], JSON.stringify(run));
      assert.equal(run.enqueued, 0);
      await sleep(1000);
      assert.equal(stack.standIn.requests().length, 0, "no Sumsub call while paused");

      // Once Retry-After has passed, both are checked.
      await stack.cron(pausedUntil + SECOND);
      await reaches(stack, ref, "pending");
      assert.ok(fetches(stack, other).length >= 1);
    } finally {
      await stack.stop();
    }
  });
});

describe("Sumsub request signatures", () => {
  test("a worker signing with the wrong secret key is refused by the stand-in and learns nothing", async () => {
    const stack = await startStack({ sumsub: true, vars: { SUMSUB_SECRET_KEY: "not-the-secret-key" } });
    try {
      const ref = "ext-badsig-0011";
      stack.standIn.setSumsub(ref, { reviewStatus: "completed", reviewAnswer: "GREEN" });
      await accepted(await stack.sumsubWebhook(reviewed(ref, "GREEN")), { ref });
      await eventually("the request refused by the stand-in (401)", () => fetches(stack, ref).some((r) => r.status === 401));
      assert.ok(stack.standIn.sumsubSignatureFailures() >= 1);
      const health = await eventually("Sumsub's last error recorded", async () => (await stack.stats()).providers.sumsub.last_error);
      assert.equal(health, "HTTP 401");
      assert.equal((await stack.subject("sumsub", ref)).json.status, "unknown");
    } finally {
      await stack.stop();
    }
  });
});

describe("Sumsub disabled", () => {
  test("without SUMSUB_WEBHOOK_SECRET the route is 404", async () => {
    const stack = await startStack({ sumsub: true, vars: { SUMSUB_WEBHOOK_SECRET: "" } });
    try {
      const res = await stack.sumsubWebhook(reviewed("ext-off-0012", "GREEN"), { secret: "anything" });
      assert.equal(res.status, 404, res.text);
      assert.equal((await stack.stats()).providers.sumsub.enabled, false);
    } finally {
      await stack.stop();
    }
  });
});

describe("make trigger PROVIDER=sumsub", () => {
  test("moves the sandbox's Sumsub truth and sends a correctly digested webhook the worker follows", async () => {
    const { startSandbox } = await import("../sandbox/server.mjs");
    const { execFile } = await import("node:child_process");
    const port = await freePort();
    const vars = {
      SUMSUB_APP_TOKEN: "sbx:sandbox_trigger_e2e_0c1d",
      SUMSUB_SECRET_KEY: "sandbox_sumsub_trigger_secret",
      SUMSUB_WEBHOOK_SECRET: "trigger_webhook_secret_9f2a",
    };
    const stack = await startStack({ sumsub: true, vars: { ...vars, SUMSUB_API_BASE: `http://127.0.0.1:${port}` } });
    const sandbox = await startSandbox({ port, workerUrl: stack.url, vars });
    const make = (...args) =>
      new Promise((resolve) =>
        execFile("make", ["-s", "trigger", ...args], { cwd: new URL("..", import.meta.url).pathname, env: { ...process.env, SANDBOX_URL: sandbox.url, KYC_EDGE_URL: stack.url } }, (error, stdout, stderr) =>
          resolve({ code: error?.code ?? 0, stdout, stderr }),
        ),
      );
    try {
      assert.equal(sandbox.sandboxed.sumsub, true);
      for (const status of ["pending", "resubmission_required", "approved", "rejected", "not_started"]) {
        const run = await make("PROVIDER=sumsub", "REF=trigger-user-1", `STATUS=${status}`);
        assert.equal(run.code, 0, `${status}: ${run.stdout}${run.stderr}`);
        assert.match(run.stdout, new RegExp(`sumsub trigger-user-1 is now ${status} at the provider; webhook → HTTP 200`));
        await reaches(stack, "trigger-user-1", status);
      }
      const bad = await make("PROVIDER=sumsub", "REF=trigger-user-1", "STATUS=incomplete");
      assert.notEqual(bad.code, 0, "a status Sumsub's sandbox does not model is refused");
    } finally {
      await sandbox.stop();
      await stack.stop();
    }
  });
});
