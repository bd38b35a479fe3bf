// The HTTP surface against its contract: the committed OpenAPI document is valid (checked by
// @seriousme/openapi-schema-validator), served as is at /openapi.json, and every route's real
// answers, success and error, match the schema documented for their status (Ajv). Request
// ids, 404 and 405, and what the logs may never contain.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Validator } from "@seriousme/openapi-schema-validator";
import { alignSignature, sumsubDigest } from "../sandbox/sign.mjs";
import { ALIGN_KEY, API_TOKEN, ARGOS_KEY, ARGOS_TOKEN, PERSONA_SECRET, SUMSUB_WEBHOOK_SECRET, startStack } from "./support/stack.mjs";
import { eventually, kycsUpdated, startSink } from "../sandbox/kit.mjs";
import { personaEvent, personaSignature } from "../sandbox/providers/persona.mjs";
import { check, document, DOCUMENT_PATH, operations, templateOf } from "./support/openapi.mjs";

const SECRET = "whsec_R4mMtD8u9t0mMX3bqm1Q7ugO8hbRdeuCqkzFgVDBo4E=";

describe("the OpenAPI document", () => {
  test("is a valid OpenAPI 3.1 document", async () => {
    const result = await new Validator().validate(DOCUMENT_PATH.pathname);
    assert.deepEqual(result, { valid: true });
    assert.equal(document.openapi, "3.1.0");
  });
});

describe("the API against its document", () => {
  let stack;
  let app;
  /** operation → statuses seen. */
  const seen = new Map();
  const problems = [];

  /** A request whose answer is checked against the document and counted for coverage. */
  async function call(method, path, { body, token = API_TOKEN, headers = {} } = {}) {
    const requestHeaders = { ...headers };
    if (token !== null) requestHeaders.authorization = `Bearer ${token}`;
    if (body !== undefined && !requestHeaders["content-type"]) requestHeaders["content-type"] = "application/json";
    const res = await fetch(`${stack.url}${path}`, {
      method,
      headers: requestHeaders,
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await res.text();
    const contentType = res.headers.get("content-type");
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    problems.push(...check(method, path, res.status, contentType, json, res.headers.get("allow")));
    assert.ok(res.headers.get("x-request-id"), `${method} ${path}: x-request-id`);
    const operation = `${method} ${templateOf(path)}`;
    seen.set(operation, new Set([...(seen.get(operation) ?? []), res.status]));
    return { status: res.status, json, text, headers: res.headers };
  }

  before(async () => {
    app = await startSink({ secrets: [SECRET] });
    stack = await startStack({ sumsub: true, persona: true, vars: { APP_WEBHOOK_URL: app.url, APP_WEBHOOK_SECRET: SECRET, NOTIFY_MAX_AGE_SECONDS: "1" } });
  });
  after(async () => {
    await stack.stop();
    await app.stop();
  });

  test("every route answers as documented, in success and in error", async () => {
    // The index, health, the document, the dashboard.
    const index = await call("GET", "/", { token: null });
    assert.equal(index.status, 200);
    assert.deepEqual(Object.values(index.json.links).sort(), ["/dashboard/", "/healthz", "/openapi.json"]);
    assert.equal((await call("POST", "/", { token: null })).status, 405);
    assert.equal((await call("GET", "/healthz", { token: null })).status, 200);
    assert.equal((await call("POST", "/healthz", { token: null })).status, 405);
    const served = await call("GET", "/openapi.json", { token: null });
    assert.deepEqual(served.json, document, "/openapi.json is the committed document");
    assert.equal((await call("PUT", "/openapi.json", { token: null })).status, 405);
    const page = await call("GET", "/dashboard", { token: null });
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-security-policy"), /default-src 'none'/);
    assert.equal((await call("DELETE", "/dashboard", { token: null })).status, 405);

    // Ingress.
    const id = "api-contract-0001";
    stack.standIn.setAlign(id, { status: "pending" });
    const signed = JSON.stringify(kycsUpdated(id, { withObject: false }));
    const accepted = await call("POST", "/webhooks/align", {
      token: null,
      body: signed,
      headers: { "x-hmac-signature": alignSignature(ALIGN_KEY, signed) },
    });
    assert.equal(accepted.status, 200, accepted.text);
    assert.equal((await call("POST", "/webhooks/align", { token: null, body: "{}", headers: { "x-hmac-signature": "00" } })).status, 401);
    assert.equal((await call("GET", "/webhooks/align", { token: null })).status, 405);
    const form = await call("POST", "/webhooks/align", {
      token: null,
      body: "a=b",
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    assert.equal(form.status, 415);
    const huge = await call("POST", "/webhooks/align", { token: null, body: "x".repeat(300 * 1024) });
    assert.equal(huge.status, 413);
    const signedGarbage = "not json";
    const garbage = await call("POST", "/webhooks/align", {
      token: null,
      body: signedGarbage,
      headers: { "x-hmac-signature": alignSignature(ALIGN_KEY, signedGarbage) },
    });
    assert.equal(garbage.status, 400);
    stack.standIn.setArgosSubmissions("user_api_01", [{ submission_id: "subApi01", kyc: { result: "approved" } }]);
    const argos = await call("POST", `/webhooks/argos/${ARGOS_TOKEN}`, {
      token: null,
      body: { webhook_trigger: "approved", userid: "user_api_01", submission_id: "subApi01" },
    });
    assert.equal(argos.status, 200, argos.text);
    assert.equal((await call("POST", "/webhooks/argos/wrong", { token: null, body: {} })).status, 401);
    stack.standIn.setSumsub("user_api_02", { reviewStatus: "pending" });
    const sumsubBody = JSON.stringify({ type: "applicantPending", externalUserId: "user_api_02", correlationId: "req-api-02", sandboxMode: true });
    const sumsub = await call("POST", "/webhooks/sumsub", {
      token: null,
      body: sumsubBody,
      headers: { "x-payload-digest": sumsubDigest(SUMSUB_WEBHOOK_SECRET, sumsubBody), "x-payload-digest-alg": "HMAC_SHA256_HEX" },
    });
    assert.equal(sumsub.status, 200, sumsub.text);
    assert.equal((await call("POST", "/webhooks/sumsub", { token: null, body: sumsubBody, headers: { "x-payload-digest": "00" } })).status, 401);
    const [inquiry] = stack.standIn.persona.setInquiries("user_api_persona", [{ status: "approved" }]);
    const personaBody = JSON.stringify(personaEvent("inquiry.approved", inquiry));
    const persona = await call("POST", "/webhooks/persona", {
      token: null,
      body: personaBody,
      headers: { "persona-signature": personaSignature(PERSONA_SECRET, personaBody) },
    });
    assert.equal(persona.status, 200, persona.text);
    assert.equal((await call("POST", "/webhooks/persona", { token: null, body: personaBody })).status, 401);

    // Subjects.
    await eventually(`${id} pending`, async () => (await stack.row("align", id)).status === "pending");
    assert.equal((await call("PUT", "/v1/subjects/align/api-put-1", { body: { external_id: "u-1" } })).status, 201);
    assert.equal((await call("PUT", "/v1/subjects/align/api-put-1", { body: { external_id: "u-1" } })).status, 200);
    assert.equal((await call("PUT", "/v1/subjects/align/api-put-1", { body: { external_id: "" } })).status, 400);
    assert.equal((await call("PUT", "/v1/subjects/align/bad%20ref", { body: {} })).status, 400);
    assert.equal((await call("GET", `/v1/subjects/align/${id}`)).status, 200);
    assert.equal((await call("GET", `/v1/subjects/align/${id}?consistency=strong`)).status, 200);
    assert.equal((await call("GET", "/v1/subjects/align/never-seen")).status, 404);
    assert.equal((await call("GET", `/v1/subjects/align/${id}?color=blue`)).status, 400);
    assert.equal((await call("DELETE", `/v1/subjects/align/${id}`)).status, 405);
    const list = await call("GET", "/v1/subjects?provider=align&limit=1");
    assert.equal(list.status, 200);
    assert.ok(list.json.next_cursor);
    assert.equal((await call("GET", `/v1/subjects?cursor=${encodeURIComponent(list.json.next_cursor)}`)).status, 200);
    assert.equal((await call("GET", "/v1/subjects?status=maybe")).status, 400);
    assert.equal((await call("GET", "/v1/subjects", { token: null })).status, 401);
    assert.equal((await call("POST", "/v1/subjects")).status, 405);
    assert.equal((await call("GET", "/v1/subjects/stuck?limit=5")).status, 200);
    assert.equal((await call("GET", "/v1/subjects/stuck?limit=0")).status, 400);
    assert.equal((await call("GET", "/v1/subjects/stuck", { token: "nope" })).status, 401);
    assert.equal((await call("GET", `/v1/subjects/align/${id}/events`)).status, 200);
    assert.equal((await call("GET", `/v1/subjects/align/${id}/events?cursor=0`)).status, 400);
    assert.equal((await call("GET", "/v1/subjects/align/never-seen/events")).status, 404);
    assert.equal((await call("GET", `/v1/subjects/align/${id}/events`, { token: null })).status, 401);
    assert.equal((await call("POST", `/v1/subjects/align/${id}/refresh`)).status, 202);
    assert.equal((await call("POST", "/v1/subjects/align/never-seen/refresh")).status, 404);
    assert.equal((await call("POST", "/v1/subjects/align/a%2Fb/refresh")).status, 400);
    assert.equal((await call("GET", `/v1/subjects/align/${id}/refresh`)).status, 405);
    assert.equal((await call("POST", `/v1/subjects/align/${id}/refresh`, { token: null })).status, 401);

    // Adoption: bulk import and backfill.
    const imported = await call("POST", "/v1/subjects/batch", {
      body: [
        { provider: "align", ref: "api-import-1", external_id: "u-9" },
        { provider: "align", ref: "api-import-1" },
        { provider: "argos", ref: "api-sub-1", ref_kind: "submission" },
        { provider: "nope", ref: "x" },
      ],
    });
    assert.equal(imported.status, 200, imported.text);
    assert.deepEqual(
      imported.json.results.map((r) => r.result),
      ["created", "repeat", "created", "invalid"],
    );
    const ndjson = await call("POST", "/v1/subjects/batch", {
      body: '{"provider":"align","ref":"api-import-1"}\n',
      headers: { "content-type": "application/x-ndjson" },
    });
    assert.equal(ndjson.json.existing, 1);
    assert.equal((await call("POST", "/v1/subjects/batch", { body: "[" })).status, 400);
    assert.equal((await call("POST", "/v1/subjects/batch", { body: "[]" })).status, 400);
    assert.equal((await call("POST", "/v1/subjects/batch", { body: "x".repeat(1024 * 1024 + 1) })).status, 413);
    assert.equal((await call("POST", "/v1/subjects/batch", { body: [], token: null })).status, 401);
    assert.equal((await call("GET", "/v1/subjects/batch")).status, 405);
    assert.equal((await call("GET", "/v1/backfill/argos")).status, 404, "none yet");
    const started = await call("POST", "/v1/backfill/argos", { body: { since: "2026-01-01" } });
    assert.equal(started.status, 202, started.text);
    assert.equal((await call("POST", "/v1/backfill/argos", { body: {} })).status, 409);
    assert.equal((await call("GET", "/v1/backfill/argos")).status, 200);
    assert.equal((await call("POST", "/v1/backfill/align", { body: { since: "2026-01-01" } })).status, 400, "Align has no date filter");
    assert.equal((await call("POST", "/v1/backfill/align", { body: { since: "tomorrow" } })).status, 400);
    assert.equal((await call("POST", "/v1/backfill/align", { token: null })).status, 401);
    assert.equal((await call("PUT", "/v1/backfill/align")).status, 405);

    // Operations.
    await stack.cron(Date.now());
    assert.equal((await call("GET", "/v1/stats")).status, 200);
    assert.equal((await call("GET", "/v1/stats", { token: null })).status, 401);
    assert.equal((await call("PUT", "/v1/stats")).status, 405);
    const runs = await call("GET", "/v1/runs?limit=5");
    assert.equal(runs.status, 200);
    assert.ok(runs.json.runs.length >= 1);
    assert.equal((await call("GET", "/v1/runs?limit=x")).status, 400);
    assert.equal((await call("GET", "/v1/runs", { token: null })).status, 401);
    const alerts = await call("GET", "/v1/alerts?limit=5");
    assert.equal(alerts.status, 200);
    assert.equal(alerts.json.delivery.configured, false);
    assert.equal((await call("GET", "/v1/alerts?limit=0")).status, 400);
    assert.equal((await call("GET", "/v1/alerts", { token: null })).status, 401);

    // Notifications: the app is down long enough for the next one to die.
    app.respondAlways(503);
    stack.standIn.setAlign(id, { status: "approved" });
    assert.equal((await stack.api("POST", `/v1/subjects/align/${id}/refresh`)).status, 202);
    await eventually("a dead notification", async () => (await stack.api("GET", "/v1/notifications?state=dead")).json.notifications.length > 0, { timeoutMs: 20_000 });
    app.respondAlways(null);
    const dead = await call("GET", "/v1/notifications?state=dead");
    assert.equal(dead.status, 200);
    assert.equal((await call("GET", `/v1/notifications?subject=align/${id}&state=pending`)).status, 200);
    assert.equal((await call("GET", "/v1/notifications?state=lost")).status, 400);
    assert.equal((await call("GET", "/v1/notifications", { token: null })).status, 401);
    assert.equal((await call("DELETE", "/v1/notifications")).status, 405);
    const redeliver = await call("POST", `/v1/notifications/${dead.json.notifications[0].id}/redeliver`);
    assert.equal(redeliver.status, 202, redeliver.text);
    assert.equal((await call("POST", `/v1/notifications/${dead.json.notifications[0].id}/redeliver`)).status, 400, "not dead any more");
    assert.equal((await call("POST", "/v1/notifications/msg_424242_zz/redeliver")).status, 404);
    assert.equal((await call("POST", "/v1/notifications/x/redeliver", { token: null })).status, 401);
    assert.equal((await call("POST", "/v1/notifications/enable")).status, 200);
    assert.equal((await call("POST", "/v1/notifications/enable", { token: null })).status, 401);
    assert.equal((await call("GET", "/v1/notifications/enable")).status, 405);

    assert.deepEqual(problems, [], "every answer matches its documented schema");
    // Coverage: every documented operation succeeded, and every path answered an error.
    const unsucceeded = operations().filter((operation) => ![...(seen.get(operation) ?? [])].some((s) => s < 300));
    assert.deepEqual(unsucceeded, [], "every operation answered a success");
    const errorless = Object.keys(document.paths).filter(
      (template) => ![...seen].some(([operation, statuses]) => operation.endsWith(` ${template}`) && [...statuses].some((s) => s >= 400)),
    );
    assert.deepEqual(errorless, [], "every path answered an error");
  });

  test("x-request-id is echoed when usable, generated otherwise, and names the log line", async () => {
    const echoed = await stack.api("GET", "/v1/stats", {});
    const generated = echoed.headers.get("x-request-id");
    assert.match(generated, /^[0-9a-f]{24}$/);
    const mine = await fetch(`${stack.url}/v1/stats`, {
      headers: { authorization: `Bearer ${API_TOKEN}`, "x-request-id": "req-from-app.42" },
    });
    assert.equal(mine.headers.get("x-request-id"), "req-from-app.42");
    const unusable = await fetch(`${stack.url}/healthz`, { headers: { "x-request-id": "no spaces or \"quotes\"" } });
    assert.match(unusable.headers.get("x-request-id"), /^[0-9a-f]{24}$/, "an unusable id is replaced");
    const line = stack.logLines("request").find((l) => l.request_id === "req-from-app.42");
    assert.ok(line, "the caller's id is in the request's log line");
    assert.equal(line.route, "stats");
    assert.equal(line.status, 200);
  });

  test("unknown paths are a JSON 404; known paths with another method a JSON 405 with Allow", async () => {
    const missing = await fetch(`${stack.url}/v2/anything`);
    assert.equal(missing.status, 404);
    assert.equal((await missing.json()).error.code, "not_found");
    const wrong = await fetch(`${stack.url}/v1/subjects/align/x`, { method: "PATCH", headers: { authorization: `Bearer ${API_TOKEN}` } });
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get("allow"), "GET, PUT");
    assert.equal((await wrong.json()).error.code, "method_not_allowed");
  });
});

describe("the logs", () => {
  test("one JSON line per request, job and cron run; never a secret, token, body or PII value", async () => {
    const app = await startSink({ secrets: [SECRET] });
    const stack = await startStack({ vars: { APP_WEBHOOK_URL: app.url, APP_WEBHOOK_SECRET: SECRET } });
    try {
      const pii = ["ada.lovelace@example.com", "Lovelace", "Ji Sung Park", "900101-1234567", "1990-01-01", "Test Person"];
      const id = "logs-pii-0001";
      stack.standIn.setAlign(id, { status: "approved" });
      await stack.alignWebhook(kycsUpdated(id, { status: "approved" }));
      stack.standIn.setArgosSubmissions("user_logs_01", [{ submission_id: "subLogs01", kyc: { result: "approved" } }]);
      await stack.argosWebhook({
        webhook_trigger: "approved",
        userid: "user_logs_01",
        submission_id: "subLogs01",
        email: "ji.sung.park@example.com",
        fullName: "Ji Sung Park",
      });
      // A refused one, with a wrong key and a body full of PII.
      await stack.alignWebhook(kycsUpdated("logs-pii-0002", { status: "approved" }), { key: "sk_wrong_key" });
      await stack.api("GET", "/v1/stats", { token: "wrong-token-for-the-log" });
      await stack.cron(Date.now() + 60_000);
      await eventually("two notifications received", () => app.received().length >= 2);
      await new Promise((r) => setTimeout(r, 1500));

      const lines = stack.worker.logs();
      const secrets = [API_TOKEN, ALIGN_KEY, ARGOS_KEY, ARGOS_TOKEN, SECRET, SECRET.slice(6), "wrong-token-for-the-log", "sk_wrong_key"];
      for (const needle of [...secrets, ...pii]) {
        const hit = lines.find((l) => l.message.includes(needle));
        assert.equal(hit, undefined, `${JSON.stringify(needle)} logged: ${hit?.message}`);
      }
      // Every line is one JSON object of a known kind, with what an operator needs.
      const parsed = lines.map((l) => JSON.parse(l.message));
      assert.ok(parsed.every((l) => ["request", "job", "cron", "batch"].includes(l.kind)));
      const requests = parsed.filter((l) => l.kind === "request");
      for (const field of ["request_id", "route", "status", "duration_ms", "meter"]) {
        assert.ok(requests.every((l) => field in l), `every request line has ${field}`);
      }
      const refused = requests.find((l) => l.outcome === "rejected");
      assert.deepEqual([refused.route, refused.status, refused.provider], ["webhook.align", 401, "align"]);
      const changed = parsed.find((l) => l.kind === "job" && l.ref === id && l.outcome === "changed");
      assert.deepEqual([changed.provider, changed.status, changed.drift], ["align", "approved", false]);
      assert.ok(parsed.some((l) => l.kind === "job" && l.job === "notify" && l.outcome === "delivered"));
      assert.ok(parsed.some((l) => l.kind === "cron" && "enqueued" in l && "duration_ms" in l));
    } finally {
      await stack.stop();
      await app.stop();
    }
  });
});
