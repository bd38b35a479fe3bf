// Notifications to the application, end to end: the compiled worker in workerd with local
// D1/KV/Queue, a stand-in Align API, and a stand-in application endpoint that verifies every
// request with the official `standardwebhooks` package (never kyc-edge's signer).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { startStack } from "./support/stack.mjs";
import { ALIGN_STATUSES, eventually, kycsUpdated, startSink } from "../sandbox/kit.mjs";

// Secrets as `openssl rand -base64 32` prints them, with the Standard Webhooks prefix.
const SECRET = "whsec_R4mMtD8u9t0mMX3bqm1Q7ugO8hbRdeuCqkzFgVDBo4E=";
const NEXT_SECRET = "whsec_9x0Tg1HuxJ8n0ZqDqCvQ2aY3v6m8x1pW5TzLg0b7k9c=";

const { approved: APPROVED, pending: PENDING } = ALIGN_STATUSES;

async function notificationsOf(stack, ref, state) {
  const query = `/v1/notifications?subject=align/${ref}${state ? `&state=${state}` : ""}`;
  const res = await stack.api("GET", query);
  assert.equal(res.status, 200, res.text);
  return res.json.notifications;
}

/** Requests the app received about `ref`. */
const about = (app, ref) => app.received().filter((r) => r.ref === ref);

/**
 * Starts, for the enclosing `describe`, an application endpoint and a worker notifying it with
 * notifications retried for `maxAgeSeconds`. The returned object's `app` and `stack` are set
 * once `before` has run.
 */
function notifyingStack(maxAgeSeconds) {
  const env = {};
  before(async () => {
    env.app = await startSink({ secrets: [SECRET] });
    env.stack = await startStack({
      vars: { APP_WEBHOOK_URL: env.app.url, APP_WEBHOOK_SECRET: SECRET, NOTIFY_MAX_AGE_SECONDS: String(maxAgeSeconds) },
    });
  });
  after(async () => {
    await env.stack.stop();
    await env.app.stop();
  });
  return env;
}

describe("notifications", () => {
  // Long enough that no retry in these tests meets the deadline, however slow the machine.
  const env = notifyingStack(120);

  test("an approved Align webhook is told to the application once, validly signed, without PII", async () => {
    const { app, stack } = env;
    const id = "notify-approved-0001";
    const res = await stack.alignWebhook(kycsUpdated(id, APPROVED));
    assert.equal(res.status, 200, res.text);
    await eventually(`a notification about ${id}`, () => about(app, id).length >= 1);
    // Later checks confirm the status: nothing more to tell.
    stack.standIn.setAlign(id, APPROVED);
    await stack.cron(Date.now() + 60_000);
    await sleep(1500);
    const received = about(app, id);
    assert.equal(new Set(received.map((r) => r.id)).size, 1, "one logical notification");
    const [first] = received;
    assert.deepEqual(first.verified, [true], "the official verifier accepts the signature");
    assert.match(first.id, /^msg_\d+_[0-9a-z]+$/);
    assert.ok(Math.abs(first.timestamp - Date.now() / 1000) < 30, "webhook-timestamp is the attempt's");
    assert.equal(first.type, "kyc.status.changed");
    const data = first.body.data;
    assert.deepEqual(
      [data.provider, data.ref, data.status, data.previous_status, data.source, data.version],
      ["align", id, "approved", "unknown", "webhook", 2],
    );
    assert.ok(!first.raw.includes("ada.lovelace") && !first.raw.includes("Lovelace"), "no PII in the body");
    const stored = await eventually(`${id}'s notification delivered`, async () => {
      const [n] = await notificationsOf(stack, id);
      return n.state === "delivered" && n;
    });
    assert.equal(stored.id, first.id);
    assert.equal(stored.state, "delivered");
    assert.equal(stored.attempts, 1);
  });

  test("500 and 503 then 200: delivered, with the same webhook-id every time", async () => {
    const { app, stack } = env;
    const id = "notify-retry-0002";
    app.respond(id, [500, 503]);
    await stack.alignWebhook(kycsUpdated(id, APPROVED));
    await eventually(`${id}'s notification answered 200 after the retries`, () => about(app, id).some((r) => r.status === 200), { timeoutMs: 60_000 });
    const received = about(app, id);
    assert.deepEqual(received.map((r) => r.status), [500, 503, 200]);
    assert.equal(new Set(received.map((r) => r.id)).size, 1, "stable across retries");
    assert.ok(received.every((r) => r.verified[0]));
    assert.ok(received[1].arrivedAt - received[0].arrivedAt >= 4_000, "backed off about 5 s");
    assert.ok(received[2].timestamp >= received[1].timestamp, "each attempt carries its own timestamp");
    const stored = await eventually(`${id}'s notification delivered`, async () => {
      const [n] = await notificationsOf(stack, id);
      return n.state === "delivered" && n;
    });
    assert.deepEqual([stored.state, stored.attempts, stored.last_response], ["delivered", 3, "HTTP 200"]);
  });

  test("two quick changes of one subject arrive in order, the newer waiting for the older", async () => {
    const { app, stack } = env;
    const id = "notify-order-0004";
    const t = Date.now();
    // The first notification is refused once: the second must wait for its retry.
    app.respond(id, [503]);
    await stack.alignWebhook(kycsUpdated(id, { ...PENDING, createdAt: new Date(t - 2000) }));
    await stack.alignWebhook(kycsUpdated(id, { ...APPROVED, createdAt: new Date(t - 1000) }));
    await eventually(`both of ${id}'s notifications delivered`, () => about(app, id).filter((r) => r.status === 200).length === 2, { timeoutMs: 30_000 });
    const received = about(app, id);
    assert.deepEqual(
      received.map((r) => [r.version, r.status]),
      [
        [2, 503],
        [2, 200],
        [3, 200],
      ],
      "the newer one was not sent before the older one was delivered",
    );
    assert.deepEqual(received.map((r) => r.body.data.status), ["pending", "pending", "approved"]);
  });

  test("a lost queue message delays a notification but never loses it", async () => {
    const { app, stack } = env;
    const id = "notify-restart-0005";
    app.respond(id, [503]);
    await stack.alignWebhook(kycsUpdated(id, APPROVED));
    await eventually(`the first attempt about ${id}`, () => about(app, id).length === 1);
    // The retry waits in the queue for ~5 s: a restart loses it.
    await stack.worker.restart();
    await sleep(7_000);
    assert.equal(about(app, id).length, 1, "the queued retry died with the old instance");
    // The cron finds the notification due and sends it again.
    await stack.cron(Date.now());
    await eventually(`${id}'s notification delivered after the restart`, () => about(app, id).some((r) => r.status === 200));
    assert.equal(new Set(about(app, id).map((r) => r.id)).size, 1);
  });
});

describe("notifications that keep failing", () => {
  // 4 s is less than the first retry delay (5 s ± 20 %): the second failure is past the
  // deadline whatever the timing, so the notification dies after at most two attempts.
  const env = notifyingStack(4);

  test("failing past NOTIFY_MAX_AGE_SECONDS: dead, listed, and redelivered once the app recovers", async () => {
    const { app, stack } = env;
    const id = "notify-dead-0003";
    app.respond(id, Array(20).fill(500));
    await stack.alignWebhook(kycsUpdated(id, APPROVED));
    const dead = await eventually(`${id}'s notification dead after two attempts`, async () => (await notificationsOf(stack, id, "dead"))[0], {
      timeoutMs: 40_000,
      intervalMs: 500,
    });
    assert.equal(dead.last_response, "HTTP 500");
    const listed = (await stack.api("GET", "/v1/notifications?state=dead")).json.notifications;
    assert.ok(listed.some((n) => n.id === dead.id));
    assert.ok((await stack.stats()).notifications.dead >= 1);
    const attempts = about(app, id).length;
    // The app recovers; an operator sends it again.
    app.recover(id);
    const redelivered = await stack.api("POST", `/v1/notifications/${dead.id}/redeliver`);
    assert.equal(redelivered.status, 202, redelivered.text);
    await eventually(`the redelivery about ${id} answered 200`, () => about(app, id).some((r) => r.status === 200));
    const last = about(app, id).at(-1);
    assert.equal(last.id, dead.id, "the same webhook-id");
    assert.equal(about(app, id).length, attempts + 1);
    await eventually(`${id}'s notification delivered`, async () => (await notificationsOf(stack, id))[0].state === "delivered");
    const unknown = await stack.api("POST", "/v1/notifications/msg_999999_abc/redeliver");
    assert.equal(unknown.status, 404);
  });
});

describe("notifications when the application answers 410 Gone", () => {
  test("delivery is disabled, visible in stats, and resumes once re-enabled", async () => {
    const app = await startSink({ secrets: [SECRET] });
    const stack = await startStack({ vars: { APP_WEBHOOK_URL: app.url, APP_WEBHOOK_SECRET: SECRET } });
    try {
      app.respondAlways(410);
      await stack.alignWebhook(kycsUpdated("gone-0001", APPROVED));
      await eventually("notifications disabled after the 410", async () => (await stack.stats()).notifications.disabled);
      const { notifications } = await stack.stats();
      assert.equal(notifications.disabled.reason, "HTTP 410");
      // Later changes are recorded but not sent while disabled.
      await stack.alignWebhook(kycsUpdated("gone-0002", APPROVED));
      await eventually("two notifications pending while disabled", async () => (await stack.stats()).notifications.pending === 2);
      await stack.cron(Date.now() + 60_000);
      await sleep(1500);
      assert.equal(app.received().length, 1, "nothing sent while disabled");
      app.respondAlways(null);
      const enabled = await stack.api("POST", "/v1/notifications/enable");
      assert.equal(enabled.status, 200, enabled.text);
      assert.deepEqual([enabled.json.was_disabled, enabled.json.queued], [true, 2]);
      await eventually("both notifications delivered once enabled again", async () => (await stack.stats()).notifications.delivered === 2);
      const stats = (await stack.stats()).notifications;
      assert.deepEqual([stats.disabled, stats.pending], [null, 0]);
      assert.deepEqual(
        app.received().filter((r) => r.status === 200).map((r) => r.ref).sort(),
        ["gone-0001", "gone-0002"],
      );
    } finally {
      await stack.stop();
      await app.stop();
    }
  });
});

describe("notifications during a secret rotation", () => {
  test("with two secrets configured, each request verifies under either one alone", async () => {
    const app = await startSink({ secrets: [SECRET, NEXT_SECRET] });
    const stack = await startStack({
      vars: { APP_WEBHOOK_URL: app.url, APP_WEBHOOK_SECRET: `${SECRET} ${NEXT_SECRET}` },
    });
    try {
      await stack.alignWebhook(kycsUpdated("rotate-0001", APPROVED));
      await eventually("the notification signed under both secrets", () => app.received().length === 1);
      const [request] = app.received();
      assert.deepEqual(request.verified, [true, true]);
      assert.equal(request.signature.split(" ").length, 2, "one v1 signature per secret");
    } finally {
      await stack.stop();
      await app.stop();
    }
  });
});

describe("notifications without APP_WEBHOOK_URL", () => {
  test("are recorded and listed, not sent; nothing fails", async () => {
    const stack = await startStack();
    try {
      await stack.alignWebhook(kycsUpdated("unsent-0001", APPROVED));
      const pending = await eventually("unsent-0001's notification recorded", async () => (await notificationsOf(stack, "unsent-0001"))[0]);
      assert.equal(pending.state, "pending");
      assert.equal(pending.attempts, 0);
      assert.equal(pending.payload.data.status, "approved");
      await stack.cron(Date.now() + 60_000);
      const stats = (await stack.stats()).notifications;
      assert.deepEqual([stats.delivery, stats.pending], ["not configured", 1]);
      assert.equal(stats.oldest_undelivered_age_seconds, null, "nothing is late when nothing is sent");
      assert.ok(stack.logLines("job").every((j) => j.verdict === "ack"), "no job failed");
    } finally {
      await stack.stop();
    }
  });
});
