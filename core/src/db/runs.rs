//! The `cron_runs` table: what each cron run did, for stats and the dashboard's charts.

use super::Statement;
use crate::statement;
use crate::time::Timestamp;
use chrono::TimeDelta;

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

/// Providers whose API asked (Retry-After) to be left alone until after `now`: `{provider}`.
pub fn paused_providers(now: Timestamp) -> Statement {
    statement!(
        "SELECT provider FROM provider_health WHERE paused_until > ?1",
        now
    )
}

/// Every provider's health: `{provider, consecutive_failures, last_failure_at, last_error,
/// last_success_at, paused_until}`.
pub const HEALTH: &str = "SELECT provider, consecutive_failures, last_failure_at, last_error, \
     last_success_at, paused_until FROM provider_health";
