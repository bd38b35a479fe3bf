-- Compare-and-set reconcile writes, request-time scheduling, subject-scoped check errors, and
-- cheaper bookkeeping: no counter row written per request, only the indexes a query uses.

-- When a webhook, refresh or registration last asked for a check (ms). A reconcile write may
-- push next_check_at later only if nobody asked after its check began.
ALTER TABLE subjects ADD COLUMN requested_at INTEGER;
-- Class of the last failed check ("HTTP 404", "timeout"); NULL once a check succeeds.
ALTER TABLE subjects ADD COLUMN last_error TEXT;
-- "unknown" took effect when the subject was registered.
UPDATE subjects SET status_at = created_at WHERE status_at IS NULL;

-- The cron claims due subjects per provider, oldest first.
DROP INDEX subjects_due;
CREATE INDEX subjects_due ON subjects (provider, next_check_at);

-- Only webhook rows carry a dedup key; duplicates are recorded as their own rows.
DROP INDEX events_dedup;
CREATE UNIQUE INDEX events_dedup ON events (provider, dedup_key) WHERE type = 'webhook';
-- A subject's history, newest first (rowid order within the key).
DROP INDEX events_by_subject;
CREATE INDEX events_by_subject ON events (provider, ref);
-- Pruning walks ids, which grow with time: no index on `at` to pay for on every insert.
DROP INDEX events_by_time;

-- Counts: status counts move with each change in the same transaction; webhook, duplicate
-- and drift counts are folded from event rows once per cron run ('fold.events' is the last
-- event id folded). The old counters carry over.
CREATE TABLE tallies (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
-- Refusals are no longer counted in D1 (a forged request must write nothing).
INSERT INTO tallies (name, value) SELECT name, value FROM counters WHERE name NOT LIKE 'webhook.rejected.%';
DROP TABLE counters;
INSERT INTO tallies (name, value)
  SELECT 'status.' || provider || '.' || status, COUNT(*) FROM subjects GROUP BY provider, status;
INSERT INTO tallies (name, value) SELECT 'fold.events', COALESCE(MAX(id), 0) FROM events;

-- A cron run no longer gathers figures from every job (a row written per job); it records
-- what the fold counted since the previous run, and the status counts, for charts. (Rebuilt
-- rather than altered: SQLite cannot drop a column whose definition ends in a comment.)
CREATE TABLE cron_runs_v2 (
  run_id      INTEGER PRIMARY KEY,      -- the run's scheduled time, ms
  started_at  INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL DEFAULT 0,
  due         INTEGER NOT NULL DEFAULT 0,
  enqueued    INTEGER NOT NULL DEFAULT 0,
  skipped     TEXT,                     -- providers skipped (disabled or paused), comma-separated
  activity    TEXT,                     -- JSON: {provider: {webhooks, duplicates, changes, drift}} since the previous run
  statuses    TEXT                      -- JSON: {provider: {status: count}} at the run
);
INSERT INTO cron_runs_v2 (run_id, started_at, duration_ms, due, enqueued, skipped)
  SELECT run_id, started_at, duration_ms, due, enqueued, skipped FROM cron_runs;
DROP TABLE cron_runs;
ALTER TABLE cron_runs_v2 RENAME TO cron_runs;
