// Where the worker's own CPU goes in a status-changing webhook: V8's sampling profiler on the
// kyc-edge isolate (as `make bench` measures own CPU), with the wasm's function names, split
// into the ingress (jobs held) and the queue work it causes. Prints the functions by self and
// by inclusive share of the busy samples. A microscope for finding costs, not a figure: runs
// differ by several per cent, so compare builds by alternating runs.
//
//   node bench/profile.mjs     N=300 subjects (env N)
//
// scripts/build.sh strips the names from build/ (size); this runs worker-build once more,
// copies the named build to a temporary checkout, and strips build/ again.
import { execFileSync } from "node:child_process";
import { cp, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ALIGN_KEY } from "../tests/support/stack.mjs";
import { kycsUpdated, pool } from "../sandbox/kit.mjs";
import { ROOT, attachProfiler, checkout, startMetered } from "./metered.mjs";

const N = Number(process.env.N ?? 300);
const INTERVAL_US = 100;

const root = await namedBuild();
const stack = await startMetered({ checkout: await checkout(root), inspect: true, vars: { WORKERS_PLAN: "paid", RECONCILE_BUDGET: "10000" } });
const profiler = await attachProfiler(await stack.worker.inspectorUrl(), { intervalUs: INTERVAL_US });
try {
  const base = Date.now() - 3_600_000;
  const ids = Array.from({ length: N }, (_, i) => `profile-${i}`);
  const body = (id, i, status, offset) =>
    JSON.stringify(kycsUpdated(id, { status, sub_status: "kyc_form_submission_accepted", createdAt: new Date(base + offset + i) }));
  const webhooks = (status, offset) => pool(ids.map((id, i) => body(id, i, status, offset)), 8, (raw) => stack.alignWebhook(raw, { key: ALIGN_KEY }));
  for (const id of ids) stack.standIn.setAlign(id, { status: "pending", sub_status: "kyc_form_submission_accepted" });
  await webhooks("pending", 0);
  await stack.settle();
  for (const id of ids) stack.standIn.setAlign(id, { status: "approved", sub_status: "kyc_form_submission_accepted" });
  await stack.hold(60);
  const ingress = await profiler.record(() => webhooks("approved", 60_000));
  await stack.hold(0);
  const drained = await profiler.record(() => stack.settle());
  report(`ingress of ${N} status-changing webhooks (jobs held)`, ingress);
  report("the queue work they caused", drained);
} finally {
  await profiler.close();
  await stack.stop();
  await rm(root, { recursive: true, force: true });
}

/** Functions by self and inclusive share of the samples in which the isolate was busy. */
function report(title, profile) {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const name = (id) => {
    const frame = byId.get(id).callFrame;
    return `${frame.functionName || "(anonymous)"} ${frame.url ? frame.url.split("/").pop() : ""}`.trim();
  };
  const self = new Map();
  const inclusive = new Map();
  let busy = 0;
  for (const id of profile.samples) {
    if (name(id) === "(idle)") continue;
    busy += 1;
    self.set(name(id), (self.get(name(id)) ?? 0) + 1);
    // A function counts once per sample, however often it is on the stack.
    const seen = new Set();
    for (let node = id; node !== undefined; node = parent.get(node)) seen.add(name(node));
    for (const fn of seen) inclusive.set(fn, (inclusive.get(fn) ?? 0) + 1);
  }
  const top = (counts, n) =>
    [...counts]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([fn, count]) => `${((100 * count) / busy).toFixed(1).padStart(6)}%  ${fn}`)
      .join("\n");
  console.log(`## ${title}: ${busy} busy samples of ${INTERVAL_US} µs asked`);
  console.log(`by self:\n${top(self, 40)}\ninclusive:\n${top(inclusive, 60)}\n`);
}

/** A temporary checkout holding a build with function names, and the migrations. */
async function namedBuild() {
  const bin = join(process.env.CARGO_HOME ?? join(process.env.HOME, ".cargo"), "bin");
  const path = `${bin}:${process.env.PATH}`;
  const env = {
    ...process.env,
    PATH: path,
    WASM_BINDGEN_BIN: execFileSync("bash", ["-c", "command -v wasm-bindgen"], { env: { ...process.env, PATH: path } }).toString().trim(),
    WASM_OPT_BIN: join(ROOT, "node_modules", ".bin", "wasm-opt"),
  };
  execFileSync("worker-build", ["--release"], { cwd: ROOT, env, stdio: "ignore" });
  const dir = await mkdtemp(join(tmpdir(), "kyc-edge-profile-"));
  try {
    await cp(join(ROOT, "build"), join(dir, "build"), { recursive: true });
    await symlink(join(ROOT, "migrations"), join(dir, "migrations"));
  } finally {
    execFileSync("node", [join(ROOT, "scripts", "strip-names.mjs"), join(ROOT, "build", "index_bg.wasm")], { stdio: "ignore" });
  }
  return dir;
}
