// What the end-to-end tests, the sandbox (`make dev`) and the bench share, in one place: the
// providers' status words and webhook bodies, the application's notification sink, waiting
// for something to happen, a bounded pool, fetch-and-parse and a free port. It lives in
// sandbox/ because the sandbox runs with no test dependency (node:* and `standardwebhooks`
// only) and tests and bench already import the stand-in from here.
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { createServer as createNetServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { Webhook } from "standardwebhooks";
import { sumsubTime } from "./providers/sumsub.mjs";

// ---------------------------------------------------------------------------------------
// Status words: for each kyc-edge status, what the provider says (docs/providers/*.md).

/** Align: `kycs.status` and `kycs.sub_status`. */
export const ALIGN_STATUSES = {
  not_started: { status: "not_started", sub_status: null },
  pending: { status: "pending", sub_status: "kyc_form_submission_accepted" },
  approved: { status: "approved", sub_status: null },
  rejected: { status: "rejected", sub_status: null },
  resubmission_required: { status: "rejected", sub_status: "kyc_form_resubmission_required" },
};

/** ARGOS: what the submission says, and the trigger its webhook carries. */
export const ARGOS_STATUSES = {
  incomplete: { kyc: {}, trigger: "created" },
  pending: { kyc: {}, pending: true, trigger: "submit" },
  approved: { kyc: { result: "approved" }, trigger: "approved" },
  rejected: { kyc: { result: "rejected" }, trigger: "rejected" },
};

/** Sumsub: the applicant's review, and the webhook type announcing it. */
export const SUMSUB_STATUSES = {
  not_started: { review: { reviewStatus: "init" }, type: "applicantReset" },
  pending: { review: { reviewStatus: "pending" }, type: "applicantPending" },
  approved: { review: { reviewStatus: "completed", reviewAnswer: "GREEN" }, type: "applicantReviewed" },
  rejected: { review: { reviewStatus: "completed", reviewAnswer: "RED", reviewRejectType: "FINAL" }, type: "applicantReviewed" },
  resubmission_required: {
    review: { reviewStatus: "completed", reviewAnswer: "RED", reviewRejectType: "RETRY" },
    type: "applicantReviewed",
  },
};

/** Persona: the inquiry status, and the event its webhook carries. */
export const PERSONA_STATUSES = {
  not_started: { status: "created", event: "inquiry.created" },
  incomplete: { status: "pending", event: "inquiry.started" },
  pending: { status: "needs_review", event: "inquiry.marked-for-review" },
  approved: { status: "approved", event: "inquiry.approved" },
  rejected: { status: "declined", event: "inquiry.declined" },
};

// ---------------------------------------------------------------------------------------
// Webhook bodies, as the providers send them (Persona's: personaEvent in providers/persona.mjs).

/**
 * Align's `customer.kycs.updated` about `customerId`, with personal data in `entity_object`
 * (`withObject: false` leaves it out); `profile` replaces the planted name, e-mail and flow link.
 */
export function kycsUpdated(customerId, { status, sub_status, createdAt = new Date(), withObject = true, profile = {} } = {}) {
  const body = {
    event_type: "customer.kycs.updated",
    entity_id: customerId,
    entity_type: "customer",
    created_at: createdAt.toISOString(),
  };
  if (withObject) {
    const { email = "ada.lovelace@example.com", first_name = "Ada", last_name = "Lovelace", kyc_flow_link = "https://kyc.example/flow/1" } = profile;
    body.entity_object = {
      customer_id: customerId,
      email,
      first_name,
      last_name,
      type: "individual",
      kycs: { status, sub_status, status_breakdown: [], kyc_flow_link },
    };
  }
  return body;
}

/** An ARGOS webhook's plaintext body (before any encryption). */
export function argosEvent(trigger, { userid, submission_id, email = `${userid}@sandbox.example` }) {
  return { webhook_trigger: trigger, userid, submission_id, email };
}

/**
 * A Sumsub webhook body about `ref`: `review` ({reviewStatus, reviewAnswer, reviewRejectType},
 * as in SUMSUB_STATUSES) fills reviewStatus and reviewResult; `extra` adds or replaces fields.
 */
export function sumsubEvent(type, ref, { review = { reviewStatus: "pending" }, ...extra } = {}) {
  const { reviewStatus, reviewAnswer, reviewRejectType } = review;
  return {
    applicantId: `sbx${Buffer.from(ref).toString("hex").slice(0, 21)}`,
    inspectionId: `insp-${ref}`,
    correlationId: `req-${randomUUID()}`,
    externalUserId: ref,
    levelName: "basic-kyc-level",
    type,
    sandboxMode: true,
    reviewStatus,
    ...(reviewAnswer ? { reviewResult: { reviewAnswer, ...(reviewRejectType ? { reviewRejectType } : {}) } } : {}),
    createdAtMs: sumsubTime(Date.now(), { millis: true }),
    applicantType: "individual",
    ...extra,
  };
}

// ---------------------------------------------------------------------------------------
// The application's notification endpoint.

/**
 * Reads notifications as the application would, verifying each with the official Standard
 * Webhooks library (never with kyc-edge's signer), once per `whsec_` secret. Returns
 * (headers, raw) → { id, timestamp, signature, type, ref, version, body (parsed, or null),
 * raw, verified: [bool per secret], arrivedAt (ms) }.
 */
export function notificationReader(secrets = []) {
  const verifiers = secrets.map((secret) => new Webhook(secret));
  return (requestHeaders, raw) => {
    const headers = {
      "webhook-id": requestHeaders["webhook-id"],
      "webhook-timestamp": requestHeaders["webhook-timestamp"],
      "webhook-signature": requestHeaders["webhook-signature"],
    };
    const verified = verifiers.map((verifier) => {
      try {
        verifier.verify(raw, headers);
        return true;
      } catch {
        return false;
      }
    });
    const body = parseJson(raw) ?? null;
    return {
      id: headers["webhook-id"],
      timestamp: Number(headers["webhook-timestamp"]),
      signature: headers["webhook-signature"],
      type: body?.type,
      ref: body?.data?.ref,
      version: body?.data?.version,
      body,
      raw,
      verified,
      arrivedAt: Date.now(),
    };
  };
}

/**
 * A stand-in for the application's notification endpoint on 127.0.0.1, checking every request
 * with notificationReader(`secrets`) and answering after `delayMs` as it is programmed.
 * Returns:
 *   url, stop()
 *   received()        every request, in arrival order (notificationReader's entries, plus
 *                     `status`: what it was answered)
 *   respond(ref, statuses)
 *                     the next requests about subject `ref` get `statuses` in turn (numbers,
 *                     or { status, delayMs, headers }); then 200
 *   recover(ref)      forget what was scripted for `ref`: its next requests get 200
 *   respondAlways(status)   every request gets `status` (null: back to 200)
 */
export async function startSink({ secrets = [], delayMs: defaultDelayMs = 0 } = {}) {
  const read = notificationReader(secrets);
  const scripted = new Map();
  let always = null;
  const log = [];

  function answer(ref) {
    if (always !== null) return { status: always };
    const next = scripted.get(ref)?.shift();
    if (next === undefined) return { status: 200 };
    return typeof next === "number" ? { status: next } : next;
  }

  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const entry = read(req.headers, Buffer.concat(chunks).toString("utf8"));
      const { status, delayMs = defaultDelayMs, headers = {} } = answer(entry.ref);
      log.push({ ...entry, status });
      setTimeout(() => {
        res.writeHead(status, { "content-type": "application/json", ...headers });
        res.end("{}");
      }, delayMs);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/hooks/kyc`,
    stop() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
    received() {
      return log.slice();
    },
    respond(ref, statuses) {
      scripted.set(ref, [...(scripted.get(ref) ?? []), ...statuses]);
    },
    recover(ref) {
      scripted.delete(ref);
    },
    respondAlways(status) {
      always = status;
    },
  };
}

// ---------------------------------------------------------------------------------------
// Waiting, concurrency, HTTP.

/** What eventually() throws when what it waited for did not happen in time. */
export class WaitTimeout extends Error {
  name = "WaitTimeout";
}

/**
 * Polls `check` until it returns a truthy value, and returns that value. When `timeoutMs`
 * passes first it throws a WaitTimeout naming `what` (a string, or a function of the last
 * value returning one) and the last value: a test cannot pass without what it waited for.
 */
export async function eventually(what, check, { timeoutMs = 10_000, intervalMs = 100 } = {}) {
  if (typeof check !== "function") throw new TypeError("eventually(what, check, options): say what is awaited, then how to check it");
  // On the monotonic clock: a wall-clock step (seen once in CI: a 10 s wait that ended after
  // 2.5 s) must not end a wait early.
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (performance.now() > deadline) {
      const described = typeof what === "function" ? await what(value) : what;
      throw new WaitTimeout(`timed out after ${timeoutMs} ms waiting for ${described} (last check: ${JSON.stringify(value)})`);
    }
    await sleep(intervalMs);
  }
}

/** Runs `fn(item, index)` over `items` with at most `width` in flight; the results, in order. */
export async function pool(items, width, fn) {
  const results = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i], i);
      }
    }),
  );
  return results;
}

/** `text` parsed as JSON, or undefined when it is not JSON. */
export function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** fetch(), with the answer read whole: { status, headers, text, json (undefined: not JSON) }. */
export async function fetchJson(url, init) {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: parseJson(text) };
}

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort() {
  const server = createNetServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}
