// The bench's meter: an entry module wrapped around the compiled worker (copied next to
// build/index.js as bench-entry.mjs; never deployed). It counts, per invocation kind, what
// Cloudflare bills — D1 statements and the rows_read / rows_written of every result's `meta`,
// KV reads / writes / deletes / lists, queue messages, Analytics Engine points, subrequests —
// by wrapping the bindings the worker is handed. It measures from outside the worker, so the
// same figures come from any build (the committed baseline was measured this way).
//
// GET  /__bench/meter           the totals so far, by kind ("fetch /webhooks/align", "queue", ...),
//                               how many invocations are running and how long all have been idle
// GET  /__bench/statements      rows read and written so far per SQL text
// POST /__bench/hold?seconds=N  delay every queue message sent from now on by N seconds (0 = off):
//                               keeps the consumer out of a phase that measures ingress alone
import Worker from "./index.js";
import { AsyncLocalStorage } from "node:async_hooks";

const totals = {};
const invocation = new AsyncLocalStorage();
let holdSeconds = 0;
let lastActivity = Date.now();
let running = 0;

function meterFor(kind) {
  totals[kind] ??= {
    invocations: 0,
    d1_calls: 0,
    d1_statements: 0,
    d1_rows_read: 0,
    d1_rows_written: 0,
    kv_reads: 0,
    kv_writes: 0,
    kv_deletes: 0,
    kv_lists: 0,
    queue_messages: 0,
    messages_received: 0,
    analytics_points: 0,
    subrequests: 0,
  };
  return totals[kind];
}

// Per SQL text as well: which statements the rows go to.
const bySql = {};

const count = (meta, meter, sql) => {
  meter.d1_rows_read += meta?.rows_read ?? 0;
  meter.d1_rows_written += meta?.rows_written ?? 0;
  const entry = (bySql[sql] ??= { runs: 0, rows_read: 0, rows_written: 0 });
  entry.runs += 1;
  entry.rows_read += meta?.rows_read ?? 0;
  entry.rows_written += meta?.rows_written ?? 0;
};

// Methods of a binding are called with the real object as `this`; the rest passes through
// (`constructor` untouched: workers-rs checks its name to cast a binding).
function wrap(target, methods) {
  return new Proxy(target, {
    get(object, key) {
      if (Object.hasOwn(methods, key)) return methods[key];
      const value = Reflect.get(object, key);
      return typeof value === "function" && key !== "constructor" ? value.bind(object) : value;
    },
  });
}

const realStatement = new WeakMap();
const sqlOf = new WeakMap();

function statement(real, meter, sql) {
  const wrapped = wrap(real, {
    bind: (...args) => statement(real.bind(...args), meter, sql),
    async run() {
      return this.all();
    },
    async all() {
      meter.d1_calls += 1;
      meter.d1_statements += 1;
      const result = await real.all();
      count(result.meta, meter, sql);
      return result;
    },
    // D1 runs the whole statement for first() as well; all() exposes the meta it drops.
    async first(column) {
      const { results } = await wrapped.all();
      const row = results[0];
      if (row === undefined) return null;
      return column === undefined || column === null ? row : row[column];
    },
  });
  realStatement.set(wrapped, real);
  sqlOf.set(wrapped, sql);
  return wrapped;
}

function d1(db, meter) {
  return wrap(db, {
    prepare: (sql) => statement(db.prepare(sql), meter, sql),
    async batch(statements) {
      meter.d1_calls += 1;
      meter.d1_statements += statements.length;
      const results = await db.batch(statements.map((s) => realStatement.get(s) ?? s));
      results.forEach((result, i) => count(result.meta, meter, sqlOf.get(statements[i]) ?? "?"));
      return results;
    },
  });
}

function kv(namespace, meter) {
  const read = (method) => (...args) => {
    meter.kv_reads += 1;
    return namespace[method](...args);
  };
  return wrap(namespace, {
    get: read("get"),
    getWithMetadata: read("getWithMetadata"),
    put(...args) {
      meter.kv_writes += 1;
      return namespace.put(...args);
    },
    delete(...args) {
      meter.kv_deletes += 1;
      return namespace.delete(...args);
    },
    list(...args) {
      meter.kv_lists += 1;
      return namespace.list(...args);
    },
  });
}

const held = (options) => (holdSeconds > 0 ? { ...options, delaySeconds: Math.max(options?.delaySeconds ?? 0, holdSeconds) } : options);

function queue(producer, meter) {
  return wrap(producer, {
    send(body, options) {
      meter.queue_messages += 1;
      return producer.send(body, held(options));
    },
    sendBatch(messages, options) {
      meter.queue_messages += messages.length;
      return producer.sendBatch(
        messages.map((message) => held(message)),
        options,
      );
    },
  });
}

function analytics(dataset, meter) {
  return wrap(dataset, {
    writeDataPoint(point) {
      meter.analytics_points += 1;
      return dataset.writeDataPoint(point);
    },
  });
}

function meteredEnv(env, meter) {
  const bindings = {};
  for (const [name, value] of Object.entries(env)) {
    if (value && typeof value === "object") {
      if (typeof value.prepare === "function" && typeof value.batch === "function") bindings[name] = d1(value, meter);
      else if (typeof value.getWithMetadata === "function") bindings[name] = kv(value, meter);
      else if (typeof value.sendBatch === "function") bindings[name] = queue(value, meter);
      else if (typeof value.writeDataPoint === "function") bindings[name] = analytics(value, meter);
    }
  }
  return new Proxy(env, {
    get: (target, key) => (Object.hasOwn(bindings, key) ? bindings[key] : Reflect.get(target, key)),
  });
}

// Subrequests: the worker calls the global fetch; the invocation it belongs to is tracked
// with AsyncLocalStorage.
const realFetch = globalThis.fetch;
globalThis.fetch = function fetch(...args) {
  const meter = invocation.getStore();
  if (meter) meter.subrequests += 1;
  return realFetch.apply(this, args);
};

async function metered(kind, env, ctx, call) {
  const meter = meterFor(kind);
  meter.invocations += 1;
  running += 1;
  lastActivity = Date.now();
  try {
    return await invocation.run(meter, () => call(new Worker(ctx, meteredEnv(env, meter))));
  } finally {
    running -= 1;
    lastActivity = Date.now();
  }
}

/** "/webhooks/argos/<token>" → "/webhooks/argos"; "/v1/subjects/align/x" → "/v1/subjects". */
function route(pathname) {
  const parts = pathname.split("/").filter(Boolean);
  return `/${parts.slice(0, 2).join("/")}`;
}

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === "/__bench/meter") {
      return Response.json({ totals, running, idle_ms: Date.now() - lastActivity, hold_seconds: holdSeconds });
    }
    if (url.pathname === "/__bench/statements") {
      return Response.json(bySql);
    }
    if (url.pathname === "/__bench/hold") {
      holdSeconds = Number(url.searchParams.get("seconds") ?? 0);
      return Response.json({ hold_seconds: holdSeconds });
    }
    return metered(`fetch ${route(url.pathname)}`, env, ctx, (worker) => worker.fetch(request));
  },
  queue(batch, env, ctx) {
    meterFor("queue").messages_received += batch.messages.length;
    return metered("queue", env, ctx, (worker) => worker.queue(batch));
  },
  scheduled(event, env, ctx) {
    return metered("scheduled", env, ctx, (worker) => worker.scheduled(event));
  },
};
