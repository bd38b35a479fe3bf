// Convergence under loss: the compiled worker against a stand-in Align API that holds the
// truth for 240 subjects. Over several rounds the truth changes, and the stand-in delivers
// only some of the webhooks (~30 % dropped, ~20 % duplicated, all shuffled, some late), answers
// some API calls with 500/429, and the worker is restarted once mid-run on the same state.
// Cron runs (via /cdn-cgi/handler/scheduled) must bring every subject to the truth, and the
// drift counter must equal exactly the number of changes whose webhooks were all dropped, once
// the cron has settled every suspicion (a change is suspected drift until late webhooks had
// 10 minutes to arrive).
//
// Each round ends only when every subject holds the truth and has had a successful check
// after that round's webhooks (cron runs repeat until then), and a subject changes at most
// once per round: so every change is seen by either its webhook or the next poll, and a poll
// finds a change unannounced exactly when all of that change's webhooks were dropped.
//
// Deterministic: every random choice comes from a seeded PRNG (CONVERGENCE_SEED overrides
// the seed, to explore other schedules; the seed is printed with every failure).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { prng } from "../sandbox/providers.mjs";
import { startStack } from "./support/stack.mjs";
import { ALIGN_STATUSES, kycsUpdated, pool } from "../sandbox/kit.mjs";

const SEED = Number(process.env.CONVERGENCE_SEED ?? 20260422);
const SUBJECTS = 240;
const ROUNDS = 8;
const CHANGE_RATE = 0.35;
const DROP_RATE = 0.3;
const DUPLICATE_RATE = 0.2;
/** Late re-sends of an earlier round's webhook (a duplicate, or a stale first delivery). */
const LATE_RATE = 0.08;
/** The same, for a subject holding a dropped body that claims a status it has since left. */
const OUTDATED_LATE_RATE = 0.5;
const FAULT_ROUNDS = new Set([3, 4, 7]);
const FAULT_RATE = 0.15;
/** The worker is restarted right after this round's cron run was triggered. */
const RESTART_ROUND = 5;
/** Cron runs allowed per round before giving up on convergence. */
const MAX_RUNS_PER_ROUND = 12;

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

/** Status changes a provider makes (every one changes the normalized status). */
const NEXT = {
  not_started: ["pending"],
  pending: ["approved", "rejected", "resubmission_required"],
  resubmission_required: ["pending", "rejected"],
  approved: ["rejected"], // decisions flip
  rejected: ["approved", "pending"],
};

const pick = (random, list) => list[Math.floor(random() * list.length)];

/** The skew between the provider's clock and ours that kyc-edge tolerates (CLOCK_TOLERANCE). */
const CLOCK_TOLERANCE_MS = 60_000;

/** When the provider dated a body. */
const datedAt = (raw) => Date.parse(JSON.parse(raw).created_at);

/** The normalized status a webhook body claims, or null when it carries no entity_object. */
function claimed(raw) {
  const kycs = JSON.parse(raw).entity_object?.kycs;
  if (!kycs) return null;
  return kycs.status === "rejected" && kycs.sub_status === "kyc_form_resubmission_required" ? "resubmission_required" : kycs.status;
}

function shuffle(random, items) {
  for (let i = items.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
  return items;
}

describe("convergence under dropped, duplicated and reordered webhooks, faults and a restart", () => {
  let stack;
  const random = prng(SEED);
  const ids = Array.from({ length: SUBJECTS }, (_, i) => `conv-${String(i).padStart(4, "0")}`);
  /** id → normalized status the stand-in holds. */
  const truth = new Map();
  /** id → raw bodies of the subject's changes so far (delivered or not), for late re-sends. */
  const history = new Map();
  /** Raw bodies the worker has seen at least once (dedup is by body). */
  const seenBodies = new Set();
  const expected = { drift: 0, accepted: 0, duplicate: 0, changes: 0, dropped: 0, late: 0, outdated: 0 };
  /** id → number of changes whose webhooks were all dropped. */
  const driftBySubject = new Map();
  let lastCronTime = 0;
  let runs = 0;

  const note = (message) => `${message} (seed ${SEED})`;

  /** The cron's clock: far enough ahead that every subject is due (terminal ones are
   * re-checked weekly), never behind the last run plus a lease (so subjects whose job a
   * restart lost are offered again), and within the 30-day event retention, which the cron
   * prunes against its own clock. */
  async function cron() {
    const time = Math.max(Date.now() + 8 * DAY, lastCronTime + 16 * MINUTE);
    lastCronTime = time;
    runs += 1;
    await stack.cron(time);
    return time;
  }

  async function listAll() {
    const rows = [];
    let cursor;
    for (;;) {
      const query = `/v1/subjects?provider=align&limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
      const res = await stack.api("GET", query);
      assert.equal(res.status, 200, res.text);
      rows.push(...res.json.subjects);
      if (!res.json.next_cursor) return rows;
      cursor = res.json.next_cursor;
    }
  }

  /** Quiet: nothing the worker does is visible for `quietMs` (stand-in requests, stats,
   * every subject row). A queue batch waits at most 1 s before it is delivered. */
  async function settle({ quietMs = 1500, timeoutMs = 60_000 } = {}) {
    const deadline = Date.now() + timeoutMs;
    let last;
    let since = Date.now();
    for (;;) {
      const [stats, rows] = await Promise.all([stack.stats(), listAll()]);
      const fingerprint = JSON.stringify([stack.standIn.requests().length, stats, rows]);
      if (fingerprint !== last) {
        last = fingerprint;
        since = Date.now();
      } else if (Date.now() - since >= quietMs) {
        return stats;
      }
      if (Date.now() > deadline) throw new Error(note("the worker never went quiet"));
      await sleep(250);
    }
  }

  /** Every subject holds the truth and had a successful check after `since` (so the
   * webhooks of this round are behind every subject's last check). */
  async function converged(since) {
    const rows = await listAll();
    const byId = new Map(rows.map((r) => [r.ref, r]));
    const behind = ids.filter((id) => {
      const row = byId.get(id);
      const words = ALIGN_STATUSES[truth.get(id)];
      return (
        !row ||
        row.status !== truth.get(id) ||
        row.sub_status !== words.sub_status ||
        !row.last_checked_at ||
        Date.parse(row.last_checked_at) <= since
      );
    });
    return { ok: behind.length === 0, behind };
  }

  /** Cron runs until every subject holds the truth; returns how many runs it took. */
  async function convergeRound(round, since, { alreadyTriggered = false } = {}) {
    let used = alreadyTriggered ? 1 : 0;
    for (;;) {
      await settle();
      const state = await converged(since);
      if (state.ok) return used;
      if (used >= MAX_RUNS_PER_ROUND) {
        const sample = (await listAll()).filter((r) => state.behind.includes(r.ref)).slice(0, 5);
        assert.fail(
          note(`round ${round}: ${state.behind.length} subjects still behind after ${used} cron runs, e.g. ${JSON.stringify(sample)}`),
        );
      }
      await cron();
      used += 1;
    }
  }

  /** On a drift mismatch: which subjects were counted differently, from their history. */
  async function driftDiagnosis() {
    const lines = [];
    await pool(ids, 8, async (id) => {
      const { events } = (await stack.api("GET", `/v1/subjects/align/${id}/events`)).json;
      const counted = events.filter((e) => e.type === "change" && e.drift).length;
      const want = driftBySubject.get(id) ?? 0;
      if (counted !== want) lines.push(`${id}: counted ${counted}, expected ${want}: ${JSON.stringify(events)}`);
    });
    return lines.slice(0, 8).join("\n");
  }

  /** A change found by polling is suspected drift until late webhooks have had DRIFT_GRACE
   * (10 minutes) to arrive: a cron run scheduled past that settles every suspicion. */
  async function settleDrift() {
    await stack.cron(Date.now() + 11 * 60_000);
    return settle();
  }

  async function assertDrift(where) {
    const stats = await settleDrift();
    assert.equal(Object.values(stats.drift_suspected).reduce((a, b) => a + b, 0), 0, "every suspicion settled");
    if (stats.drift.align !== expected.drift) {
      assert.fail(note(`${where}: drift.align ${stats.drift.align}, expected ${expected.drift}\n${await driftDiagnosis()}`));
    }
  }

  before(async () => {
    stack = await startStack({ vars: { WORKERS_PLAN: "paid" } });
  });
  after(() => stack?.stop());

  test("registration: the first status learned is never drift", async () => {
    for (const id of ids) {
      const status = random() < 0.5 ? "not_started" : "pending";
      truth.set(id, status);
      stack.standIn.setAlign(id, ALIGN_STATUSES[status]);
    }
    const started = Date.now();
    const created = await pool(ids, 8, (id) => stack.api("PUT", `/v1/subjects/align/${id}`, { body: { external_id: `user-${id}` } }));
    for (const res of created) assert.equal(res.status, 201, res.text);
    // PUT queues a first reconcile; a cron run covers any the queue has not done yet.
    await convergeRound(0, started - 1);
    await assertDrift("after registration");
    const stats = await stack.stats();
    assert.equal(stats.drift.align, 0);
    assert.equal(stats.subjects.align.unknown, undefined, "every subject learned its status");
  });

  for (let round = 1; round <= ROUNDS; round += 1) {
    const faults = FAULT_ROUNDS.has(round);
    const restart = round === RESTART_ROUND;
    const label = `round ${round}:${faults ? " provider faults," : ""}${restart ? " worker restart," : ""} the truth changes, webhooks are lossy`;
    test(label, async () => {
      // 1. The provider changes the truth for a random subset (each subject at most once).
      const deliveries = [];
      const changed = new Set();
      const thisRound = [];
      for (const id of ids) {
        if (random() >= CHANGE_RATE) continue;
        const next = pick(random, NEXT[truth.get(id)]);
        truth.set(id, next);
        stack.standIn.setAlign(id, ALIGN_STATUSES[next]);
        changed.add(id);
        expected.changes += 1;
        // The provider's own timestamp: after everything the worker observed so far.
        const body = kycsUpdated(id, { ...ALIGN_STATUSES[next], createdAt: new Date(), withObject: random() < 0.5 });
        const raw = JSON.stringify(body);
        thisRound.push([id, raw]);
        if (random() < DROP_RATE) {
          expected.dropped += 1;
          expected.drift += 1;
          driftBySubject.set(id, (driftBySubject.get(id) ?? 0) + 1);
          continue;
        }
        deliveries.push({ id, raw });
        if (random() < DUPLICATE_RATE) deliveries.push({ id, raw });
      }
      // 2. Late re-sends of an earlier round's body, shuffled in with this round's: a
      // duplicate when the worker saw it before (it must not move the status), else the late
      // first delivery of a dropped one, often claiming a status the subject has since left
      // (it must not move the status back). Only for subjects that did not change now: either
      // kind makes the subject due, and its fetch would race this round's own webhook for the
      // subject (a change found before its webhook arrives is drift), and a late body that
      // announces "some change" would announce this round's change.
      for (const id of ids) {
        const earlier = changed.has(id) ? [] : (history.get(id) ?? []);
        if (earlier.length === 0) continue;
        // A first delivery dated less than the tolerated clock skew before the subject's
        // latest change cannot be told from a webhook of the next change (docs/ordering.md,
        // "Drift"): the provider's clock may be that far behind ours. Late first deliveries
        // here are older than that, as a provider's retries are.
        const latestChange = Math.max(...earlier.map(datedAt));
        const resendable = earlier.filter((body) => seenBodies.has(body) || datedAt(body) < latestChange - CLOCK_TOLERANCE_MS);
        if (resendable.length === 0) continue;
        const unseen = resendable.filter((body) => !seenBodies.has(body));
        // A dropped body claiming a status the subject has since left is the late delivery
        // that could do harm: send those more often.
        const outdated = unseen.filter((body) => claimed(body) !== null && claimed(body) !== truth.get(id));
        if (random() >= (outdated.length > 0 ? OUTDATED_LATE_RATE : LATE_RATE)) continue;
        const raw =
          outdated.length > 0 ? pick(random, outdated) : unseen.length > 0 && random() < 0.5 ? pick(random, unseen) : pick(random, resendable);
        deliveries.push({ id, raw, late: true });
        expected.late += 1;
        // A first delivery claiming a status the subject has left: it must stay unapplied.
        if (!seenBodies.has(raw) && claimed(raw) !== null && claimed(raw) !== truth.get(id)) expected.outdated += 1;
      }
      for (const [id, raw] of thisRound) history.set(id, [...(history.get(id) ?? []), raw]);

      // 3. Delivery: shuffled, several at a time.
      const requestsBefore = stack.standIn.requests().length;
      shuffle(random, deliveries);
      if (faults) {
        stack.standIn.setFaultRate(FAULT_RATE, { status: [500, 429], retryAfter: 1, provider: "align", seed: SEED + round });
      }
      /** Bodies the worker has not seen before: each must be answered as new exactly once. */
      const firstSeen = new Set(deliveries.map((d) => d.raw).filter((raw) => !seenBodies.has(raw)));
      const responses = await pool(deliveries, 8, (d) => stack.alignWebhook(d.raw));
      const deliveredAt = Date.now();
      const newPerBody = new Map();
      responses.forEach((res, i) => {
        assert.equal(res.status, 200, res.text);
        const raw = deliveries[i].raw;
        if (!res.json.duplicate) newPerBody.set(raw, (newPerBody.get(raw) ?? 0) + 1);
      });
      for (const d of deliveries) {
        const accepted = newPerBody.get(d.raw) ?? 0;
        assert.equal(accepted, firstSeen.has(d.raw) ? 1 : 0, note(`${d.id}: a body is new exactly once`));
      }
      expected.accepted += firstSeen.size;
      expected.duplicate += deliveries.length - firstSeen.size;
      for (const raw of firstSeen) seenBodies.add(raw);

      // 4. Reconciliation: cron runs until every subject holds the truth.
      let used;
      let restartNote = "";
      if (restart) {
        // Jobs already queued (webhook and cron ones) may die with the old instance: the
        // webhook made its subject due and the cron leased the rest, so later runs find them.
        await cron();
        await stack.worker.restart();
        const run = (await settle()).last_cron_run;
        restartNote = `, restart right after a run that enqueued ${run.enqueued} jobs`;
        used = await convergeRound(round, deliveredAt, { alreadyTriggered: true });
      } else {
        await settle();
        await cron();
        used = await convergeRound(round, deliveredAt, { alreadyTriggered: true });
      }
      stack.standIn.setFaultRate(0);
      const log = stack.standIn.requests().slice(requestsBefore);
      const faulted = log.filter((r) => r.status === 500 || r.status === 429).length;
      if (faults) assert.ok(faulted > 0, "the stand-in injected faults this round");
      else assert.equal(faulted, 0);
      const dropped = [...changed].filter((id) => !deliveries.some((d) => d.id === id)).length;
      console.log(
        `round ${round}: ${changed.size} changes, ${dropped} dropped, ${deliveries.length} deliveries ` +
          `(${deliveries.length - firstSeen.size} duplicate), ${log.length} API calls (${faulted} faulted), ${used} cron runs${restartNote}`,
      );
      await assertDrift(`after round ${round} (${changed.size} changes, ${deliveries.length} deliveries, ${used} cron runs)`);
    });
  }

  test("the end state: every subject equals the truth, drift equals the dropped changes", async () => {
    const stats = await settleDrift();
    // Read back through the API, subject by subject (KV first), and through the list (D1).
    const reads = await pool(ids, 16, (id) => stack.subject("align", id));
    reads.forEach((res, i) => {
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.status, truth.get(ids[i]), note(`${ids[i]} via GET`));
    });
    const rows = await listAll();
    assert.equal(rows.length, SUBJECTS);
    for (const row of rows) assert.equal(row.status, truth.get(row.ref), note(`${row.ref} via list`));
    const histogram = {};
    for (const status of truth.values()) histogram[status] = (histogram[status] ?? 0) + 1;
    assert.deepEqual(stats.subjects.align, histogram);

    assert.ok(expected.changes >= 400, `enough changes to mean something (${expected.changes})`);
    assert.ok(expected.dropped > 0 && expected.duplicate > 0 && expected.late > 0 && expected.outdated > 0);
    assert.equal(stats.drift.align, expected.drift, note("drift = changes whose webhooks were all dropped"));
    assert.equal(stats.drift.argos, 0);
    assert.equal(stats.webhooks.align.accepted, expected.accepted, note("accepted = distinct bodies"));
    assert.equal(stats.webhooks.align.duplicate, expected.duplicate, note("duplicate = repeated deliveries"));
    console.log(
      `convergence seed ${SEED}: ${SUBJECTS} subjects, ${expected.changes} changes, ${expected.dropped} dropped (drift ${stats.drift.align}), ` +
        `${expected.accepted} webhooks accepted, ${expected.duplicate} duplicates, ${expected.late} late ` +
        `(${expected.outdated} first deliveries of an outdated status), ${runs} cron runs`,
    );

    // Status counts move when a cron run folds the change rows: the run that folds a change
    // already records it in its statuses (what /v1/stats shows as the last run).
    const flipped = ids[0];
    const next = NEXT[truth.get(flipped)][0];
    histogram[truth.get(flipped)] -= 1;
    if (histogram[truth.get(flipped)] === 0) delete histogram[truth.get(flipped)];
    histogram[next] = (histogram[next] ?? 0) + 1;
    truth.set(flipped, next);
    stack.standIn.setAlign(flipped, ALIGN_STATUSES[next]);
    const flip = await stack.alignWebhook(JSON.stringify(kycsUpdated(flipped, { ...ALIGN_STATUSES[next], createdAt: new Date() })));
    assert.equal(flip.status, 200, flip.text);
    await stack.reaches("align", flipped, next);
    assert.deepEqual((await stack.stats()).subjects.align, histogram, "stats count the change before any fold");
    // After every run so far (the rounds scheduled theirs ahead of the clock): the newest.
    const [latest] = (await stack.api("GET", "/v1/runs?limit=1")).json.runs;
    const time = Math.max(Date.now(), Date.parse(latest.scheduled_at)) + 60_000;
    await stack.cron(time);
    const [run] = (await stack.api("GET", "/v1/runs?limit=1")).json.runs;
    assert.equal(Date.parse(run.scheduled_at), time);
    const recorded = Object.fromEntries(Object.entries(run.statuses.align).filter(([, n]) => n !== 0));
    assert.deepEqual(recorded, histogram, "the run that folded the change counts it");
  });
});
