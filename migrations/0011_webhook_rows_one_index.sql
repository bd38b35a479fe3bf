-- A webhook's event row cost three rows on D1's meter: the row, `events_dedup` (provider,
-- dedup key) and `events_by_subject` (provider, ref). One index now serves both ways a webhook
-- row is found: by its subject and by its dedup key within that subject. An event is now
-- unique per subject: deliveries of one event that name different subjects (a Sumsub event
-- first refused for its sandbox flag, then accepted after SUMSUB_APP_TOKEN changed) are two
-- rows, counted twice, each asking for an idempotent check. `events_by_subject` keeps the
-- other rows (changes, and the repeats stored before 0008). Events about no subject (ref
-- NULL, which a unique index never finds equal) stay unique on their key through an index
-- that holds only them.
-- The worker before this migration fails every webhook on it (its ON CONFLICT names the index
-- dropped here); the worker of this migration runs on both schemas: deploy it first, then
-- apply this (README, "Upgrading").
DROP INDEX events_dedup;
CREATE UNIQUE INDEX events_webhooks ON events (provider, ref, dedup_key) WHERE type = 'webhook';
CREATE UNIQUE INDEX events_unattached ON events (provider, dedup_key)
  WHERE type = 'webhook' AND ref IS NULL;
DROP INDEX events_by_subject;
CREATE INDEX events_by_subject ON events (provider, ref) WHERE type <> 'webhook';
