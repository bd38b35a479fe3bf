// `make cron`: runs the worker's Cron Trigger once, as Cloudflare does on its schedule (every
// 5 minutes when deployed; `make dev` never runs it by itself), and prints what the run found:
// subjects due, checks queued, providers skipped. Under `make dev` every subject is due at
// every run (the dev cadence is 1 s), so a run finds any change the sandbox holds; deployed,
// see the README's "Back-off" for when a subject is due.
import { eventually, fetchJson } from "../sandbox/kit.mjs";
import { adminToken, failWith, localStack } from "./local.mjs";

const fail = failWith("cron");
const stack = localStack();
const token = adminToken(stack);
if (!token) fail(`no API_TOKEN in ${stack.vars}: is this where \`make dev\` runs?`);
const runs = async () => {
  const answer = await fetchJson(`${stack.worker}/v1/runs?limit=1`, { headers: { authorization: `Bearer ${token}` } });
  if (answer.status !== 200) fail(`GET /v1/runs answered ${answer.status}: ${answer.text}`);
  return answer.json.runs;
};
let previous;
try {
  [previous] = await runs();
} catch {
  fail(`no worker at ${stack.worker}: is \`make dev\` running?`);
}
const fired = await fetchJson(`${stack.worker}/cdn-cgi/handler/scheduled`);
if (fired.status !== 200) fail(`the scheduled handler answered ${fired.status}: ${fired.text}`);
const run = await eventually("the cron run's record in /v1/runs", async () => {
  const [latest] = await runs();
  return latest && latest.started_at !== previous?.started_at ? latest : null;
});
const skipped = run.skipped.length ? `; skipped ${run.skipped.join(", ")}` : "";
process.stdout.write(`cron run: ${run.due} due, ${run.enqueued} ${run.enqueued === 1 ? "check" : "checks"} queued${skipped} (${run.duration_ms} ms)\n`);
