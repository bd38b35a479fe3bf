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
