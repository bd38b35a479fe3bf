-- Adopting kyc-edge on a live product: bulk imports and backfills from the providers.

-- Subjects that have had no check yet (no answer, no error): /v1/stats counts how many still
-- wait for a first check from this index, which holds only them.
CREATE INDEX subjects_unchecked ON subjects (provider, next_check_at)
  WHERE last_checked_at IS NULL AND last_error IS NULL;

-- One backfill per provider: a walk of the provider's list of subjects, a few pages per cron
-- run, resumed from `cursor` after any restart. Only counts and the provider's continuation
-- are kept: nothing from the pages' contents but the subjects' ids (in `subjects`).
CREATE TABLE backfills (
  provider    TEXT    PRIMARY KEY,
  since       TEXT,                       -- YYYY-MM-DD: the first day asked for; NULL = all
  until       TEXT,                       -- YYYY-MM-DD: the last day (the day it started)
  state       TEXT    NOT NULL,           -- running | done | failed
  cursor      TEXT,                       -- the provider's continuation; NULL = the first page
  pages_read  INTEGER NOT NULL DEFAULT 0,
  seen        INTEGER NOT NULL DEFAULT 0, -- subjects the pages named (repeats included)
  found       INTEGER NOT NULL DEFAULT 0, -- of them, subjects kyc-edge was not tracking
  started_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  finished_at INTEGER,
  last_error  TEXT                        -- why the last page failed (HTTP status, timeout)
) WITHOUT ROWID;
