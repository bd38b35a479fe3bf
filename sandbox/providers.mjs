// A stand-in for the provider APIs the worker calls, on 127.0.0.1: the local sandbox
// `make dev` runs (sandbox/server.mjs) and the end-to-end tests' provider.
//   Align  GET /v0/customers/{customer_id}, GET /v0/customers  header `Authorization: <key>` (raw)
//   ARGOS  GET /v3/submission?userid=U|submission_id=S|start_date=D&end_date=D
//          &request_type=kyc|aml[&nextpage_id=…&nextpage_date=…] header `x-api-key: <key>`
//   Sumsub GET /resources/applicants/-;externalUserId={ref}/one, signed requests
//          (providers/sumsub.mjs)
// Point the worker's ALIGN_API_BASE / ARGOS_API_BASE / SUMSUB_API_BASE at `url`. Callers program the state,
// inject faults and latency, and read per-path request logs.
//
// Every answer is computed from the state *when the request arrived*, then sent after the
// configured delay: a slow answer carries what the provider read when it was asked, as a real
// provider's would.
import { createServer } from "node:http";
import { sumsubApi } from "./providers/sumsub.mjs";
import { createPersona } from "./providers/persona.mjs";

/** An ARGOS timestamp: UTC "YYYY-MM-DD-HH-MM-SS-ZZZ" (ZZZ = milliseconds). */
export function argosTime(ms) {
  const [date, time] = new Date(ms).toISOString().slice(0, 23).split("T");
  return `${date}-${time.replace(/[:.]/g, "-")}`;
}

// mulberry32: a small seeded PRNG, so probabilistic faults (and the soak's schedule) repeat
// run to run.
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** ARGOS pages list the newest submissions first. */
const newestFirst = (a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0);

/**
 * Starts the stand-in. Options: latencyMs (delay before every response, default 0), alignKey,
 * argosKey, sumsubAppToken, sumsubSecretKey (the credentials it accepts), argosPageSize (submissions per page, default 50),
 * port (default: any free one), control (an async (req, url, body) → [status, json] handler
 * for every path under /_sandbox/, which is never a provider request).
 * Returns:
 *   url                       base URL, no trailing slash
 *   stop()                    closes the server and its connections
 *   setAlign(id, fields)      creates/updates an Align customer; fields: status, sub_status,
 *                             and optionally email, first_name, last_name, kyc_flow_link
 *   removeAlign(id)           makes the customer unknown again (404)
 *   setArgosSubmissions(userid, submissions)
 *                             replaces the user's submissions; each is merged over defaults
 *                             (submission_id, email, created_at, updated_at, kyc_result_at,
 *                             kyc: {result: "approved"}, data: {full_name, date_of_birth, ...});
 *                             its aml_result (when given) is served to request_type=aml only
 *   setSumsub(ref, review, {pii})
 *                             sets a Sumsub applicant's review ({reviewStatus, reviewAnswer,
 *                             reviewRejectType, reviewDate}); its answer carries PII in
 *                             info/fixedInfo (`pii` plants values)
 *   removeSumsub(ref)         the applicant is unknown again (404)
 *   sumsubSignatureFailures() Sumsub requests refused as `Invalid signature`
 *   persona                   the Persona stand-in (sandbox/providers/persona.mjs)
 *   failNext(n, {status, retryAfter, provider, headers})
 *                             the next n matching requests get `status` (default 500);
 *                             `retryAfter` (seconds) adds a Retry-After header, `headers`
 *                             any others; `provider` ("align" | "argos" | "sumsub" | "persona") limits
 *                             it to one API
 *   setFaultRate(rate, {status, retryAfter, provider, seed})
 *                             after failNext is used up, each matching request fails with
 *                             probability `rate` (0 turns it off), drawn from a PRNG seeded with
 *                             `seed` (default 1); `status` may be an array to pick from
 *   delayNext(n, ms, {path, then})
 *                             the next n requests (to `path` when given) are answered `ms`
 *                             later than the rest, with the state they were asked about;
 *                             `then()` runs once each such answer is computed (to change the
 *                             state right after a request read it)
 *   answerNext(n, {status, headers, body, provider})
 *                             the next n matching requests get this raw answer (`body` a string
 *                             sent as it is): a redirect, an oversized body
 *   setLatency(ms)
 *   counts()                  { [pathname]: requests served }, faults and auth failures included
 *   requests()                [{ method, path, query, status, arrivedAt }] of answered requests,
 *                             in the order they were answered
 *   arrivals()                [{ method, path, query, arrivedAt }] in arrival order
 *   resetCounts()
 */
export async function startStandIn({ latencyMs = 0, alignKey, argosKey, sumsubAppToken, sumsubSecretKey, argosPageSize, personaKey, personaPageSize, port = 0, control } = {}) {
  argosPageSize ??= 50;
  const sumsub = sumsubApi({ appToken: sumsubAppToken, secretKey: sumsubSecretKey });
  // Persona (sandbox/providers/persona.mjs): `persona` on the returned object programs it.
  const persona = createPersona({ key: personaKey, pageSize: personaPageSize });
  const customers = new Map();
  const submissions = new Map();
  let latency = latencyMs;
  let pending = { count: 0 };
  let random = { rate: 0 };
  let delays = { count: 0 };
  let raw = null;
  let log = [];
  let arrivals = [];

  function takeFault(provider) {
    if (pending.count > 0 && (!pending.provider || pending.provider === provider)) {
      pending.count -= 1;
      return pending;
    }
    if (random.rate > 0 && (!random.provider || random.provider === provider) && random.next() < random.rate) {
      const status = Array.isArray(random.status)
        ? random.status[Math.floor(random.next() * random.status.length)]
        : random.status;
      return { ...random, status };
    }
    return null;
  }

  /** The extra delay of a request, and what to do once its answer is computed. */
  function takeDelay(path) {
    if (delays.count > 0 && (!delays.path || delays.path === path)) {
      delays.count -= 1;
      return delays;
    }
    return { ms: 0 };
  }

  /** [status, body, headers] */
  function align(req, customerId) {
    if (req.headers.authorization !== alignKey) return [401, { message: "Unauthorized" }];
    const customer = customers.get(customerId);
    if (!customer) return [404, { message: "Customer not found" }];
    const { status, sub_status, kyc_flow_link, ...profile } = customer;
    return [
      200,
      {
        customer_id: customerId,
        ...profile,
        type: "individual",
        kycs: { status, sub_status, status_breakdown: [], kyc_flow_link },
      },
    ];
  }

  function argos(req, query) {
    if (req.headers["x-api-key"] !== argosKey) return [403, { message: "Forbidden" }];
    const userid = query.get("userid");
    const submissionId = query.get("submission_id");
    const requestType = query.get("request_type");
    if (!["kyc", "aml"].includes(requestType)) {
      return [400, { message: "request_type=kyc|aml is required" }];
    }
    // Without an id: every submission created within start_date..end_date (YYYY-MM-DD).
    const day = (item) => item.created_at.slice(0, 10);
    const [from, to] = [query.get("start_date"), query.get("end_date")];
    if ([from, to].some((d) => d !== null && !/^\d{4}-\d{2}-\d{2}$/.test(d))) {
      return [400, { message: "start_date and end_date are YYYY-MM-DD" }];
    }
    const all = userid
      ? (submissions.get(userid) ?? [])
      : submissionId
        ? [...submissions.values()].flat().filter((item) => item.submission_id === submissionId)
        : [...submissions.values()].flat().filter((item) => (!from || day(item) >= from) && (!to || day(item) <= to));
    const items = all
      .filter((item) => requestType === "kyc" || item.aml_result)
      .map(({ aml_result, ...item }) =>
        requestType === "kyc" ? item : { submission_id: item.submission_id, userid: item.userid, aml_result },
      )
      .sort(newestFirst);
    const after = query.get("nextpage_id");
    const start = after ? items.findIndex((item) => item.submission_id === after) + 1 : 0;
    const page = items.slice(start, start + argosPageSize);
    const body = { Items: page };
    if (start + argosPageSize < items.length) {
      const last = page[page.length - 1];
      body.nextpageKey = { id: last.submission_id, created_at: last.created_at };
    }
    return [200, body];
  }

  /** Align's unpaginated list, every customer whole (PII included), as the real one. */
  function alignList(req) {
    if (req.headers.authorization !== alignKey) return [401, { message: "Unauthorized" }];
    return [200, { items: [...customers.keys()].map((id) => align(req, id)[1]) }];
  }

  function answer(req, url, body) {
    const customer = url.pathname.match(/^\/v0\/customers\/([^/]+)$/);
    const list = url.pathname === "/v0/customers";
    const provider =
      customer || list ? "align" : url.pathname === "/v3/submission" ? "argos" : sumsub.matches(url.pathname) ? "sumsub" : persona.handles(url.pathname) ? "persona" : null;
    if (!provider) return [404, { message: "Not Found" }];
    if (req.method !== "GET" && provider !== "sumsub") return [405, { message: "Method Not Allowed" }];
    if (raw && raw.count > 0 && (!raw.provider || raw.provider === provider)) {
      raw.count -= 1;
      return [raw.status, raw.body ?? "", raw.headers ?? {}, true];
    }
    const fault = takeFault(provider);
    if (fault) {
      const headers = fault.retryAfter === undefined ? {} : { "retry-after": String(fault.retryAfter) };
      return [fault.status, { message: "injected fault" }, { ...headers, ...fault.headers }];
    }
    if (provider === "sumsub") return sumsub.answer(req, req.url, body);
    if (provider === "persona") return persona.answer(req, url);
    if (list) return alignList(req);
    return provider === "align" ? align(req, decodeURIComponent(customer[1])) : argos(req, url.searchParams);
  }

  function controlled(req, res, url) {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", async () => {
      let status = 500;
      let body = { error: "sandbox control failed" };
      try {
        [status, body] = await control(req, url, Buffer.concat(chunks));
      } catch (error) {
        body = { error: String(error?.message ?? error) };
      }
      res.writeHead(status, { "content-type": "application/json" });
      res.end(`${JSON.stringify(body, null, 2)}\n`);
    });
  }

  const server = createServer((req, res) => {
    const url = new URL(req.url, "http://standin");
    if (control && url.pathname.startsWith("/_sandbox")) return controlled(req, res, url);
    const arrivedAt = Date.now();
    arrivals.push({ method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams), arrivedAt });
    res.on("finish", () => {
      log.push({
        method: req.method,
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        status: res.statusCode,
        arrivedAt,
      });
    });
    // Read the body first (Sumsub signs it) so keep-alive connections stay usable.
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const [status, body, headers = {}, asIs = false] = answer(req, url, Buffer.concat(chunks).toString("utf8"));
      const delay = takeDelay(url.pathname);
      delay.then?.();
      setTimeout(() => {
        res.writeHead(status, { "content-type": "application/json", ...headers });
        res.end(asIs ? body : JSON.stringify(body));
      }, latency + delay.ms);
    });
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  const base = `http://127.0.0.1:${server.address().port}`;

  return {
    url: base,
    stop() {
      server.closeAllConnections();
      return new Promise((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    },
    setAlign(customerId, fields) {
      customers.set(customerId, {
        email: `${customerId}@example.test`,
        first_name: "Test",
        last_name: "Customer",
        kyc_flow_link: `${base}/kyc-flow/${encodeURIComponent(customerId)}`,
        sub_status: null,
        ...customers.get(customerId),
        ...fields,
      });
    },
    removeAlign(customerId) {
      customers.delete(customerId);
    },
    setArgosSubmissions(userid, list) {
      const now = argosTime(Date.now());
      submissions.set(
        userid,
        list.map((submission, i) => ({
          submission_id: `${userid}-submission-${i + 1}`,
          userid,
          email: `${userid}@example.test`,
          created_at: now,
          updated_at: now,
          kyc_result_at: now,
          kyc: { result: "approved" },
          ...submission,
          data: {
            full_name: "Test Person",
            date_of_birth: "1990-01-01",
            nationality: "KR",
            id_number: "900101-1234567",
            ...submission.data,
          },
        })),
      );
    },
    setSumsub(ref, review, options) {
      sumsub.setApplicant(ref, review, options);
    },
    removeSumsub(ref) {
      sumsub.removeApplicant(ref);
    },
    sumsubSignatureFailures() {
      return sumsub.signatureFailures();
    },
    persona,
    failNext(count, { status = 500, retryAfter, provider, headers } = {}) {
      pending = { count, status, retryAfter, provider, headers };
    },
    setFaultRate(rate, { status = 500, retryAfter, provider, seed = 1 } = {}) {
      random = { rate, status, retryAfter, provider, next: prng(seed) };
    },
    delayNext(count, ms, { path, then } = {}) {
      delays = { count, ms, path, then };
    },
    answerNext(count, { status = 200, headers = {}, body = "", provider } = {}) {
      raw = { count, status, headers, body, provider };
    },
    setLatency(ms) {
      latency = ms;
    },
    counts() {
      const counts = {};
      for (const { path } of log) counts[path] = (counts[path] ?? 0) + 1;
      return counts;
    },
    requests() {
      return log.slice();
    },
    /** Requests as they arrived, answered or not yet: [{ method, path, query, arrivedAt }]. */
    arrivals() {
      return arrivals.slice();
    },
    resetCounts() {
      log = [];
      arrivals = [];
    },
  };
}
