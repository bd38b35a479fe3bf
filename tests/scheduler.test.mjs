// The reconcile scheduler end to end: the cron's budget and order, Retry-After pauses,
// provider health, refreshes and the back-off a subject's next_check_at shows. The cron's
// clock is the scheduled time each test passes; the queue consumer uses the real clock.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { skippedEnabled, startStack } from "./support/stack.mjs";
import { ALIGN_STATUSES, eventually } from "../sandbox/kit.mjs";

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const DAY = 24 * 60 * MINUTE;
const { pending: PENDING, approved: APPROVED } = ALIGN_STATUSES;

/** Subject rows as D1 holds them (the list reads D1). */
async function rows(stack) {
  const res = await stack.api("GET", "/v1/subjects?provider=align&limit=500");
  assert.equal(res.status, 200, res.text);
  return new Map(res.json.subjects.map((s) => [s.ref, s]));
}

async function row(stack, id) {
  return (await rows(stack)).get(id);
}

/** Align customer ids the stand-in was asked about, in arrival order. */
const fetched = (stack) =>
  stack.standIn
    .requests()
    .filter((r) => r.path.startsWith("/v0/customers/"))
    .map((r) => decodeURIComponent(r.path.slice("/v0/customers/".length)));

/** KV writes the worker's jobs made so far (from their log lines' meters). */
const kvWritten = (stack) => stack.logLines("job").reduce((n, line) => n + line.meter.kv_writes, 0);

/** `delay` ± 10 % jitter, from when the check started to a little after it ended. */
function assertDelay(from, to, delay, what) {
  const actual = Date.parse(to) - Date.parse(from);
  assert.ok(
    actual >= delay * 0.9 && actual <= delay * 1.1 + 5 * SECOND,
    `${what}: ${actual} ms is not ${delay} ms ± 10 %`,
  );
}

async function register(stack, ids, truth) {
  for (const id of ids) {
    stack.standIn.setAlign(id, truth);
    const res = await stack.api("PUT", `/v1/subjects/align/${id}`, { body: {} });
    assert.equal(res.status, 201, res.text);
  }
}

/** Waits until every id reads `status` from D1. */
async function learned(stack, ids, status) {
  await eventually(`${ids.length} subjects ${status}`, async () => {
    const all = await rows(stack);
    return ids.every((id) => all.get(id)?.status === status);
  });
}

describe("cron budget", () => {
  test("RECONCILE_BUDGET=5 with 12 due: 5 per run, oldest due first, all 12 after 3 runs", async () => {
    const stack = await startStack({ vars: { WORKERS_PLAN: "paid", RECONCILE_BUDGET: "5" } });
    try {
      assert.equal((await stack.stats()).reconcile_budget, 5);
      const ids = Array.from({ length: 12 }, (_, i) => `budget-${String(i).padStart(2, "0")}`);
      // Their first checks fail, so all 12 come due about a minute later (the first failure
      // back-off, jittered): soon enough to run the cron before a successful check's next
      // one (>= 4.5 min) would make a reconciled subject due again at the same time.
      stack.standIn.failNext(12, { status: 500, provider: "align" });
      await register(stack, ids, PENDING);
      await eventually("12 consecutive Align failures", async () => (await stack.stats()).providers.align.consecutive_failures === 12);
      const before = await rows(stack);
      for (const id of ids) assert.equal(before.get(id).status, "unknown", "a failure never changes a status");
      // Oldest due first; ties by key.
      const order = [...ids].sort((a, b) => {
        const d = Date.parse(before.get(a).next_check_at) - Date.parse(before.get(b).next_check_at);
        return d || (a < b ? -1 : 1);
      });
      const time = Math.max(...ids.map((id) => Date.parse(before.get(id).next_check_at))) + SECOND;
      assert.ok(time < Date.now() + 4 * MINUTE, "the runs happen before any reconciled subject is due again");

      stack.standIn.resetCounts();
      for (const [run, take] of [
        [0, 5],
        [1, 5],
        [2, 2],
      ]) {
        // Several runs at the same scheduled time: each leases what is still due.
        await stack.cron(time);
        const done = 5 * run + take;
        await eventually(`run ${run + 1}: ${done} fetched`, () => fetched(stack).length >= done);
        await learned(stack, order.slice(0, done), "pending");
        const last = (await stack.stats()).last_cron_run;
        assert.equal(last.due, 12 - 5 * run, `run ${run + 1}: due`);
        assert.equal(last.enqueued, take, `run ${run + 1}: enqueued`);
        assert.deepEqual(skippedEnabled(last), [], "nothing skipped");
        assert.deepEqual(
          fetched(stack).slice(5 * run).sort(),
          order.slice(5 * run, done).sort(),
          `run ${run + 1} took the ${take} oldest due`,
        );
      }
      // Nothing left: a fourth run finds nothing due and fetches nothing.
      await stack.cron(time);
      await sleep(1500);
      const last = (await stack.stats()).last_cron_run;
      assert.equal(last.due, 0);
      assert.equal(last.enqueued, 0);
      assert.deepEqual(fetched(stack).sort(), [...ids].sort(), "each subject reconciled exactly once");
      const after = await rows(stack);
      for (const id of ids) assert.equal(after.get(id).status, "pending");
      assert.equal((await stack.stats()).providers.align.consecutive_failures, 0);
    } finally {
      await stack.stop();
    }
  });

  test("the budget never exceeds the plan's cap", async () => {
    for (const [plan, expected] of [
      ["free", 500],
      ["paid", 10_000],
    ]) {
      const stack = await startStack({ vars: { WORKERS_PLAN: plan, RECONCILE_BUDGET: "1000000" } });
      try {
        assert.equal((await stack.stats()).reconcile_budget, expected, plan);
      } finally {
        await stack.stop();
      }
    }
  });
});

describe("provider health", () => {
  test("429 with Retry-After pauses the provider in the cron until it has passed", async () => {
    const stack = await startStack({ vars: { WORKERS_PLAN: "paid" } });
    try {
      const [a, b] = ["pause-a", "pause-b"];
      await register(stack, [a, b], PENDING);
      await learned(stack, [a, b], "pending");
      stack.standIn.failNext(1, { status: 429, retryAfter: 600, provider: "align" });
      const asked = Date.now();
      assert.equal((await stack.api("POST", `/v1/subjects/align/${a}/refresh`)).status, 202);
      const paused = await eventually("Align paused (paused_until set)", async () => (await stack.stats()).providers.align.paused_until);
      const pausedUntil = Date.parse(paused);
      assert.ok(pausedUntil >= asked + 600 * SECOND && pausedUntil <= Date.now() + 600 * SECOND, paused);
      const health = (await stack.stats()).providers.align;
      assert.equal(health.last_error, "HTTP 429");
      const rowA = await row(stack, a);
      assert.equal(rowA.status, "pending", "a failure never changes a status");
      assert.ok(Date.parse(rowA.next_check_at) >= pausedUntil, "Retry-After is a floor for the subject too");

      // b comes due (~5 min after its first check) while Align is paused: nothing is enqueued.
      const rowB = await row(stack, b);
      const whilePaused = Date.parse(rowB.next_check_at) + SECOND;
      assert.ok(whilePaused < pausedUntil);
      stack.standIn.resetCounts();
      await stack.cron(whilePaused);
      let last = (await stack.stats()).last_cron_run;
      assert.deepEqual(skippedEnabled(last), ["align:paused"]);
      assert.equal(last.due, 1, "b is due");
      assert.equal(last.enqueued, 0);
      await sleep(1500);
      assert.deepEqual(fetched(stack), [], "no Align call while paused");
      assert.equal((await row(stack, b)).next_check_at, rowB.next_check_at, "b was not leased");

      // Once the scheduled time passes Retry-After, both are enqueued and the pause clears.
      await stack.cron(pausedUntil + SECOND);
      last = (await stack.stats()).last_cron_run;
      assert.deepEqual(skippedEnabled(last), []);
      assert.equal(last.enqueued, 2);
      await eventually("both subjects fetched", () => fetched(stack).length === 2);
      assert.deepEqual(fetched(stack).sort(), [a, b]);
      await eventually("Align no longer paused", async () => (await stack.stats()).providers.align.paused_until === null);
      const after = (await stack.stats()).providers.align;
      assert.equal(after.paused_until, null);
      assert.equal(after.consecutive_failures, 0);
    } finally {
      await stack.stop();
    }
  });

  test("3 consecutive failures mark the provider degraded; failures keep the status; recovery resets", async () => {
    const stack = await startStack();
    try {
      const id = "health-1";
      await register(stack, [id], APPROVED);
      await learned(stack, [id], "approved");
      const version = (await row(stack, id)).version;
      // The provider flips the decision while its API is failing.
      stack.standIn.setAlign(id, ALIGN_STATUSES.rejected);
      stack.standIn.failNext(3, { status: 500, provider: "align" });
      for (const [failures, backoff] of [
        [1, MINUTE],
        [2, 2 * MINUTE],
        [3, 4 * MINUTE],
      ]) {
        const asked = new Date().toISOString();
        assert.equal((await stack.api("POST", `/v1/subjects/align/${id}/refresh`)).status, 202);
        const health = await eventually(`${failures} Align failures recorded`, async () => {
          const p = (await stack.stats()).providers.align;
          return p.consecutive_failures === failures && p;
        });
        assert.equal(health.degraded, failures >= 3, `degraded after ${failures}`);
        assert.equal(health.last_error, "HTTP 500");
        const now = await row(stack, id);
        assert.equal(now.status, "approved", "a failure never changes the status");
        assert.equal(now.version, version);
        assert.equal((await stack.subject("align", id)).json.status, "approved");
        assertDelay(asked, now.next_check_at, backoff, `failure ${failures} back-off`);
      }
      // The API recovers: the next check learns the flip and the provider is healthy again.
      assert.equal((await stack.api("POST", `/v1/subjects/align/${id}/refresh`)).status, 202);
      await learned(stack, [id], "rejected");
      const health = await eventually("Align's failures cleared", async () => {
        const p = (await stack.stats()).providers.align;
        return p.consecutive_failures === 0 && p;
      });
      assert.equal(health.degraded, false);
      assert.ok(health.last_success_at);
      assert.equal((await stack.subject("align", id)).json.status, "rejected");
    } finally {
      await stack.stop();
    }
  });
});

describe("refresh and back-off", () => {
  test("refresh answers 202 and reconciles the subject; an untracked one is 404", async () => {
    const stack = await startStack();
    try {
      const id = "refresh-1";
      await register(stack, [id], PENDING);
      await learned(stack, [id], "pending");
      stack.standIn.setAlign(id, APPROVED);
      stack.standIn.resetCounts();
      const res = await stack.api("POST", `/v1/subjects/align/${id}/refresh`);
      assert.equal(res.status, 202, res.text);
      assert.equal(res.json.queued, true);
      await learned(stack, [id], "approved");
      assert.deepEqual(fetched(stack), [id]);
      assert.equal((await stack.subject("align", id)).json.status, "approved");

      const missing = await stack.api("POST", "/v1/subjects/align/never-registered/refresh");
      assert.equal(missing.status, 404);
      assert.equal(missing.json.error.code, "not_found");
      assert.equal((await stack.api("POST", "/v1/subjects/nosuch/x/refresh")).status, 404);
      assert.equal((await stack.api("POST", `/v1/subjects/align/${id}/refresh`, { token: null })).status, 401);
    } finally {
      await stack.stop();
    }
  });

  describe("next_check_at", () => {
    const pending = "backoff-pending";
    const approved = "backoff-approved";
    let stack;

    test("after a change 5 min, after an unchanged check of a pending subject 15 min; a decision after 1 h, then a day", async () => {
      stack = await startStack();
      await register(stack, [pending], PENDING);
      await register(stack, [approved], APPROVED);
      await learned(stack, [pending], "pending");
      await learned(stack, [approved], "approved");
      let p = await row(stack, pending);
      let a = await row(stack, approved);
      assertDelay(p.last_checked_at, p.next_check_at, 5 * MINUTE, "pending, just changed");
      assertDelay(a.last_checked_at, a.next_check_at, 60 * MINUTE, "approved: flips come soon after a decision");

      // The cron takes the pending subject when due; its check finds nothing new.
      const time = Date.parse(p.next_check_at) + SECOND;
      const checked = p.last_checked_at;
      const kvWrites = kvWritten(stack);
      await stack.cron(time);
      await eventually("the pending subject checked again", async () => (await row(stack, pending)).last_checked_at !== checked);
      const last = (await stack.stats()).last_cron_run;
      assert.equal(last.enqueued, 1, "the approved subject is not due");
      p = await row(stack, pending);
      assert.equal(kvWritten(stack), kvWrites, "a check that changes nothing a reader sees writes no KV");
      assertDelay(p.last_checked_at, p.next_check_at, 15 * MINUTE, "pending, unchanged");
      assert.equal(p.version, 2, "an unchanged check is not a change");

      // An unchanged check of an approved subject moves it a step further: the next day.
      assert.equal((await stack.api("POST", `/v1/subjects/align/${approved}/refresh`)).status, 202);
      const before = a.last_checked_at;
      await eventually("the approved subject checked again", async () => (await row(stack, approved)).last_checked_at !== before);
      a = await row(stack, approved);
      assertDelay(a.last_checked_at, a.next_check_at, DAY, "approved, unchanged");
    });

    test("GET serves the status from KV and the schedule only from D1 (consistency=strong)", async () => {
      assert.ok(stack, "needs the previous test's stack");
      try {
        for (const id of [pending, approved]) {
          const d1 = await row(stack, id);
          const kv = await stack.subject("align", id);
          assert.equal(kv.headers.get("x-kyc-edge-read"), "kv");
          assert.equal(kv.json.status, d1.status);
          assert.equal(kv.json.version, d1.version);
          assert.equal(kv.json.next_check_at, undefined, "KV is not rewritten by every check");
          const strong = await stack.api("GET", `/v1/subjects/align/${id}?consistency=strong`);
          assert.equal(strong.headers.get("x-kyc-edge-read"), "d1");
          assert.equal(strong.json.last_checked_at, d1.last_checked_at, `${id}: last_checked_at`);
          assert.equal(strong.json.next_check_at, d1.next_check_at, `${id}: next_check_at`);
        }
      } finally {
        await stack.stop();
      }
    });
  });
});
