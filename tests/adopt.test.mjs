// Adopting kyc-edge on a live product, end to end: 5,000 users imported with the script (a
// batch re-sent after its answer was lost, a run resumed after it gave up), first checks
// spread over cron runs within the budget, ARGOS and Align backfills across pages and a worker
// restart, and no PII from the providers' pages anywhere in D1 or KV.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createServer, request } from "node:http";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { API_TOKEN, startStack } from "./support/stack.mjs";
import { eventually } from "../sandbox/kit.mjs";
import { readPersistedFiles } from "./support/worker.mjs";
import { argosTime } from "../sandbox/providers.mjs";

const ROOT = new URL("..", import.meta.url).pathname;
const MINUTE = 60_000;

/**
 * A proxy in front of the worker that can lose answers: `loseAnswerOf(n)` forwards the n-th
 * batch (1-based) and drops the connection instead of answering; `failFrom(n)` answers 503 to
 * the n-th batch and every later one. `batches()` counts batch requests that reached it.
 */
async function startProxy(target) {
  let count = 0;
  let lose = 0;
  let failFrom = Infinity;
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      count += 1;
      if (count >= failFrom) {
        res.writeHead(503).end();
        return;
      }
      const upstream = request(`${target}${req.url}`, { method: req.method, headers: req.headers }, (answer) => {
        const body = [];
        answer.on("data", (c) => body.push(c));
        answer.on("end", () => {
          if (count === lose) {
            req.socket.destroy();
            return;
          }
          res.writeHead(answer.statusCode, answer.headers).end(Buffer.concat(body));
        });
      });
      upstream.end(Buffer.concat(chunks));
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    loseAnswerOf: (n) => (lose = n),
    failFrom: (n) => (failFrom = n),
    reset: () => {
      count = 0;
      lose = 0;
      failFrom = Infinity;
    },
    batches: () => count,
    stop: () => new Promise((resolve) => server.close(resolve)),
  };
}

function importScript(file, url, extra = []) {
  return new Promise((resolve) => {
    execFile(
      "node",
      ["scripts/import.mjs", file, "--url", url, "--retries", "3", "--retry-ms", "50", ...extra],
      { cwd: ROOT, env: { ...process.env, API_TOKEN }, timeout: 120_000 },
      (error, stdout, stderr) => resolve({ code: error ? (error.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const count = async (stack, where = "1 = 1") => (await stack.sql(`SELECT COUNT(*) AS n FROM subjects WHERE ${where}`))[0].n;

describe("bulk import", () => {
  const N = 5000;
  const BUDGET = 600;
  const PER_RUN = 500;
  let stack;
  let proxy;
  let dir;
  let file;
  before(async () => {
    stack = await startStack({ vars: { WORKERS_PLAN: "paid", RECONCILE_BUDGET: String(BUDGET), FIRST_CHECKS_PER_RUN: String(PER_RUN) } });
    proxy = await startProxy(stack.url);
    dir = await mkdtemp(join(tmpdir(), "kyc-edge-import-"));
    file = join(dir, "users.csv");
    const rows = ["user_id,ref,provider,external_id"];
    for (let i = 0; i < N; i += 1) {
      const ref = `imp-${String(i).padStart(5, "0")}`;
      rows.push(`${i},${ref},align,"user ${i}, ""quoted"""`);
      stack.standIn.setAlign(ref, { status: "approved" });
    }
    // Two bad lines among them: refused alone, with their reasons.
    rows.splice(10, 0, "x,has space,align,u");
    rows.splice(20, 0, "y,ok-provider-missing,onfido,u");
    await writeFile(file, `${rows.join("\n")}\n`);
  });
  after(async () => {
    await proxy.stop();
    await stack.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test("5,000 users through the script: a lost answer re-sent and a stopped run resumed, each registered once", async () => {
    // The 2nd batch is written but its answer is lost; the 4th batch onwards fail: the script
    // gives up, keeping its place.
    proxy.loseAnswerOf(2);
    proxy.failFrom(6);
    const stopped = await importScript(file, proxy.url);
    assert.notEqual(stopped.code, 0, "it gave up");
    assert.match(stopped.stderr, /4000 of 5002 lines are done: run the same command again to resume/);
    assert.equal(await count(stack), 3998, "4 batches acknowledged (2 invalid lines among them)");
    assert.ok(existsSync(`${file}.import-state.json`));

    proxy.reset();
    const resumed = await importScript(file, proxy.url);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, /resuming after line/);
    assert.equal(proxy.batches(), 2, "only the remaining 1,002 lines were sent");
    assert.match(resumed.stdout, /5002 lines, 4000 created, 1000 already tracked, 0 repeated, 2 invalid/);
    assert.equal(await count(stack), N, "every user once");
    assert.equal(await count(stack, "external_id = 'user 7, \"quoted\"'"), 1, "CSV quoting read right");
    const invalid = (await import("node:fs")).readFileSync(`${file}.invalid.ndjson`, "utf8").trim().split("\n").map(JSON.parse);
    assert.deepEqual(
      invalid.map((l) => [l.line, l.error.replace(/one of .*/, "one of …")]),
      [
        [11, "ref may contain only letters, digits and - _ . : @ + ~"],
        [21, "provider must be one of …"],
      ],
    );
    assert.ok(!existsSync(`${file}.import-state.json`), "a finished import forgets its place");
    const stats = (await stack.stats()).first_checks.align;
    assert.equal(stats.waiting, N);
    assert.equal(stats.per_run, PER_RUN);
    assert.ok(stats.eta_seconds > 45 * 60 && stats.eta_seconds <= 50 * 60, `10 cron periods' worth (${stats.eta_seconds} s)`);
  });

  test("first checks are spread over cron runs, none over the budget, oldest import first", async () => {
    // Scheduled: no cron period holds more than its share of the imports' first checks.
    const windows = await stack.sql(
      `SELECT (next_check_at - (SELECT MIN(next_check_at) FROM subjects)) / ${5 * MINUTE} AS w, COUNT(*) AS n
       FROM subjects GROUP BY w ORDER BY w`,
    );
    assert.equal(windows.length, 10, JSON.stringify(windows));
    assert.ok(windows.every((w) => w.n <= PER_RUN), JSON.stringify(windows));
    // Three runs, a period apart: each checks its share (give or take the few that fell due
    // between the import and the first run), well inside the budget.
    const share = PER_RUN * 1.02;
    const t0 = Date.now();
    const checked = [];
    for (let run = 1; run <= 3; run += 1) {
      await stack.cron(t0 + run * 5 * MINUTE);
      checked.push(
        await eventually(
          `${run * PER_RUN} subjects checked after cron run ${run}`,
          async () => {
            const n = await count(stack, "last_checked_at IS NOT NULL");
            return n >= run * PER_RUN && n;
          },
          { timeoutMs: 60_000, intervalMs: 250 },
        ),
      );
    }
    const enqueued = stack.logLines("cron").slice(-3).map((l) => l.enqueued);
    assert.ok(enqueued.every((n) => n > PER_RUN * 0.8 && n <= share && n < BUDGET), `runs enqueued ${enqueued}`);
    const perRun = checked.map((n, i) => n - (checked[i - 1] ?? 0));
    assert.ok(perRun.every((n) => n <= share), `first checks per run: ${perRun}`);
    // Oldest import first: the first batch was checked, the last one waits.
    assert.equal(await count(stack, "ref < 'imp-00990' AND last_checked_at IS NULL"), 0);
    assert.equal(await count(stack, "ref >= 'imp-04000' AND last_checked_at IS NOT NULL"), 0);
    const waiting = (await stack.stats()).first_checks.align.waiting;
    assert.equal(waiting, N - checked.at(-1));
  });
});

describe("backfill", () => {
  let stack;
  before(async () => {
    stack = await startStack({ argosPageSize: 20, vars: { BACKFILL_PAGES_PER_RUN: "1" } });
  });
  after(() => stack.stop());

  test("ARGOS: three pages, a restart mid-walk, every user found once; Align: the customer list", async () => {
    // 40 users, 10 of them with two submissions: 50 submissions, three pages of 20.
    const day = (d) => argosTime(Date.parse(`2026-03-${String(d).padStart(2, "0")}T10:00:00Z`));
    for (let i = 0; i < 40; i += 1) {
      const userid = `bf_user_${String(i).padStart(2, "0")}`;
      const submissions = [{ submission_id: `bfs-${i}-a`, created_at: day(1 + (i % 20)) }];
      if (i < 10) submissions.push({ submission_id: `bfs-${i}-b`, created_at: day(21 + i) });
      stack.standIn.setArgosSubmissions(userid, submissions);
    }
    // Out of the range asked for: not found.
    stack.standIn.setArgosSubmissions("bf_before_range", [{ submission_id: "old", created_at: argosTime(Date.parse("2025-12-31T10:00:00Z")) }]);
    // One user kyc-edge already tracks.
    assert.equal((await stack.api("PUT", "/v1/subjects/argos/bf_user_00")).status, 201);
    for (let i = 0; i < 7; i += 1) stack.standIn.setAlign(`bf-customer-${i}`, { status: "pending" });

    assert.equal((await stack.api("POST", "/v1/backfill/argos", { body: { since: "2026-01-01" } })).status, 202);
    assert.equal((await stack.api("POST", "/v1/backfill/align")).status, 202);
    stack.standIn.resetCounts();
    const lists = () => stack.standIn.requests().filter((r) => r.path === "/v3/submission" && !r.query.userid && !r.query.submission_id);

    await stack.cron();
    assert.equal(lists().length, 1);
    let walk = (await stack.api("GET", "/v1/backfill/argos")).json;
    assert.deepEqual([walk.state, walk.pages_read, walk.seen], ["running", 1, 20]);
    await stack.worker.restart();
    await stack.cron();
    await stack.cron();
    walk = (await stack.api("GET", "/v1/backfill/argos")).json;
    assert.deepEqual(
      [walk.state, walk.pages_read, walk.seen, walk.found, walk.last_error],
      ["done", 3, 50, 39, null],
      "every submission seen once; the 39 users not tracked before found",
    );
    const pages = lists();
    assert.deepEqual(pages.map((r) => r.query.start_date), ["2026-01-01", "2026-01-01", "2026-01-01"]);
    assert.equal(pages[0].query.nextpage_id, undefined, "the walk starts at the first page");
    assert.ok(pages[1].query.nextpage_id && pages[2].query.nextpage_id, "then follows nextpageKey");
    assert.notEqual(pages[1].query.nextpage_id, pages[2].query.nextpage_id, "each page once, in order");
    const argos = await stack.sql("SELECT ref FROM subjects WHERE provider = 'argos' ORDER BY ref");
    assert.deepEqual(
      argos.map((r) => r.ref),
      Array.from({ length: 40 }, (_, i) => `bf_user_${String(i).padStart(2, "0")}`),
    );
    await stack.cron();
    assert.equal(lists().length, 3, "a finished walk reads nothing more");

    const align = (await stack.api("GET", "/v1/backfill/align")).json;
    assert.deepEqual([align.state, align.found], ["done", 7]);
    assert.equal(await count(stack, "provider = 'align'"), 7);
    const stats = await stack.stats();
    assert.deepEqual(
      stats.backfills.map((b) => [b.provider, b.state, b.found]),
      [
        ["align", "done", 7],
        ["argos", "done", 39],
      ],
    );

    // The pages carried names, e-mails, birth dates and id numbers: none of it was stored.
    const files = await readPersistedFiles(stack.dir);
    for (const pii of ["Test Person", "@example.test", "1990-01-01", "900101-1234567"]) {
      const holders = files.filter((f) => f.bytes.includes(Buffer.from(pii))).map((f) => f.path);
      assert.deepEqual(holders, [], `${pii} is stored in ${holders}`);
    }
  });

  test("a refused walk ends as failed and can be started again; one walk at a time", async () => {
    // Runs scheduled a day back find no subject due: the walk is the only ARGOS request.
    const quiet = () => stack.cron(Date.now() - 24 * 60 * MINUTE);
    assert.equal((await stack.api("POST", "/v1/backfill/argos", { body: { since: "2026-02-01" } })).status, 202);
    assert.equal((await stack.api("POST", "/v1/backfill/argos")).status, 409);
    stack.standIn.failNext(1, { status: 403, provider: "argos" });
    await quiet();
    const failed = (await stack.api("GET", "/v1/backfill/argos")).json;
    assert.deepEqual([failed.state, failed.last_error], ["failed", "HTTP 403"]);
    stack.standIn.failNext(1, { status: 503, provider: "argos" });
    assert.equal((await stack.api("POST", "/v1/backfill/argos", { body: { since: "2026-02-01" } })).status, 202);
    await quiet();
    const retrying = (await stack.api("GET", "/v1/backfill/argos")).json;
    assert.deepEqual([retrying.state, retrying.last_error, retrying.pages_read], ["running", "HTTP 503", 0], "an outage is retried");
    await quiet();
    const resumed = (await stack.api("GET", "/v1/backfill/argos")).json;
    assert.deepEqual([resumed.pages_read, resumed.last_error], [1, null]);
  });
});
