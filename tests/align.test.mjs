// Align end to end: the compiled worker in workerd with local D1/KV/Queue, a stand-in Align API
// on loopback, webhooks signed by node:crypto (never by the verifier under test).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readPersistedFiles } from "./support/worker.mjs";
import { alignSignature } from "../sandbox/sign.mjs";
import { ALIGN_KEY, startStack } from "./support/stack.mjs";
import { eventually, kycsUpdated } from "../sandbox/kit.mjs";

const statusOf = async (stack, ref) => (await stack.subject("align", ref)).json?.status;

describe("Align webhooks", () => {
  let stack;
  before(async () => {
    stack = await startStack({ vars: { MAX_BODY_BYTES: "4096" } });
  });
  after(() => stack.stop());

  test("health answers without auth", async () => {
    const res = await fetch(`${stack.url}/healthz`);
    assert.equal(res.status, 200);
    assert.equal((await res.json()).ok, true);
  });

  test("a signed kycs.updated webhook makes the status approved, readable from the API", async () => {
    const id = "0d1f2e3a-0000-4000-8000-000000000001";
    stack.standIn.setAlign(id, { status: "approved", sub_status: "kyc_form_submission_accepted" });
    const res = await stack.alignWebhook(kycsUpdated(id, { status: "approved", sub_status: "kyc_form_submission_accepted" }));
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.duplicate, false);
    assert.equal(res.json.queued, true);
    await eventually(`${id} approved`, () => statusOf(stack, id).then((s) => s === "approved"));
    const subject = (await stack.subject("align", id)).json;
    assert.equal(subject.provider, "align");
    assert.equal(subject.ref, id);
    assert.equal(subject.provider_status, "approved");
    assert.equal(subject.sub_status, "kyc_form_submission_accepted");
    assert.equal(subject.source, "webhook", "an authenticated body with a timestamp applies directly");
    for (const field of ["status_at", "updated_at", "version"]) assert.ok(subject[field], field);
    assert.equal(subject.next_check_at, undefined, "KV holds the status, not the schedule");
    const row = await stack.row("align", id);
    assert.ok(row.next_check_at, "D1 has the schedule");
    // Only a poll answers a request for a check: the body's claim is confirmed at the next run.
    assert.ok(Date.parse(row.next_check_at) <= Date.now(), "still due for a poll");
  });

  test("a webhook without entity_object fetches the customer from the Align API", async () => {
    const id = "0d1f2e3a-0000-4000-8000-000000000002";
    stack.standIn.setAlign(id, { status: "rejected", sub_status: "kyc_form_resubmission_required" });
    stack.standIn.resetCounts();
    const res = await stack.alignWebhook(kycsUpdated(id, { withObject: false }));
    assert.equal(res.status, 200);
    await eventually(`${id} resubmission_required`, () => statusOf(stack, id).then((s) => s === "resubmission_required"));
    const subject = await stack.row("align", id);
    assert.equal(subject.source, "poll");
    assert.ok(subject.last_checked_at);
    assert.ok(stack.standIn.requests().some((r) => r.path === `/v0/customers/${id}`));
  });

  // A queue batch's reconciles run together and their D1 calls are gathered into one batch
  // (src/gather.rs): each subject still gets its own status, version and KV entry.
  test("a burst of webhooks is reconciled with gathered D1 calls, each subject its own result", async () => {
    const burst = Array.from({ length: 6 }, (_, i) => ({
      id: `0d1f2e3a-0000-4000-8000-0000000001${String(i).padStart(2, "0")}`,
      status: i % 2 ? "rejected" : "approved",
      // Half carry the customer (a trusted body), half make the worker fetch it.
      withObject: i % 3 !== 0,
    }));
    for (const { id, status } of burst) stack.standIn.setAlign(id, { status, sub_status: "kyc_form_submission_accepted" });
    const answers = await Promise.all(
      burst.map(({ id, status, withObject }) =>
        stack.alignWebhook(kycsUpdated(id, { status, sub_status: "kyc_form_submission_accepted", withObject })),
      ),
    );
    assert.deepEqual(answers.map((a) => a.status), burst.map(() => 200));
    for (const { id, status } of burst) {
      await eventually(`${id} ${status}`, () => statusOf(stack, id).then((s) => s === status));
      const row = await stack.row("align", id);
      assert.equal(row.status, status, id);
      assert.equal(row.version, (await stack.subject("align", id)).json.version, `${id}: KV holds D1's version`);
    }
    const gathered = stack.logLines("batch").filter((l) => l.d1_calls_asked > l.d1_calls);
    assert.ok(gathered.length > 0, "a batch's D1 calls were gathered");
    const asked = gathered.reduce((n, l) => n + l.d1_calls_asked, 0);
    const made = gathered.reduce((n, l) => n + l.d1_calls, 0);
    assert.ok(made < asked, `${made} calls made for ${asked} asked`);
    const jobs = stack.logLines("job").filter((l) => burst.some(({ id }) => l.ref === id));
    assert.ok(jobs.every((l) => l.verdict === "ack" && !l.error), JSON.stringify(jobs.filter((l) => l.verdict !== "ack" || l.error)));
  });

  test("an invalid, missing or wrong-key signature is 401 and writes nothing", async () => {
    const id = "0d1f2e3a-0000-4000-8000-000000000003";
    const body = JSON.stringify(kycsUpdated(id, { status: "approved" }));
    const before = await stack.fingerprint();
    const tampered = body.replace('"approved"', '"rejected"');
    const cases = [
      await stack.alignWebhook(body, { signature: null }),
      await stack.alignWebhook(body, { signature: "deadbeef" }),
      await stack.alignWebhook(body, { key: "sk_test_someone_else" }),
      // Signed for the original bytes, sent with altered ones.
      await stack.post("/webhooks/align", tampered, { "x-hmac-signature": alignSignature(ALIGN_KEY, body) }),
    ];
    for (const res of cases) {
      assert.equal(res.status, 401, res.text);
      assert.equal(res.json.error.code, "unauthorized");
    }
    assert.equal(await stack.fingerprint(), before, "nothing was written, not even a counter");
    assert.equal((await stack.subject("align", id)).status, 404, "no subject was created");
    // The refused requests left no event row: the same body, correctly signed, is new.
    const genuine = await stack.alignWebhook(body);
    assert.equal(genuine.status, 200);
    assert.equal(genuine.json.duplicate, false);
  });

  test("an authenticated but malformed body is 400 and writes nothing", async () => {
    const before = await stack.fingerprint();
    for (const body of ["not json", JSON.stringify({ entity_id: "x" }), JSON.stringify({ event_type: "customer.kycs.updated", entity_id: "bad/id" })]) {
      const res = await stack.alignWebhook(body);
      assert.equal(res.status, 400, body);
      assert.equal(res.json.error.code, "bad_request");
    }
    assert.equal(await stack.fingerprint(), before);
  });

  test("a body over the limit is 413 and writes nothing", async () => {
    const id = "0d1f2e3a-0000-4000-8000-000000000004";
    const body = kycsUpdated(id, { status: "approved" });
    body.padding = "x".repeat(5000);
    const before = await stack.fingerprint();
    const res = await stack.alignWebhook(body);
    assert.equal(res.status, 413);
    assert.equal(res.json.error.code, "payload_too_large");
    assert.equal(await stack.fingerprint(), before);
    assert.equal((await stack.subject("align", id)).status, 404);
  });

  test("the same body twice is one event and one change", async () => {
    const id = "0d1f2e3a-0000-4000-8000-000000000005";
    stack.standIn.setAlign(id, { status: "pending", sub_status: "kyc_form_submission_started" });
    const body = JSON.stringify(kycsUpdated(id, { status: "pending", sub_status: "kyc_form_submission_started" }));
    const first = await stack.alignWebhook(body);
    const second = await stack.alignWebhook(body);
    assert.equal(first.json.duplicate, false);
    assert.equal(second.status, 200);
    assert.equal(second.json.duplicate, true);
    assert.equal(second.json.queued, false);
    await eventually(`${id} pending`, () => statusOf(stack, id).then((s) => s === "pending"));
    const { events } = (await stack.api("GET", `/v1/subjects/align/${id}/events`)).json;
    assert.equal(events.filter((e) => e.type === "webhook").length, 1);
    assert.equal(events.filter((e) => e.type === "change").length, 1);
    assert.equal((await stack.subject("align", id)).json.version, 2, "created (1) + one change");
  });

  test("out-of-order bodies: the newer status stands", async () => {
    const id = "0d1f2e3a-0000-4000-8000-000000000006";
    // The API is down throughout, so only the bodies' own timestamps can order them.
    stack.standIn.removeAlign?.(id);
    stack.standIn.failNext(50, { status: 500, provider: "align" });
    const t = Date.now();
    const approved = kycsUpdated(id, { status: "approved", createdAt: new Date(t - 1000) });
    const pending = kycsUpdated(id, { status: "pending", createdAt: new Date(t - 5000) });
    assert.equal((await stack.alignWebhook(approved)).status, 200);
    await eventually(`${id} approved`, () => statusOf(stack, id).then((s) => s === "approved"));
    const jobs = () => stack.logLines("job").filter((j) => j.job === "reconcile" && j.ref === id);
    assert.equal(jobs().length, 1, "the approved body's job applied it without asking");
    assert.equal((await stack.alignWebhook(pending)).status, 200);
    // The late body is older than the record (by Align's own clock): its job does not apply
    // it, asks the API instead, which fails. Wait for that job's line, then check.
    const late = await eventually("the late body's job to ask the API and fail", () => jobs().find((j) => j.check_error === "HTTP 500"));
    assert.equal(late.outcome, "check failed");
    assert.equal(await statusOf(stack, id), "approved");
    stack.standIn.failNext(0);
  });

  test("Align answering 500: the subject stays due and converges once the API recovers", async () => {
    const id = "0d1f2e3a-0000-4000-8000-000000000007";
    stack.standIn.setAlign(id, { status: "approved", sub_status: "kyc_form_submission_accepted" });
    stack.standIn.failNext(1000, { status: 500, provider: "align" });
    assert.equal((await stack.alignWebhook(kycsUpdated(id, { withObject: false }))).status, 200);
    const failed = await eventually("a failure counted against Align", async () => {
      const stats = await stack.stats();
      return stats.providers.align.consecutive_failures > 0 && stats;
    });
    assert.ok(failed, "the failed fetch was recorded");
    const subject = (await stack.subject("align", id)).json;
    assert.equal(subject.status, "unknown", "a failure never changes the status");
    // Still failing: a cron run after the back-off retries and fails again, status untouched.
    await stack.cron(Date.now() + 3 * 60_000);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await statusOf(stack, id), "unknown");
    // The API recovers; the next run after the (longer) back-off converges.
    stack.standIn.failNext(0);
    await stack.cron(Date.now() + 60 * 60_000);
    await eventually(`${id} approved`, () => statusOf(stack, id).then((s) => s === "approved"));
  });

  test("PUT starts tracking before any webhook and learns the status", async () => {
    const id = "0d1f2e3a-0000-4000-8000-000000000008";
    stack.standIn.setAlign(id, { status: "pending", sub_status: "kyc_form_submission_started" });
    const created = await stack.api("PUT", `/v1/subjects/align/${id}`, { body: { external_id: "user-42" } });
    assert.equal(created.status, 201);
    assert.equal(created.json.external_id, "user-42");
    const again = await stack.api("PUT", `/v1/subjects/align/${id}`, { body: { external_id: "user-42" } });
    assert.equal(again.status, 200);
    await eventually(`${id} pending`, () => statusOf(stack, id).then((s) => s === "pending"));
    const bad = await stack.api("PUT", `/v1/subjects/align/${id}`, { body: { external_id: "" } });
    assert.equal(bad.status, 400);
    const listed = await stack.api("GET", "/v1/subjects?external_id=user-42");
    assert.deepEqual(listed.json.subjects.map((s) => s.ref), [id]);
  });

  test("the application API needs the bearer token", async () => {
    for (const token of [null, "wrong-token", ""]) {
      const res = await stack.api("GET", "/v1/subjects/align/anything", { token });
      assert.equal(res.status, 401, String(token));
      assert.equal(res.json.error.code, "unauthorized");
    }
    assert.equal((await stack.api("GET", "/v1/stats", { token: null })).status, 401);
  });

  test("no PII from Align payloads is stored", async () => {
    const files = await readPersistedFiles(stack.dir);
    assert.ok(files.length > 0);
    for (const pii of ["ada.lovelace@example.com", "Lovelace", "example.test"]) {
      const hit = files.find((f) => f.bytes.includes(Buffer.from(pii)));
      assert.equal(hit, undefined, `${pii} found in ${hit?.path}`);
    }
  });
});

describe("Align state", () => {
  test("survives a worker restart on the same state directory", async () => {
    const stack = await startStack();
    try {
      const id = "0d1f2e3a-0000-4000-8000-000000000009";
      stack.standIn.setAlign(id, { status: "approved" });
      await stack.alignWebhook(kycsUpdated(id, { status: "approved" }));
      await eventually(`${id} approved`, () => statusOf(stack, id).then((s) => s === "approved"));
      await stack.worker.restart();
      const after = await stack.subject("align", id);
      assert.equal(after.status, 200);
      assert.equal(after.json.status, "approved");
      const listed = await stack.api("GET", "/v1/subjects?provider=align&status=approved");
      assert.deepEqual(listed.json.subjects.map((s) => s.ref), [id], "D1 kept it too");
    } finally {
      await stack.stop();
    }
  });

  test("without ALIGN_API_KEY the route does not exist", async () => {
    const stack = await startStack({ vars: { ALIGN_API_KEY: "" } });
    try {
      const res = await stack.alignWebhook(kycsUpdated("c1", { status: "approved" }));
      assert.equal(res.status, 404);
    } finally {
      await stack.stop();
    }
  });
});
