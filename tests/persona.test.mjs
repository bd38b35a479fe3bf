// Persona end to end: the compiled worker in workerd with local D1/KV/Queue, a stand-in Persona
// API on loopback (sandbox/providers/persona.mjs: bearer checked, pages of 10, newest first).
// Webhooks are signed here with node:crypto, never by the verifier under test. A webhook is
// signed and dated but only ever a trigger: every status below comes from the API's inquiries.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { readPersistedFiles } from "./support/worker.mjs";
import { PERSONA_PII, personaEvent, personaSignature } from "../sandbox/providers/persona.mjs";
import { PERSONA_KEY, PERSONA_SECRET, startStack } from "./support/stack.mjs";
import { eventually, freePort, startSink } from "../sandbox/kit.mjs";

const SECOND = 1000;
const DAY = 24 * 3600 * SECOND;
const APP_SECRET = "whsec_R4mMtD8u9t0mMX3bqm1Q7ugO8hbRdeuCqkzFgVDBo4E=";

/** `t=…,v1=…` computed with node:crypto, independently of the worker. */
const sign = personaSignature;

const reaches = (stack, ref, status) => stack.reaches("persona", ref, status);

const inquiryFetches = (stack, ref) =>
  stack.standIn.requests().filter((r) => r.path === "/api/v1/inquiries" && (ref === undefined || r.query["filter[reference-id]"] === ref));

async function eventsOf(stack, ref) {
  const res = await stack.api("GET", `/v1/subjects/persona/${encodeURIComponent(ref)}/events`);
  assert.equal(res.status, 200, res.text);
  return res.json.events;
}

describe("Persona webhooks: authentication", () => {
  let stack;
  before(async () => {
    stack = await startStack({ persona: true });
  });
  after(() => stack.stop());

  test("missing, malformed, wrong, tampered, too old or future signatures: 401 and nothing written", async () => {
    const ref = "persona-auth-1";
    const [inquiry] = stack.standIn.persona.setInquiries(ref, [{ status: "approved" }]);
    const raw = JSON.stringify(personaEvent("inquiry.approved", inquiry, { id: "evt_auth_0001" }));
    const now = Math.floor(Date.now() / SECOND);
    const good = sign(PERSONA_SECRET, raw, now);
    const v1 = good.split("v1=")[1];
    const before = await stack.fingerprint();
    const cases = {
      missing: null,
      empty: "",
      "no t": `v1=${v1}`,
      "no v1": `t=${now}`,
      "short hex": `t=${now},v1=${v1.slice(0, 62)}`,
      "not hex": `t=${now},v1=${"z".repeat(64)}`,
      "comma and space": `t=${now}, v1=${v1}`,
      "joined by a comma": `${good},${good}`,
      "another secret": sign("wbhsec_someone_else", raw, now),
      "t not signed": `t=${now + 1},v1=${v1}`,
      "five days old": sign(PERSONA_SECRET, raw, now - 5 * 24 * 3600),
      "an hour ahead": sign(PERSONA_SECRET, raw, now + 3600),
    };
    for (const [name, signature] of Object.entries(cases)) {
      const res = await stack.personaWebhook(raw, { signature });
      assert.equal(res.status, 401, `${name}: ${res.text}`);
      assert.equal(res.json.error.code, "unauthorized", name);
    }
    const tampered = raw.replace("approved", "declined");
    assert.equal((await stack.personaWebhook(tampered, { signature: good })).status, 401, "tampered body");
    assert.equal(await stack.fingerprint(), before, "a refused webhook writes nothing");
    assert.deepEqual(inquiryFetches(stack, ref), [], "and asks nothing");
    const refused = stack.logLines("request").filter((l) => l.provider === "persona" && l.outcome === "rejected");
    assert.equal(refused.length, Object.keys(cases).length + 1);
    assert.ok(refused.some((l) => /outside the accepted window/.test(l.reason)), "a stale t says so");

    // The same body, correctly signed, is accepted.
    const res = await stack.personaWebhook(raw, { signature: good });
    assert.equal(res.status, 200, res.text);
    await reaches(stack, ref, "approved");
  });

  test("during a secret rotation, a header with several sets is accepted if any set verifies", async () => {
    const ref = "persona-rotation-1";
    const [inquiry] = stack.standIn.persona.setInquiries(ref, [{ status: "pending" }]);
    const raw = JSON.stringify(personaEvent("inquiry.started", inquiry, { id: "evt_rotation_01" }));
    const now = Math.floor(Date.now() / SECOND);
    const header = `${sign("wbhsec_the_old_secret", raw, now)} ${sign(PERSONA_SECRET, raw, now)}`;
    const res = await stack.personaWebhook(raw, { signature: header });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, { ok: true, duplicate: false, queued: true, event: "inquiry.started", ref });
    await reaches(stack, ref, "incomplete");
    // Neither set verifies: refused.
    const neither = `${sign("wbhsec_a", raw, now)} ${sign("wbhsec_b", raw, now)}`;
    assert.equal((await stack.personaWebhook(raw, { signature: neither })).status, 401);
  });

  test("a retry signed three days ago is still accepted (Persona retries for about 3 days)", async () => {
    const ref = "persona-retry-1";
    const [inquiry] = stack.standIn.persona.setInquiries(ref, [{ status: "declined" }]);
    const raw = JSON.stringify(personaEvent("inquiry.declined", inquiry, { id: "evt_retry_0001" }));
    const t = Math.floor((Date.now() - 3 * DAY) / SECOND);
    const res = await stack.personaWebhook(raw, { t });
    assert.equal(res.status, 200, res.text);
    await reaches(stack, ref, "rejected");
  });
});

describe("Persona sender allow-list", () => {
  let stack;
  before(async () => {
    stack = await startStack({ persona: true, vars: { PERSONA_ALLOWED_IPS: "35.232.44.140, 34.69.131.123" } });
  });
  after(() => stack.stop());

  test("a signed webhook from an address not listed is 403 and writes nothing", async () => {
    const ref = "persona-ip-1";
    const [inquiry] = stack.standIn.persona.setInquiries(ref, [{ status: "approved" }]);
    const raw = JSON.stringify(personaEvent("inquiry.approved", inquiry));
    const before = await stack.fingerprint();
    for (const ip of [undefined, "10.0.0.1"]) {
      const res = await stack.personaWebhook(raw, { ip });
      assert.equal(res.status, 403, `${ip}: ${res.text}`);
    }
    assert.equal(await stack.fingerprint(), before);
    const res = await stack.personaWebhook(raw, { ip: "::ffff:35.232.44.140" });
    assert.equal(res.status, 200, res.text);
    await reaches(stack, ref, "approved");
  });
});

describe("Persona events", () => {
  let stack;
  before(async () => {
    stack = await startStack({ persona: true });
  });
  after(() => stack.stop());

  test("deliveries of one event (same evt id, different bytes) are recorded once", async () => {
    const ref = "persona-dedup-1";
    const [inquiry] = stack.standIn.persona.setInquiries(ref, [{ status: "approved" }]);
    const body = personaEvent("inquiry.approved", inquiry, { id: "evt_dedup_00001" });
    const first = await stack.personaWebhook(body);
    assert.equal(first.status, 200, first.text);
    assert.equal(first.json.duplicate, false);
    await reaches(stack, ref, "approved");
    // A retry: re-serialized (other bytes), the same event id.
    const again = await stack.personaWebhook(JSON.stringify(body, null, 2));
    assert.equal(again.status, 200, again.text);
    assert.equal(again.json.duplicate, true);
    const webhooks = (await eventsOf(stack, ref)).filter((e) => e.type === "webhook");
    assert.equal(webhooks.length, 1, "one event row");
    // Another event about the same inquiry is new.
    const other = await stack.personaWebhook(personaEvent("inquiry.approved", inquiry, { id: "evt_dedup_00002" }));
    assert.equal(other.json.duplicate, false);
  });

  test("unknown event names are acknowledged and ignored", async () => {
    const ref = "persona-unknown-1";
    const [inquiry] = stack.standIn.persona.setInquiries(ref, [{ status: "approved" }]);
    stack.standIn.resetCounts();
    for (const name of ["inquiry.someday-new", "account.created", "report/watchlist.matched"]) {
      const res = await stack.personaWebhook(personaEvent(name, inquiry));
      assert.equal(res.status, 200, `${name}: ${res.text}`);
      assert.equal(res.json.ref, null, name);
      assert.equal(res.json.queued, false, name);
    }
    await sleep(500);
    assert.equal((await stack.subject("persona", ref)).status, 404, "no subject made up");
    assert.deepEqual(inquiryFetches(stack), [], "nothing asked");
    const rows = await stack.sql("SELECT kind, ref FROM events WHERE provider = 'persona' AND kind IN ('inquiry.someday-new', 'account.created', 'unknown')");
    assert.equal(rows.length, 3, "each recorded");
    assert.ok(rows.every((r) => r.ref === null));
  });

  test("an inquiry without reference-id is recorded and attached to nobody", async () => {
    const inquiry = stack.standIn.persona.addInquiry(null, { status: "approved" });
    const before = (await stack.sql("SELECT COUNT(*) AS n FROM subjects WHERE provider = 'persona'"))[0].n;
    const res = await stack.personaWebhook(personaEvent("inquiry.approved", inquiry, { id: "evt_noref_00001" }));
    assert.equal(res.status, 200, res.text);
    assert.deepEqual([res.json.ref, res.json.queued, res.json.event], [null, false, "inquiry.approved"]);
    const rows = await stack.sql("SELECT ref, kind FROM events WHERE provider = 'persona' AND kind = 'inquiry.approved' AND ref IS NULL");
    assert.equal(rows.length, 1, "recorded");
    const after = (await stack.sql("SELECT COUNT(*) AS n FROM subjects WHERE provider = 'persona'"))[0].n;
    assert.equal(after, before, "no subject guessed");
    const line = stack.logLines("request").find((l) => l.provider === "persona" && l.event === "inquiry.approved" && l.ref === null);
    assert.ok(line, "logged without a ref");
  });

  test("a user's status is read across pages of 10: the newest decided inquiry, else the newest", async () => {
    const ref = "persona-pages-1";
    const now = Date.now();
    // 13 inquiries: the oldest approved, 12 newer ones undecided (expired or started).
    const list = [{ status: "approved", createdAt: now - 100 * 60_000, decisionedAt: now - 99 * 60_000 }];
    for (let i = 12; i >= 1; i -= 1) list.push({ status: i % 2 ? "expired" : "pending", createdAt: now - i * 60_000 });
    const inquiries = stack.standIn.persona.setInquiries(ref, list);
    stack.standIn.resetCounts();
    const res = await stack.personaWebhook(personaEvent("inquiry.expired", inquiries[12]));
    assert.equal(res.status, 200, res.text);
    const subject = await reaches(stack, ref, "approved");
    assert.equal(subject.provider_status, "approved");
    assert.equal(subject.source, "poll");
    const pages = inquiryFetches(stack, ref);
    assert.equal(pages.length, 2, "two pages of ten");
    assert.equal(pages[0].query["page[after]"], undefined);
    assert.equal(pages[1].query["page[after]"], inquiries[3].data?.id ?? inquiries[3].id, "continued after the 10th newest");

    // A newer declined inquiry is now the newest decided one.
    stack.standIn.persona.setInquiries(ref, [...list, { status: "declined", createdAt: now - 30_000 }, { status: "created", createdAt: now }]);
    assert.equal((await stack.api("POST", `/v1/subjects/persona/${ref}/refresh`)).status, 202);
    const rejected = await reaches(stack, ref, "rejected");
    assert.equal(rejected.provider_status, "declined");

    // Only undecided inquiries: the newest stands.
    stack.standIn.persona.setInquiries(ref, [{ status: "expired" }, { status: "created" }]);
    assert.equal((await stack.api("POST", `/v1/subjects/persona/${ref}/refresh`)).status, 202);
    const fresh = await reaches(stack, ref, "not_started");
    assert.equal(fresh.provider_status, "created");
  });

  test("more pages than PERSONA_MAX_PAGES is an incomplete answer, never a guess", async () => {
    const bounded = await startStack({ persona: true, personaPageSize: 2, vars: { PERSONA_MAX_PAGES: "2" } });
    try {
      const ref = "persona-bound-1";
      // Five inquiries, pages of two: the approved one is on the third page.
      bounded.standIn.persona.setInquiries(ref, [{ status: "approved" }, { status: "pending" }, { status: "pending" }, { status: "pending" }, { status: "pending" }]);
      assert.equal((await bounded.api("PUT", `/v1/subjects/persona/${ref}`)).status, 201);
      assert.equal((await bounded.api("POST", `/v1/subjects/persona/${ref}/refresh`)).status, 202);
      const row = await eventually(`${ref}'s check to fail`, async () => {
        const [r] = await bounded.sql("SELECT status, last_error FROM subjects WHERE provider = 'persona' AND ref = ?", ref);
        return r?.last_error && r;
      });
      assert.equal(row.status, "unknown", "nothing was guessed");
      assert.equal(row.last_error, "answer too large");
      // PUT and refresh each checked: two pages each, never a third.
      const fetched = inquiryFetches(bounded, ref);
      const firsts = fetched.filter((r) => r.query["page[after]"] === undefined).length;
      assert.ok(firsts >= 1, "checked");
      assert.equal(fetched.length, 2 * firsts, "two pages a check, no page past the bound");
    } finally {
      await bounded.stop();
    }
  });

  test("PUT, refresh and the cron read the API", async () => {
    const ref = "persona-put-1";
    stack.standIn.persona.setInquiries(ref, [{ status: "pending" }]);
    const put = await stack.api("PUT", `/v1/subjects/persona/${ref}`, { body: { external_id: "user-put-1" } });
    assert.equal(put.status, 201, put.text);
    assert.equal((await stack.api("POST", `/v1/subjects/persona/${ref}/refresh`)).status, 202);
    await reaches(stack, ref, "incomplete");
    // The inquiry is approved; the webhook is lost: the cron finds it.
    stack.standIn.persona.setInquiries(ref, [{ status: "approved", decisionedAt: Date.now() }]);
    const row = await stack.row("persona", ref);
    await stack.cron(Date.parse(row.next_check_at) + SECOND);
    await reaches(stack, ref, "approved");
    const events = await eventsOf(stack, ref);
    assert.deepEqual(events.filter((e) => e.type === "webhook"), [], "no webhook: the API decided");
    const change = events.find((e) => e.type === "change" && e.to_status === "approved");
    assert.equal(change?.source, "poll");
  });

  test("import and backfill register Persona users", async () => {
    const imported = await stack.api("POST", "/v1/subjects/batch", {
      body: [
        { provider: "persona", ref: "persona-import-1", external_id: "u-imp-1" },
        { provider: "persona", ref: "persona-import-2", ref_kind: "submission" },
      ],
    });
    assert.equal(imported.status, 200, imported.text);
    assert.deepEqual(imported.json.results.map((r) => r.result), ["created", "invalid"], "Persona names users only");
    stack.standIn.persona.setInquiries("persona-import-1", [{ status: "needs_review" }]);
    await stack.cron(Date.now() + 10 * 60 * SECOND);
    await reaches(stack, "persona-import-1", "pending");

    // Backfill: every inquiry, pages of 10; users named once; an inquiry without reference-id skipped.
    for (let i = 0; i < 14; i += 1) stack.standIn.persona.setInquiries(`persona-bf-${String(i).padStart(2, "0")}`, [{ status: "approved" }]);
    stack.standIn.persona.addInquiry(null, { status: "approved" });
    const since = await stack.api("POST", "/v1/backfill/persona", { body: { since: "2026-01-01" } });
    assert.notEqual(since.status, 202, `a date range Persona is not asked to filter is refused: ${since.text}`);
    const started = await stack.api("POST", "/v1/backfill/persona");
    assert.equal(started.status, 202, started.text);
    for (let i = 0; i < 8; i += 1) {
      await stack.cron();
      const walk = (await stack.api("GET", "/v1/backfill/persona")).json;
      if (walk.state !== "running") break;
    }
    const walk = (await stack.api("GET", "/v1/backfill/persona")).json;
    assert.equal(walk.state, "done", JSON.stringify(walk));
    assert.equal(walk.last_error, null);
    const refs = (await stack.sql("SELECT ref FROM subjects WHERE provider = 'persona' AND ref LIKE 'persona-bf-%'")).map((r) => r.ref);
    assert.equal(refs.length, 14);
    const lists = stack.standIn.requests().filter((r) => r.path === "/api/v1/inquiries" && !r.query["filter[reference-id]"]);
    assert.ok(lists.length >= 2, "several pages");
    assert.ok(lists.slice(1).every((r) => r.query["page[after]"]), "continued with page[after]");
  });
});

describe("Persona rate limit", () => {
  // Its own stack: a check that succeeds clears a provider's pause, so no other work may run.
  let stack;
  before(async () => {
    stack = await startStack({ persona: true });
  });
  after(() => stack.stop());

  test("a 429 with RateLimit-Reset pauses Persona's checks until the reset", async () => {
    const ref = "persona-429-1";
    const other = "persona-429-2";
    for (const id of [ref, other]) {
      stack.standIn.persona.setInquiries(id, [{ status: "pending" }]);
      assert.equal((await stack.api("PUT", `/v1/subjects/persona/${id}`)).status, 201);
      await reaches(stack, id, "incomplete");
    }
    stack.standIn.failNext(1, { status: 429, provider: "persona", headers: { "ratelimit-limit": "300", "ratelimit-remaining": "0", "ratelimit-reset": "600" } });
    const asked = Date.now();
    assert.equal((await stack.api("POST", `/v1/subjects/persona/${ref}/refresh`)).status, 202);
    const paused = await eventually("Persona paused (paused_until set)", async () => (await stack.stats()).providers.persona.paused_until);
    const until = Date.parse(paused);
    assert.ok(until >= asked + 600 * SECOND && until <= Date.now() + 600 * SECOND + SECOND, paused);
    const row = await stack.row("persona", ref);
    assert.ok(Date.parse(row.next_check_at) >= until, "the reset is a floor for the subject");
    assert.equal(row.status, "incomplete", "a failure never changes a status");
    stack.standIn.persona.setInquiries(ref, [{ status: "approved" }]);
    // The other subject comes due (its first re-check) while Persona is paused.
    const otherDue = Date.parse((await stack.row("persona", other)).next_check_at);
    assert.ok(otherDue < until - 60 * SECOND, "the other subject is due before the reset");
    stack.standIn.resetCounts();
    await stack.cron(until - 60 * SECOND);
    const run = (await stack.stats()).last_cron_run;
    assert.ok(run.skipped.includes("persona:paused"), JSON.stringify(run));
    await sleep(500);
    assert.deepEqual(inquiryFetches(stack), [], "no Persona call while paused");
    await stack.cron(until + SECOND);
    await reaches(stack, ref, "approved");
  });
});

describe("Persona with PERSONA_REQUIRE_DECISION and Persona-Version", () => {
  let stack;
  before(async () => {
    stack = await startStack({ persona: true, vars: { PERSONA_REQUIRE_DECISION: "true", PERSONA_VERSION: "2023-01-05" } });
  });
  after(() => stack.stop());

  test("completed is pending until a decision; approved then approves", async () => {
    const ref = "persona-decision-1";
    const [inquiry] = stack.standIn.persona.setInquiries(ref, [{ status: "completed", completedAt: Date.now() }]);
    const res = await stack.personaWebhook(personaEvent("inquiry.completed", inquiry));
    assert.equal(res.status, 200, res.text);
    const pending = await reaches(stack, ref, "pending");
    assert.equal(pending.provider_status, "completed");
    stack.standIn.persona.setInquiries(ref, [{ status: "approved", id: inquiry.id, decisionedAt: Date.now() }]);
    await stack.personaWebhook(personaEvent("inquiry.approved", inquiry));
    await reaches(stack, ref, "approved");
    assert.ok(stack.standIn.persona.versions().every((v) => v === "2023-01-05"));
    assert.ok(stack.standIn.persona.versions().length >= 2, "Persona-Version sent");
  });
});

describe("Persona without the right API key", () => {
  test("the stand-in checks the bearer: a wrong key learns nothing", async () => {
    const stack = await startStack({ persona: true, vars: { PERSONA_API_KEY: "persona_wrong_key" } });
    try {
      const ref = "persona-bearer-1";
      stack.standIn.persona.setInquiries(ref, [{ status: "approved" }]);
      assert.equal((await stack.api("PUT", `/v1/subjects/persona/${ref}`)).status, 201);
      assert.equal((await stack.api("POST", `/v1/subjects/persona/${ref}/refresh`)).status, 202);
      const row = await eventually(`${ref}'s check to fail`, async () => {
        const [r] = await stack.sql("SELECT status, last_error FROM subjects WHERE provider = 'persona' AND ref = ?", ref);
        return r?.last_error && r;
      });
      assert.equal(row.last_error, "HTTP 401");
      assert.equal(row.status, "unknown");
      assert.equal(stack.standIn.requests().find((r) => r.path === "/api/v1/inquiries")?.status, 401);
    } finally {
      await stack.stop();
    }
  });
});

describe("Persona privacy", () => {
  test("planted names, birth dates, addresses, e-mail and phone reach no D1, KV, notification or log", async () => {
    const app = await startSink({ secrets: [APP_SECRET] });
    const stack = await startStack({ persona: true, vars: { APP_WEBHOOK_URL: app.url, APP_WEBHOOK_SECRET: APP_SECRET } });
    try {
      const ref = "persona-pii-1";
      const [inquiry] = stack.standIn.persona.setInquiries(ref, [{ status: "approved", decisionedAt: Date.now() }]);
      // The webhook carries PII too, in the inquiry and beyond it.
      const body = personaEvent("inquiry.approved", inquiry, { id: "evt_pii_0000001" });
      assert.ok(JSON.stringify(body).includes(PERSONA_PII["email-address"]), "control: PII was sent");
      const res = await stack.personaWebhook(body);
      assert.equal(res.status, 200, res.text);
      // A body that is refused (malformed reference-id) must not quote it either.
      const bad = personaEvent("inquiry.approved", { ...inquiry, attributes: { ...inquiry.attributes, "reference-id": PERSONA_PII["email-address"].replace("@", " ") } });
      assert.equal((await stack.personaWebhook(bad)).status, 400);
      await reaches(stack, ref, "approved");
      const note = await eventually(`the application notified of ${ref} approved`, () => app.received().find((n) => n.ref === ref && n.body?.data?.status === "approved"));
      assert.ok(note.verified.every(Boolean));
      assert.ok(inquiryFetches(stack, ref).length >= 1, "the API answer with PII was read");

      await stack.worker.restart();
      const files = await readPersistedFiles(stack.dir);
      const d1 = files.filter((f) => f.path.includes("/d1/") && /\.sqlite(-wal)?$/.test(f.path));
      assert.ok(d1.some((f) => f.bytes.includes(Buffer.from(ref))), "control: the ref is in D1");
      const kv = files.filter((f) => f.path.includes("/kv/"));
      assert.ok(kv.some((f) => f.bytes.includes(Buffer.from(ref))), "control: the ref is in KV");
      const logs = JSON.stringify(stack.worker.logs());
      const notes = JSON.stringify(app.received().map((n) => n.raw));
      for (const [field, value] of Object.entries(PERSONA_PII)) {
        const hit = files.find((f) => f.bytes.includes(Buffer.from(value)));
        assert.equal(hit, undefined, `${field} ${JSON.stringify(value)} found in ${hit?.path}`);
        assert.ok(!logs.includes(value), `${field} in the logs`);
        assert.ok(!notes.includes(value), `${field} in a notification`);
      }
      assert.ok(!logs.includes(PERSONA_KEY) && !logs.includes(PERSONA_SECRET), "no secret logged");
    } finally {
      await stack.stop();
      await app.stop();
    }
  });
});

describe("make trigger PROVIDER=persona", () => {
  test("the sandbox moves Persona's truth and sends a signed event the worker accepts", async () => {
    const { startSandbox } = await import("../sandbox/server.mjs");
    const { execFile } = await import("node:child_process");
    const port = await freePort();
    const vars = {
      PERSONA_API_KEY: "sandbox_persona_trigger_1f2e",
      PERSONA_WEBHOOK_SECRET: "wbhsec_trigger_9a8b",
    };
    const stack = await startStack({ persona: true, vars: { ...vars, PERSONA_API_BASE: `http://127.0.0.1:${port}` } });
    const sandbox = await startSandbox({ port, workerUrl: stack.url, vars });
    const trigger = (...args) =>
      new Promise((resolve) =>
        execFile("node", ["scripts/trigger.mjs", "--provider", "persona", ...args], {
          cwd: new URL("..", import.meta.url).pathname,
          env: { ...process.env, SANDBOX_URL: sandbox.url, KYC_EDGE_URL: stack.url },
        }, (error, stdout, stderr) => resolve({ code: error?.code ?? 0, stdout, stderr })),
      );
    try {
      assert.equal(sandbox.sandboxed.persona, true);
      let run = await trigger("--ref", "persona-trigger-1", "--status", "approved");
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stdout, /persona persona-trigger-1 is now approved at the provider; webhook → HTTP 200/);
      await reaches(stack, "persona-trigger-1", "approved");
      run = await trigger("--ref", "persona-trigger-1", "--status", "rejected", "--drop", "1");
      assert.equal(run.code, 0, run.stderr);
      run = await trigger("--ref", "persona-trigger-1", "--replay", "1");
      assert.match(run.stdout, /"duplicate":true/, "the same evt id");
      assert.equal((await stack.api("POST", "/v1/subjects/persona/persona-trigger-1/refresh")).status, 202);
      await reaches(stack, "persona-trigger-1", "rejected");
    } finally {
      await sandbox.stop();
      await stack.stop();
    }
  });
});
