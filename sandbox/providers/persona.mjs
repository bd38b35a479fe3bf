// A stand-in for Persona's inquiries API, served by sandbox/providers.mjs (make dev and the
// end-to-end tests), and Persona's webhook bodies and signatures made with node:crypto, never
// with the worker's verifier.
//   GET /api/v1/inquiries[?filter[reference-id]=R][&page[after]=INQ][&page[size]=N]
//   GET /api/v1/inquiries/{inquiry-id}
//   header `Authorization: Bearer <key>` (401 otherwise), optional `Persona-Version`
// Lists are newest first (created-at), 10 per page by default, continued by `links.next`
// (`page[after]` = the last inquiry of the page). Every inquiry carries personal attributes,
// as the real API's do: planted values the tests look for where they must never be.
import { createHmac } from "node:crypto";

/** Personal values every stand-in inquiry carries (name, birth date, address, e-mail, phone). */
export const PERSONA_PII = {
  "name-first": "Zelda",
  "name-last": "Quixotepersona",
  birthdate: "1961-02-03",
  "address-street-1": "742 Evergreen Terrace",
  "address-city": "Springfieldpersona",
  "email-address": "zelda.quixote.persona@example.com",
  "phone-number": "+15550100777",
};

/** `Persona-Signature` for `raw` at `t` (unix seconds): `t=…,v1=hex(HMAC-SHA256(secret, "{t}.{raw}"))`. */
export function personaSignature(secret, raw, t = Math.floor(Date.now() / 1000)) {
  return `t=${t},v1=${createHmac("sha256", secret).update(`${t}.${raw}`).digest("hex")}`;
}

/** A Persona webhook event about `inquiry` (as the API shows it), JSON:API as documented. */
export function personaEvent(name, inquiry, { id = `evt_${Math.random().toString(36).slice(2, 14)}`, createdAt = new Date() } = {}) {
  return {
    data: {
      type: "event",
      id,
      attributes: {
        name,
        "created-at": createdAt.toISOString(),
        "redacted-at": null,
        payload: { data: inquiry, included: [{ type: "account", id: "act_standin", attributes: { ...PERSONA_PII } }] },
      },
    },
  };
}

const newestFirst = (a, b) => b.createdAtMs - a.createdAtMs || b.seq - a.seq;

/** The stand-in. `key`: the API key it accepts; `pageSize`: default page size (10). */
export function createPersona({ key, pageSize = 10 } = {}) {
  let inquiries = [];
  let seq = 0;
  const versions = [];

  function resource(item) {
    const at = (ms) => (ms === undefined || ms === null ? null : new Date(ms).toISOString());
    return {
      type: "inquiry",
      id: item.id,
      attributes: {
        status: item.status,
        "reference-id": item.referenceId,
        "created-at": at(item.createdAtMs),
        "started-at": at(item.startedAtMs),
        "completed-at": at(item.completedAtMs),
        "decisioned-at": at(item.decisionedAtMs),
        "failed-at": null,
        "expired-at": null,
        "marked-for-review-at": null,
        ...PERSONA_PII,
        fields: { "name-first": { type: "string", value: PERSONA_PII["name-first"] }, birthdate: { type: "date", value: PERSONA_PII.birthdate } },
        tags: [],
        note: `reviewed ${PERSONA_PII["email-address"]}`,
      },
      relationships: { account: { data: { type: "account", id: "act_standin" } } },
    };
  }

  function list(query, url) {
    const ref = query.get("filter[reference-id]");
    const size = Math.min(Number(query.get("page[size]") ?? pageSize) || pageSize, 100);
    const all = inquiries.filter((item) => ref === null || item.referenceId === ref).sort(newestFirst);
    const after = query.get("page[after]");
    const start = after ? all.findIndex((item) => item.id === after) + 1 : 0;
    if (after && start === 0) return [400, { errors: [{ title: "Bad Request", details: "unknown page[after]" }] }];
    const page = all.slice(start, start + size);
    let next = null;
    if (start + size < all.length) {
      const params = new URLSearchParams(url.searchParams);
      params.set("page[after]", page[page.length - 1].id);
      next = `/api/v1/inquiries?${params}`;
    }
    return [200, { data: page.map(resource), links: { prev: null, next } }];
  }

  return {
    /** Whether a request path is Persona's. */
    handles: (path) => path === "/api/v1/inquiries" || path.startsWith("/api/v1/inquiries/"),
    /** [status, body, headers] for a request. */
    answer(req, url) {
      if (req.headers.authorization !== `Bearer ${key}`) return [401, { errors: [{ title: "Unauthorized" }] }];
      if (req.headers["persona-version"]) versions.push(req.headers["persona-version"]);
      if (url.pathname === "/api/v1/inquiries") return list(url.searchParams, url);
      const id = decodeURIComponent(url.pathname.slice("/api/v1/inquiries/".length));
      const item = inquiries.find((i) => i.id === id);
      return item ? [200, { data: resource(item) }] : [404, { errors: [{ title: "Not Found" }] }];
    },
    /**
     * Replaces `ref`'s inquiries. `list`: [{status, createdAt (ms, default: now minus its
     * place from the end, so the last given is the newest), decisionedAt, completedAt, id}].
     * Returns their resources as the API shows them.
     */
    setInquiries(ref, list) {
      inquiries = inquiries.filter((item) => item.referenceId !== ref);
      const now = Date.now();
      const added = list.map((fields, i) => addOne(ref, { createdAt: now - (list.length - i) * 60_000, ...fields }));
      return added.map(resource);
    },
    /** Adds one inquiry (`ref` null: no reference-id) and returns it as the API shows it. */
    addInquiry(ref, fields = {}) {
      return resource(addOne(ref, { createdAt: Date.now(), ...fields }));
    },
    /** Persona-Version values seen, in order. */
    versions: () => versions.slice(),
  };

  function addOne(ref, { status = "created", createdAt, decisionedAt, completedAt, startedAt, id }) {
    seq += 1;
    const item = {
      id: id ?? `inq_${String(seq).padStart(6, "0")}${Math.random().toString(36).slice(2, 8)}`,
      seq,
      referenceId: ref,
      status,
      createdAtMs: createdAt,
      startedAtMs: startedAt,
      completedAtMs: completedAt,
      decisionedAtMs: decisionedAt,
    };
    inquiries.push(item);
    return item;
  }
}
