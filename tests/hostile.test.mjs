// Hostile input, end to end: the compiled worker in workerd with local D1/KV/Queue. Every case
// asserts the exact answer, that nothing was written (the D1 fingerprint is unchanged and, where
// a subject is named, KV has no projection of it either), and that the worker is still healthy
// afterwards: /healthz answers 200 and workerd printed no panic or runtime error.
// Signatures are computed by node:crypto (sandbox/sign.mjs), never by the verifier under test.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import http from "node:http";
import net from "node:net";
import { createHmac, randomBytes } from "node:crypto";
import { alignSignature, sumsubDigest } from "../sandbox/sign.mjs";
import { ALIGN_KEY, API_TOKEN, ARGOS_TOKEN, PERSONA_SECRET, SUMSUB_WEBHOOK_SECRET, rawPath, startStack } from "./support/stack.mjs";
import { eventually, kycsUpdated, parseJson, pool } from "../sandbox/kit.mjs";
import { personaEvent, personaSignature } from "../sandbox/providers/persona.mjs";

/** DEFAULT_MAX_BODY_BYTES (core/src/config.rs): the stacks here keep the default. */
const LIMIT = 256 * 1024;
const TEN_MB = 10 * 1024 * 1024;
const JSON_TYPE = { "content-type": "application/json" };
const ARGOS_PATH = `/webhooks/argos/${ARGOS_TOKEN}`;

/** Headers of an Align webhook correctly signed over `raw` (a string or bytes). */
const signed = (raw, extra = {}) => ({ ...JSON_TYPE, "x-hmac-signature": alignSignature(ALIGN_KEY, raw), ...extra });

/** A JSON text of exactly `size` bytes: `body` with a `padding` field filling the rest. */
function exactly(size, body) {
  const bare = JSON.stringify({ ...body, padding: "" });
  const padded = JSON.stringify({ ...body, padding: "p".repeat(size - Buffer.byteLength(bare)) });
  assert.equal(Buffer.byteLength(padded), size);
  return padded;
}

/** An error answer: the exact status, the API's error shape `{error: {code, message}}`. */
function assertError(res, status, code) {
  assert.equal(res.status, status, res.text);
  assert.deepEqual(Object.keys(res.json ?? {}), ["error"], res.text);
  assert.equal(res.json.error.code, code, res.text);
  assert.equal(typeof res.json.error.message, "string");
}

/**
 * One request over node:http with the body written in `chunkSize` pieces (with back-pressure)
 * until `total` bytes are sent, the worker answers, or `stallAfter` bytes are written (then the
 * request stays open, unfinished). Resolves with the answer and `sentAtAnswer`: how much of the
 * body had been written when the answer arrived. Write errors after the answer are expected
 * (the worker may close a connection whose body it refused) and ignored. A connection reset
 * before the answer could be read (a server closing with unread data sends a TCP RST, which
 * may discard an answer already on its way) resolves with `reset: true` when `resetOk`.
 */
function stream(url, { method = "POST", path, headers, total, chunkSize = 64 * 1024, stallAfter = Infinity, timeoutMs = 15_000, resetOk = false }) {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path, headers, agent: false });
    let sent = 0;
    let answered = false;
    // Wakes the writer when it waits for a drain that an answer makes moot.
    let wake = () => {};
    const drained = () =>
      new Promise((resume) => {
        const done = () => {
          req.off("drain", done);
          req.off("close", done);
          wake = () => {};
          resume();
        };
        wake = done;
        req.on("drain", done);
        req.on("close", done);
      });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms after ${sent} of ${total} bytes`));
    }, timeoutMs);
    req.on("error", (error) => {
      if (answered) return;
      clearTimeout(timer);
      if (resetOk && ["ECONNRESET", "EPIPE"].includes(error.code)) resolve({ reset: true, sentAtAnswer: sent, total });
      else reject(error);
    });
    req.on("response", async (res) => {
      answered = true;
      wake();
      const sentAtAnswer = sent;
      const parts = [];
      for await (const part of res) parts.push(part);
      clearTimeout(timer);
      req.destroy();
      const text = Buffer.concat(parts).toString("utf8");
      resolve({ status: res.statusCode, text, json: parseJson(text), sentAtAnswer, total });
    });
    (async () => {
      const chunk = Buffer.alloc(chunkSize, 0x20);
      while (!answered && sent < Math.min(total, stallAfter)) {
        const n = Math.min(chunkSize, total - sent, stallAfter - sent);
        const flushed = req.write(chunk.subarray(0, n));
        sent += n;
        if (!flushed) await drained();
      }
      if (!answered && sent === total) req.end();
    })().catch(() => {});
  });
}

/** A body sent with Transfer-Encoding: chunked in three pieces. */
async function chunkedPost(url, path, body, headers) {
  const { port } = new URL(url);
  const bytes = Buffer.from(body);
  const req = http.request({ host: "127.0.0.1", port, method: "POST", path, agent: false, headers: { ...headers, "transfer-encoding": "chunked" } });
  const third = Math.floor(bytes.length / 3);
  req.write(bytes.subarray(0, third));
  req.write(bytes.subarray(third, 2 * third));
  req.end(bytes.subarray(2 * third));
  const [res] = await once(req, "response");
  const parts = [];
  for await (const part of res) parts.push(part);
  const text = Buffer.concat(parts).toString("utf8");
  return { status: res.statusCode, text, json: JSON.parse(text) };
}

/**
 * A request written byte for byte on a socket (`head` without the blank line), answered with
 * `Connection: close`: for a POST with neither Content-Length nor Transfer-Encoding, which
 * node:http and fetch never send.
 */
async function rawSocket(url, head) {
  const { port } = new URL(url);
  const socket = net.connect(port, "127.0.0.1");
  await once(socket, "connect");
  socket.end(`${head}\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n`);
  const parts = [];
  for await (const part of socket) parts.push(part);
  const answer = Buffer.concat(parts).toString("utf8");
  const [top, ...rest] = answer.split("\r\n\r\n");
  let text = rest.join("\r\n\r\n");
  if (/^transfer-encoding: *chunked/im.test(top)) {
    let decoded = "";
    for (;;) {
      const eol = text.indexOf("\r\n");
      const size = parseInt(text.slice(0, eol), 16);
      if (!size) break;
      decoded += text.slice(eol + 2, eol + 2 + size);
      text = text.slice(eol + 2 + size + 2);
    }
    text = decoded;
  }
  return { status: Number(top.split(" ")[1]), text, json: JSON.parse(text) };
}

/** Shared by every block: a stack, and the checks each case ends with. */
function hostileStack(options = {}) {
  const ctx = {};
  before(async () => {
    ctx.stack = await startStack(options);
  });
  after(() => ctx.stack.stop());

  /** What workerd printed that is not a structured line, and panics the worker logged. */
  ctx.crashes = () =>
    ctx.stack.worker.logs().filter(({ level, message }) => level === "runtime" || /"kind":"panic"/.test(message));

  ctx.assertHealthy = async () => {
    const res = await fetch(`${ctx.stack.url}/healthz`);
    assert.equal(res.status, 200, "the worker still answers");
    assert.equal((await res.json()).ok, true);
    assert.deepEqual(ctx.crashes(), [], "no panic, no runtime error");
  };

  /** Runs `cases` and asserts D1 is exactly as before, the worker healthy after. */
  ctx.writesNothing = async (cases) => {
    const before = await ctx.stack.fingerprint();
    const result = await cases();
    assert.equal(await ctx.stack.fingerprint(), before, "nothing was written to D1");
    await ctx.assertHealthy();
    return result;
  };

  /** Neither D1 nor KV knows the subject. */
  ctx.untracked = async (provider, ref) => {
    const res = await ctx.stack.api("GET", `/v1/subjects/${provider}/${encodeURIComponent(ref)}`);
    assert.equal(res.status, 404, `${provider}/${ref} is not tracked: ${res.text}`);
    assert.equal(res.json.error.code, "not_found");
  };

  /** Waits until the reconcile an accepted webhook queued for `ref` ran and D1 is quiet. */
  ctx.settle = async (provider, ref) => {
    await eventually(`${provider}/${ref} checked`, async () => (await ctx.stack.row(provider, ref))?.last_checked_at);
    const deadline = Date.now() + 15_000;
    let last = await ctx.stack.fingerprint();
    for (;;) {
      await new Promise((r) => setTimeout(r, 300));
      const now = await ctx.stack.fingerprint();
      if (now === last) return;
      assert.ok(Date.now() < deadline, "D1 went quiet after the accepted webhook");
      last = now;
    }
  };
  return ctx;
}

describe("hostile bodies", () => {
  const ctx = hostileStack();

  test("a 0-byte body: 400 when authenticated, 401 when not, nothing written", async () => {
    const { stack } = ctx;
    await ctx.writesNothing(async () => {
      assertError(await stack.post("/webhooks/align", "", signed("")), 400, "bad_request");
      assertError(await stack.post("/webhooks/align", "", JSON_TYPE), 401, "unauthorized");
      assertError(await stack.post(ARGOS_PATH, "", JSON_TYPE), 400, "bad_request");
      assertError(await stack.post("/webhooks/argos/not-the-token", "", JSON_TYPE), 401, "unauthorized");
      // No body at all (no Content-Length, no Transfer-Encoding): the same answers.
      const sig = `x-hmac-signature: ${alignSignature(ALIGN_KEY, "")}`;
      assertError(await rawSocket(stack.url, `POST /webhooks/align HTTP/1.1\r\n${sig}`), 400, "bad_request");
      assertError(await rawSocket(stack.url, "POST /webhooks/align HTTP/1.1"), 401, "unauthorized");
      assertError(await rawSocket(stack.url, `POST ${ARGOS_PATH} HTTP/1.1`), 400, "bad_request");
    });
  });

  test("the body limit: one byte over is 413 with or without Content-Length; exactly at it is accepted", async () => {
    const { stack } = ctx;
    const over = "hostile-limit-over";
    const body = exactly(LIMIT + 1, kycsUpdated(over, { withObject: false }));
    await ctx.writesNothing(async () => {
      const declared = await stack.post("/webhooks/align", body, signed(body));
      assertError(declared, 413, "payload_too_large");
      assert.equal(declared.json.error.message, `body exceeds ${LIMIT} bytes`, "the limit is the default");
      // Chunked: the size is only known by reading.
      const chunked = await stream(stack.url, {
        path: "/webhooks/align",
        headers: signed(body, { "transfer-encoding": "chunked" }),
        total: LIMIT + 1,
      });
      assertError(chunked, 413, "payload_too_large");
      assertError(await stack.post(ARGOS_PATH, "x".repeat(LIMIT + 1), JSON_TYPE), 413, "payload_too_large");
      await ctx.untracked("align", over);
    });

    // Exactly LIMIT bytes, declared and chunked: read whole, verified, recorded.
    for (const [ref, chunkedSend] of [
      ["hostile-limit-exact-1", false],
      ["hostile-limit-exact-2", true],
    ]) {
      stack.standIn.setAlign(ref, { status: "pending" });
      const at = exactly(LIMIT, kycsUpdated(ref, { withObject: false }));
      const res = chunkedSend
        ? await chunkedPost(stack.url, "/webhooks/align", at, signed(at))
        : await stack.post("/webhooks/align", at, signed(at));
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json, { ok: true, duplicate: false, queued: true, event: "customer.kycs.updated", ref });
      await ctx.settle("align", ref);
    }
    await ctx.assertHealthy();
  });

  test("10 MB with Content-Length: 413 before the rest of the body is sent", async () => {
    const { stack } = ctx;
    await ctx.writesNothing(async () => {
      for (const path of ["/webhooks/align", ARGOS_PATH]) {
        const res = await stream(stack.url, {
          path,
          headers: { ...JSON_TYPE, "content-length": String(TEN_MB) },
          total: TEN_MB,
          stallAfter: 64 * 1024,
        });
        assertError(res, 413, "payload_too_large");
        assert.equal(res.sentAtAnswer, 64 * 1024, "answered while 10 MB - 64 KiB were still unsent");
      }
    });
  });

  test("10 MB chunked: 413 once the limit is passed, without waiting for (or buffering) the rest", async (t) => {
    const { stack } = ctx;
    await ctx.writesNothing(async () => {
      for (const path of ["/webhooks/align", ARGOS_PATH]) {
        // The sender stops just past the limit and waits: the answer must come anyway.
        const stalled = await stream(stack.url, {
          path,
          headers: { ...JSON_TYPE, "transfer-encoding": "chunked" },
          total: TEN_MB,
          stallAfter: LIMIT + 64 * 1024,
        });
        assertError(stalled, 413, "payload_too_large");
        assert.ok(stalled.sentAtAnswer <= LIMIT + 64 * 1024, `answered after ${stalled.sentAtAnswer} bytes`);
      }
      // And all 10 MB sent as fast as the worker takes them.
      // The worker may close the connection on the unread rest, and the reset can overtake its
      // answer: its log line (found by request id) says what it answered either way.
      const requestId = "hostile-10mb-chunked";
      const whole = await stream(stack.url, {
        path: "/webhooks/align",
        headers: { ...JSON_TYPE, "transfer-encoding": "chunked", "x-request-id": requestId },
        total: TEN_MB,
        resetOk: true,
      });
      if (!whole.reset) assertError(whole, 413, "payload_too_large");
      assert.ok(whole.sentAtAnswer < TEN_MB, `answered after ${whole.sentAtAnswer} of ${TEN_MB} bytes`);
      const line = await eventually(`the log line of request ${requestId}`, () => stack.logLines("request").find((l) => l.request_id === requestId));
      assert.equal(line.status, 413);
      assert.equal(line.error_code, "payload_too_large");
      t.diagnostic(
        `10 MB chunked: ${whole.reset ? "connection reset" : "413 read"} after ${whole.sentAtAnswer} bytes were written`,
      );
    });
  });

  test("the API's bodies have limits too: chunked without end, 413 once passed, nothing written", async () => {
    const { stack } = ctx;
    const auth = { authorization: `Bearer ${API_TOKEN}`, ...JSON_TYPE, "transfer-encoding": "chunked" };
    await ctx.writesNothing(async () => {
      for (const [method, path, limit] of [
        ["POST", "/v1/subjects/batch", 1024 * 1024],
        ["PUT", "/v1/subjects/align/hostile-api-body", 16 * 1024],
        ["POST", "/v1/backfill/argos", 16 * 1024],
      ]) {
        // The sender stops just past the limit and waits: the answer must come anyway. The
        // worker closes the connection on the unread rest, and the reset can overtake its
        // answer: its log line says what it answered either way.
        const requestId = `hostile-api-body-${method}-${limit}`;
        const headers = { ...auth, "x-request-id": requestId };
        const res = await stream(stack.url, { method, path, headers, total: TEN_MB, stallAfter: limit + 64 * 1024, resetOk: true });
        if (!res.reset) {
          assertError(res, 413, "payload_too_large");
          assert.equal(res.json.error.message, `body exceeds ${limit} bytes`, `${method} ${path}`);
        }
        assert.ok(res.sentAtAnswer <= limit + 64 * 1024, `${method} ${path} answered after ${res.sentAtAnswer} bytes`);
        const line = await eventually(`the log line of request ${requestId}`, () => stack.logLines("request").find((l) => l.request_id === requestId));
        assert.deepEqual([line.status, line.error_code], [413, "payload_too_large"], `${method} ${path}`);
      }
      await ctx.untracked("align", "hostile-api-body");
    });
  });

  test("invalid UTF-8, correctly signed: 400, nothing written", async () => {
    const { stack } = ctx;
    const ref = "hostile-utf8-1";
    const json = (before, bytes, after) => Buffer.concat([Buffer.from(before), Buffer.from(bytes), Buffer.from(after)]);
    const head = `{"event_type":"customer.kycs.updated","entity_id":"${ref}","entity_type":"customer","note":"`;
    const bodies = [
      // In a field kyc-edge never reads (serde_json skips ignored strings unchecked).
      json(head, [0xff, 0xfe], '"}'),
      // An overlong "/" and a UTF-16 surrogate encoded as UTF-8 (CESU).
      json(head, [0xc0, 0xaf], '"}'),
      json(head, [0xed, 0xa0, 0x80], '"}'),
      // In the id itself.
      json('{"event_type":"customer.kycs.updated","entity_id":"', [0xe9], '","entity_type":"customer"}'),
      // Outside any string.
      json('{"event_type":"customer.kycs.updated","entity_id":"x"', [0x80], "}"),
    ];
    await ctx.writesNothing(async () => {
      for (const body of bodies) {
        const res = await stack.post("/webhooks/align", body, signed(body));
        assertError(res, 400, "bad_request");
      }
      const argos = json('{"webhook_trigger":"submit","userid":"hostile-utf8-2","email":"', [0xff], '"}');
      assertError(await stack.post(ARGOS_PATH, argos, JSON_TYPE), 400, "bad_request");
      await ctx.untracked("align", ref);
      await ctx.untracked("argos", "hostile-utf8-2");
    });
  });

  test("JSON nested 10,000 deep, correctly signed: 400, no crash", async () => {
    const { stack } = ctx;
    const ref = "hostile-deep-1";
    const arrays = "[".repeat(10_000) + "]".repeat(10_000);
    const objects = '{"a":'.repeat(10_000) + "1" + "}".repeat(10_000);
    const event = (field, value) =>
      `{"event_type":"customer.kycs.updated","entity_id":"${ref}","entity_type":"customer","${field}":${value}}`;
    const bodies = [
      arrays,
      objects,
      // Where kyc-edge reads (entity_object.kycs) and where it does not (an ignored field).
      event("entity_object", `{"kycs":${arrays}}`),
      event("ignored", arrays),
      event("ignored", objects),
    ];
    await ctx.writesNothing(async () => {
      for (const body of bodies) {
        assertError(await stack.post("/webhooks/align", body, signed(body)), 400, "bad_request");
      }
      for (const field of ["kyc_result", "data", "ignored"]) {
        const body = `{"webhook_trigger":"submit","userid":"hostile-deep-2","${field}":${objects}}`;
        assertError(await stack.post(ARGOS_PATH, body, JSON_TYPE), 400, "bad_request");
      }
      await ctx.untracked("align", ref);
      await ctx.untracked("argos", "hostile-deep-2");
    });
  });

  test("form posts are 415 before anything is read, even correctly signed", async () => {
    const { stack } = ctx;
    const ref = "hostile-form-1";
    const body = JSON.stringify(kycsUpdated(ref, { status: "approved" }));
    await ctx.writesNothing(async () => {
      for (const type of [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=----x",
        " Multipart/Form-Data ;boundary=y",
        "application/x-www-form-urlencoded; charset=utf-8",
      ]) {
        assertError(await stack.post("/webhooks/align", body, signed(body, { "content-type": type })), 415, "unsupported_media_type");
        assertError(await stack.post(ARGOS_PATH, body, { "content-type": type }), 415, "unsupported_media_type");
      }
      await ctx.untracked("align", ref);
    });
  });

  test("a valid signature over a different body is 401", async () => {
    const { stack } = ctx;
    const ref = "hostile-swap-1";
    const original = JSON.stringify(kycsUpdated(ref, { status: "rejected" }));
    const others = [
      original.replace('"rejected"', '"approved"'),
      JSON.stringify(kycsUpdated("hostile-swap-2", { status: "approved" })),
      `${original} `,
      original.slice(0, -1),
    ];
    await ctx.writesNothing(async () => {
      for (const body of others) {
        assertError(await stack.post("/webhooks/align", body, signed(original)), 401, "unauthorized");
      }
      await ctx.untracked("align", ref);
      await ctx.untracked("align", "hostile-swap-2");
    });
  });

  test("a repeated signature header is 401; a whitespace-padded one is the same signature", async () => {
    const { stack } = ctx;
    const ref = "hostile-sig-1";
    const body = JSON.stringify(kycsUpdated(ref, { withObject: false }));
    const sig = alignSignature(ALIGN_KEY, body);
    await ctx.writesNothing(async () => {
      // fetch joins repeated headers with ", " ...
      const joined = new Headers(JSON_TYPE);
      joined.append("x-hmac-signature", sig);
      joined.append("x-hmac-signature", sig);
      assertError(await stack.post("/webhooks/align", body, joined), 401, "unauthorized");
      const mixed = new Headers(JSON_TYPE);
      mixed.append("x-hmac-signature", sig);
      mixed.append("x-hmac-signature", "0".repeat(64));
      assertError(await stack.post("/webhooks/align", body, mixed), 401, "unauthorized");
      // ... and so does the platform with two header lines on the wire.
      const { port } = new URL(stack.url);
      const req = http.request({
        host: "127.0.0.1",
        port,
        method: "POST",
        path: "/webhooks/align",
        agent: false,
        headers: { ...JSON_TYPE, "x-hmac-signature": [sig, sig] },
      });
      req.end(body);
      const [res] = await once(req, "response");
      res.resume();
      assert.equal(res.statusCode, 401);
      await ctx.untracked("align", ref);
    });
    // Surrounding whitespace is not part of a header value (signature.rs trims it too).
    stack.standIn.setAlign(ref, { status: "pending" });
    const padded = await stack.post("/webhooks/align", body, { ...JSON_TYPE, "x-hmac-signature": ` \t${sig}  ` });
    assert.equal(padded.status, 200, padded.text);
    assert.equal(padded.json.duplicate, false);
    assert.equal(padded.json.ref, ref);
    await ctx.settle("align", ref);
    await ctx.assertHealthy();
  });
});

describe("hostile Persona webhooks", () => {
  const ctx = hostileStack({ persona: true });
  const PATH = "/webhooks/persona";
  /** Headers of a Persona webhook signed over `raw` (a string or bytes) now (node:crypto). */
  const personaSigned = (raw, extra = {}) => {
    const t = Math.floor(Date.now() / 1000);
    const v1 = createHmac("sha256", PERSONA_SECRET).update(`${t}.`).update(raw).digest("hex");
    return { ...JSON_TYPE, "persona-signature": `t=${t},v1=${v1}`, ...extra };
  };
  const inquiry = (ref, status = "approved") => ({ type: "inquiry", id: "inq_hostile", attributes: { status, "reference-id": ref } });

  test("empty, non-UTF-8 and deeply nested bodies: 400 when signed, 401 when not, nothing written", async () => {
    const { stack } = ctx;
    const latin1 = Buffer.concat([Buffer.from('{"data":{"type":"event","attributes":{"name":"inquiry.approved","x":"Jos'), Buffer.from([0xe9]), Buffer.from('"}}}')]);
    const deep = `{"data":{"type":"event","attributes":{"name":"inquiry.approved","x":${"[".repeat(10_000)}${"]".repeat(10_000)}}}}`;
    await ctx.writesNothing(async () => {
      for (const body of ["", "null", "[]", '{"data":"evt"}', latin1, deep]) {
        assertError(await stack.post(PATH, body, personaSigned(body)), 400, "bad_request");
        assertError(await stack.post(PATH, body, JSON_TYPE), 401, "unauthorized");
      }
    });
  });

  test("hostile signature headers: many sets, repeated, absurd t, stray bytes: 401, nothing written", async () => {
    const { stack } = ctx;
    const raw = JSON.stringify(personaEvent("inquiry.approved", inquiry("hostile-persona-1")));
    const good = personaSignature(PERSONA_SECRET, raw);
    const t = good.slice(2, good.indexOf(","));
    const v1 = good.slice(good.indexOf("v1=") + 3);
    const cases = [
      Array(100).fill(good).join(" "),
      // Many unknown schemes, and a v1 one digit off.
      `t=${t},${"v2=x,".repeat(500)}v1=${v1[0] === "0" ? "1" : "0"}${v1.slice(1)}`,
      `t=${"9".repeat(30)},v1=${v1}`,
      `t=${t},v1=${v1};`,
      "t=,v1=",
      "=,=",
      "t=1e3,v1=NaN",
    ];
    await ctx.writesNothing(async () => {
      for (const signature of cases) {
        assertError(await stack.post(PATH, raw, { ...JSON_TYPE, "persona-signature": signature }), 401, "unauthorized");
      }
      // A repeated header reaches the worker joined with ", ".
      const joined = new Headers(JSON_TYPE);
      joined.append("persona-signature", good);
      joined.append("persona-signature", good);
      assertError(await stack.post(PATH, raw, joined), 401, "unauthorized");
      // A valid signature over another body.
      assertError(await stack.post(PATH, raw.replace("approved", "declined"), { ...JSON_TYPE, "persona-signature": good }), 401, "unauthorized");
      await ctx.untracked("persona", "hostile-persona-1");
    });
  });

  test("hostile reference-ids, correctly signed: 400 without quoting them, nothing written", async () => {
    const { stack } = ctx;
    await ctx.writesNothing(async () => {
      for (const ref of ["a/b", "x".repeat(129), "' OR 1=1 --", "a\u0000b", 42, { id: "x" }]) {
        const raw = JSON.stringify(personaEvent("inquiry.approved", inquiry(ref)));
        const res = await stack.post(PATH, raw, personaSigned(raw));
        assertError(res, 400, "bad_request");
        if (typeof ref === "string" && ref.length > 3) assert.ok(!res.text.includes(ref), res.text);
      }
    });
  });
});

/** SQL metacharacters, each on its own and together. */
const SQL = ["' OR 1=1 --", '"; DROP TABLE subjects; --', "%", "\\", "' OR '1'='1' /*", "%' OR ref LIKE '%"];
const q = encodeURIComponent;

describe("hostile paths and parameters", () => {
  const ctx = hostileStack();
  const TRACKED = "hostile-tracked-1";
  before(async () => {
    // One tracked subject, so refusals are not just "not found".
    ctx.stack.standIn.setAlign(TRACKED, { status: "pending" });
    const res = await ctx.stack.api("PUT", `/v1/subjects/align/${TRACKED}`, { body: {} });
    assert.equal(res.status, 201, res.text);
    await ctx.settle("align", TRACKED);
  });

  /** Every route that takes `{provider}/{ref}`, with `ref` as given (already encoded). */
  const refRoutes = (encodedRef) => [
    ["GET", `/v1/subjects/align/${encodedRef}`],
    ["PUT", `/v1/subjects/align/${encodedRef}`],
    ["GET", `/v1/subjects/align/${encodedRef}/events`],
    ["POST", `/v1/subjects/align/${encodedRef}/refresh`],
  ];
  const call = (method, path) => ctx.stack.api(method, path, { body: method === "PUT" ? { external_id: "x" } : undefined });

  test("encoded traversal and NUL bytes in a ref are 400, on every route that takes one", async () => {
    await ctx.writesNothing(async () => {
      for (const ref of ["..%2F..%2Fetc%2Fpasswd", "..%2Fstats", "%2E%2E%2F%2E%2E%2Fv1%2Fstats", "a%00b", "%00", "x%2500", "%5C..%5C..%5Cwindows"]) {
        for (const [method, path] of refRoutes(ref)) {
          assertError(await call(method, path), 400, "bad_request");
        }
      }
      // NUL bytes in query values and in the provider.
      assertError(await ctx.stack.api("GET", `/v1/subjects/align/${TRACKED}?consistency=strong%00`), 400, "bad_request");
      assertError(await ctx.stack.api("GET", "/v1/subjects?external_id=a%00b"), 400, "bad_request");
      assertError(await ctx.stack.api("GET", "/v1/subjects/al%00ign/x"), 404, "not_found");
    });
  });

  test("`..` segments are resolved by the URL parser before routing: the resolved route's auth applies", async () => {
    const { stack } = ctx;
    await ctx.writesNothing(async () => {
      // Sent byte for byte (fetch would resolve them itself). The webhook routes take no
      // bearer token; what they resolve to still does.
      for (const path of [
        "/v1/subjects/../stats",
        "/webhooks/../v1/stats",
        "/webhooks/align/../../v1/subjects",
        "/webhooks/argos/x/../../../v1/subjects/align/" + TRACKED,
        "/dashboard/../v1/stats",
        "/webhooks/%2e%2e/v1/stats",
      ]) {
        assertError(await rawPath(stack.url, "GET", path), 401, "unauthorized");
      }
      for (const path of ["/webhooks/align/../../v1/subjects/align/" + TRACKED + "/refresh", "/webhooks/../v1/notifications/enable"]) {
        assertError(await rawPath(stack.url, "POST", path), 401, "unauthorized");
      }
      // With the token, `..` is only another spelling of the route it resolves to.
      const resolved = await rawPath(stack.url, "GET", "/v1/subjects/../stats", { authorization: `Bearer ${API_TOKEN}` });
      assert.equal(resolved.status, 200, resolved.text);
      assert.deepEqual(Object.keys(resolved.json), Object.keys((await stack.api("GET", "/v1/stats")).json));
      // Encoded slashes are not separators: this is an ARGOS token, and a wrong one.
      assertError(await stack.post("/webhooks/argos/..%2F..%2Fv1%2Fstats", "{}", JSON_TYPE), 401, "unauthorized");
      // A path that resolves above the root stays at the root.
      assertError(await rawPath(stack.url, "GET", "/../../../etc/passwd"), 404, "not_found");
      assertError(await rawPath(stack.url, "GET", "/dashboard/..%2F..%2Fwrangler.toml"), 404, "not_found");
    });
  });

  test("5,000-character refs are 404 (longer than any route), 129-character ones 400", async () => {
    await ctx.writesNothing(async () => {
      for (const [method, path] of refRoutes("a".repeat(5000))) {
        assertError(await call(method, path), 404, "not_found");
      }
      for (const [method, path] of refRoutes("a".repeat(129))) {
        const res = await call(method, path);
        assertError(res, 400, "bad_request");
        assert.match(res.json.error.message, /at most 128 bytes/);
      }
      assertError(await ctx.stack.api("GET", `/v1/subjects?cursor=align/${"a".repeat(5000)}`), 400, "bad_request");
      const long = JSON.stringify(kycsUpdated("a".repeat(5000), { withObject: false }));
      assertError(await ctx.stack.post("/webhooks/align", long, signed(long)), 400, "bad_request");
    });
  });

  test("SQL metacharacters in path refs, query parameters and webhook ids: 4xx or a normal empty answer", async () => {
    const { stack } = ctx;
    const countsBefore = await stack.sql("SELECT COUNT(*) AS n FROM subjects");
    await ctx.writesNothing(async () => {
      for (const meta of SQL) {
        for (const [method, path] of refRoutes(q(meta))) {
          assertError(await call(method, path), 400, "bad_request");
        }
        const list = async (query) => stack.api("GET", `/v1/subjects?${query}`);
        assertError(await list(`provider=${q(meta)}`), 400, "bad_request");
        assertError(await list(`status=${q(meta)}`), 400, "bad_request");
        assertError(await list(`limit=${q(meta)}`), 400, "bad_request");
        assertError(await list(`cursor=${q(meta)}`), 400, "bad_request");
        assertError(await list(`cursor=${q(`align/${meta}`)}`), 400, "bad_request");
        assertError(await list(`${q(meta)}=1`), 400, "bad_request");
        // Any text is a valid external id: it is bound, never spliced, so it matches nothing.
        const byExternal = await list(`external_id=${q(meta)}`);
        assert.equal(byExternal.status, 200, byExternal.text);
        assert.deepEqual(byExternal.json, { subjects: [], next_cursor: null });

        const events = (query) => stack.api("GET", `/v1/subjects/align/${TRACKED}/events?${query}`);
        assertError(await events(`cursor=${q(meta)}`), 400, "bad_request");
        assertError(await events(`limit=${q(meta)}`), 400, "bad_request");
        assertError(await events(`cursor=${q(`1 ${meta}`)}`), 400, "bad_request");

        const notifications = (query) => stack.api("GET", `/v1/notifications?${query}`);
        assertError(await notifications(`state=${q(meta)}`), 400, "bad_request");
        assertError(await notifications(`subject=${q(meta)}`), 400, "bad_request");
        assertError(await notifications(`subject=${q(`align/${meta}`)}`), 400, "bad_request");
        assertError(await notifications(`limit=${q(meta)}`), 400, "bad_request");
        assertError(await notifications(`cursor=${q(meta)}`), 400, "bad_request");
        assertError(await stack.api("POST", `/v1/notifications/${q(meta)}/redeliver`), 404, "not_found");
        assertError(await stack.api("GET", `/v1/subjects/stuck?limit=${q(meta)}`), 400, "bad_request");
        assertError(await stack.api("GET", `/v1/runs?limit=${q(meta)}`), 400, "bad_request");

        // Webhook ids, correctly signed (Align) or behind the right token (ARGOS).
        const align = JSON.stringify(kycsUpdated(meta, { status: "approved" }));
        assertError(await stack.post("/webhooks/align", align, signed(align)), 400, "bad_request");
        for (const field of ["userid", "submission_id"]) {
          const argos = JSON.stringify({ webhook_trigger: "submit", [field]: meta });
          assertError(await stack.post(ARGOS_PATH, argos, JSON_TYPE), 400, "bad_request");
        }
      }
      // The tracked subject's events, through a metacharacter-free cursor: unchanged.
      const events = await stack.api("GET", `/v1/subjects/align/${TRACKED}/events`);
      assert.equal(events.status, 200);
    });
    assert.deepEqual(await stack.sql("SELECT COUNT(*) AS n FROM subjects"), countsBefore, "the subjects table is intact");
  });

  test("refs and external ids made of the metacharacters the API allows round-trip exactly", async () => {
    const { stack } = ctx;
    // `_` is LIKE's wildcard and `--` SQL's comment; : @ + ~ are allowed in refs too.
    const ref = "_--_.:@+~%";
    const allowedRef = ref.slice(0, -1);
    assertError(await stack.api("PUT", `/v1/subjects/align/${q(ref)}`, { body: {} }), 400, "bad_request");
    const externalId = `' OR 1=1 --"; DROP TABLE subjects; -- %_\\`;
    stack.standIn.setAlign(allowedRef, { status: "pending" });
    // As written (: @ + ~ need no encoding in a path) and percent-encoded, as clients do.
    const created = await stack.api("PUT", `/v1/subjects/align/${allowedRef}`, { body: { external_id: externalId } });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.json.ref, allowedRef);
    assert.equal(created.json.external_id, externalId);
    await ctx.settle("align", allowedRef);
    const again = await stack.api("PUT", `/v1/subjects/align/${q(allowedRef)}`, { body: { external_id: externalId } });
    assert.equal(again.status, 200, again.text);
    for (const path of [`/v1/subjects/align/${allowedRef}`, `/v1/subjects/align/${q(allowedRef)}?consistency=strong`]) {
      const read = await stack.api("GET", path);
      assert.equal(read.status, 200, read.text);
      assert.equal(read.json.ref, allowedRef);
      assert.equal(read.json.external_id, externalId);
    }
    const byExternal = await stack.api("GET", `/v1/subjects?external_id=${q(externalId)}`);
    assert.deepEqual(byExternal.json.subjects.map((s) => [s.ref, s.external_id]), [[allowedRef, externalId]]);
    // A wildcard is a character, not a pattern.
    for (const pattern of ["%", "_", "' OR 1=1 --%", `${externalId.slice(0, -1)}_`]) {
      const none = await stack.api("GET", `/v1/subjects?external_id=${q(pattern)}`);
      assert.deepEqual(none.json.subjects, [], pattern);
    }
    const page = await stack.api("GET", `/v1/subjects?provider=align&cursor=${q("align/_")}`);
    assert.equal(page.status, 200, page.text);
    const events = await stack.api("GET", `/v1/subjects/align/${q(allowedRef)}/events`);
    assert.equal(events.status, 200, events.text);
    const tables = await stack.sql("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'subjects'");
    assert.equal(tables.length, 1, "the subjects table exists");
    await ctx.assertHealthy();
  });
});

describe("a flood of forged signatures", () => {
  const ctx = hostileStack();

  test("2,000 forged webhooks, 32 at a time: every one 401, nothing written; a genuine one still lands", async (t) => {
    const { stack } = ctx;
    const TOTAL = 2000;
    const CONCURRENCY = 32;
    const latencies = [];
    const statuses = new Map();
    const started = performance.now();
    await ctx.writesNothing(() =>
      pool(Array.from({ length: TOTAL }, (_, i) => i), CONCURRENCY, async (i) => {
        const body = JSON.stringify(kycsUpdated(`flood-${i}`, { status: "approved" }));
        const t0 = performance.now();
        const res = await stack.alignWebhook(body, { signature: randomBytes(32).toString("hex") });
        latencies.push(performance.now() - t0);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        if (res.status !== 401 || res.json?.error?.code !== "unauthorized") {
          assert.fail(`request ${i}: ${res.status} ${res.text}`);
        }
      }),
    );
    const elapsed = performance.now() - started;
    assert.deepEqual([...statuses], [[401, TOTAL]]);
    const sorted = [...latencies].sort((a, b) => a - b);
    const mean = latencies.reduce((a, b) => a + b, 0) / latencies.length;
    const pct = (p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
    t.diagnostic(
      `flood: ${TOTAL} forged in ${(elapsed / 1000).toFixed(2)} s (${Math.round(TOTAL / (elapsed / 1000))} req/s, ${CONCURRENCY} concurrent); ` +
        `latency mean ${mean.toFixed(1)} ms, p50 ${pct(50).toFixed(1)}, p99 ${pct(99).toFixed(1)}, max ${sorted.at(-1).toFixed(1)}`,
    );
    // Each refusal is counted in its log line (no D1 or KV write), and the log says nothing of the body.
    const refused = stack.logLines("request").filter((l) => l.route === "webhook.align" && l.status === 401 && l.outcome === "rejected");
    assert.equal(refused.length, TOTAL);
    assert.ok(
      refused.every((l) => l.meter && l.meter.d1_calls === 0 && l.meter.kv_writes === 0 && l.meter.queue_messages === 0),
      "no D1 call, KV write or queue message for a refusal",
    );
    for (const { message } of stack.worker.logs()) {
      assert.ok(!message.includes("ada.lovelace") && !message.includes("flood-"), "no body content in the log");
    }

    const ref = "flood-genuine-1";
    stack.standIn.setAlign(ref, { status: "approved" });
    const genuine = await stack.alignWebhook(kycsUpdated(ref, { withObject: false }));
    assert.equal(genuine.status, 200, genuine.text);
    assert.equal(genuine.json.duplicate, false);
    await ctx.settle("align", ref);
    const { events } = (await stack.api("GET", `/v1/subjects/align/${ref}/events`)).json;
    assert.equal(events.filter((e) => e.type === "webhook").length, 1, "the genuine webhook was recorded");
    assert.equal((await stack.subject("align", ref)).json.status, "approved");
    await ctx.assertHealthy();
  });
});

describe("hostile Sumsub input", () => {
  const ctx = hostileStack({ sumsub: true });
  const PATH = "/webhooks/sumsub";
  /** Headers of a Sumsub webhook digested over `raw` (node:crypto) with `alg`. */
  const digested = (raw, alg = "HMAC_SHA256_HEX", extra = {}) => ({
    ...JSON_TYPE,
    "x-payload-digest": sumsubDigest(SUMSUB_WEBHOOK_SECRET, raw, alg),
    "x-payload-digest-alg": alg,
    ...extra,
  });
  const event = (ref, extra = "") =>
    `{"type":"applicantReviewed","externalUserId":"${ref}","correlationId":"c-${ref}","sandboxMode":true,"reviewStatus":"completed"${extra}}`;

  test("empty, oversized, non-UTF-8, deeply nested and form bodies: exact refusals, nothing written", async () => {
    const { stack } = ctx;
    const ref = "hostile-sumsub-1";
    const over = exactly(LIMIT + 1, JSON.parse(event(ref)));
    const latin1 = Buffer.concat([Buffer.from(event(ref, ',"note":"').slice(0, -1)), Buffer.from([0xe9]), Buffer.from('"}')]);
    const deep = event(ref, `,"ignored":${"[".repeat(10_000)}${"]".repeat(10_000)}`);
    await ctx.writesNothing(async () => {
      assertError(await stack.post(PATH, "", digested("")), 400, "bad_request");
      assertError(await stack.post(PATH, "", JSON_TYPE), 401, "unauthorized");
      assertError(await stack.post(PATH, over, digested(over)), 413, "payload_too_large");
      const chunked = await stream(stack.url, { path: PATH, headers: digested(over, "HMAC_SHA256_HEX", { "transfer-encoding": "chunked" }), total: LIMIT + 1 });
      assertError(chunked, 413, "payload_too_large");
      assertError(await stack.post(PATH, latin1, digested(latin1)), 400, "bad_request");
      assertError(await stack.post(PATH, deep, digested(deep, "HMAC_SHA512_HEX")), 400, "bad_request");
      const body = event(ref);
      assertError(await stack.post(PATH, body, digested(body, "HMAC_SHA256_HEX", { "content-type": "application/x-www-form-urlencoded" })), 415, "unsupported_media_type");
      await ctx.untracked("sumsub", ref);
    });
  });

  test("repeated, swapped or mislabelled digests and algorithms are 401", async () => {
    const { stack } = ctx;
    const ref = "hostile-sumsub-2";
    const body = event(ref);
    const sig = sumsubDigest(SUMSUB_WEBHOOK_SECRET, body);
    await ctx.writesNothing(async () => {
      const joined = new Headers({ ...JSON_TYPE, "x-payload-digest-alg": "HMAC_SHA256_HEX" });
      joined.append("x-payload-digest", sig);
      joined.append("x-payload-digest", sig);
      assertError(await stack.post(PATH, body, joined), 401, "unauthorized");
      const algs = new Headers({ ...JSON_TYPE, "x-payload-digest": sig });
      algs.append("x-payload-digest-alg", "HMAC_SHA256_HEX");
      algs.append("x-payload-digest-alg", "HMAC_SHA256_HEX");
      assertError(await stack.post(PATH, body, algs), 401, "unauthorized");
      for (const alg of ["HMAC_MD5_HEX", "hmac-sha256", "HMAC_SHA256_BASE64", "none"]) {
        assertError(await stack.post(PATH, body, { ...JSON_TYPE, "x-payload-digest": sig, "x-payload-digest-alg": alg }), 401, "unauthorized");
      }
      // A genuine digest of another body.
      const other = event("hostile-sumsub-3");
      assertError(await stack.post(PATH, other, { ...JSON_TYPE, "x-payload-digest": sig }), 401, "unauthorized");
      await ctx.untracked("sumsub", ref);
    });
  });

  test("SQL metacharacters or a path in externalUserId, correctly digested: 400, nothing written", async () => {
    const { stack } = ctx;
    await ctx.writesNothing(async () => {
      for (const ref of [...SQL, "../../v1/stats", "a/b", "x".repeat(129)]) {
        const body = JSON.stringify({ type: "applicantPending", externalUserId: ref, correlationId: "c", sandboxMode: true });
        assertError(await stack.post(PATH, body, digested(body)), 400, "bad_request");
      }
    });
  });
});
