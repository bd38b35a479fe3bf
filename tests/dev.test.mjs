// `make dev`'s server script, end to end: wrangler dev (workerd) on loopback with migrations
// applied to PERSIST_DIR, the honoured PORT, and state that survives a restart.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "../sandbox/kit.mjs";

const ROOT = new URL("..", import.meta.url).pathname;
const TOKEN = "dev-smoke-token-81f0-0123456789abcdef";

async function serve(port, persistDir) {
  const child = spawn("bash", ["scripts/dev.sh", "--var", `API_TOKEN:${TOKEN}`], {
    cwd: ROOT,
    env: {
      ...process.env,
      PORT: String(port),
      SANDBOX_PORT: String(await freePort()),
      PERSIST_DIR: persistDir,
      DEV_VARS: join(persistDir, "dev.vars"),
    },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (res.ok) {
        return {
          stop: async () => {
            process.kill(-child.pid, "SIGTERM");
            await new Promise((resolve) => child.once("exit", resolve));
          },
        };
      }
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null) break;
    await sleep(250);
  }
  process.kill(-child.pid, "SIGKILL");
  throw new Error(`dev server did not come up:\n${output}`);
}

test("make dev's server applies migrations, honours PORT and PERSIST_DIR, and keeps state across restarts", async () => {
  const persistDir = await mkdtemp(join(tmpdir(), "kyc-edge-dev-"));
  const port = await freePort();
  const api = (method, path, body) =>
    fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: body && JSON.stringify(body),
    });
  try {
    let server = await serve(port, persistDir);
    const created = await api("PUT", "/v1/subjects/align/dev-smoke-1", { external_id: "u-1" });
    assert.equal(created.status, 201, await created.text());
    await server.stop();

    server = await serve(port, persistDir);
    try {
      const res = await api("GET", "/v1/subjects/align/dev-smoke-1");
      assert.equal(res.status, 200);
      assert.equal((await res.json()).external_id, "u-1");
      const again = await api("PUT", "/v1/subjects/align/dev-smoke-1", { external_id: "u-1" });
      assert.equal(again.status, 200, "still tracked after the restart");
    } finally {
      await server.stop();
    }
  } finally {
    await rm(persistDir, { recursive: true, force: true });
  }
});
