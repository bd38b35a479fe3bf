// A stand-in for the application's notification endpoint, on 127.0.0.1. It checks every
// request with the official Standard Webhooks verifier (npm `standardwebhooks`), never with
// kyc-edge's signer, once per secret it is given, and answers as the test programs it.
import { createServer } from "node:http";
import { Webhook } from "standardwebhooks";

/**
 * Starts the endpoint. `secrets`: the `whsec_` secrets to verify with (each separately).
 * Returns:
 *   url, stop()
 *   received()        every request, in arrival order: { id, timestamp, type, ref, version,
 *                     body (parsed), raw, verified: [bool per secret], status (answered) }
 *   respond(ref, statuses)
 *                     the next requests about subject `ref` get `statuses` in turn (numbers,
 *                     or { status, delayMs, headers }); then 200
 *   recover(ref)      forget what was scripted for `ref`
 *   respondAlways(status)   every request gets `status` (null: back to 200)
 */
export async function startApp({ secrets }) {
  const verifiers = secrets.map((secret) => new Webhook(secret));
  const scripted = new Map();
  let always = null;
  const log = [];

  function answer(ref) {
    if (always !== null) return { status: always };
    const queue = scripted.get(ref);
    const next = queue?.shift();
    if (next === undefined) return { status: 200 };
    return typeof next === "number" ? { status: next } : next;
  }

  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      const headers = {
        "webhook-id": req.headers["webhook-id"],
        "webhook-timestamp": req.headers["webhook-timestamp"],
        "webhook-signature": req.headers["webhook-signature"],
      };
      const verified = verifiers.map((verifier) => {
        try {
          verifier.verify(raw, headers);
          return true;
        } catch {
          return false;
        }
      });
      let body = null;
      try {
        body = JSON.parse(raw);
      } catch {
        // recorded as unparsable: the test will see body === null
      }
      const { status, delayMs = 0, headers: extra = {} } = answer(body?.data?.ref);
      const entry = {
        id: headers["webhook-id"],
        timestamp: Number(headers["webhook-timestamp"]),
        signature: headers["webhook-signature"],
        type: body?.type,
        ref: body?.data?.ref,
        version: body?.data?.version,
        body,
        raw,
        verified,
        status,
        arrivedAt: Date.now(),
      };
      log.push(entry);
      setTimeout(() => {
        res.writeHead(status, { "content-type": "application/json", ...extra });
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
    /** Forget what was scripted for `ref`: its next requests get 200. */
    recover(ref) {
      scripted.delete(ref);
    },
    respondAlways(status) {
      always = status;
    },
  };
}
