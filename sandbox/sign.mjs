// Provider signatures computed independently of the worker (node:crypto only), so the e2e tests
// check the worker's verification against a second implementation.
import { createCipheriv, createHash, createHmac } from "node:crypto";

/** Align webhook signature: hex HMAC-SHA256 of the raw body under `key`. */
export function alignSignature(key, rawBody) {
  return createHmac("sha256", key).update(rawBody).digest("hex");
}

/** ARGOS encrypted payload: base64 AES-256-ECB, key = SHA-256(apiKey), PKCS#7 padding. */
export function argosEncrypt(apiKey, plaintext) {
  const key = createHash("sha256").update(apiKey).digest();
  const cipher = createCipheriv("aes-256-ecb", key, null);
  return Buffer.concat([cipher.update(plaintext), cipher.final()]).toString("base64");
}

/** Sumsub's webhook digest names (`X-Payload-Digest-Alg`) and node:crypto's hash for each. */
export const SUMSUB_DIGEST_ALGS = { HMAC_SHA256_HEX: "sha256", HMAC_SHA512_HEX: "sha512", HMAC_SHA1_HEX: "sha1" };

/** Sumsub webhook digest: hex HMAC of the raw body under the webhook secret. */
export function sumsubDigest(secret, rawBody, alg = "HMAC_SHA256_HEX") {
  return createHmac(SUMSUB_DIGEST_ALGS[alg], secret).update(rawBody).digest("hex");
}
