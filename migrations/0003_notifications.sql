-- The outbox: one row per notification to the application, written in the same transaction
-- as the change it tells (so neither exists without the other), then delivered through the
-- queue. Bodies carry ids and statuses only.
CREATE TABLE notifications (
  seq             INTEGER PRIMARY KEY AUTOINCREMENT,  -- order of creation; names the row in webhook-id
  provider        TEXT    NOT NULL,
  ref             TEXT    NOT NULL,
  type            TEXT    NOT NULL,                   -- kyc.status.changed | kyc.aml.updated
  payload         TEXT    NOT NULL,                   -- the JSON body sent
  created_at      INTEGER NOT NULL,
  state           TEXT    NOT NULL DEFAULT 'pending', -- pending | delivered | dead
  attempts        INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,                            -- pending: when it may be sent (ms); NULL otherwise
  expires_at      INTEGER,                            -- retried until then; NULL: created_at + NOTIFY_MAX_AGE_SECONDS
  last_attempt_at INTEGER,
  last_response   TEXT,                               -- "HTTP 503", "timeout": the last attempt's answer
  delivered_at    INTEGER
);

-- A subject's notifications in order: delivery waits for older pending ones.
CREATE INDEX notifications_by_subject ON notifications (provider, ref, seq);
-- What the cron re-sends: pending ones whose attempt is due.
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE state = 'pending';
-- Dead ones, for the API and stats.
CREATE INDEX notifications_dead ON notifications (seq) WHERE state = 'dead';

-- Present while delivery is disabled (the application answered 410 Gone); removed through
-- POST /v1/notifications/enable.
CREATE TABLE delivery_disabled (
  id          INTEGER PRIMARY KEY CHECK (id = 1),
  disabled_at INTEGER NOT NULL,
  reason      TEXT    NOT NULL
);
