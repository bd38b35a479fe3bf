-- Event and notification ids only need to grow, which SQLite's rowid already guarantees as
-- long as the newest row is never deleted (pruning keeps it). AUTOINCREMENT also updates
-- sqlite_sequence on every insert: a D1 row written per webhook, repeat, change and
-- notification, for nothing. The tables are rebuilt without it, ids and all.

CREATE TABLE events_v2 (
  id          INTEGER PRIMARY KEY,
  provider    TEXT    NOT NULL,
  ref         TEXT,                   -- NULL for provider events about no subject (Align transfers)
  type        TEXT    NOT NULL,       -- webhook | duplicate | change
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
INSERT INTO events_v2 (id, provider, ref, type, kind, dedup_key, receipt, announces, provider_at,
    at, source, from_status, to_status, drift)
  SELECT id, provider, ref, type, kind, dedup_key, receipt, announces, provider_at,
    at, source, from_status, to_status, drift FROM events;
DROP TABLE events;
ALTER TABLE events_v2 RENAME TO events;
CREATE UNIQUE INDEX events_dedup ON events (provider, dedup_key) WHERE type = 'webhook';
CREATE INDEX events_by_subject ON events (provider, ref);

CREATE TABLE notifications_v2 (
  seq             INTEGER PRIMARY KEY,                -- order of creation; names the row in webhook-id
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
INSERT INTO notifications_v2 (seq, provider, ref, type, payload, created_at, state, attempts,
    next_attempt_at, expires_at, last_attempt_at, last_response, delivered_at)
  SELECT seq, provider, ref, type, payload, created_at, state, attempts,
    next_attempt_at, expires_at, last_attempt_at, last_response, delivered_at FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_v2 RENAME TO notifications;
CREATE INDEX notifications_by_subject ON notifications (provider, ref, seq);
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE state = 'pending';
CREATE INDEX notifications_dead ON notifications (seq) WHERE state = 'dead';

