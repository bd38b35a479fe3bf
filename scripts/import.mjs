// Imports an application's existing users into kyc-edge: reads a CSV or NDJSON export and
// posts it to POST /v1/subjects/batch, 1,000 lines at a time, with a progress bar. It resumes
// where it stopped: after each acknowledged batch it records how many lines are done in
// FILE.import-state.json, and a run on the same file continues from there. A batch whose
// answer never came is sent again (the endpoint is idempotent).
//
//   node scripts/import.mjs users.csv [--url http://127.0.0.1:8787] [--provider align]
//
// CSV: a header line naming the columns `ref` (required), `provider`, `external_id`, `ref_kind`
// (others are ignored); quoted fields as RFC 4180. NDJSON: one {"provider", "ref",
// "external_id", "ref_kind"} per line. `--provider` fills a missing provider.
// The token comes from API_TOKEN, the URL from --url or KYC_EDGE_URL (default
// http://127.0.0.1:8787). --restart ignores the saved state; --retries N (default 8) bounds
// the attempts per batch; invalid lines and their reasons go to FILE.invalid.ndjson.
import { appendFileSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: "string", default: process.env.KYC_EDGE_URL ?? "http://127.0.0.1:8787" },
    provider: { type: "string" },
    batch: { type: "string", default: "1000" },
    retries: { type: "string", default: "8" },
    "retry-ms": { type: "string", default: "1000" },
    restart: { type: "boolean", default: false },
  },
});

const fail = (message) => {
  process.stderr.write(`import: ${message}\n`);
  process.exit(1);
};
const [file] = positionals;
if (!file) fail("usage: node scripts/import.mjs FILE.csv|FILE.ndjson [--url URL] [--provider align|argos|sumsub]");
const token = process.env.API_TOKEN;
if (!token) fail("set API_TOKEN (the worker's bearer token)");
const batchSize = Math.min(1000, Math.max(1, Number(values.batch) || 1000));
const retries = Math.max(1, Number(values.retries) || 8);
const retryMs = Math.max(0, Number(values["retry-ms"]) || 0);
const statePath = `${file}.import-state.json`;
const invalidPath = `${file}.invalid.ndjson`;

/** RFC 4180 fields of one CSV record (quotes doubled inside quoted fields). */
function csvFields(line) {
  const fields = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < line.length; i += 1) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        field += '"';
        i += 1;
      } else if (c === '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c === '"') {
      quoted = true;
    } else if (c === ",") {
      fields.push(field);
      field = "";
    } else {
      field += c;
    }
  }
  fields.push(field);
  return fields;
}

/** The file's subjects, in order: [{ source line number, subject }]. */
function readSubjects(path) {
  const lines = readFileSync(path, "utf8").split(/\r?\n/);
  const subjects = [];
  const withDefault = (subject) => (subject.provider || !values.provider ? subject : { ...subject, provider: values.provider });
  const firstLine = lines.findIndex((line) => line.trim() !== "");
  if (firstLine >= 0 && lines[firstLine].trim().startsWith("{")) {
    lines.forEach((line, i) => {
      if (!line.trim()) return;
      let subject;
      try {
        subject = JSON.parse(line);
      } catch {
        subject = { unreadable: true };
      }
      subjects.push({ source: i + 1, subject: withDefault(subject) });
    });
    return subjects;
  }
  const header = csvFields(lines[firstLine] ?? "").map((h) => h.trim().toLowerCase());
  if (!header.includes("ref")) fail(`${path}: the CSV header must name a "ref" column`);
  const columns = ["provider", "ref", "external_id", "ref_kind"].filter((c) => header.includes(c));
  lines.slice(firstLine + 1).forEach((line, i) => {
    if (!line.trim()) return;
    const fields = csvFields(line);
    const subject = {};
    for (const column of columns) {
      const value = fields[header.indexOf(column)]?.trim();
      if (value) subject[column] = value;
    }
    subjects.push({ source: firstLine + i + 2, subject: withDefault(subject) });
  });
  return subjects;
}

function loadState() {
  if (values.restart || !existsSync(statePath)) return { done: 0, created: 0, existing: 0, repeat: 0, invalid: 0 };
  return JSON.parse(readFileSync(statePath, "utf8"));
}

/** Posts one batch until it is answered; the answer, or an error that retrying cannot fix. */
async function post(lines) {
  let lastError;
  for (let attempt = 1; attempt <= retries; attempt += 1) {
    try {
      const res = await fetch(`${values.url}/v1/subjects/batch`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/x-ndjson" },
        body: `${lines.map((l) => JSON.stringify(l.subject)).join("\n")}\n`,
        signal: AbortSignal.timeout(60_000),
      });
      const text = await res.text();
      if (res.status === 200) return JSON.parse(text);
      if (res.status < 500 && res.status !== 429 && res.status !== 408) {
        fail(`the batch from line ${lines[0].source} was refused: HTTP ${res.status} ${text}`);
      }
      lastError = `HTTP ${res.status}`;
    } catch (error) {
      lastError = error?.name === "TimeoutError" ? "no answer within 60 s" : String(error?.cause?.code ?? error?.message ?? error);
    }
    if (attempt < retries) await sleep(retryMs * 2 ** (attempt - 1));
  }
  throw new Error(`gave up after ${retries} attempts (${lastError})`);
}

function bar(done, total, state, started) {
  const width = 30;
  const filled = Math.round((done / Math.max(total, 1)) * width);
  const rate = done / Math.max((Date.now() - started) / 1000, 0.001);
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total} lines  created ${state.created}  existing ${state.existing}  invalid ${state.invalid}  ${rate.toFixed(0)}/s`;
}

const subjects = readSubjects(file);
const state = loadState();
if (values.restart) rmSync(invalidPath, { force: true });
if (state.done > 0) process.stderr.write(`import: resuming after line ${subjects[state.done - 1]?.source ?? state.done} (${state.done} done)\n`);
const started = Date.now();
const interactive = process.stderr.isTTY;
let lastReport = 0;
try {
  for (let i = state.done; i < subjects.length; i += batchSize) {
    const lines = subjects.slice(i, i + batchSize);
    const answer = await post(lines);
    for (const result of answer.results) {
      const line = lines[result.line - 1];
      if (result.result === "invalid") {
        appendFileSync(invalidPath, `${JSON.stringify({ line: line.source, error: result.error })}\n`);
      }
    }
    state.done = i + lines.length;
    for (const key of ["created", "existing", "repeat", "invalid"]) state[key] += answer[key];
    writeFileSync(statePath, `${JSON.stringify(state)}\n`);
    if (interactive) process.stderr.write(`\r${bar(state.done, subjects.length, state, started)}`);
    else if (Date.now() - lastReport > 2000 || state.done === subjects.length) {
      process.stderr.write(`${bar(state.done, subjects.length, state, started)}\n`);
      lastReport = Date.now();
    }
  }
} catch (error) {
  if (interactive) process.stderr.write("\n");
  fail(`${error.message}; ${state.done} of ${subjects.length} lines are done: run the same command again to resume`);
}
if (interactive) process.stderr.write("\n");
const seconds = (Date.now() - started) / 1000;
process.stdout.write(
  `imported ${file}: ${subjects.length} lines, ${state.created} created, ${state.existing} already tracked, ` +
    `${state.repeat} repeated, ${state.invalid} invalid${state.invalid ? ` (see ${invalidPath})` : ""}; ${seconds.toFixed(1)} s\n`,
);
rmSync(statePath, { force: true });
