// The shared JS kit (sandbox/kit.mjs) on its own, no worker: a wait that times out fails with
// what it waited for, the sink verifies with the official library, and no helper of the kit
// is defined again anywhere in tests/, sandbox/, bench/ or scripts/.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { Webhook } from "standardwebhooks";
import * as kit from "../sandbox/kit.mjs";
import { ALIGN_STATUSES, WaitTimeout, eventually, fetchJson, kycsUpdated, pool, startSink, sumsubEvent } from "../sandbox/kit.mjs";

const ROOT = new URL("..", import.meta.url).pathname;
const SECRET = "whsec_R4mMtD8u9t0mMX3bqm1Q7ugO8hbRdeuCqkzFgVDBo4E=";
const OTHER = "whsec_9x0Tg1HuxJ8n0ZqDqCvQ2aY3v6m8x1pW5TzLg0b7k9c=";

describe("eventually", () => {
  test("returns the first truthy value", async () => {
    let n = 0;
    assert.equal(await eventually("three checks", () => (++n >= 3 ? n : 0), { intervalMs: 1 }), 3);
  });

  test("throws on timeout, naming what did not happen and the last value", async () => {
    await assert.rejects(
      eventually("subject c-1 approved", () => false, { timeoutMs: 30, intervalMs: 5 }),
      (error) => error instanceof WaitTimeout && /waiting for subject c-1 approved \(last check: false\)/.test(error.message),
    );
  });

  test("a description may be computed when it fails", async () => {
    await assert.rejects(
      eventually(async (last) => `the queue empty (still ${last})`, () => 0, { timeoutMs: 10, intervalMs: 5 }),
      /waiting for the queue empty \(still 0\)/,
    );
  });
});

test("pool keeps at most `width` in flight and returns the results in order", async () => {
  let inFlight = 0;
  let most = 0;
  const results = await pool([5, 1, 4, 2, 3], 2, async (ms, i) => {
    most = Math.max(most, ++inFlight);
    await new Promise((resolve) => setTimeout(resolve, ms));
    inFlight -= 1;
    return i * 10;
  });
  assert.deepEqual(results, [0, 10, 20, 30, 40]);
  assert.equal(most, 2);
});

test("the sink verifies each notification with standardwebhooks, once per secret, and answers as scripted", async () => {
  const sink = await startSink({ secrets: [SECRET, OTHER] });
  try {
    const raw = JSON.stringify({ type: "subject.status_changed", data: { ref: "c-1", version: 2 } });
    const id = "msg_kit_0001";
    const at = new Date();
    const signature = new Webhook(SECRET).sign(id, at, raw);
    const headers = { "content-type": "application/json", "webhook-id": id, "webhook-timestamp": String(Math.floor(at / 1000)), "webhook-signature": signature };
    sink.respond("c-1", [503]);
    assert.equal((await fetchJson(sink.url, { method: "POST", headers, body: raw })).status, 503);
    assert.equal((await fetchJson(sink.url, { method: "POST", headers, body: raw })).status, 200);
    const forged = await fetchJson(sink.url, { method: "POST", headers: { ...headers, "webhook-signature": "v1,AAAA" }, body: raw });
    assert.equal(forged.status, 200, "the sink records; the test judges");
    const [first, second, third] = sink.received();
    assert.deepEqual([first.id, first.ref, first.version, first.status], [id, "c-1", 2, 503]);
    assert.deepEqual(first.verified, [true, false], "signed under the first secret only");
    assert.equal(second.status, 200);
    assert.deepEqual(third.verified, [false, false]);
  } finally {
    await sink.stop();
  }
});

test("bodies carry the status words", () => {
  const align = kycsUpdated("c-1", ALIGN_STATUSES.resubmission_required);
  assert.deepEqual([align.entity_object.kycs.status, align.entity_object.kycs.sub_status], ["rejected", "kyc_form_resubmission_required"]);
  assert.equal(kycsUpdated("c-1", { ...ALIGN_STATUSES.approved, withObject: false }).entity_object, undefined);
  const sumsub = sumsubEvent("applicantReviewed", "u-1", { review: { reviewStatus: "completed", reviewAnswer: "RED", reviewRejectType: "RETRY" } });
  assert.deepEqual([sumsub.externalUserId, sumsub.reviewStatus, sumsub.reviewResult], ["u-1", "completed", { reviewAnswer: "RED", reviewRejectType: "RETRY" }]);
});

test("no helper of the kit is defined again in tests/, sandbox/, bench/ or scripts/", async () => {
  const names = Object.keys(kit);
  const definition = new RegExp(`^\\s*(?:export\\s+)?(?:async\\s+)?(?:function\\s+|const\\s+|let\\s+|class\\s+)(${names.join("|")})\\b`, "m");
  const copies = [];
  for (const dir of ["tests", "sandbox", "bench", "scripts"]) {
    const entries = await readdir(join(ROOT, dir), { recursive: true, withFileTypes: true });
    for (const entry of entries) {
      if (!entry.isFile() || !/\.(mjs|js)$/.test(entry.name) || entry.parentPath.includes("node_modules")) continue;
      const path = join(entry.parentPath, entry.name);
      if (path === join(ROOT, "sandbox", "kit.mjs")) continue;
      const match = (await readFile(path, "utf8")).match(definition);
      if (match) copies.push(`${relative(ROOT, path)}: ${match[1]}`);
    }
  }
  assert.deepEqual(copies, [], "import these from sandbox/kit.mjs instead");
});
