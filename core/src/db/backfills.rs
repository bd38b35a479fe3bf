//! The `backfills` table: per provider, a walk of the provider's list of subjects that
//! registers the ones kyc-edge was never told about. The cron reads a few pages per run; each
//! page's registrations and the move of the cursor past it are one batch, so a walk resumes
//! after any restart exactly where it stopped, and a page is never counted twice.

use super::tallies::Tally;
use super::Statement;
use crate::statement;
use crate::subject::Provider;
use crate::time::{as_millis, format, Timestamp};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    Done,
    /// The walk cannot go on by waiting (`backfill::ends_walk`: an answer final for its
    /// request, a refusal of kyc-edge, an answer that is not a list): a new backfill may be
    /// started.
    Failed,
}

/// A backfill as D1 holds it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Backfill {
    pub provider: Provider,
    pub since: Option<String>,
    pub until: Option<String>,
    pub state: State,
    pub cursor: Option<String>,
    pub pages_read: i64,
    pub seen: i64,
    pub found: i64,
    #[serde(with = "as_millis")]
    pub started_at: Timestamp,
    #[serde(with = "as_millis")]
    pub updated_at: Timestamp,
    #[serde(with = "as_millis::option")]
    pub finished_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// What the API and stats show of a backfill (never its cursor: the provider's internals).
#[derive(Debug, Serialize)]
pub struct BackfillView<'a> {
    pub provider: Provider,
    pub state: State,
    pub since: Option<&'a str>,
    pub until: Option<&'a str>,
    pub pages_read: i64,
    pub seen: i64,
    pub found: i64,
    pub started_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
    pub last_error: Option<&'a str>,
}

impl Backfill {
    pub fn view(&self) -> BackfillView<'_> {
        BackfillView {
            provider: self.provider,
            state: self.state,
            since: self.since.as_deref(),
            until: self.until.as_deref(),
            pages_read: self.pages_read,
            seen: self.seen,
            found: self.found,
            started_at: format(self.started_at),
            updated_at: format(self.updated_at),
            finished_at: self.finished_at.map(format),
            last_error: self.last_error.as_deref(),
        }
    }
}

const COLUMNS: &str = "provider, since, until, state, cursor, pages_read, seen, found, \
     started_at, updated_at, finished_at, last_error";

/// Start a backfill of `provider` over `since..=until` (days, `YYYY-MM-DD`) from its first
/// page, replacing a finished one. Returns the row, or nothing while one is running (there is
/// one walk per provider at a time).
pub fn start(provider: Provider, since: Option<&str>, until: &str, now: Timestamp) -> Statement {
    statement!(
        format!(
            "INSERT INTO backfills (provider, since, until, state, cursor, pages_read, seen, \
               found, started_at, updated_at) \
             VALUES (?1, ?2, ?3, 'running', NULL, 0, 0, 0, ?4, ?4) \
             ON CONFLICT (provider) DO UPDATE SET since = excluded.since, \
               until = excluded.until, state = 'running', cursor = NULL, pages_read = 0, \
               seen = 0, found = 0, started_at = excluded.started_at, \
               updated_at = excluded.updated_at, finished_at = NULL, last_error = NULL \
             WHERE backfills.state != 'running' \
             RETURNING {COLUMNS}"
        ),
        provider.as_str(),
        since,
        until,
        now
    )
}

/// One provider's backfill.
pub fn load(provider: Provider) -> Statement {
    statement!(
        format!("SELECT {COLUMNS} FROM backfills WHERE provider = ?1"),
        provider.as_str()
    )
}

/// Every backfill, running or not (stats).
pub fn all() -> Statement {
    statement!(format!("SELECT {COLUMNS} FROM backfills ORDER BY provider"))
}

/// The walks the cron continues.
pub fn running() -> Statement {
    statement!(format!(
        "SELECT {COLUMNS} FROM backfills WHERE state = 'running' ORDER BY provider"
    ))
}

/// Move a walk past the page read from `cursor`: to `next` (or done without one), counting
/// the `seen` subjects the page named and, when `imported` (the page's subjects were just
/// imported in the same batch, see `subjects::import`), those the import created. Only if the
/// walk is still the one read (its `started_at`: a walk started again also begins with no
/// cursor) and still where it was read from: a run that lost a race moves nothing. Returns
/// the state.
pub fn advance(
    backfill: &Backfill,
    next: Option<&str>,
    seen: usize,
    imported: bool,
    now: Timestamp,
) -> Statement {
    statement!(
        "UPDATE backfills SET cursor = ?3, pages_read = pages_read + 1, seen = seen + ?4, \
           found = found + CASE WHEN ?5 THEN (SELECT value FROM tallies WHERE name = ?6) \
             ELSE 0 END, \
           state = CASE WHEN ?3 IS NULL THEN 'done' ELSE 'running' END, \
           finished_at = CASE WHEN ?3 IS NULL THEN ?7 END, updated_at = ?7, last_error = NULL \
         WHERE provider = ?1 AND state = 'running' AND cursor IS ?2 AND started_at = ?8 \
         RETURNING state",
        backfill.provider.as_str(),
        backfill.cursor.as_deref(),
        next,
        seen as i64,
        imported,
        Tally::ImportCreated.name(),
        now,
        backfill.started_at
    )
}

/// Record why a page could not be read. A transient failure (timeout, 5xx, 429) leaves the
/// walk running, to retry from the same cursor next run; a permanent one ends it as failed.
pub fn failed(backfill: &Backfill, error: &str, permanent: bool, now: Timestamp) -> Statement {
    statement!(
        "UPDATE backfills SET last_error = ?3, updated_at = ?4, \
           state = CASE WHEN ?5 THEN 'failed' ELSE state END, \
           finished_at = CASE WHEN ?5 THEN ?4 END \
         WHERE provider = ?1 AND state = 'running' AND cursor IS ?2 AND started_at = ?6",
        backfill.provider.as_str(),
        backfill.cursor.as_deref(),
        error,
        now,
        permanent,
        backfill.started_at
    )
}
