// Errors at each boundary, end to end: a provider's permanent answer about one subject is
// not an outage; a misconfigured deployment says so without saying how; a stored row this
// version cannot read is skipped visibly, never guessed.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { startStack } from "./support/stack.mjs";
import { eventually, kycsUpdated } from "../sandbox/kit.mjs";

const DAY = 24 * 3600_000;

describe("errors", () => {
  test("Align answering 404 for a customer: retried soon while someone waits, then weekly, then retired; the provider stays healthy", async () => {
    const stack = await startStack();
    try {
      const unknown = "never-heard-of-0001";
      const known = "known-customer-0001";
      stack.standIn.setAlign(known, { status: "pending", sub_status: "kyc_form_submission_started" });
      for (const id of [unknown, known]) {
        assert.equal((await stack.api("PUT", `/v1/subjects/align/${id}`, { body: {} })).status, 201);
      }
      const failed = await eventually("the 404 recorded as a check error", async () => {
        const row = await stack.row("align", unknown);
        return row.check_error && row;
      });
      assert.equal(failed.check_error, "HTTP 404");
      assert.equal(failed.status, "unknown", "a failure never changes a status");
      // The registration asked for this check: Align may not know the customer yet, so it is
      // asked again on the short back-off (a minute, doubling), not in a week.
      const soon = Date.parse(failed.next_check_at) - Date.now();
      assert.ok(soon > 0 && soon < 5 * 60_000, `asked again within minutes (${soon} ms)`);
      // Each cron run that finds it due asks again; after the short retries, weekly.
      let row = failed;
      const failuresOf = async () => (await stack.sql("SELECT failures, unfound FROM subjects WHERE ref = ?", unknown))[0];
      for (let attempt = 2; attempt <= 7; attempt += 1) {
        await stack.cron(Date.parse(row.next_check_at) + 1000);
        await eventually(`failed check ${attempt} counted`, async () => (await failuresOf()).failures === attempt);
        row = await stack.row("align", unknown);
      }
      const wait = Date.parse(row.next_check_at) - Date.now();
      assert.ok(wait > 6 * DAY && wait < 8 * DAY, `then about a week, not backed off like an outage (${wait} ms)`);
      // Ten checks without a record retire it: no more checks, until someone names it again.
      for (let attempt = 8; attempt <= 10; attempt += 1) {
        await stack.cron(Date.parse(row.next_check_at) + 1000);
        await eventually(`unfound check ${attempt} counted`, async () => (await failuresOf()).unfound === attempt);
        row = await stack.row("align", unknown);
      }
      assert.equal(row.next_check_at.slice(0, 4), "9999", "retired: never due");
      assert.equal((await stack.stats()).retired.align, 1, "visible in stats");
      await eventually("the known customer pending", async () => (await stack.row("align", known)).status === "pending");
      const health = (await stack.stats()).providers.align;
      assert.equal(health.consecutive_failures, 0, "one customer's 404 is not a provider failure");
      assert.equal(health.degraded, false);
      // Once Align knows the customer, a refresh revives it and the check clears the error.
      stack.standIn.setAlign(unknown, { status: "approved" });
      assert.equal((await stack.api("POST", `/v1/subjects/align/${unknown}/refresh`)).status, 202);
      const cleared = await eventually("the revived customer approved", async () => {
        const row = await stack.row("align", unknown);
        return row.status === "approved" && row;
      });
      assert.equal(cleared.check_error, null);
      assert.equal((await stack.stats()).retired.align, 0, "revived");
    } finally {
      await stack.stop();
    }
  });

  test("a malformed variable is a configuration_error answer; the log names the variable", async () => {
    const stack = await startStack({ vars: { MAX_BODY_BYTES: "lots" } });
    try {
      for (const res of [
        await stack.alignWebhook(kycsUpdated("c-1", { status: "approved" })),
        await stack.api("GET", "/v1/stats"),
        await stack.api("GET", "/healthz", { token: null }),
      ]) {
        assert.equal(res.status, 500, res.text);
        assert.deepEqual(res.json.error, { code: "configuration_error", message: "configuration_error" });
        assert.ok(!res.text.includes("MAX_BODY_BYTES"), "an unauthenticated caller learns nothing about the setup");
      }
      const logged = stack.logLines("request").filter((l) => l.error_code === "configuration_error");
      assert.equal(logged.length, 3);
      assert.match(logged[0].error, /MAX_BODY_BYTES: "lots" is not a whole number/);
    } finally {
      await stack.stop();
    }
  });

  test("outside a local run, a provider on this machine (the sandbox) is refused: no key is ever sent to it", async () => {
    const stack = await startStack({ vars: { LOCAL_DEV: "" } });
    try {
      const before = await stack.fingerprint();
      const res = await stack.alignWebhook(kycsUpdated("c-1", { status: "approved" }));
      assert.equal(res.status, 500, res.text);
      assert.equal(res.json.error.code, "configuration_error");
      assert.equal((await stack.api("GET", "/healthz", { token: null })).status, 500, "not healthy");
      await stack.cron();
      assert.equal(stack.standIn.requests().length, 0, "the stand-in was never called");
      // Nothing but the operator's alert, which names the variable only.
      const withoutAlerts = (dump) => {
        const tables = JSON.parse(dump);
        delete tables.alerts;
        return JSON.stringify(tables);
      };
      assert.equal(withoutAlerts(await stack.fingerprint()), withoutAlerts(before), "nothing else was written");
      const alerts = await stack.sql("SELECT kind, data FROM alerts WHERE resolved_at IS NULL");
      assert.deepEqual(alerts, [{ kind: "configuration_error", data: '{"variable":"ALIGN_API_BASE"}' }]);
      const logged = stack.logLines("request").find((l) => l.error_code === "configuration_error");
      assert.match(logged.error, /ALIGN_API_BASE: "http:\/\/127\.0\.0\.1:\d+" is plain HTTP or this machine/);
    } finally {
      await stack.stop();
    }
  });

  test("a stored row this version cannot read is logged and skipped; the others are still checked", async () => {
    const stack = await startStack();
    try {
      const ids = ["row-ok-1", "row-bad-2", "row-ok-3"];
      for (const id of ids) {
        stack.standIn.setAlign(id, { status: "pending" });
        assert.equal((await stack.api("PUT", `/v1/subjects/align/${id}`, { body: {} })).status, 201);
      }
      await eventually("row-ok-3 pending", async () => (await stack.row("align", "row-ok-3")).status === "pending");
      await stack.sql("UPDATE subjects SET status = 'on_hold', next_check_at = 0 WHERE ref = 'row-bad-2'");
      await stack.sql("UPDATE subjects SET next_check_at = 0 WHERE ref != 'row-bad-2'");
      stack.standIn.resetCounts();
      await stack.cron(Date.now());
      const run = stack.logLines("cron").at(-1);
      assert.equal(run.unreadable, 1);
      assert.match(run.unreadable_row, /^align\/row-bad-2: unknown variant `on_hold`/);
      assert.equal(run.enqueued, 2);
      await eventually("the two readable rows checked at the provider", () => stack.standIn.requests().length === 2);
      assert.deepEqual(stack.standIn.requests().map((r) => r.path).sort(), ["/v0/customers/row-ok-1", "/v0/customers/row-ok-3"]);
      // Reading it through the API is a clear 500, not a guessed status.
      const res = await stack.api("GET", "/v1/subjects/align/row-bad-2?consistency=strong");
      assert.equal(res.status, 500);
      assert.equal(res.json.error.code, "internal");
    } finally {
      await stack.stop();
    }
  });
});
