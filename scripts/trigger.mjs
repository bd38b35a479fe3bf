// `make trigger`: moves the local sandbox's truth for one subject, sends the webhook that
// announces it, signed as the provider would (see sandbox/server.mjs), and waits for the effect:
// the subject's status in kyc-edge and the notifications the sandbox's endpoint received.
//
//   make trigger PROVIDER=align REF=cust-1 STATUS=approved   move the truth, send the webhook
//   make trigger PROVIDER=align REF=cust-1 STATUS=rejected DROP=1   move it, send nothing
//   make trigger PROVIDER=align REF=cust-1 REPLAY=1          send the last body again
//   make trigger PROVIDER=sumsub REF=user-1 STATUS=resubmission_required
//   make trigger PROVIDER=persona REF=user-1 STATUS=approved  an inquiry, signed Persona-Signature
//   WAIT=0                                                   return once the webhook is answered
//
// The worker and sandbox are found as scripts/local.mjs says (the running `make dev`).
import { parseArgs } from "node:util";
import { eventually, fetchJson, WaitTimeout } from "../sandbox/kit.mjs";
import { adminToken, failWith, localStack } from "./local.mjs";

const { values } = parseArgs({
  options: {
    provider: { type: "string", default: "align" },
    ref: { type: "string" },
    status: { type: "string" },
    drop: { type: "string", default: "" },
    replay: { type: "string", default: "" },
    wait: { type: "string", default: "1" },
  },
});
const yes = (flag) => flag !== "" && flag !== "0";
const fail = failWith("trigger");
const stack = localStack();
const { provider, ref, status } = values;
if (!ref) fail("REF is required, e.g. make trigger PROVIDER=align REF=cust-1 STATUS=approved");
if (!status && !yes(values.replay)) fail("STATUS (or REPLAY=1) is required");

const reach = async (url, init) => {
  try {
    return await fetchJson(url, init);
  } catch {
    return null;
  }
};

// A provider kyc-edge does not serve says which variables would enable it.
const health = await reach(`${stack.worker}/healthz`);
if (!health) fail(`no worker at ${stack.worker}: is \`make dev\` running?`);
const missing = health.json?.providers?.not_configured?.[provider];
if (missing) {
  fail(`${provider} is not configured in kyc-edge: set ${missing.join(", ")} in ${stack.vars} and restart \`make dev\``);
}

const token = adminToken(stack);
const subjectUrl = `${stack.worker}/v1/subjects/${encodeURIComponent(provider)}/${encodeURIComponent(ref)}?consistency=strong`;
const readSubject = async () => {
  const answer = await reach(subjectUrl, { headers: { authorization: `Bearer ${token}` } });
  return answer?.status === 200 ? answer.json : null;
};
const notificationsUrl = `${stack.sandbox}/_sandbox/notifications`;
const notifications = async () => (await reach(notificationsUrl))?.json?.notifications ?? [];
const before = { subject: await readSubject(), notified: (await notifications()).length };

const res = await reach(`${stack.sandbox}/_sandbox/trigger`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ provider, ref, status: status || undefined, drop: yes(values.drop), replay: yes(values.replay) }),
});
if (!res) fail(`no sandbox at ${stack.sandbox}: is \`make dev\` running?`);
const result = res.json ?? {};
if (res.status !== 200) fail(result.error ?? `sandbox answered ${res.status}`);
const what = result.replayed
  ? `${provider} ${ref}: last webhook sent again`
  : `${provider} ${ref} is now ${result.status} at the provider`;
if (!result.sent) {
  process.stdout.write(`${what}; webhook dropped (a cron run's check will find the change: make cron)\n`);
  process.exit(0);
}
process.stdout.write(`${what}; webhook → HTTP ${result.worker.status} ${JSON.stringify(result.worker.body)}\n`);
if (result.worker.status >= 300) {
  const error = result.worker.body?.error;
  if (error?.missing) fail(`${error.message} (in ${stack.vars}, then restart \`make dev\`)`);
  process.exit(1);
}
if (!yes(values.wait) || result.replayed || !token) process.exit(0);
if (before.subject?.status === status) {
  process.stdout.write(`kyc-edge: ${provider}/${ref} was already ${status}: nothing changes, nothing is notified\n`);
  process.exit(0);
}

// The webhook was answered once recorded; the status moves when its queued job has run.
const moved = (subject) => subject && subject.status === status && subject.version !== before.subject?.version && subject;
let subject;
try {
  subject = await eventually(`${provider}/${ref} to become ${status}`, async () => moved(await readSubject()), {
    timeoutMs: 20_000,
    intervalMs: 200,
  });
} catch (error) {
  if (!(error instanceof WaitTimeout)) throw error;
  const now = await readSubject();
  fail(`after 20 s kyc-edge still says ${now?.status ?? "nothing"} for ${provider}/${ref} (expected ${status}); see make dev's log`);
}
process.stdout.write(`kyc-edge: ${provider}/${ref} is ${subject.status} (version ${subject.version}, from ${subject.source})\n`);

const about = (n) => n.subject === `${provider}/${ref}` && n.status === subject.status;
const received = await eventually(
  `a notification about ${provider}/${ref} → ${subject.status}`,
  async () => {
    const list = (await notifications()).slice(before.notified).filter(about);
    return list.length ? list : null;
  },
  { timeoutMs: 5_000, intervalMs: 200 },
).catch(() => null);
if (received) {
  for (const n of received) {
    process.stdout.write(`notified: ${n.id} ${n.type} ${n.subject} → ${n.status} (${n.verified ? "signature verified" : "SIGNATURE INVALID"})\n`);
  }
} else {
  process.stdout.write(`notified: nothing reached the sandbox's endpoint within 5 s (is APP_WEBHOOK_URL pointing elsewhere?)\n`);
}
