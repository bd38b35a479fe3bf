//! The `subjects` table: one row per tracked subject, read into one typed shape.

use super::tallies::Tally;
use super::{SqlValue, Statement};
use crate::observation::{Source, Window};
use crate::statement;
use crate::status::{Aml, KycStatus};
use crate::subject::{ExternalId, Provider, RefKind, SubjectRef};
use crate::time::{as_millis, format, Timestamp};
use crate::transition::Recorded;
use serde::{Deserialize, Serialize};

/// A subject as D1 holds it. Deserialized straight into typed fields: a row with a value
/// this version cannot read is an error for the caller to log and skip, never a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SubjectRow {
    pub provider: Provider,
    #[serde(rename = "ref")]
    pub subject_ref: SubjectRef,
    pub ref_kind: RefKind,
    pub external_id: Option<String>,
    pub status: KycStatus,
    pub provider_status: Option<String>,
    pub sub_status: Option<String>,
    pub aml_status: Option<String>,
    pub aml_risk_level: Option<String>,
    #[serde(with = "as_millis::option")]
    pub status_at: Option<Timestamp>,
    /// When the status on record was read: the window of the latest reading that applied
    /// or confirmed it, from `observed_at` (the epoch: never) to `observed_until` (`None`:
    /// the same instant, as rows written before windows were kept).
    #[serde(with = "as_millis")]
    pub observed_at: Timestamp,
    #[serde(with = "as_millis::option")]
    pub observed_until: Option<Timestamp>,
    /// The provider's own date of that reading, when it dated it (an authenticated body).
    #[serde(with = "as_millis::option")]
    pub observed_provider_at: Option<Timestamp>,
    /// When the AML result on record was read (`None`: with the status, or never).
    #[serde(with = "as_millis::option")]
    pub aml_observed_at: Option<Timestamp>,
    #[serde(with = "as_millis::option")]
    pub aml_observed_until: Option<Timestamp>,
    /// The status before the current one.
    pub previous_status: Option<KycStatus>,
    pub source: Option<Source>,
    #[serde(with = "as_millis")]
    pub created_at: Timestamp,
    #[serde(with = "as_millis")]
    pub updated_at: Timestamp,
    /// When the last successful check of the provider's API was sent.
    #[serde(with = "as_millis::option")]
    pub last_checked_at: Option<Timestamp>,
    #[serde(with = "as_millis")]
    pub next_check_at: Timestamp,
    /// When a webhook, refresh or registration last asked for a check.
    #[serde(with = "as_millis::option")]
    pub requested_at: Option<Timestamp>,
    pub check_step: u32,
    pub failures: u32,
    pub last_error: Option<String>,
    /// Checks in a row that found no record of the subject at the provider.
    pub unfound: u32,
    /// When the subject was retired: it had no record at the provider for too long, and is
    /// not checked again until a webhook, a refresh or a registration names it.
    #[serde(with = "as_millis::option")]
    pub retired_at: Option<Timestamp>,
    /// Bumped by every write that changes what a reader sees (status, AML, provider words,
    /// external id); each such write is projected to KV.
    pub version: i64,
    /// Bumped by every write a check makes (a change, a confirmation, a failure): what its
    /// compare-and-set guards.
    pub revision: i64,
}

/// The columns of [`SubjectRow`], in a form `SELECT`s and `RETURNING` clauses share.
pub const COLUMNS: &str = "provider, ref, ref_kind, external_id, status, provider_status, \
     sub_status, aml_status, aml_risk_level, status_at, observed_at, observed_until, \
     observed_provider_at, \
     aml_observed_at, aml_observed_until, previous_status, source, created_at, updated_at, \
     last_checked_at, next_check_at, requested_at, check_step, failures, last_error, unfound, \
     retired_at, version, revision";

/// The public shape of a subject (openapi.yaml, README.md): what the API serves and KV
/// holds. The schedule is included only when read from D1: KV is written only when what a
/// reader sees changes, so a schedule there would be stale.
#[derive(Debug, Serialize)]
pub struct SubjectView<'a> {
    provider: Provider,
    #[serde(rename = "ref")]
    subject_ref: &'a SubjectRef,
    external_id: Option<&'a str>,
    status: KycStatus,
    provider_status: Option<&'a str>,
    sub_status: Option<&'a str>,
    aml: Option<Aml>,
    status_at: Option<String>,
    updated_at: String,
    source: Option<Source>,
    version: i64,
    #[serde(flatten)]
    schedule: Option<ScheduleView<'a>>,
}

#[derive(Debug, Serialize)]
struct ScheduleView<'a> {
    last_checked_at: Option<String>,
    next_check_at: String,
    /// Why the last check failed, while it keeps failing.
    check_error: Option<&'a str>,
}

impl SubjectRow {
    pub fn recorded(&self) -> Recorded {
        let window = Window {
            from: self.observed_at,
            to: self.observed_until.unwrap_or(self.observed_at),
            provider_at: self.observed_provider_at,
        };
        // Rows from before AML had its own window: it was read with the status.
        let aml_window = match (self.aml_observed_at, &self.aml_status) {
            (Some(from), _) => Window {
                from,
                to: self.aml_observed_until.unwrap_or(from),
                provider_at: None,
            },
            (None, Some(_)) => window,
            (None, None) => Window::never(),
        };
        Recorded {
            status: self.status,
            provider_status: self.provider_status.clone(),
            sub_status: self.sub_status.clone(),
            status_at: self.status_at,
            window,
            aml: self.aml(),
            aml_window,
        }
    }

    /// Someone asked for a check (a webhook, a refresh, a registration) that no successful
    /// check has answered yet.
    pub fn check_requested(&self) -> bool {
        self.requested_at
            .is_some_and(|asked| self.last_checked_at.is_none_or(|checked| asked > checked))
    }

    pub fn aml(&self) -> Option<Aml> {
        self.aml_status.as_ref().map(|status| Aml {
            status: status.clone(),
            risk_level: self.aml_risk_level.clone(),
        })
    }

    /// `provider/ref`: how logs and jitter seeds name the subject (ids only, never PII).
    pub fn key(&self) -> String {
        format!("{}/{}", self.provider, self.subject_ref)
    }

    /// What KV holds: the status, without the schedule.
    pub fn status_view(&self) -> SubjectView<'_> {
        self.view(None)
    }

    /// What a D1 read serves: the status and the schedule.
    pub fn full_view(&self) -> SubjectView<'_> {
        self.view(Some(ScheduleView {
            last_checked_at: self.last_checked_at.map(format),
            next_check_at: format(self.next_check_at),
            check_error: self.last_error.as_deref(),
        }))
    }

    fn view<'a>(&'a self, schedule: Option<ScheduleView<'a>>) -> SubjectView<'a> {
        SubjectView {
            provider: self.provider,
            subject_ref: &self.subject_ref,
            external_id: self.external_id.as_deref(),
            status: self.status,
            provider_status: self.provider_status.as_deref(),
            sub_status: self.sub_status.as_deref(),
            aml: self.aml(),
            status_at: self.status_at.map(format),
            updated_at: format(self.updated_at),
            source: self.source,
            version: self.version,
            schedule,
        }
    }
}

/// When the provider (`?1`) last answered a check successfully, if it is healthy (no failure
/// since, no pause), else `NULL`: read beside a subject a check starts from, so that a check
/// that succeeds records its success only when that is missing or old (one statement fewer on
/// every other check; one row read more).
pub const PROVIDER_OK_SINCE: &str = "(SELECT last_success_at FROM provider_health \
     WHERE provider = ?1 AND consecutive_failures = 0 AND paused_until IS NULL) \
     AS provider_ok_since";

/// One subject by key, for a check: with [`PROVIDER_OK_SINCE`].
pub fn load_for_check(provider: Provider, subject_ref: &SubjectRef) -> Statement {
    statement!(
        format!(
            "SELECT {COLUMNS}, {PROVIDER_OK_SINCE} FROM subjects WHERE provider = ?1 AND ref = ?2"
        ),
        provider.as_str(),
        subject_ref.as_str()
    )
}

/// One subject by key.
pub fn load(provider: Provider, subject_ref: &SubjectRef) -> Statement {
    statement!(
        format!("SELECT {COLUMNS} FROM subjects WHERE provider = ?1 AND ref = ?2"),
        provider.as_str(),
        subject_ref.as_str()
    )
}

/// Start tracking a subject, as one batch: the first statement creates it (due now), the
/// second counts it only if it was created, and the third runs only if it was not: a new
/// external id replaces the old (a change a reader sees: the version moves). The fourth
/// revives a retired subject (due now). The last statement returns the row. [`REGISTERED`]
/// names their positions.
pub fn register(
    provider: Provider,
    subject_ref: &SubjectRef,
    ref_kind: RefKind,
    external_id: Option<&ExternalId>,
    now: Timestamp,
) -> Vec<Statement> {
    let external_id = SqlValue::from(external_id.map(ExternalId::as_str));
    vec![
        statement!(
            "INSERT INTO subjects (provider, ref, ref_kind, external_id, status_at, created_at, \
               updated_at, next_check_at, requested_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5, ?5, ?5) ON CONFLICT (provider, ref) DO NOTHING \
             RETURNING 1 AS created",
            provider.as_str(),
            subject_ref.as_str(),
            ref_kind.as_str(),
            external_id.clone(),
            now
        ),
        super::tallies::add_if_previous_changed(Tally::Status(provider, KycStatus::Unknown), 1),
        statement!(
            "UPDATE subjects SET external_id = ?3, updated_at = ?4, version = version + 1 \
             WHERE provider = ?1 AND ref = ?2 AND ?3 IS NOT NULL AND external_id IS NOT ?3 \
               AND changes() = 0 \
             RETURNING 1 AS changed",
            provider.as_str(),
            subject_ref.as_str(),
            external_id,
            now
        ),
        revive(provider, subject_ref, now),
        load(provider, subject_ref),
    ]
}

/// A retired subject named again (registered, refreshed): due now, its count of checks
/// without a record started over. `RETURNING revived` when it was retired.
fn revive(provider: Provider, subject_ref: &SubjectRef, now: Timestamp) -> Statement {
    statement!(
        "UPDATE subjects SET retired_at = NULL, unfound = 0, \
           next_check_at = MIN(next_check_at, ?3), requested_at = ?3, check_step = 0 \
         WHERE provider = ?1 AND ref = ?2 AND retired_at IS NOT NULL RETURNING 1 AS revived",
        provider.as_str(),
        subject_ref.as_str(),
        now
    )
}

/// Where in [`register`]'s batch each statement says what it did: a row returned exactly
/// when it did what it is named for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterBatch {
    /// `RETURNING created`: the subject is new.
    pub created: usize,
    /// `RETURNING changed`: a known subject's external id changed.
    pub renamed: usize,
    /// `RETURNING revived`: it had been retired and is tracked again.
    pub revived: usize,
    /// The subject as it now is.
    pub row: usize,
}

/// The positions of [`register`]'s statements.
pub const REGISTERED: RegisterBatch = RegisterBatch {
    created: 0,
    renamed: 2,
    revived: 3,
    row: 4,
};

/// Where in [`import`]'s batch the refs it created are returned.
pub const IMPORTED: usize = 2;

/// Start tracking many subjects of one provider (bulk registration, backfill) as one batch:
/// nothing is half-written, and subjects already tracked are left as they are (re-sending an
/// import changes nothing). New subjects are not all due at once: their first checks fall due
/// `step` apart, after those of every earlier import, oldest first, so each cron run meets a
/// bounded share of them. One statement inserts them all (D1 counts statements per
/// invocation); the statement at [`IMPORTED`] returns their refs; the status tally and the
/// spread's cursor move in the same batch. Nothing is projected to KV: reads fall back to D1
/// until a check.
pub fn import(
    provider: Provider,
    subjects: &[&crate::import::NewSubject],
    step: crate::time::TimeDelta,
    now: Timestamp,
) -> Vec<Statement> {
    let lines: Vec<serde_json::Value> = subjects
        .iter()
        .map(|s| {
            serde_json::json!({
                "ref": s.subject_ref.as_str(),
                "kind": s.ref_kind.as_str(),
                "external_id": s.external_id.as_ref().map(ExternalId::as_str),
            })
        })
        .collect();
    let lines = serde_json::Value::from(lines).to_string();
    let step = step.num_milliseconds().max(1);
    let from = Tally::FirstChecksFrom(provider).name();
    let until = Tally::FirstChecksUntil(provider).name();
    const NEW: &str = "FROM json_each(?1) AS line WHERE NOT EXISTS (SELECT 1 FROM subjects \
                         WHERE provider = ?2 AND ref = json_extract(line.value, '$.ref'))";
    vec![
        // The first new subject falls due where the previous import's last one left off,
        // or now if that is past.
        statement!(
            "INSERT INTO tallies (name, value) \
             VALUES (?1, MAX(?3, COALESCE((SELECT value FROM tallies WHERE name = ?2), 0))) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            from.clone(),
            until.clone(),
            now
        ),
        statement!(
            format!(
                "INSERT INTO tallies (name, value) \
                 SELECT ?3, (SELECT value FROM tallies WHERE name = ?4) + COUNT(*) * ?5 {NEW} \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value"
            ),
            lines.clone(),
            provider.as_str(),
            until,
            from.clone(),
            step
        ),
        statement!(
            format!(
                "INSERT INTO subjects (provider, ref, ref_kind, external_id, status_at, \
                   created_at, updated_at, next_check_at) \
                 SELECT ?2, json_extract(line.value, '$.ref'), json_extract(line.value, '$.kind'), \
                   json_extract(line.value, '$.external_id'), ?3, ?3, ?3, \
                   (SELECT value FROM tallies WHERE name = ?4) \
                     + (ROW_NUMBER() OVER (ORDER BY line.key) - 1) * ?5 \
                 {NEW} \
                 ON CONFLICT (provider, ref) DO NOTHING RETURNING ref"
            ),
            lines,
            provider.as_str(),
            now,
            from,
            step
        ),
        statement!(
            "INSERT INTO tallies (name, value) VALUES (?1, changes()) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            Tally::ImportCreated.name()
        ),
        statement!(
            "INSERT INTO tallies (name, value) \
             SELECT ?1, value FROM tallies WHERE name = ?2 AND value > 0 \
             ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            Tally::Status(provider, KycStatus::Unknown).name(),
            Tally::ImportCreated.name()
        ),
    ]
}

/// How many subjects of a provider have had no check yet (neither an answer nor an error),
/// counting at most `cap`: `{n}`. Served by `subjects_unchecked` (named: without statistics
/// SQLite would walk every subject of the provider), so it reads one index entry per waiting
/// subject and nothing once they are all checked.
pub fn unchecked(provider: Provider, cap: u32) -> Statement {
    statement!(
        "SELECT COUNT(*) AS n FROM (SELECT 1 FROM subjects INDEXED BY subjects_unchecked \
           WHERE provider = ?1 AND last_checked_at IS NULL AND last_error IS NULL LIMIT ?2)",
        provider.as_str(),
        cap
    )
}

/// Retired subjects of a provider, counted from their own partial index (at most `cap`):
/// `{n}`.
pub fn retired(provider: Provider, cap: u32) -> Statement {
    statement!(
        "SELECT COUNT(*) AS n FROM (SELECT 1 FROM subjects INDEXED BY subjects_retired \
           WHERE provider = ?1 AND retired_at IS NOT NULL LIMIT ?2)",
        provider.as_str(),
        cap
    )
}

/// Ask for a check now (refresh): due at once, from the first back-off step, revived if it
/// was retired. Returns the row.
pub fn request_check(provider: Provider, subject_ref: &SubjectRef, now: Timestamp) -> Statement {
    statement!(
        format!(
            "UPDATE subjects SET next_check_at = MIN(next_check_at, ?3), requested_at = ?3, \
               check_step = 0, retired_at = NULL, unfound = 0 \
             WHERE provider = ?1 AND ref = ?2 RETURNING {COLUMNS}"
        ),
        provider.as_str(),
        subject_ref.as_str(),
        now
    )
}

/// Lease due subjects of one provider for a cron run: at most `budget` with
/// `next_check_at <= now`, oldest due first (ties by ref, so the order is total), pushed to
/// `lease_until` so later runs skip them until the lease ends. Returns the leased keys
/// `{provider, ref, ref_kind, status}`. Uses `subjects_due`: the cost is the subjects leased.
pub fn claim_due(
    provider: Provider,
    now: Timestamp,
    lease_until: Timestamp,
    budget: u32,
) -> Statement {
    statement!(
        "UPDATE subjects SET next_check_at = ?3 WHERE provider = ?1 AND ref IN ( \
           SELECT ref FROM subjects WHERE provider = ?1 AND next_check_at <= ?2 \
           ORDER BY next_check_at, ref LIMIT ?4) \
         RETURNING provider, ref, ref_kind, status",
        provider.as_str(),
        now,
        lease_until,
        budget
    )
}

/// A leased subject, as the cron turns it into a job.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DueSubject {
    pub provider: Provider,
    #[serde(rename = "ref")]
    pub subject_ref: SubjectRef,
    pub ref_kind: RefKind,
    pub status: KycStatus,
}

/// Give leased subjects back (their jobs could not be queued): due again now.
pub fn release(provider: Provider, refs: &[&SubjectRef], now: Timestamp) -> Statement {
    let refs: Vec<&str> = refs.iter().map(|r| r.as_str()).collect();
    statement!(
        "UPDATE subjects SET next_check_at = ?3 WHERE provider = ?1 \
           AND ref IN (SELECT value FROM json_each(?2))",
        provider.as_str(),
        serde_json::to_string(&refs).unwrap_or_else(|_| "[]".into()),
        now
    )
}

/// A page of `GET /v1/subjects`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub provider: Option<Provider>,
    pub status: Option<KycStatus>,
    pub external_id: Option<String>,
    /// Exclusive start: the last key of the previous page.
    pub after: Option<(Provider, SubjectRef)>,
    pub limit: u32,
}

/// The page's statement: only the conditions asked for, each combination served by an index
/// in key order (the primary key, `subjects_by_status`, `subjects_by_external_id`; named, so
/// the plan does not depend on statistics D1 may not have), and the cursor a key range: a
/// page costs its rows, however many subjects there are and however deep the page.
pub fn list(filter: &ListFilter) -> Statement {
    let mut conditions: Vec<String> = vec![];
    let mut params: Vec<SqlValue> = vec![];
    let mut bind = |condition: &str, values: Vec<SqlValue>| {
        let mut condition = condition.to_owned();
        for value in values {
            params.push(value);
            condition = condition.replacen("?#", &format!("?{}", params.len()), 1);
        }
        conditions.push(condition);
    };
    if let Some(status) = filter.status {
        bind("status = ?#", vec![status.as_str().into()]);
    }
    if let Some(external_id) = &filter.external_id {
        bind("external_id = ?#", vec![external_id.into()]);
    }
    match (filter.provider, &filter.after) {
        (Some(provider), after) => {
            bind("provider = ?#", vec![provider.as_str().into()]);
            match after {
                Some((after_provider, after_ref)) if *after_provider == provider => {
                    bind("ref > ?#", vec![after_ref.as_str().into()]);
                }
                // A cursor past this provider's keys: nothing is left.
                Some((after_provider, _)) if *after_provider > provider => bind("0", vec![]),
                _ => {}
            }
        }
        // The first page starts after the smallest key: every page is a key range.
        (None, after) => {
            let (after_provider, after_ref) = after
                .as_ref()
                .map_or(("", ""), |(p, r)| (p.as_str(), r.as_str()));
            bind(
                "(provider, ref) > (?#, ?#)",
                vec![after_provider.into(), after_ref.into()],
            );
        }
    }
    let index = if filter.external_id.is_some() {
        "INDEXED BY subjects_by_external_id "
    } else if filter.status.is_some() {
        "INDEXED BY subjects_by_status "
    } else {
        ""
    };
    params.push(filter.limit.into());
    Statement::new(
        format!(
            "SELECT {COLUMNS} FROM subjects {index}WHERE {} ORDER BY provider, ref LIMIT ?{}",
            conditions.join(" AND "),
            params.len()
        ),
        params,
    )
}

/// Undecided subjects, longest in their status first (`subjects_open`: the index holds only
/// them, in that order).
pub fn stuck(limit: u32) -> Statement {
    statement!(
        format!(
            "SELECT {COLUMNS} FROM subjects INDEXED BY subjects_open \
             WHERE status NOT IN ('approved', 'rejected') ORDER BY status_at LIMIT ?1"
        ),
        limit
    )
}
