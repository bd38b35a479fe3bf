// ARGOS end to end: the compiled worker in workerd with local D1/KV/Queue, a stand-in ARGOS API
// on loopback. ARGOS signs nothing, so a webhook is only a trigger: every status here must come
// from the stand-in API's answer, never from a webhook body. Encrypted envelopes are made by
// node:crypto (sandbox/sign.mjs), never by the decryptor under test.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readPersistedFiles } from "./support/worker.mjs";
import { argosEncrypt } from "../sandbox/sign.mjs";
import { argosTime } from "../sandbox/providers.mjs";
import { ARGOS_KEY, ARGOS_TOKEN, startStack } from "./support/stack.mjs";
import { eventually } from "../sandbox/kit.mjs";

const FIXTURES = new URL("../core/tests/fixtures/argos/", import.meta.url);

/** A fixture webhook body with its ids replaced; `null` removes the field. */
function fixture(name, { userid, submission_id } = {}) {
  const body = JSON.parse(readFileSync(new URL(`${name}.json`, FIXTURES), "utf8"));
  for (const [field, value] of Object.entries({ userid, submission_id })) {
    if (value === null) delete body[field];
    else if (value !== undefined) body[field] = value;
  }
  return body;
}

/** A fixture `GET /v3/submission` answer's Items, moved to `userid` (submission ids kept). */
function apiItems(name, userid) {
  return fixture(name).Items.map((item) => ({ ...item, userid }));
}

const statusOf = async (stack, ref) => (await stack.subject("argos", ref)).json?.status;

const reaches = (stack, ref, status) => stack.reaches("argos", ref, status);

async function eventsOf(stack, ref) {
  const res = await stack.api("GET", `/v1/subjects/argos/${encodeURIComponent(ref)}/events`);
  assert.equal(res.status, 200, res.text);
  return res.json.events;
}

const argosFetches = (stack, query) =>
  stack.standIn
    .requests()
    .filter((r) => r.path === "/v3/submission" && Object.entries(query).every(([k, v]) => r.query[k] === v));

const ago = (ms) => argosTime(Date.now() - ms);

describe("ARGOS webhooks", () => {
  let stack;
  before(async () => {
    stack = await startStack();
  });
  after(() => stack.stop());

  test("a real flow created, submit, approved, aml follows the API's truth step by step", async () => {
    const userid = "user_flow_0001";
    const submission_id = "subFlow0001";
    const api = (fields) => stack.standIn.setArgosSubmissions(userid, [{ submission_id, created_at: ago(60_000), ...fields }]);
    const send = async (name) => {
      const res = await stack.argosWebhook(fixture(name, { userid, submission_id }));
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json, { ok: true, duplicate: false, queued: true, event: name, ref: userid });
    };

    // Liveform opened: a submission exists, nothing submitted (no result, no pending_at).
    api({ kyc: {}, kyc_result_at: undefined });
    await send("created");
    let subject = await reaches(stack, userid, "incomplete");
    assert.equal(subject.provider_status, null);
    assert.equal(subject.source, "poll");

    // Submitted for review: pending_at set, still no kyc.result.
    const pendingAt = ago(30_000);
    api({ kyc: {}, kyc_result_at: undefined, pending_at: pendingAt });
    await send("submit");
    subject = await reaches(stack, userid, "pending");
    assert.equal(subject.aml, null);

    // Decided.
    const decided = { kyc: { result: "approved" }, pending_at: pendingAt, kyc_result_at: ago(10_000), updated_at: ago(10_000) };
    api(decided);
    await send("approved");
    subject = await reaches(stack, userid, "approved");
    assert.equal(subject.provider_status, "approved");
    assert.equal(subject.aml, null, "no AML result yet");

    // AML screening finished: the same submission, now with aml_result.
    api({ ...decided, aml_result: { currentstatus: "Red Flag", risk_level_summary: "HIGH" } });
    await send("aml");
    subject = await eventually(`${userid}'s AML result`, async () => {
      const s = (await stack.subject("argos", userid)).json;
      return s?.aml && s;
    });
    assert.deepEqual(subject.aml, { status: "Red Flag", risk_level: "HIGH" });
    assert.equal(subject.status, "approved", "an AML result does not change the KYC status");
    assert.equal(subject.version, 5, "created (1) + four applied changes");

    // Each webhook caused one fetch of the user's KYC submissions; the AML trigger also asked
    // for AML results (a request_type=kyc answer carries none).
    assert.equal(argosFetches(stack, { userid, request_type: "kyc" }).length, 4);
    assert.equal(argosFetches(stack, { userid, request_type: "aml" }).length, 1);
    const events = (await eventsOf(stack, userid)).reverse();
    assert.deepEqual(
      events.filter((e) => e.type === "webhook").map((e) => [e.kind, e.announces]),
      [["created", "incomplete"], ["submit", "pending"], ["approved", "approved"], ["aml", null]],
    );
    const changes = events.filter((e) => e.type === "change");
    assert.deepEqual(
      changes.map((e) => [e.from_status, e.to_status, e.source]),
      [["unknown", "incomplete", "poll"], ["incomplete", "pending", "poll"], ["pending", "approved", "poll"], ["approved", "approved", "poll"]],
    );
    assert.ok(changes.every((e) => !e.drift), "every change was announced by its webhook");
  });

  test("a forged approved webhook for a user the API calls pending leaves pending", async () => {
    const userid = "user_forged_0002";
    stack.standIn.setArgosSubmissions(userid, [
      { submission_id: "subForged02", kyc: {}, kyc_result_at: undefined, pending_at: ago(5_000) },
    ]);
    // A complete, plausible approval with fresh timestamps: nothing in it may be believed.
    const forged = fixture("approved", { userid, submission_id: "subForged02" });
    const now = new Date().toISOString();
    Object.assign(forged.kyc_result, { updated_at: now, kyc_result_at: now });
    const res = await stack.argosWebhook(forged);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.queued, true);

    const subject = await reaches(stack, userid, "pending");
    assert.equal(subject.provider_status, null);
    assert.equal(subject.source, "poll");
    assert.equal(argosFetches(stack, { userid }).length, 1, "the webhook made the worker ask the API");
    const events = await eventsOf(stack, userid);
    const webhooks = events.filter((e) => e.type === "webhook");
    assert.deepEqual(webhooks.map((e) => [e.kind, e.announces]), [["approved", "approved"]], "the claim was recorded");
    const changes = events.filter((e) => e.type === "change");
    assert.deepEqual(changes.map((e) => e.to_status), ["pending"], "never approved, not even briefly");
    // A later look still says pending: no deferred application of the claim.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await statusOf(stack, userid), "pending");
  });

  test("a wrong URL token is 401 and writes nothing", async () => {
    const userid = "user_token_0003";
    const body = JSON.stringify(fixture("approved", { userid, submission_id: "subToken03" }));
    const before = await stack.fingerprint();
    const cases = [
      await stack.argosWebhook(body, { token: "not-the-token" }),
      await stack.argosWebhook(body, { token: ARGOS_TOKEN.slice(0, -1) }),
      await stack.argosWebhook(body, { token: `${ARGOS_TOKEN}x` }),
      await stack.argosWebhook(body, { token: ARGOS_TOKEN.toUpperCase() }),
    ];
    for (const res of cases) {
      assert.equal(res.status, 401, res.text);
      assert.equal(res.json.error.code, "unauthorized");
      assert.ok(!res.text.includes(ARGOS_TOKEN), "the error does not echo the token");
    }
    assert.equal(await stack.fingerprint(), before, "nothing was written");
    assert.equal((await stack.subject("argos", userid)).status, 404, "no subject was created");
    assert.equal(argosFetches(stack, { userid }).length, 0, "a refused webhook triggers no fetch");
    // No event row was written: the same bytes with the right token are new.
    const genuine = await stack.argosWebhook(body);
    assert.equal(genuine.status, 200, genuine.text);
    assert.equal(genuine.json.duplicate, false);
    assert.equal(genuine.json.queued, true);
  });

  test("unknown, delete and token_expired triggers are recorded and acknowledged, never a 500", async () => {
    const userid = "user_other_0007";
    const before = (await stack.stats()).webhooks.argos;
    const cases = [
      // A trigger ARGOS may add later, about a user.
      [{ webhook_trigger: "liveness_checked", userid, submission_id: "subOther07" }, "liveness_checked", userid],
      // One about nobody.
      [{ webhook_trigger: "project_updated", projectId: "prj_2f81c0" }, "project_updated", null],
      // A trigger name that is not a bounded word is stored as "unknown", not echoed.
      [{ webhook_trigger: "kyc/verified <script>", userid }, "unknown", userid],
      [fixture("delete", { userid, submission_id: "subOther07" }), "delete", userid],
      // idcheck-token names a Token ID, not a submission: no subject.
      [fixture("token_expired"), "token_expired", null],
    ];
    for (const [body, event, ref] of cases) {
      const res = await stack.argosWebhook(body);
      assert.equal(res.status, 200, `${JSON.stringify(body)}: ${res.text}`);
      assert.equal(res.json.ok, true);
      assert.equal(res.json.duplicate, false);
      assert.equal(res.json.event, event);
      assert.equal(res.json.ref, ref);
      assert.equal(res.json.queued, ref !== null, "only a webhook about a subject is queued");
    }
    const again = await stack.argosWebhook(fixture("token_expired"));
    assert.equal(again.status, 200);
    assert.equal(again.json.duplicate, true, "the token_expired event row exists");
    const now = (await stack.stats()).webhooks.argos;
    assert.equal(now.accepted - before.accepted, cases.length);
    assert.equal(now.duplicate - before.duplicate, 1);

    const webhooks = (await eventsOf(stack, userid)).filter((e) => e.type === "webhook").reverse();
    assert.deepEqual(
      webhooks.map((e) => [e.kind, e.announces]),
      [["liveness_checked", null], ["unknown", null], ["delete", "*"]],
      "recorded against the user; delete announces some change, the others nothing",
    );
    // The user has no submissions: the fetches the triggers caused say so.
    await reaches(stack, userid, "not_started");
  });

  test("an older approved submission outweighs a newer rejected attempt, until an admin flips it", async () => {
    const userid = "user_multi_0008";
    stack.standIn.setArgosSubmissions(userid, apiItems("api_approved_then_rejected", userid));
    // The newer attempt's rejection is what the webhook announces.
    const rejected = await stack.argosWebhook(fixture("rejected", { userid }));
    assert.equal(rejected.status, 200, rejected.text);
    let subject = await reaches(stack, userid, "approved");
    assert.equal(subject.provider_status, "approved");
    assert.equal(subject.status_at, "2026-10-05T08:20:03.512Z", "the approved submission's kyc_result_at");
    assert.equal(subject.aml, null, "a request_type=kyc answer carries no AML");
    // Re-checking an approved subject asks for its AML too.
    assert.equal((await stack.api("POST", `/v1/subjects/argos/${userid}/refresh`)).status, 202);
    subject = await eventually(`${userid}'s AML result`, async () => {
      const s = (await stack.subject("argos", userid)).json;
      return s?.aml && s;
    });
    assert.deepEqual(subject.aml, { status: "Not Screened", risk_level: "Not Screened" }, "AML of the approved submission");

    // The admin flips the approved submission to rejected in the dashboard.
    stack.standIn.setArgosSubmissions(userid, apiItems("api_approved_flipped", userid));
    const updated = await stack.argosWebhook(fixture("updated", { userid }));
    assert.equal(updated.status, 200, updated.text);
    assert.equal(updated.json.event, "updated");
    subject = await reaches(stack, userid, "rejected");
    assert.equal(subject.provider_status, "rejected");
    const changes = (await eventsOf(stack, userid)).filter((e) => e.type === "change").reverse();
    assert.deepEqual(changes.map((e) => [e.from_status, e.to_status]), [
      ["unknown", "approved"],
      ["approved", "approved"],
      ["approved", "rejected"],
    ]);
    assert.equal(changes[1].kind, "aml");
    assert.equal(changes[2].drift, false, "the updated webhook announced the rejection");
  });

  test("a webhook without userid is tracked by submission_id and fetched by it", async () => {
    const submission_id = "subOnly0009";
    stack.standIn.setArgosSubmissions("user_elsewhere_0009", [{ submission_id, kyc: { result: "rejected" } }]);
    const res = await stack.argosWebhook(fixture("rejected", { userid: null, submission_id }));
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.ref, submission_id);
    await reaches(stack, submission_id, "rejected");
    const fetches = argosFetches(stack, { submission_id, request_type: "kyc" });
    assert.equal(fetches.length, 1);
    assert.equal(fetches[0].query.userid, undefined);
  });

  test("no PII from ARGOS webhooks or API answers reaches the persisted state", async () => {
    const userid = "user_pii_marker_0006";
    const pii = {
      fullName: "Ji Sung Park",
      date_of_birth: "1990-03-14",
      identityNumber: "900314-1234567",
      documentNumber: "M12345678",
      email: "ji.sung.park@example.com",
      ipAddress: "203.0.113.45",
      address: "12 Worldcup-ro, Mapo-gu, Seoul",
      occupation: "Software engineer at Hanbit Labs",
      apiIdNumber: "880707-2345678",
      apiAddress: "7 Teheran-ro, Gangnam-gu, Seoul",
      apiEmail: "jisung.api@example.com",
    };
    const webhook = fixture("approved", { userid, submission_id: "subPii0006" });
    for (const field of ["fullName", "date_of_birth", "identityNumber", "documentNumber", "email", "ipAddress"]) {
      assert.equal(webhook[field], pii[field], `the fixture carries ${field}`);
    }
    assert.equal(webhook.additional_list.inputValue, pii.address);
    stack.standIn.setArgosSubmissions(userid, [
      {
        submission_id: "subPii0006",
        email: pii.apiEmail,
        kyc: { result: "approved" },
        data: {
          full_name: pii.fullName,
          date_of_birth: pii.date_of_birth,
          identityNumber: pii.apiIdNumber,
          address: pii.apiAddress,
          nationality: "KOR",
        },
      },
    ]);
    const res = await stack.argosWebhook(webhook);
    assert.equal(res.status, 200, res.text);
    await reaches(stack, userid, "approved");
    assert.equal(argosFetches(stack, { userid }).length, 1, "the API answer with PII was read");

    // The rows sit in D1's -wal file, which the dump reads with the main file; after a
    // restart, only what reached disk is left to look at.
    await stack.worker.restart();
    const files = await readPersistedFiles(stack.dir);
    // Control: the dump shows what the worker stored, so an absence below means something.
    const d1 = files.filter((f) => f.path.includes("/d1/") && /\.sqlite(-wal)?$/.test(f.path));
    assert.ok(d1.some((f) => f.bytes.includes(Buffer.from(userid))), `the ref is in D1: ${files.map((f) => f.path)}`);
    for (const [field, value] of Object.entries(pii)) {
      const hit = files.find((f) => f.bytes.includes(Buffer.from(value)));
      assert.equal(hit, undefined, `${field} ${JSON.stringify(value)} found in ${hit?.path}`);
    }
  });
});

describe("ARGOS sender allow-list", () => {
  let stack;
  before(async () => {
    stack = await startStack({ vars: { ARGOS_ALLOWED_IPS: "52.78.194.237" } });
  });
  after(() => stack.stop());

  test("only CF-Connecting-IP 52.78.194.237 is accepted; others and a missing header are 403", async () => {
    const userid = "user_ip_0004";
    stack.standIn.setArgosSubmissions(userid, [{ submission_id: "subIp04", kyc: { result: "approved" } }]);
    const body = JSON.stringify(fixture("approved", { userid, submission_id: "subIp04" }));
    const before = await stack.fingerprint();
    const refused = [
      ["another address", await stack.argosWebhook(body, { ip: "203.0.113.45" })],
      ["a neighbour", await stack.argosWebhook(body, { ip: "52.78.194.238" })],
      ["not an address", await stack.argosWebhook(body, { ip: "argos.example" })],
      // Miniflare fills a missing CF-Connecting-IP from the socket (127.0.0.1), which is not listed.
      ["no header", await stack.argosWebhook(body)],
    ];
    for (const [why, res] of refused) {
      assert.equal(res.status, 403, `${why}: ${res.text}`);
      assert.equal(res.json.error.code, "forbidden", why);
    }
    // The token is checked first, whatever the address.
    const badToken = await stack.argosWebhook(body, { token: "nope", ip: "52.78.194.237" });
    assert.equal(badToken.status, 401);
    assert.equal((await stack.subject("argos", userid)).status, 404, "nothing was created");
    assert.equal(await stack.fingerprint(), before, "nothing was written");

    const allowed = await stack.argosWebhook(body, { ip: "52.78.194.237" });
    assert.equal(allowed.status, 200, allowed.text);
    assert.equal(allowed.json.duplicate, false, "the refusals left no event row");
    await reaches(stack, userid, "approved");
  });
});

describe("ARGOS encrypted webhooks", () => {
  let stack;
  before(async () => {
    stack = await startStack({ vars: { ARGOS_ENCRYPTION: "aes-256-ecb" } });
  });
  after(() => stack.stop());

  test("an AES-256-ECB envelope is opened and the status converges from the API", async () => {
    const userid = "user_enc_0005";
    stack.standIn.setArgosSubmissions(userid, [{ submission_id: "subEnc05", kyc: { result: "approved" } }]);
    const plaintext = JSON.stringify(fixture("approved", { userid, submission_id: "subEnc05" }));
    const res = await stack.argosWebhook({ data: argosEncrypt(ARGOS_KEY, plaintext) });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.event, "approved");
    assert.equal(res.json.ref, userid, "the ref came out of the ciphertext");
    const subject = await reaches(stack, userid, "approved");
    assert.equal(subject.source, "poll");
    assert.equal(argosFetches(stack, { userid }).length, 1);
  });

  test("a plain body, garbage base64 or another key's ciphertext is 400 and writes nothing", async () => {
    const userid = "user_enc_bad_0005";
    const plaintext = JSON.stringify(fixture("approved", { userid, submission_id: "subEncBad05" }));
    const before = await stack.fingerprint();
    const cases = [
      ["plain JSON", plaintext],
      ["garbage base64", JSON.stringify({ data: "***not base64***" })],
      ["base64 that is not whole blocks", JSON.stringify({ data: Buffer.alloc(15, 7).toString("base64") })],
      ["another key", JSON.stringify({ data: argosEncrypt("someone_elses_api_key", plaintext) })],
    ];
    for (const [why, body] of cases) {
      const res = await stack.argosWebhook(body);
      assert.equal(res.status, 400, `${why}: ${res.text}`);
      assert.equal(res.json.error.code, "bad_request", why);
      assert.ok(!res.text.includes("Ji Sung"), `${why}: the error does not quote the body`);
    }
    assert.equal((await stack.subject("argos", userid)).status, 404, "no subject was created");
    assert.equal(await stack.fingerprint(), before, "nothing was written");
    assert.equal(argosFetches(stack, { userid }).length, 0);
  });
});

describe("ARGOS disabled", () => {
  test("without ARGOS_WEBHOOK_TOKEN the route is 404, registering is refused naming it, and the cron skips ARGOS", async () => {
    // A subject tracked while ARGOS was configured; then the deployment loses the token.
    const dir = await mkdtemp(join(tmpdir(), "kyc-edge-argos-off-"));
    let stack = await startStack({ persistDir: dir });
    const put = await stack.api("PUT", "/v1/subjects/argos/user_off_0009", { body: {} });
    assert.equal(put.status, 201, put.text);
    await stack.stop({ keepState: true });
    stack = await startStack({ persistDir: dir, vars: { ARGOS_WEBHOOK_TOKEN: "" } });
    try {
      const body = fixture("approved", { userid: "user_off_0009" });
      for (const token of [ARGOS_TOKEN, "", "anything"]) {
        const res = await stack.argosWebhook(body, { token });
        assert.equal(res.status, 404, `token ${JSON.stringify(token)}: ${res.text}`);
      }
      const refused = await stack.argosWebhook(body, { token: ARGOS_TOKEN });
      assert.equal(refused.json.error.code, "provider_not_configured");
      assert.deepEqual(refused.json.error.missing, ["ARGOS_WEBHOOK_TOKEN"]);
      const stats = await stack.stats();
      assert.equal(stats.providers.argos.enabled, false);

      // A new subject cannot be registered for it: nothing would ever check it.
      const again = await stack.api("PUT", "/v1/subjects/argos/user_off_0010", { body: {} });
      assert.equal(again.status, 409, again.text);
      assert.deepEqual(again.json.error.missing, ["ARGOS_WEBHOOK_TOKEN"]);
      assert.equal((await stack.api("GET", "/v1/subjects/argos/user_off_0010")).status, 404, "nothing was created");

      // The tracked ARGOS subject that is due is still not polled while ARGOS is disabled.
      await stack.cron(Date.now() + 60 * 60_000);
      const run = (await stack.stats()).last_cron_run;
      assert.ok(run, "the cron ran");
      assert.ok(run.skipped?.includes("argos:disabled"), JSON.stringify(run));
      assert.ok(!run.skipped.includes("align:disabled"), "Align is still enabled");
      assert.equal(run.enqueued, 0, "the due ARGOS subject was not enqueued");
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(argosFetches(stack, {}).length, 0, "the ARGOS API was never called");
    } finally {
      await stack.stop();
    }
  });

  test("without ARGOS_API_KEY the route is 404 too", async () => {
    const stack = await startStack({ vars: { ARGOS_API_KEY: "" } });
    try {
      const res = await stack.argosWebhook(fixture("approved", { userid: "user_off_0010" }));
      assert.equal(res.status, 404, res.text);
      assert.equal((await stack.stats()).providers.argos.enabled, false);
    } finally {
      await stack.stop();
    }
  });
});
