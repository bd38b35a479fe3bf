// `make trigger`: moves the local sandbox's truth for one subject and sends the webhook that
// announces it, signed as the provider would (see sandbox/server.mjs).
//
//   make trigger PROVIDER=align REF=cust-1 STATUS=approved   move the truth, send the webhook
//   make trigger PROVIDER=align REF=cust-1 STATUS=rejected DROP=1   move it, send nothing
//   make trigger PROVIDER=align REF=cust-1 REPLAY=1          send the last body again
//   make trigger PROVIDER=sumsub REF=user-1 STATUS=resubmission_required
//                 (Sumsub: not_started, pending, approved, rejected, resubmission_required)
//   make trigger PROVIDER=persona REF=user-1 STATUS=approved  an inquiry, signed Persona-Signature
//
// SANDBOX_URL (default http://127.0.0.1:8788) is where `make dev` runs the sandbox.
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    provider: { type: "string", default: "align" },
    ref: { type: "string" },
    status: { type: "string" },
    drop: { type: "string", default: "" },
    replay: { type: "string", default: "" },
  },
});
const yes = (flag) => flag !== "" && flag !== "0";
const sandbox = process.env.SANDBOX_URL ?? "http://127.0.0.1:8788";
const fail = (message) => {
  process.stderr.write(`trigger: ${message}\n`);
  process.exit(1);
};
if (!values.ref) fail("REF is required, e.g. make trigger PROVIDER=align REF=cust-1 STATUS=approved");
if (!values.status && !yes(values.replay)) fail("STATUS (or REPLAY=1) is required");

let res;
try {
  res = await fetch(`${sandbox}/_sandbox/trigger`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      provider: values.provider,
      ref: values.ref,
      status: values.status || undefined,
      drop: yes(values.drop),
      replay: yes(values.replay),
    }),
  });
} catch {
  fail(`no sandbox at ${sandbox}: is \`make dev\` running?`);
}
const result = await res.json();
if (res.status !== 200) fail(result.error ?? `sandbox answered ${res.status}`);
const what = result.replayed
  ? `${result.provider} ${result.ref}: last webhook sent again`
  : `${result.provider} ${result.ref} is now ${result.status} at the provider`;
if (!result.sent) {
  process.stdout.write(`${what}; webhook dropped (the cron will find the change)\n`);
} else {
  process.stdout.write(`${what}; webhook → HTTP ${result.worker.status} ${JSON.stringify(result.worker.body)}\n`);
}
if (result.sent && result.worker.status >= 300) process.exit(1);
