-- Status counts (`status.*` tallies) are moved by the cron's fold from change rows, not in the
-- change's own transaction any more. `moves` marks the change rows whose move the fold still
-- owes: 1 for a status change written from this version on; 0 for every row before it (its
-- move was made when it was written). Without the mark, the change rows written since the
-- last fold before the upgrade would be counted twice.
-- Rolling back past this migration loses the moves of changes not folded yet: let a cron run
-- fold them first.
ALTER TABLE events ADD COLUMN moves INTEGER NOT NULL DEFAULT 0;
