-- A webhook's event row cost three rows on D1's meter: the row, `events_dedup` (provider,
-- dedup key) and `events_by_subject` (provider, ref). One index now serves both ways a webhook
-- row is found: by its subject and by its dedup key within that subject. Both come from the
-- same body, so an event always names the same subject and uniqueness per subject is
-- uniqueness per event. `events_by_subject` keeps the other rows (changes, and the repeats
-- stored before 0008). Events about no subject (ref NULL, which a unique index never finds
-- equal) stay unique on their key through an index that holds only them.
DROP INDEX events_dedup;
CREATE UNIQUE INDEX events_webhooks ON events (provider, ref, dedup_key) WHERE type = 'webhook';
CREATE UNIQUE INDEX events_unattached ON events (provider, dedup_key)
  WHERE type = 'webhook' AND ref IS NULL;
DROP INDEX events_by_subject;
CREATE INDEX events_by_subject ON events (provider, ref) WHERE type <> 'webhook';
