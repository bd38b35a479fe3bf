//! The `cron_runs` table: what each cron run did, for stats and the dashboard's charts.

use super::{Rows, Statement};
use crate::statement;
use crate::subject::Provider;
use crate::time::Timestamp;
use chrono::TimeDelta;
use serde_json::Value;

/// How long cron runs are kept: a week of five-minute runs (2,016 rows).
pub const KEPT_FOR: TimeDelta = TimeDelta::days(7);

/// One cron run's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronRun {
    /// The run's scheduled time: its id.
    pub scheduled_at: Timestamp,
    pub started_at: Timestamp,
    pub duration_ms: i64,
    pub due: u32,
    pub enqueued: u32,
    pub skipped: Vec<String>,
    /// JSON: `{provider: {webhooks, duplicates, changes, drift}}` folded since the previous run.
    pub activity: String,
    /// JSON: `{provider: {status: count}}` at the run.
    pub statuses: String,
}

/// Record a run (a re-run at the same scheduled time replaces it) and forget runs older
/// than [`KEPT_FOR`] (a primary-key range: cheap).
pub fn record(run: &CronRun) -> Vec<Statement> {
    vec![
        statement!(
            "INSERT INTO cron_runs (run_id, started_at, duration_ms, due, enqueued, skipped, \
               activity, statuses) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (run_id) DO UPDATE SET \
               started_at = excluded.started_at, duration_ms = excluded.duration_ms, \
               due = excluded.due, enqueued = excluded.enqueued, skipped = excluded.skipped, \
               activity = excluded.activity, statuses = excluded.statuses",
            run.scheduled_at,
            run.started_at,
            run.duration_ms,
            run.due,
            run.enqueued,
            run.skipped.join(","),
            run.activity.as_str(),
            run.statuses.as_str()
        ),
        statement!(
            "DELETE FROM cron_runs WHERE run_id < ?1",
            run.scheduled_at - KEPT_FOR
        ),
    ]
}

/// The latest `limit` runs, newest first: rows `{run_id, started_at, duration_ms, due,
/// enqueued, skipped, activity, statuses}`.
pub fn latest(limit: u32) -> Statement {
    statement!(
        "SELECT run_id, started_at, duration_ms, due, enqueued, skipped, activity, statuses \
         FROM cron_runs ORDER BY run_id DESC LIMIT ?1",
        limit
    )
}

/// Every provider's health: `{provider, consecutive_failures, last_failure_at, last_error,
/// last_success_at, paused_until}`.
pub const HEALTH: &str = "SELECT provider, consecutive_failures, last_failure_at, last_error, \
     last_success_at, paused_until FROM provider_health";

/// What a cron run has to do, asked in one statement: whether there is anything to fold
/// (events since the fold's mark, or suspected drift old enough to settle, `cutoff`), which
/// providers are paused at `now`, and how many subjects of each of `providers` are due at
/// `now`, counting at most `cap` each (the count walks `subjects_due`: a backlog must not cost
/// a row read per subject on every run). A run with nothing to do then skips the fold and the
/// leases: an idle run reads a handful of rows and writes only its own record.
///
/// `prune_before`: what is older goes (retention). The `fold` row's `old` says whether the
/// pruning may have anything to delete: the oldest event or notification is older and is not
/// the newest (their pruning deletes nothing otherwise: it keeps the newest), or a settled
/// alert or alert message is; each an index lookup or a scan of the small alert tables.
pub fn agenda(
    providers: &[Provider],
    now: Timestamp,
    cap: u32,
    cutoff: Timestamp,
    prune_before: Timestamp,
) -> Statement {
    // Three terms, whatever the number of providers: D1 allows few terms in a compound SELECT
    // (a term per provider failed with four), so the providers are rows of `json_each`.
    let names: Vec<&str> = providers.iter().map(|p| p.as_str()).collect();
    statement!(
        format!(
            "SELECT 'fold' AS item, NULL AS provider, \
               (IFNULL((SELECT MAX(id) FROM events), 0) \
                  > IFNULL((SELECT value FROM tallies WHERE name = 'fold.events'), 0) \
                OR EXISTS (SELECT 1 FROM events c WHERE {})) AS n, \
               (IFNULL((SELECT at FROM events WHERE id = (SELECT MIN(id) FROM events) \
                  AND id < (SELECT MAX(id) FROM events)), ?5) < ?5 \
                OR IFNULL((SELECT created_at FROM notifications \
                  WHERE seq = (SELECT MIN(seq) FROM notifications) \
                  AND seq < (SELECT MAX(seq) FROM notifications)), ?5) < ?5 \
                OR EXISTS (SELECT 1 FROM alert_messages WHERE state != 'pending' AND created_at < ?5) \
                OR EXISTS (SELECT 1 FROM alerts WHERE resolved_at < ?5)) AS old \
             UNION ALL SELECT 'paused', provider, 1, NULL FROM provider_health \
               WHERE paused_until > ?2 \
             UNION ALL SELECT 'due', p.value, (SELECT COUNT(*) FROM (SELECT 1 FROM subjects \
               WHERE provider = p.value AND next_check_at <= ?2 LIMIT ?3)), NULL \
               FROM json_each(?4) p",
            super::tallies::SETTLING
        ),
        cutoff,
        now,
        cap,
        serde_json::to_string(&names).unwrap_or_else(|_| "[]".into()),
        prune_before
    )
}

/// An [`agenda`]'s answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Agenda {
    /// Events to fold or drift to settle.
    pub fold: bool,
    /// Rows old enough for the retention to delete.
    pub prune: bool,
    pub paused: Vec<Provider>,
    /// Due subjects per provider asked about (at most the cap each).
    pub due: Vec<(Provider, u32)>,
}

impl Agenda {
    /// Reads the rows; one it cannot read is ignored, except that a missing or unreadable
    /// `fold` row means "fold" and "prune" (doing either when there is nothing to do costs a
    /// few statements, never a wrong count nor a row kept forever).
    pub fn read(rows: &Rows) -> Self {
        let mut agenda = Agenda {
            fold: true,
            prune: true,
            ..Agenda::default()
        };
        for found in rows {
            let provider = found
                .get("provider")
                .and_then(Value::as_str)
                .and_then(Provider::parse);
            let n = found.get("n").and_then(Value::as_u64);
            match (found.get("item").and_then(Value::as_str), provider) {
                (Some("fold"), _) => {
                    agenda.fold = n != Some(0);
                    agenda.prune = found.get("old").and_then(Value::as_u64) != Some(0);
                }
                (Some("paused"), Some(provider)) => agenda.paused.push(provider),
                (Some("due"), Some(provider)) => agenda
                    .due
                    .push((provider, u32::try_from(n.unwrap_or(0)).unwrap_or(u32::MAX))),
                _ => {}
            }
        }
        agenda
    }

    pub fn due(&self, provider: Provider) -> u32 {
        self.due
            .iter()
            .find(|(p, _)| *p == provider)
            .map_or(0, |(_, n)| *n)
    }
}
