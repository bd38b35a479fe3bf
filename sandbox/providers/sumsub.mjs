// A stand-in for Sumsub's applicant API, served by the stand-in of providers.mjs:
//   GET /resources/applicants/-;externalUserId={ref}/one
// It checks every request as Sumsub documents it (docs/providers/sumsub.md): `X-App-Token` must be
// the app token, `X-App-Access-Ts` within a minute of its clock, and `X-App-Access-Sig` the hex
// HMAC-SHA256 (secret key) of ts + METHOD + the path and query exactly as received + body;
// anything else is `401 {"description":"Invalid signature"}` (like Sumsub). The signature is
// computed here with node:crypto, independently of the worker's signer.
import { createHmac, timingSafeEqual } from "node:crypto";

/** Sumsub's request signature: hex HMAC-SHA256 of ts + METHOD + path?query + body. */
export function sumsubRequestSignature(secretKey, ts, method, pathWithQuery, body = "") {
  return createHmac("sha256", secretKey).update(`${ts}${method.toUpperCase()}${pathWithQuery}`).update(body).digest("hex");
}

/** `yyyy-MM-dd HH:mm:ss` (+ `.fff` when `ms`), UTC: Sumsub's time format. */
export function sumsubTime(ms, { millis = false, offset = "" } = {}) {
  const iso = new Date(ms).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, millis ? 23 : 19)}${offset}`;
}

/** The personal data a real applicant answer carries (`info`, `fixedInfo`); tests plant values. */
export const SUMSUB_DEFAULT_PII = {
  firstName: "Sandbox",
  lastName: "Applicant",
  dob: "1990-01-01",
  documentNumber: "SBX0000001",
  street: "1 Sandbox Street",
  email: "applicant@sandbox.example",
  phone: "+10000000000",
};

/**
 * Sumsub's part of the stand-in. `appToken`, `secretKey`: the credentials it accepts.
 * Returns { matches(pathname), answer(req, rawUrl, body) → [status, json, headers?],
 * setApplicant(ref, review, {pii}), removeApplicant(ref), applicant(ref),
 * signatureFailures() }.
 */
export function sumsubApi({ appToken, secretKey }) {
  const applicants = new Map();
  let refused = 0;
  const invalid = () => {
    refused += 1;
    return [401, { description: "Invalid signature", code: 401, correlationId: "sandbox-invalid-signature" }];
  };

  function authentic(req, rawUrl, body) {
    const token = req.headers["x-app-token"];
    const ts = req.headers["x-app-access-ts"];
    const sig = req.headers["x-app-access-sig"];
    if (typeof token !== "string" || typeof ts !== "string" || typeof sig !== "string") return false;
    if (!appToken || token !== appToken) return false;
    if (!/^\d+$/.test(ts) || Math.abs(Number(ts) - Date.now() / 1000) > 60) return false;
    const want = Buffer.from(sumsubRequestSignature(secretKey, ts, req.method, rawUrl, body), "utf8");
    const got = Buffer.from(sig.toLowerCase(), "utf8");
    return got.length === want.length && timingSafeEqual(got, want);
  }

  return {
    matches(pathname) {
      return pathname.startsWith("/resources/");
    },
    answer(req, rawUrl, body) {
      if (!authentic(req, rawUrl, body)) return invalid();
      // The path as received: the ref is one percent-encoded segment.
      const match = rawUrl.match(/^\/resources\/applicants\/-;externalUserId=([^/?]+)\/one$/);
      if (!match) return [404, { description: "Not found", code: 404 }];
      if (req.method !== "GET") return [405, { description: "Method not allowed", code: 405 }];
      let ref;
      try {
        ref = decodeURIComponent(match[1]);
      } catch {
        return [400, { description: "Bad request", code: 400 }];
      }
      const applicant = applicants.get(ref);
      if (!applicant) return [404, { description: "Applicant not found", code: 404, correlationId: "sandbox-not-found" }];
      return [200, applicant];
    },
    /**
     * Sets the applicant `ref`'s review: {reviewStatus, reviewAnswer?, reviewRejectType?,
     * reviewDate? (ms)}; `pii` overrides SUMSUB_DEFAULT_PII (names, dob, document number, …).
     */
    setApplicant(ref, { reviewStatus, reviewAnswer, reviewRejectType, reviewDate = Date.now() }, { pii = {} } = {}) {
      const p = { ...SUMSUB_DEFAULT_PII, ...applicants.get(ref)?.__pii, ...pii };
      const reviewResult = reviewAnswer
        ? {
            reviewAnswer,
            ...(reviewRejectType ? { reviewRejectType, rejectLabels: ["DOCUMENT_PAGE_MISSING"] } : {}),
            moderationComment: `Checked ${p.firstName} ${p.lastName}`,
            clientComment: `Document ${p.documentNumber}`,
          }
        : undefined;
      const created = applicants.get(ref)?.createdAt ?? sumsubTime(Date.now());
      const applicant = {
        id: `sbx${Buffer.from(ref).toString("hex").slice(0, 21)}`,
        createdAt: created,
        key: "SANDBOXKEY",
        clientId: "sandbox",
        inspectionId: `insp-${ref}`,
        externalUserId: ref,
        info: {
          firstName: p.firstName,
          lastName: p.lastName,
          dob: p.dob,
          country: "DEU",
          phone: p.phone,
          idDocs: [{ idDocType: "PASSPORT", country: "DEU", firstName: p.firstName, lastName: p.lastName, number: p.documentNumber, dob: p.dob }],
        },
        fixedInfo: { firstName: p.firstName, lastName: p.lastName, addresses: [{ street: p.street, country: "DEU" }] },
        email: p.email,
        applicantPlatform: "API",
        requiredIdDocs: { docSets: [{ idDocSetType: "IDENTITY", types: ["PASSPORT"] }] },
        review: {
          reviewId: "sbxReview",
          attemptId: "sbxAttempt",
          attemptCnt: 1,
          levelName: "basic-kyc-level",
          createDate: sumsubTime(Date.now() - 60_000, { offset: "+0000" }),
          reviewDate: reviewStatus === "completed" ? sumsubTime(reviewDate, { offset: "+0000" }) : undefined,
          reviewResult,
          reviewStatus,
          priority: 0,
        },
        type: "individual",
      };
      Object.defineProperty(applicant, "__pii", { value: p, enumerable: false });
      applicants.set(ref, applicant);
    },
    removeApplicant(ref) {
      applicants.delete(ref);
    },
    applicant(ref) {
      return applicants.get(ref);
    },
    /** Requests refused as `Invalid signature`. */
    signatureFailures() {
      return refused;
    },
  };
}
