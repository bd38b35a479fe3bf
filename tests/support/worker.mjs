// Runs the compiled worker (build/index.js + build/index_bg.wasm from worker-build) in workerd
// through Miniflare, with the bindings declared in wrangler.toml: local D1, KV and Queues with
// the queue consumer running. State persists under one directory with the same layout as
// `wrangler dev --persist-to DIR` (DIR/v3/{d1,kv,...}), so a restart on it keeps D1 and KV data.
//
// Requests are plain HTTP to `url`. A `CF-Connecting-IP` request header reaches the worker
// unchanged (Miniflare only fills it from the socket when absent). The cron handler runs on
// `GET {url}/cdn-cgi/handler/scheduled?cron=<cron>&time=<ms since epoch>`; `time` becomes the
// event's scheduledTime (200 "ok" when the handler succeeded, 500 otherwise). applyMigrations()
// prepares the D1 schema compatibly with `make dev`.
import { readdir, readFile, access } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { unstable_getMiniflareWorkerOptions, unstable_readConfig, unstable_splitSqlQuery } from "wrangler";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CONFIG_PATH = join(ROOT, "wrangler.toml");
const SCRIPT_PATH = join(ROOT, "build", "index.js");

// wrangler logs which .dev.vars file it read; startWorker replaces those bindings anyway.
const logLevel = process.env.WRANGLER_LOG;
process.env.WRANGLER_LOG = "error";
const config = unstable_readConfig({ config: CONFIG_PATH });
const { workerOptions } = unstable_getMiniflareWorkerOptions(config);
if (logLevel === undefined) delete process.env.WRANGLER_LOG;
else process.env.WRANGLER_LOG = logLevel;

/**
 * Applies the unapplied migrations/*.sql (or those in `migrationsDir`) to the local D1 database persisted under `persistDir`,
 * the way `wrangler d1 migrations apply --local` (used by `make dev`) does: same database file,
 * same `d1_migrations` bookkeeping table, same statement splitter, same order. The two can be
 * mixed on one directory. Run it while no worker is using `persistDir`.
 */
export async function applyMigrations(persistDir, { migrationsDir } = {}) {
  const { migrations_dir: configuredDir = "migrations", migrations_table: table = "d1_migrations" } = config.d1_databases[0];
  const dir = migrationsDir ?? join(ROOT, configuredDir);
  const names = (await readdir(dir))
    .filter((name) => name.endsWith(".sql"))
    .sort()
    .sort((a, b) => parseInt(a, 10) - parseInt(b, 10));
  const { db, close } = await openD1(persistDir);
  try {
    const execute = (sql) => db.batch(unstable_splitSqlQuery(sql).map((query) => db.prepare(query)));
    // Byte-for-byte wrangler's statement, so both leave the same schema behind.
    await execute(`CREATE TABLE IF NOT EXISTS ${table}(
\t\tid         INTEGER PRIMARY KEY AUTOINCREMENT,
\t\tname       TEXT UNIQUE,
\t\tapplied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
);`);
    const { results } = await db.prepare(`SELECT name FROM ${table}`).all();
    const applied = new Set(results.map((row) => row.name));
    for (const name of names.filter((name) => !applied.has(name))) {
      const sql = await readFile(join(dir, name), "utf8");
      await execute(`${sql}\nINSERT INTO ${table} (name) values ('${name}');`);
    }
  } finally {
    await close();
  }
}

/**
 * Opens the worker's D1 database persisted under `persistDir` without the worker (none may be
 * running on it): { db (a D1Database), close() }.
 */
export async function openD1(persistDir) {
  const { binding } = config.d1_databases[0];
  const mf = new Miniflare({
    modules: true,
    script: "",
    cf: false,
    defaultPersistRoot: join(persistDir, "v3"),
    d1Databases: { [binding]: workerOptions.d1Databases[binding] },
  });
  return { db: await mf.getD1Database(binding), close: () => mf.dispose() };
}

/**
 * Starts the worker on 127.0.0.1 with state under `persistDir`. `scriptPath` replaces
 * build/index.js and `compatibilityFlags` are added to wrangler.toml's (the bench runs the
 * worker inside its meter this way). `vars` are added to (and
 * override) the [vars] of wrangler.toml; `.dev.vars` is ignored so tests do not depend on a
 * developer's local secrets. restart() stops workerd and starts it again on the same port and
 * directory. Returns { url, stop(), restart(), sql(query, ...params), logs() }; `url` has no
 * trailing slash; `sql` runs a statement on the worker's own D1 database and returns its rows
 * (tests look at what was, or was not, written); `logs` is every line the worker logged, as
 * [{ level, message }].
 */
export async function startWorker({ persistDir, vars = {}, scriptPath = SCRIPT_PATH, compatibilityFlags = [], inspect = false }) {
  try {
    await access(scriptPath);
  } catch {
    throw new Error(`${scriptPath} is missing: build the worker first (make build)`);
  }
  // Everything the worker logs, kept for tests (and printed with KYC_EDGE_TEST_LOGS=1).
  const logs = [];
  const options = {
    host: "127.0.0.1",
    port: 0,
    cf: false,
    unsafeTriggerHandlers: true,
    handleStructuredLogs({ level, message }) {
      logs.push({ level, message });
      if (process.env.KYC_EDGE_TEST_LOGS) process.stderr.write(`[worker ${level}] ${message}\n`);
    },
    // What workerd itself prints (uncaught exceptions, panics): kept as "runtime" lines.
    handleRuntimeStdio(stdout, stderr) {
      for (const stream of [stdout, stderr]) {
        stream.setEncoding("utf8");
        stream.on("data", (chunk) => {
          for (const message of chunk.split("\n").filter(Boolean)) {
            // Structured lines reach handleStructuredLogs too: keep only the rest.
            if (/^\{"timestamp":\d+,"level":/.test(message)) continue;
            logs.push({ level: "runtime", message });
            if (process.env.KYC_EDGE_TEST_LOGS) process.stderr.write(`[workerd] ${message}\n`);
          }
        });
      }
    },
    defaultPersistRoot: join(persistDir, "v3"),
    // Miniflare's inspector proxy, on a free port, for this worker's isolate alone (not the
    // D1/KV/Queue simulators' or Miniflare's own).
    ...(inspect ? { inspectorPort: 0 } : {}),
    workers: [
      {
        ...workerOptions,
        name: config.name,
        modules: true,
        scriptPath,
        // Module names are paths relative to this: the worker's own directory, wherever it is.
        modulesRoot: dirname(scriptPath),
        // worker-build emits ES modules named .js (Miniflare would read an imported .js as CommonJS).
        modulesRules: [{ type: "ESModule", include: ["**/*.js", "**/*.mjs"] }, ...(workerOptions.modulesRules ?? [])],
        compatibilityFlags: [...(workerOptions.compatibilityFlags ?? []), ...compatibilityFlags],
        bindings: { ...config.vars, ...vars },
        unsafeInspectorProxy: inspect,
      },
    ],
  };

  let mf = new Miniflare(options);
  const url = new URL(await mf.ready);
  options.port = Number(url.port);
  return {
    url: url.origin,
    async stop() {
      await mf.dispose();
    },
    async restart() {
      await mf.dispose();
      mf = new Miniflare(options);
      await mf.ready;
    },
    logs() {
      return logs.slice();
    },
    /** With `inspect`: the DevTools protocol WebSocket URL of the worker's own isolate. */
    async inspectorUrl() {
      return new URL(`/${config.name}`, await mf.getInspectorURL()).href;
    },
    async sql(query, ...params) {
      const db = await mf.getD1Database(config.d1_databases[0].binding);
      const { results } = await db.prepare(query).bind(...params).all();
      return results;
    },
  };
}

/**
 * Every file under `persistDir` (D1 SQLite databases with their -wal/-shm files, KV blobs, ...)
 * as [{ path, bytes }], `path` relative to `persistDir`.
 */
export async function readPersistedFiles(persistDir) {
  const entries = await readdir(persistDir, { recursive: true, withFileTypes: true });
  return Promise.all(
    entries
      .filter((entry) => entry.isFile())
      .map(async (entry) => {
        const path = join(entry.parentPath, entry.name);
        return { path: relative(persistDir, path), bytes: await readFile(path) };
      }),
  );
}
