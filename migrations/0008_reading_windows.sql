-- Readings are windows of time, not instants (docs/ordering.md): a poll read the provider's
-- state somewhere between when it was sent and when its answer arrived.
ALTER TABLE subjects ADD COLUMN observed_until INTEGER;     -- ms; end of the status reading's window (NULL: observed_at)
ALTER TABLE subjects ADD COLUMN observed_provider_at INTEGER; -- ms; the provider's own date of that reading, when it dated it
ALTER TABLE subjects ADD COLUMN aml_observed_at INTEGER;    -- ms; window of the AML reading on record (AML is ordered on its own)
ALTER TABLE subjects ADD COLUMN aml_observed_until INTEGER;
ALTER TABLE subjects ADD COLUMN previous_status TEXT;       -- the status before the current one (a reversal is re-checked soon)
ALTER TABLE subjects ADD COLUMN revision INTEGER NOT NULL DEFAULT 0; -- moved by every write of a check: the compare-and-set

-- Event ids are plain rowids since 0007: they keep growing only while the largest row stays.
-- A table emptied before 0007 (its prune could) restarted ids below the fold's mark, and the
-- events under the mark were never counted. A placeholder at the mark keeps new ids above it
-- (the fold counts only webhook, duplicate and change rows; the prune removes it later).
INSERT INTO events (id, provider, type, at)
  SELECT value, '', 'mark', 0 FROM tallies
  WHERE name = 'fold.events' AND value > COALESCE((SELECT MAX(id) FROM events), 0);

-- Junk refs stop polling the provider: checks in a row that found no record, and when the
-- subject was retired for it (revived by a webhook, a refresh or a registration).
ALTER TABLE subjects ADD COLUMN unfound INTEGER NOT NULL DEFAULT 0;
ALTER TABLE subjects ADD COLUMN retired_at INTEGER;
CREATE INDEX subjects_retired ON subjects (provider) WHERE retired_at IS NOT NULL;

-- A repeated webhook body is counted, not stored again: when it last arrived (NULL: only
-- once), which decides whether the next repeat asks for another check.
ALTER TABLE events ADD COLUMN last_at INTEGER;
-- Changes suspected to be drift, settled by the cron once late webhooks had time to arrive.
CREATE INDEX events_drift_suspected ON events (at) WHERE drift = 2;
