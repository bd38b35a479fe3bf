// Issue 20, black box: the compiled worker in workerd, driven as a caller would. Least-privilege
// tokens, redirects never followed, bounded provider answers, refs that cannot name another
// URL, ARGOS's binding to registered subjects, replays that cost no rows, junk that retires,
// logs without e-mail addresses, and the headers of every /v1 answer. Webhooks are signed
// here with node:crypto (sandbox/sign.mjs), never by kyc-edge.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { API_TOKEN, ARGOS_TOKEN, READ_TOKEN, rawPath, startStack } from "./support/stack.mjs";
import { ALIGN_STATUSES, eventually, kycsUpdated, startSink } from "../sandbox/kit.mjs";

const NEXT_TOKEN = "rotated-admin-token-9d2e-0123456789abcdef";
const SECRET = "whsec_R4mMtD8u9t0mMX3bqm1Q7ugO8hbRdeuCqkzFgVDBo4E=";
const ARGOS_IP = "52.78.194.237";
const ANSWER_CAP = 64 * 1024;
const APPROVED = ALIGN_STATUSES.approved;

function assertApiHeaders(res, what) {
  assert.equal(res.headers.get("cache-control"), "no-store", `${what}: Cache-Control`);
  assert.equal(res.headers.get("x-content-type-options"), "nosniff", `${what}: nosniff`);
}

/** Checks the row of `ref` until `predicate` holds (`what` says what that is); the row then. */
async function rowWhen(stack, provider, ref, what, predicate, timeoutMs = 15_000) {
  return eventually(
    `${provider}/${ref}: ${what}`,
    async () => {
      const res = await stack.api("GET", `/v1/subjects/${provider}/${encodeURIComponent(ref)}?consistency=strong`);
      return res.status === 200 && predicate(res.json) && res.json;
    },
    { timeoutMs },
  );
}

describe("security", () => {
  const env = {};
  before(async () => {
    env.app = await startSink({ secrets: [SECRET] });
    env.stack = await startStack({
      vars: {
        API_TOKEN: `${API_TOKEN}, ${NEXT_TOKEN}`,
        APP_WEBHOOK_URL: env.app.url,
        APP_WEBHOOK_SECRET: SECRET,
        NOTIFY_MAX_AGE_SECONDS: "3",
        PROVIDER_MAX_ANSWER_BYTES: String(ANSWER_CAP),
        PROVIDER_MAX_LIST_BYTES: String(ANSWER_CAP),
        ARGOS_ALLOWED_IPS: ARGOS_IP,
        ARGOS_REQUIRE_REGISTERED: "true",
        RETIRE_AFTER_UNFOUND_CHECKS: "3",
      },
    });
  });
  after(async () => {
    await env.stack?.stop();
    await env.app?.stop();
  });

  test("1. the read token reads; everything that writes, calls a provider or redelivers is 403", async () => {
    const { stack } = env;
    for (const path of ["/v1/stats", "/v1/subjects", "/v1/notifications", "/v1/runs", "/v1/subjects/stuck"]) {
      const res = await stack.api("GET", path, { token: READ_TOKEN });
      assert.equal(res.status, 200, `${path}: ${res.text}`);
    }
    stack.standIn.setAlign("sec-admin-0001", APPROVED);
    assert.equal((await stack.api("PUT", "/v1/subjects/align/sec-admin-0001", { body: {} })).status, 201);
    // Its check settles (and its notification is delivered) before D1 is compared below.
    await rowWhen(stack, "align", "sec-admin-0001", "approved", (row) => row.status === "approved");
    await eventually("the notification about sec-admin-0001", () => env.app.received().some((r) => r.ref === "sec-admin-0001"));
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal((await stack.api("GET", "/v1/subjects/align/sec-admin-0001", { token: READ_TOKEN })).status, 200);
    const before = await stack.fingerprint();
    const calls = stack.standIn.requests().length;
    const writes = [
      ["PUT", "/v1/subjects/align/sec-read-0001", {}],
      ["POST", "/v1/subjects/align/sec-admin-0001/refresh", undefined],
      ["POST", "/v1/subjects/batch", [{ provider: "align", ref: "sec-read-0002" }]],
      ["POST", "/v1/backfill/align", {}],
      ["POST", "/v1/notifications/enable", undefined],
      ["POST", "/v1/notifications/msg_1_abc/redeliver", undefined],
    ];
    for (const [method, path, body] of writes) {
      const res = await stack.api(method, path, { body, token: READ_TOKEN });
      assert.equal(res.status, 403, `${method} ${path}: ${res.text}`);
      assert.equal(res.json.error.code, "forbidden");
      assert.match(res.json.error.message, /only read.*API_TOKEN/);
      assertApiHeaders(res, `${method} ${path}`);
    }
    assert.equal(await stack.fingerprint(), before, "a refused write writes nothing");
    assert.equal(stack.standIn.requests().length, calls, "and calls no provider");
    // Both admin tokens of the list work (rotation); anything else is 401.
    assert.equal((await stack.api("PUT", "/v1/subjects/align/sec-rotated-0001", { body: {}, token: NEXT_TOKEN })).status, 201);
    for (const token of [`${API_TOKEN}x`, API_TOKEN.slice(0, -1), "", null, `${READ_TOKEN},${API_TOKEN}`]) {
      assert.equal((await stack.api("GET", "/v1/stats", { token })).status, 401, String(token));
    }
  });

  test("1. a token shorter than 32 characters is a configuration error on every route, never echoed", async () => {
    for (const vars of [
      { API_TOKEN: "short-admin-token-xyz" },
      { API_TOKEN: `${API_TOKEN},short-admin-token-xyz` },
      { API_READ_TOKEN: "short-admin-token-xyz" },
      { ARGOS_WEBHOOK_TOKEN: "short-admin-token-xyz" },
      { ARGOS_ALLOWED_IPS: "" },
    ]) {
      const stack = await startStack({ vars });
      try {
        for (const [method, path] of [
          ["GET", "/healthz"],
          ["GET", "/v1/stats"],
          ["POST", "/webhooks/align"],
          ["GET", "/v1/subjects/align/x"],
        ]) {
          const res = await fetch(`${stack.url}${path}`, { method, headers: { authorization: `Bearer ${API_TOKEN}` } });
          const text = await res.text();
          assert.equal(res.status, 500, `${JSON.stringify(vars)} ${path}`);
          assert.equal(JSON.parse(text).error.code, "configuration_error");
          assert.ok(!text.includes("short-admin-token-xyz"), "never echoed");
        }
        const logged = JSON.stringify(stack.logLines());
        assert.ok(!logged.includes("short-admin-token-xyz"), "nor logged");
        assert.match(logged, /configuration error: (API_TOKEN|API_READ_TOKEN|ARGOS_WEBHOOK_TOKEN|ARGOS_ALLOWED_IPS)/);
      } finally {
        await stack.stop();
      }
    }
  });

  test("2. a provider's redirect is a failed check naming its Location, never followed", async () => {
    const { stack } = env;
    const ref = "sec-redirect-0001";
    stack.standIn.setAlign(ref, APPROVED);
    const elsewhere = `${stack.standIn.url}/elsewhere/v0/customers/${ref}`;
    stack.standIn.answerNext(1, { status: 302, headers: { location: elsewhere }, provider: "align" });
    assert.equal((await stack.api("PUT", `/v1/subjects/align/${ref}`, { body: {} })).status, 201);
    const failed = await rowWhen(stack, "align", ref, "a check error recorded", (row) => row.check_error);
    assert.equal(failed.check_error, `HTTP 302 redirect (not followed) to ${elsewhere}`);
    assert.equal(failed.status, "unknown");
    assert.ok(!stack.standIn.arrivals().some((r) => r.path.startsWith("/elsewhere")), "the key went nowhere else");
    assert.ok(stack.logLines("job").some((line) => String(line.check_error).includes(elsewhere)), "the log names the Location");
    // A retry (the redirect is not repeated) reads the customer.
    await stack.cron(Date.parse(failed.next_check_at) + 1000);
    await rowWhen(stack, "align", ref, "approved", (row) => row.status === "approved");
  });

  test("2. a redirect from the application is a failed attempt, retried then dead, with its Location recorded", async () => {
    const { stack, app } = env;
    const ref = "sec-notify-redirect-0001";
    const moved = `${app.url}/moved-here`;
    app.respond(ref, Array.from({ length: 20 }, () => ({ status: 302, headers: { location: moved } })));
    stack.standIn.setAlign(ref, APPROVED);
    assert.equal((await stack.alignWebhook(kycsUpdated(ref, APPROVED))).status, 200);
    const dead = await eventually(
      `${ref}'s notification dead after its retries`,
      async () => {
        await stack.cron(Date.now() + 60_000);
        const res = await stack.api("GET", `/v1/notifications?subject=align/${ref}`);
        const [n] = res.json.notifications;
        return n?.state === "dead" && n;
      },
      { timeoutMs: 30_000, intervalMs: 1000 },
    );
    assert.ok(dead.attempts >= 2, `retried (${dead.attempts} attempts)`);
    assert.equal(dead.last_response, `HTTP 302 redirect (not followed) to ${moved}`);
    const received = app.received().filter((r) => r.ref === ref);
    assert.equal(received.length, dead.attempts, "every attempt was one signed POST, none followed");
    assert.ok(received.every((r) => r.verified[0]));
  });

  test("3. a provider answer over the cap is a check error, declared or not; the worker keeps serving", async () => {
    const { stack } = env;
    const huge = JSON.stringify({ customer_id: "x", pad: "x".repeat(ANSWER_CAP + 1) });
    for (const [ref, headers] of [
      ["sec-huge-chunked-0001", {}],
      ["sec-huge-declared-0001", { "content-length": String(Buffer.byteLength(huge)) }],
    ]) {
      stack.standIn.answerNext(1, { status: 200, body: huge, headers, provider: "align" });
      assert.equal((await stack.api("PUT", `/v1/subjects/align/${ref}`, { body: {} })).status, 201);
      const failed = await rowWhen(stack, "align", ref, "a check error recorded", (row) => row.check_error);
      assert.equal(failed.check_error, "answer too large", ref);
      assert.equal((await fetch(`${stack.url}/healthz`)).status, 200);
    }
    assert.equal((await stack.stats()).providers.align.degraded, false, "one answer is not an outage");
  });

  test("3. the Align backfill list is capped before it is parsed", async () => {
    const { stack } = env;
    const huge = JSON.stringify({ items: [], pad: "x".repeat(ANSWER_CAP + 1) });
    stack.standIn.answerNext(1, { status: 200, body: huge, provider: "align" });
    const started = await stack.api("POST", "/v1/backfill/align", { body: {} });
    assert.equal(started.status, 202, started.text);
    await stack.cron(Date.now() + 1000);
    await eventually("the backfill to record the oversized page", async () => {
      const res = await stack.api("GET", "/v1/backfill/align");
      return JSON.stringify(res.json).includes(`larger than ${ANSWER_CAP} bytes`) && res.json;
    });
  });

  test("4. refs that are only dots are refused on every route and never reach a provider", async () => {
    const { stack } = env;
    const calls = stack.standIn.requests().length;
    const before = await stack.fingerprint();
    const auth = { authorization: `Bearer ${API_TOKEN}` };
    for (const ref of ["...", "%2e%2e%2e", ".%2E.", "....."]) {
      for (const [method, path] of [
        ["GET", `/v1/subjects/align/${ref}`],
        ["PUT", `/v1/subjects/align/${ref}`],
        ["GET", `/v1/subjects/argos/${ref}/events`],
        ["POST", `/v1/subjects/argos/${ref}/refresh`],
      ]) {
        const res = await rawPath(stack.url, method, path, { ...auth, "content-type": "application/json" });
        assert.equal(res.status, 400, `${method} ${path}: ${res.text}`);
        assert.match(res.text, /only dots/);
      }
    }
    // `.` and `..` segments (also %2e) are resolved by the URL parser before any route sees them.
    for (const ref of [".", "..", "%2e", "%2e%2e", ".%2e"]) {
      const res = await rawPath(stack.url, "POST", `/v1/subjects/align/${ref}/refresh`, auth);
      assert.notEqual(res.status, 202, `${ref}: ${res.status}`);
    }
    // An import refuses such a line with its reason (its neighbours are judged on their own).
    const batch = await stack.api("POST", "/v1/subjects/batch", {
      body: ["", ".", "..", "..."].map((ref) => ({ provider: "align", ref })),
    });
    assert.equal(batch.status, 200, batch.text);
    assert.equal(batch.json.invalid, 4);
    assert.deepEqual(
      batch.json.results.map((r) => r.error),
      ["ref must not be empty", "ref must not be only dots", "ref must not be only dots", "ref must not be only dots"],
    );
    for (const ref of [".", ".."]) {
      const align = await stack.alignWebhook(kycsUpdated(ref, APPROVED));
      assert.equal(align.status, 400, `align webhook ${ref}: ${align.text}`);
      const argos = await stack.argosWebhook({ webhook_trigger: "submit", userid: ref }, { ip: ARGOS_IP });
      assert.equal(argos.status, 400, `argos webhook ${ref}: ${argos.text}`);
    }
    assert.equal(await stack.fingerprint(), before, "nothing written");
    assert.equal(stack.standIn.requests().length, calls, "no provider called");
  });

  test("5. ARGOS: the address before the token; unregistered refs ignored; another user's answer never applied", async () => {
    const { stack } = env;
    const body = { webhook_trigger: "submit", userid: "sec-argos-stranger" };
    // A disallowed address learns nothing about the token: right or wrong, 403.
    for (const token of [ARGOS_TOKEN, "wrong-token"]) {
      const res = await stack.argosWebhook(body, { token, ip: "10.9.8.7" });
      assert.equal(res.status, 403, res.text);
    }
    assert.equal((await stack.argosWebhook(body, { token: "wrong-token", ip: ARGOS_IP })).status, 401);
    // A ref nobody registered: acknowledged, ignored, counted in the log; no subject, no check.
    const calls = stack.standIn.requests().length;
    const before = await stack.fingerprint();
    const ignored = await stack.argosWebhook(body, { ip: ARGOS_IP });
    assert.equal(ignored.status, 200, ignored.text);
    assert.equal(ignored.json.ignored, "not_registered");
    assert.equal(await stack.fingerprint(), before);
    assert.equal(stack.standIn.requests().length, calls);
    assert.equal((await stack.api("GET", "/v1/subjects/argos/sec-argos-stranger")).status, 404);
    assert.ok(stack.logLines("request").some((l) => l.outcome === "ignored: not registered"));
    // A registered ref whose answer lists another user's approved submission: never applied.
    const ref = "sec-argos-registered";
    stack.standIn.setArgosSubmissions(ref, [{ userid: "sec-argos-someone-else", kyc: { result: "approved" } }]);
    assert.equal((await stack.api("PUT", `/v1/subjects/argos/${ref}`, { body: {} })).status, 201);
    const failed = await rowWhen(stack, "argos", ref, "a check error recorded", (row) => row.check_error);
    assert.equal(failed.check_error, "wrong subject");
    assert.equal(failed.status, "unknown");
    const accepted = await stack.argosWebhook({ webhook_trigger: "submit", userid: ref }, { ip: ARGOS_IP });
    assert.equal(accepted.status, 200);
    assert.equal(accepted.json.ignored, undefined, "a registered ref is tracked");
  });

  test("6. thirty replays of one signed Align body write one event row", async () => {
    const { stack } = env;
    const ref = "sec-replay-0001";
    stack.standIn.setAlign(ref, APPROVED);
    const body = JSON.stringify(kycsUpdated(ref, APPROVED));
    const countRows = async () => (await stack.sql("SELECT COUNT(*) AS n FROM events WHERE ref = ? AND type != 'change'", ref))[0].n;
    assert.equal((await stack.alignWebhook(body)).status, 200);
    const first = await countRows();
    const duplicatesBefore = (await stack.stats()).webhooks.align.duplicate ?? 0;
    for (let i = 0; i < 30; i += 1) {
      const res = await stack.alignWebhook(body);
      assert.equal(res.status, 200);
      assert.equal(res.json.duplicate, true);
    }
    assert.equal(first, 1);
    assert.equal(await countRows(), 1, "replays are tallied, not stored");
    const stats = await stack.stats();
    assert.equal(stats.webhooks.align.duplicate - duplicatesBefore, 30, "each replay is counted");
  });

  test("7. a junk ref is retired after RETIRE_AFTER_UNFOUND_CHECKS not-found checks, shown in stats, revived by PUT", async () => {
    const { stack } = env;
    const ref = "sec-junk-0001";
    assert.equal((await stack.api("PUT", `/v1/subjects/align/${ref}`, { body: {} })).status, 201);
    const unfound = async () => (await stack.sql("SELECT unfound FROM subjects WHERE provider = 'align' AND ref = ?", ref))[0].unfound;
    // RETIRE_AFTER_UNFOUND_CHECKS is 3 in this stack (the default is 10).
    for (let attempt = 1; attempt <= 3; attempt += 1) {
      const row = await rowWhen(stack, "align", ref, "registered", () => true);
      assert.ok(!row.next_check_at.startsWith("9999"), `still checked before check ${attempt}`);
      if (attempt > 1) await stack.cron(Date.parse(row.next_check_at) + 1000);
      await eventually(`unfound check ${attempt} counted`, async () => (await unfound()) >= attempt);
    }
    await rowWhen(stack, "align", ref, "retired: never due", (row) => row.next_check_at.startsWith("9999"));
    assert.ok((await stack.stats()).retired.align >= 1, "visible in stats");
    assert.ok([200, 201].includes((await stack.api("PUT", `/v1/subjects/align/${ref}`, { body: {} })).status));
    await rowWhen(stack, "align", ref, "revived: due again", (row) => !row.next_check_at.startsWith("9999"));
  });

  test("8. e-mail refs are masked in logs; provider_status never carries free text", async () => {
    const { stack } = env;
    const email = "jane.doe+kyc@example.com";
    stack.standIn.setAlign(email, { status: "Jane Doe born 1990-01-01" });
    assert.equal((await stack.api("PUT", `/v1/subjects/align/${encodeURIComponent(email)}`, { body: {} })).status, 201);
    const row = await rowWhen(stack, "align", email, "checked", (r) => r.last_checked_at);
    assert.equal(row.status, "unknown");
    assert.equal(row.provider_status ?? null, null, "free text is dropped");
    const logged = JSON.stringify(stack.logLines());
    assert.ok(!logged.includes("jane.doe"), "the address is never logged in clear");
    assert.match(logged, /"ref":"email#[0-9a-f]{16}"/);
  });

  test("9. /v1 answers are never cached nor sniffed; the dashboard keeps its CSP", async () => {
    const { stack } = env;
    for (const [path, token] of [
      ["/v1/stats", API_TOKEN],
      ["/v1/stats", READ_TOKEN],
      ["/v1/stats", "nope"],
      ["/v1/subjects/align/none-such-0001", API_TOKEN],
      ["/v1/subjects/align/a%20b", API_TOKEN],
    ]) {
      const res = await fetch(`${stack.url}${path}`, { headers: { authorization: `Bearer ${token}` } });
      await res.arrayBuffer();
      assertApiHeaders(res, `${path} (${res.status})`);
    }
    const page = await fetch(`${stack.url}/dashboard/`);
    await page.arrayBuffer();
    assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'none'|script-src 'self'/);
  });
});

test("10. bootstrap pins every tool it installs, --locked unless a comment says why not", async () => {
  const { readFile } = await import("node:fs/promises");
  const lines = (await readFile(new URL("../scripts/bootstrap.sh", import.meta.url), "utf8")).split("\n");
  const installs = lines.map((line, i) => [line.trim(), i]).filter(([line]) => /^(cargo install|npm (i|install|ci)\b)/.test(line));
  assert.ok(installs.length >= 3, "worker-build, wasm-bindgen-cli, npm");
  for (const [line, i] of installs) {
    if (line.startsWith("npm")) {
      assert.match(line, /^npm ci\b/, "npm installs the lockfile exactly");
      continue;
    }
    assert.match(line, /--version "?\$[A-Za-z_]+"?/, `${line}: an exact version`);
    if (!line.includes("--locked")) {
      assert.match(lines[i - 1], /Not --locked: \S+/, `${line}: why it cannot be --locked`);
    }
  }
});
