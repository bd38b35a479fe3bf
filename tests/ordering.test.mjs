// Ordering under concurrent writers, end to end: the compiled worker in workerd with local
// D1/KV/Queue, against a stand-in provider that answers each request with the state it had
// when the request arrived, after a chosen delay.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { argosTime } from "../sandbox/providers.mjs";
import { startStack } from "./support/stack.mjs";
import { ALIGN_STATUSES, eventually, kycsUpdated } from "../sandbox/kit.mjs";

const FIXTURES = new URL("../core/tests/fixtures/argos/", import.meta.url);
const { rejected: REJECTED, approved: APPROVED } = ALIGN_STATUSES;

/** A fixture webhook body with its ids replaced, as exact bytes. */
function fixture(name, fields) {
  return JSON.stringify({ ...JSON.parse(readFileSync(new URL(`${name}.json`, FIXTURES), "utf8")), ...fields });
}

async function changes(stack, provider, ref) {
  const { events } = (await stack.api("GET", `/v1/subjects/${provider}/${ref}/events`)).json;
  return events.filter((e) => e.type === "change").reverse();
}

describe("ordering", () => {
  test("scenario 1: a slow answer in flight with a newer one never overwrites it; a fresh check decides", async () => {
    const stack = await startStack();
    try {
      const id = "slow-stale-0001";
      const path = `/v0/customers/${id}`;
      stack.standIn.setAlign(id, REJECTED);
      assert.equal((await stack.api("PUT", `/v1/subjects/align/${id}`, { body: {} })).status, 201);
      await eventually(`${id} rejected`, async () => (await stack.row("align", id)).status === "rejected");

      // Two checks run side by side (one queue batch): the first to reach Align reads
      // "rejected" and its answer takes 2 s; right after it read, an admin approves; the
      // second reads "approved" and writes it first.
      stack.standIn.resetCounts();
      stack.standIn.delayNext(1, 2000, { path, then: () => stack.standIn.setAlign(id, APPROVED) });
      assert.equal((await stack.api("POST", `/v1/subjects/align/${id}/refresh`)).status, 202);
      const webhook = await stack.alignWebhook(kycsUpdated(id, { withObject: false }));
      assert.equal(webhook.status, 200, webhook.text);
      await eventually(`${id} approved`, async () => (await stack.row("align", id)).status === "approved");
      assert.equal(
        stack.standIn.requests().filter((r) => r.path === path).length,
        1,
        "the approved answer was written before the slow one landed",
      );
      // The slow, older answer lands last and must lose.
      await eventually("the slow answer to land", () => stack.standIn.requests().filter((r) => r.path === path).length === 2, { timeoutMs: 10_000 });
      await eventually(`three jobs about ${id}`, () => stack.logLines("job").filter((j) => j.ref === id).length >= 3);
      const row = await stack.row("align", id);
      assert.equal(row.status, "approved");
      assert.equal((await stack.subject("align", id)).json.status, "approved", "KV agrees");
      assert.deepEqual(
        (await changes(stack, "align", id)).map((c) => [c.from_status, c.to_status, c.drift]),
        [
          ["unknown", "rejected", false],
          ["rejected", "approved", false],
        ],
        "never back to rejected, and the webhook announced the approval",
      );
      // The two requests were in flight together, so their answers cannot be ordered: the slow
      // one is neither applied nor dropped, and a check sent after both answers decides.
      const contested = stack.logLines("job").filter((j) => j.ref === id && j.outcome === "contested");
      assert.equal(contested.length, 1, "the slow answer was contested");
      await eventually("a fresh check sent", () => stack.standIn.requests().filter((r) => r.path === path).length === 3, { timeoutMs: 10_000 });
      await eventually(`a job confirming ${id}`, () => stack.logLines("job").some((j) => j.ref === id && j.outcome === "confirmed"));
      assert.equal((await stack.row("align", id)).status, "approved");
    } finally {
      await stack.stop();
    }
  });

  test("scenario 5: an AML body repeated byte for byte after a change asks for a check again", async () => {
    const stack = await startStack();
    try {
      const userid = "user_aml_repeat_01";
      const submission_id = "subAmlRepeat01";
      const screened = (currentstatus, risk) =>
        stack.standIn.setArgosSubmissions(userid, [
          { submission_id, kyc: { result: "approved" }, aml_result: { currentstatus, risk_level_summary: risk } },
        ]);
      const aml = async () => (await stack.subject("argos", userid)).json?.aml;
      const redFlag = fixture("aml", { userid, submission_id });
      const cleared = fixture("aml_monitor", { userid, submission_id });

      screened("Red Flag", "HIGH");
      let res = await stack.argosWebhook(redFlag);
      assert.deepEqual([res.status, res.json.duplicate, res.json.queued], [200, false, true]);
      await eventually("AML Red Flag", async () => (await aml())?.status === "Red Flag");
      const amlFetches = () => stack.standIn.requests().filter((r) => r.query.request_type === "aml").length;
      assert.equal(amlFetches(), 1, "AML is learned from request_type=aml");

      screened("Cleared", "LOW");
      res = await stack.argosWebhook(cleared);
      assert.equal(res.json.duplicate, false);
      await eventually("AML Cleared", async () => (await aml())?.status === "Cleared");

      // Red Flag again: ARGOS sends the first body again, byte for byte.
      screened("Red Flag", "HIGH");
      res = await stack.argosWebhook(redFlag);
      assert.deepEqual([res.status, res.json.duplicate, res.json.queued], [200, true, true], "a duplicate that still triggers a check");
      await eventually("AML Red Flag again: the third body acted on", async () => (await aml())?.status === "Red Flag");
      assert.equal(amlFetches(), 3);
      const { events } = (await stack.api("GET", `/v1/subjects/argos/${userid}/events`)).json;
      // The repeat is counted on the first body's row (its last arrival), not stored again.
      const received = events.filter((e) => e.type !== "change").reverse();
      assert.deepEqual(
        received.map((e) => [e.type, e.kind]),
        [
          ["webhook", "aml"],
          ["webhook", "aml_monitor"],
        ],
      );
      assert.ok(received[0].last_at > received[1].at, "the repeat's arrival is kept on the first body's row");
      assert.equal((await stack.stats()).webhooks.argos.duplicate, 1);
    } finally {
      await stack.stop();
    }
  });

  test("ARGOS: an approved submission beyond the first page is found", async () => {
    const stack = await startStack({ argosPageSize: 2 });
    try {
      const userid = "user_many_pages_01";
      const day = 24 * 3600_000;
      const base = Date.now() - 30 * day;
      // The approval is the oldest of five submissions: the third page of two.
      stack.standIn.setArgosSubmissions(
        userid,
        Array.from({ length: 5 }, (_, i) => ({
          submission_id: `subPage${i}`,
          created_at: argosTime(base + i * day),
          kyc_result_at: argosTime(base + i * day + 3600_000),
          kyc: { result: i === 0 ? "approved" : "rejected" },
        })),
      );
      const res = await stack.argosWebhook(fixture("rejected", { userid, submission_id: "subPage4" }));
      assert.equal(res.status, 200, res.text);
      await eventually(`${userid} approved`, async () => (await stack.subject("argos", userid)).json?.status === "approved");
      const pages = stack.standIn.requests().filter((r) => r.query.userid === userid && r.query.request_type === "kyc");
      assert.deepEqual(
        pages.map((r) => r.query.nextpage_id ?? null),
        [null, "subPage3", "subPage1"],
        "every page was read, each from the previous one's key",
      );
    } finally {
      await stack.stop();
    }
  });

  test("ARGOS: deleting the only submission keeps the approval", async () => {
    const stack = await startStack();
    try {
      const userid = "user_deleted_0001";
      const submission_id = "subDeleted01";
      stack.standIn.setArgosSubmissions(userid, [{ submission_id, kyc: { result: "approved" } }]);
      await stack.argosWebhook(fixture("approved", { userid, submission_id }));
      await eventually(`${userid} approved`, async () => (await stack.subject("argos", userid)).json?.status === "approved");
      const version = (await stack.row("argos", userid)).version;

      stack.standIn.setArgosSubmissions(userid, []);
      stack.standIn.resetCounts();
      const res = await stack.argosWebhook(fixture("delete", { userid, submission_id }));
      assert.equal(res.status, 200, res.text);
      await eventually("the delete checked at ARGOS", () => stack.standIn.requests().some((r) => r.query.userid === userid));
      await eventually(`a job confirming ${userid}`, () => stack.logLines("job").some((j) => j.ref === userid && j.outcome === "confirmed"));
      await sleep(300);
      const row = await stack.row("argos", userid);
      assert.equal(row.status, "approved", "a deletion never erases a decision");
      assert.equal(row.version, version, "nothing a reader sees changed");
      assert.deepEqual(
        (await changes(stack, "argos", userid)).map((c) => c.to_status),
        ["approved"],
      );
    } finally {
      await stack.stop();
    }
  });
});
