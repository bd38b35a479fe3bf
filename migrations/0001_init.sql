-- kyc-edge schema. D1 is the source of truth; KV only mirrors subjects for fast reads.
-- No column holds names, birth dates, document numbers, addresses or e-mail.

-- One row per tracked subject (a provider's customer / user).
CREATE TABLE subjects (
  provider        TEXT    NOT NULL,
  ref             TEXT    NOT NULL,
  ref_kind        TEXT    NOT NULL DEFAULT 'user',   -- how the provider API is asked: user | submission
  external_id     TEXT,                              -- the application's own id
  status          TEXT    NOT NULL DEFAULT 'unknown',
  provider_status TEXT,
  sub_status      TEXT,
  aml_status      TEXT,
  aml_risk_level  TEXT,
  status_at       INTEGER,                           -- ms; when the current status took effect
  observed_at     INTEGER NOT NULL DEFAULT 0,        -- ms; newest observation applied or confirmed (ordering)
  source          TEXT,                              -- webhook | poll: what set the current state
  created_at      INTEGER NOT NULL,
  updated_at      INTEGER NOT NULL,
  last_checked_at INTEGER,                           -- ms; start of the last successful provider fetch
  next_check_at   INTEGER NOT NULL,                  -- ms; due for reconciliation from then on
  check_step      INTEGER NOT NULL DEFAULT 0,        -- back-off step for undecided subjects
  failures        INTEGER NOT NULL DEFAULT 0,        -- consecutive failed checks
  version         INTEGER NOT NULL DEFAULT 1,        -- bumped by every applied change (optimistic concurrency)
  PRIMARY KEY (provider, ref)
) WITHOUT ROWID;

CREATE INDEX subjects_due ON subjects (next_check_at);
CREATE INDEX subjects_by_status ON subjects (status, provider);
CREATE INDEX subjects_by_external_id ON subjects (external_id);

-- History: every accepted webhook (type 'webhook') and every applied change (type 'change').
CREATE TABLE events (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  provider    TEXT    NOT NULL,
  ref         TEXT,                   -- NULL for provider events about no subject (Align transfers)
  type        TEXT    NOT NULL,       -- webhook | change
  kind        TEXT,                   -- webhook: provider event type / trigger; change: fields changed
  dedup_key   TEXT,                   -- webhook: hex SHA-256 of the raw body
  receipt     TEXT,                   -- webhook: unique per request, tells a new row from a duplicate
  announces   TEXT,                   -- webhook: status it claims, '*' for any, NULL for none
  provider_at INTEGER,                -- webhook: provider's timestamp, if any
  at          INTEGER NOT NULL,       -- received (webhook) or applied (change), ms
  source      TEXT,                   -- change: webhook | poll
  from_status TEXT,
  to_status   TEXT,
  drift       INTEGER NOT NULL DEFAULT 0
);

CREATE UNIQUE INDEX events_dedup ON events (provider, dedup_key);
CREATE INDEX events_by_subject ON events (provider, ref, at);
CREATE INDEX events_by_time ON events (at);

-- Monotonic counters: webhook.{accepted,duplicate,rejected}.<provider>, drift.<provider>.
CREATE TABLE counters (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;

-- Provider API health, for back-off across subjects and for stats.
CREATE TABLE provider_health (
  provider             TEXT PRIMARY KEY,
  consecutive_failures INTEGER NOT NULL DEFAULT 0,
  last_failure_at      INTEGER,
  last_error           TEXT,
  last_success_at      INTEGER,
  paused_until         INTEGER          -- honours Retry-After: the cron skips the provider until then
) WITHOUT ROWID;

-- One row per cron run; queue consumers add what the run's jobs did.
CREATE TABLE cron_runs (
  run_id      INTEGER PRIMARY KEY,      -- the run's scheduled time, ms
  started_at  INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL DEFAULT 0,
  due         INTEGER NOT NULL DEFAULT 0,
  enqueued    INTEGER NOT NULL DEFAULT 0,
  skipped     TEXT,                     -- providers skipped (disabled or paused), comma-separated
  reconciled  INTEGER NOT NULL DEFAULT 0,
  changed     INTEGER NOT NULL DEFAULT 0,
  failed      INTEGER NOT NULL DEFAULT 0,
  finished_at INTEGER                   -- when the last of its jobs finished
);
