// What every end-to-end test needs: a fresh persisted state directory with the D1 schema,
// the compiled worker on loopback, a stand-in provider API, and the calls tests make on them.
// Helpers the sandbox and the bench share too (eventually, bodies, the notification sink)
// are in sandbox/kit.mjs.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import http from "node:http";
import { once } from "node:events";
import { applyMigrations, startWorker } from "./worker.mjs";
import { startStandIn } from "../../sandbox/providers.mjs";
import { eventually, fetchJson, parseJson } from "../../sandbox/kit.mjs";
import { alignSignature, sumsubDigest } from "../../sandbox/sign.mjs";
import { personaSignature } from "../../sandbox/providers/persona.mjs";

// Bearer tokens are at least 32 characters (shorter ones are a configuration error).
export const API_TOKEN = "test-api-token-5b1d-0123456789abcdef";
export const READ_TOKEN = "test-read-token-77e0-0123456789abcdef";
export const ALIGN_KEY = "sk_test_align_e2e_91c2";
export const ARGOS_KEY = "argos_e2e_api_key_7d3f";
export const ARGOS_TOKEN = "argos-hook-token-e2e-40aa-0123456789ab";
// A sandbox app token (`sbx:` prefix): webhooks with `sandboxMode: false` are from elsewhere.
export const SUMSUB_APP_TOKEN = "sbx:e2eAppToken7Qm2xVd9LkP3.e2eAppTokenSecretPart0aZ4";
export const SUMSUB_SECRET_KEY = "e2e_sumsub_secret_key_5c8d";
export const SUMSUB_WEBHOOK_SECRET = "e2e_sumsub_webhook_secret_b71e";

/** The worker variables that enable Sumsub against the stand-in at `url`. */
export function sumsubVars(url) {
  return {
    SUMSUB_APP_TOKEN,
    SUMSUB_SECRET_KEY,
    SUMSUB_WEBHOOK_SECRET,
    SUMSUB_API_BASE: url,
  };
}
export const PERSONA_KEY = "persona_sandbox_e2e_key_3c7a";
export const PERSONA_SECRET = "wbhsec_e2e_persona_8d21";

/**
 * Starts a stand-in provider API and the worker pointed at it. `vars` override the defaults
 * (all providers enabled, address allow-list explicitly off, short provider timeout); `argosPageSize`
 * sets how many submissions a stand-in ARGOS page holds (`personaPageSize`: inquiries a Persona
 * page holds, default 10); `worker` passes { scriptPath, compatibilityFlags, migrationsDir } on
 * to startWorker and applyMigrations. `sumsub: true` and `persona: true` enable those providers
 * too (off by default: enabling a provider changes how budgets are split).
 */
export async function startStack({ vars = {}, latencyMs = 0, persistDir, argosPageSize, personaPageSize, sumsub = false, persona = false, worker: workerOptions = {} } = {}) {
  const dir = persistDir ?? (await mkdtemp(join(tmpdir(), "kyc-edge-e2e-")));
  await applyMigrations(dir, workerOptions);
  const standIn = await startStandIn({
    latencyMs,
    alignKey: ALIGN_KEY,
    argosKey: ARGOS_KEY,
    sumsubAppToken: SUMSUB_APP_TOKEN,
    sumsubSecretKey: SUMSUB_SECRET_KEY,
    argosPageSize,
    personaKey: PERSONA_KEY,
    personaPageSize,
  });
  const worker = await startWorker({
    ...workerOptions,
    persistDir: dir,
    vars: {
      API_TOKEN,
      API_READ_TOKEN: READ_TOKEN,
      ALIGN_API_KEY: ALIGN_KEY,
      ALIGN_API_BASE: standIn.url,
      ARGOS_API_KEY: ARGOS_KEY,
      ARGOS_WEBHOOK_TOKEN: ARGOS_TOKEN,
      ARGOS_API_BASE: standIn.url,
      // Explicitly off (an empty list is a configuration error).
      ARGOS_ALLOWED_IPS: "any",
      // Persona only when asked (`persona: true`): the other suites keep their provider count.
      ...(persona ? { PERSONA_API_KEY: PERSONA_KEY, PERSONA_WEBHOOK_SECRET: PERSONA_SECRET, PERSONA_API_BASE: standIn.url } : {}),
      PROVIDER_TIMEOUT_MS: "3000",
      // The stand-in is on loopback: allowed only in a local run.
      LOCAL_DEV: "true",
      ...(sumsub ? sumsubVars(standIn.url) : {}),
      ...vars,
    },
  });
  const stack = {
    dir,
    worker,
    standIn,
    get url() {
      return worker.url;
    },
    async stop({ keepState = false } = {}) {
      await worker.stop();
      await standIn.stop();
      if (!keepState) await rm(dir, { recursive: true, force: true });
    },
    /** An application API call with the bearer token (or `token`). */
    async api(method, path, { body, token = API_TOKEN } = {}) {
      const headers = token === null ? {} : { authorization: `Bearer ${token}` };
      if (body !== undefined) headers["content-type"] = "application/json";
      return fetchJson(`${worker.url}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    },
    /** GET a subject: from KV when projected (no schedule fields), else D1. */
    subject(provider, ref) {
      return stack.api("GET", `/v1/subjects/${provider}/${encodeURIComponent(ref)}`);
    },
    /** GET a subject from D1, with its schedule. */
    row(provider, ref) {
      return stack.api("GET", `/v1/subjects/${provider}/${encodeURIComponent(ref)}?consistency=strong`).then((r) => r.json);
    },
    /** The worker's structured log lines of one kind ("request", "job", "cron"), parsed. */
    logLines(kind) {
      return worker
        .logs()
        .map(({ message }) => parseJson(message))
        .filter((line) => line && (kind === undefined || line.kind === kind));
    },
    /** Rows of a statement run on the worker's D1. */
    sql(query, ...params) {
      return worker.sql(query, ...params);
    },
    /** Everything D1 holds, table by table: equal fingerprints mean nothing was written. */
    async fingerprint() {
      const tables = await worker.sql(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' ORDER BY name",
      );
      const dump = {};
      for (const { name } of tables) dump[name] = await worker.sql(`SELECT * FROM "${name}"`);
      return JSON.stringify(dump);
    },
    stats() {
      return stack.api("GET", "/v1/stats").then((r) => r.json);
    },
    /** Waits until GET serves the subject with `status` (and `check` holds); the subject then. */
    reaches(provider, ref, status, check = () => true) {
      return eventually(
        async () => `${provider}/${ref} to become ${status} (now ${JSON.stringify((await stack.subject(provider, ref)).json)})`,
        async () => {
          const res = await stack.subject(provider, ref);
          return res.json?.status === status && check(res.json) && res.json;
        },
      );
    },
    /** POSTs a raw body to an ingress route. */
    post(path, body, headers = {}) {
      return fetchJson(`${worker.url}${path}`, { method: "POST", headers, body });
    },
    /** An Align webhook signed independently (node:crypto), unless `signature` is given. */
    alignWebhook(body, { signature, key = ALIGN_KEY } = {}) {
      const raw = typeof body === "string" ? body : JSON.stringify(body);
      const headers = { "content-type": "application/json" };
      const sig = signature === undefined ? alignSignature(key, raw) : signature;
      if (sig !== null) headers["x-hmac-signature"] = sig;
      return stack.post("/webhooks/align", raw, headers);
    },
    argosWebhook(body, { token = ARGOS_TOKEN, ip } = {}) {
      const raw = typeof body === "string" ? body : JSON.stringify(body);
      const headers = { "content-type": "application/json" };
      if (ip) headers["cf-connecting-ip"] = ip;
      return stack.post(`/webhooks/argos/${token}`, raw, headers);
    },
    /**
     * A Sumsub webhook with its X-Payload-Digest computed independently (node:crypto), under
     * `alg` (sent as X-Payload-Digest-Alg unless null); `digest` replaces it (null: none).
     */
    sumsubWebhook(body, { alg = "HMAC_SHA256_HEX", digest, secret = SUMSUB_WEBHOOK_SECRET, headers: extra = {} } = {}) {
      const raw = typeof body === "string" ? body : JSON.stringify(body);
      const headers = { "content-type": "application/json", ...extra };
      const value = digest === undefined ? sumsubDigest(secret, raw, alg ?? "HMAC_SHA256_HEX") : digest;
      if (value !== null) headers["x-payload-digest"] = value;
      if (alg !== null) headers["x-payload-digest-alg"] = alg;
      return stack.post("/webhooks/sumsub", raw, headers);
    },
    /** A Persona webhook signed with node:crypto at `t` (now), unless `signature` is given. */
    personaWebhook(body, { signature, secret = PERSONA_SECRET, t, ip } = {}) {
      const raw = typeof body === "string" ? body : JSON.stringify(body);
      const headers = { "content-type": "application/json" };
      const sig = signature === undefined ? personaSignature(secret, raw, t) : signature;
      if (sig !== null) headers["persona-signature"] = sig;
      if (ip) headers["cf-connecting-ip"] = ip;
      return stack.post("/webhooks/persona", raw, headers);
    },
    /** Runs the cron handler as if scheduled at `time` (ms). */
    async cron(time = Date.now()) {
      const res = await fetch(`${worker.url}/cdn-cgi/handler/scheduled?cron=*%2F5+*+*+*+*&time=${time}`);
      const text = await res.text();
      if (res.status !== 200) throw new Error(`cron failed: ${res.status} ${text}`);
    },
  };
  return stack;
}

/** What a cron run skipped among the configured providers: one without its secrets set is
 * always listed as `<provider>:disabled`, which says nothing about the run. */
export const skippedEnabled = (run) => run.skipped.filter((entry) => !entry.endsWith(":disabled"));

/**
 * A request over node:http with `path` sent byte for byte (fetch would resolve dot segments):
 * { status, text, json (undefined: not JSON), headers (node's) }.
 */
export async function rawPath(url, method, path, headers = {}) {
  const { port } = new URL(url);
  const req = http.request({ host: "127.0.0.1", port, method, path, headers, agent: false });
  req.end();
  const [res] = await once(req, "response");
  const parts = [];
  for await (const part of res) parts.push(part);
  const text = Buffer.concat(parts).toString("utf8");
  return { status: res.statusCode, text, json: parseJson(text), headers: res.headers };
}
