-- Alerts for the operator (issue 22). An alert row lives from the moment its condition starts
-- (raised_at) to the moment it ends (resolved_at); at most one row per condition is open, so
-- two invocations noticing the same condition raise it once.
CREATE TABLE alerts (
  id INTEGER PRIMARY KEY,
  -- kind and what it is about, e.g. 'provider_degraded:align', 'cron_stalled:cron'
  key TEXT NOT NULL,
  kind TEXT NOT NULL,
  severity TEXT NOT NULL,
  -- the line a person reads, and the JSON data (names and counts, never PII or secrets)
  text TEXT NOT NULL,
  data TEXT NOT NULL,
  raised_at INTEGER NOT NULL,
  -- when the raise or the last reminder was announced
  notified_at INTEGER NOT NULL,
  resolved_at INTEGER
);
CREATE UNIQUE INDEX alerts_open ON alerts (key) WHERE resolved_at IS NULL;

-- What is sent to ALERT_WEBHOOK_URL: one row per raise, reminder or resolution, retried on
-- its own schedule (never in the way of notifications to the app).
CREATE TABLE alert_messages (
  seq INTEGER PRIMARY KEY,
  alert_id INTEGER NOT NULL,
  type TEXT NOT NULL,
  body TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  -- 'pending' until answered 2xx ('delivered') or out of attempts ('dead')
  state TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  last_response TEXT,
  settled_at INTEGER
);
CREATE INDEX alert_messages_due ON alert_messages (next_attempt_at) WHERE state = 'pending';
