//! Counters, provider health and cron-run figures: what `/v1/stats` shows.

use super::{int, opt_int, text};
use kyc_core::subject::Provider;
use serde::{Deserialize, Serialize};
use worker::{D1Database, D1PreparedStatement, Result};

/// What one reconcile job did, for its cron run's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobResult {
    Unchanged,
    Changed,
    Failed,
}

/// The statements that account for one finished reconcile job, sent as one batch.
pub struct Ledger<'a> {
    db: &'a D1Database,
    statements: Vec<D1PreparedStatement>,
}

impl<'a> Ledger<'a> {
    pub fn new(db: &'a D1Database) -> Self {
        Self {
            db,
            statements: vec![],
        }
    }

    pub fn provider_ok(&mut self, provider: Provider, now: i64) -> Result<()> {
        self.statements.push(
            self.db
                .prepare(
                    "INSERT INTO provider_health (provider, consecutive_failures, last_success_at) \
                     VALUES (?1, 0, ?2) ON CONFLICT (provider) DO UPDATE SET \
                     consecutive_failures = 0, last_success_at = ?2, paused_until = NULL",
                )
                .bind(&[text(provider.as_str()), int(now)])?,
        );
        Ok(())
    }

    /// `error` is a short class ("HTTP 503", "timeout"), never a response body.
    pub fn provider_failed(
        &mut self,
        provider: Provider,
        error: &str,
        paused_until: Option<i64>,
        now: i64,
    ) -> Result<()> {
        self.statements.push(
            self.db
                .prepare(
                    "INSERT INTO provider_health (provider, consecutive_failures, last_failure_at, last_error, paused_until) \
                     VALUES (?1, 1, ?2, ?3, ?4) ON CONFLICT (provider) DO UPDATE SET \
                     consecutive_failures = consecutive_failures + 1, last_failure_at = ?2, \
                     last_error = ?3, paused_until = COALESCE(?4, paused_until)",
                )
                .bind(&[text(provider.as_str()), int(now), text(error), opt_int(paused_until)])?,
        );
        Ok(())
    }

    pub fn drift(&mut self, provider: Provider) -> Result<()> {
        self.statements.push(
            self.db
                .prepare(
                    "INSERT INTO counters (name, value) VALUES (?1, 1) \
                     ON CONFLICT (name) DO UPDATE SET value = value + 1",
                )
                .bind(&[text(&format!("drift.{provider}"))])?,
        );
        Ok(())
    }

    pub fn cron_job(&mut self, run_id: i64, result: JobResult, now: i64) -> Result<()> {
        let (changed, failed) = match result {
            JobResult::Unchanged => (0, 0),
            JobResult::Changed => (1, 0),
            JobResult::Failed => (0, 1),
        };
        self.statements.push(
            self.db
                .prepare(
                    "UPDATE cron_runs SET reconciled = reconciled + ?2, changed = changed + ?3, \
                     failed = failed + ?4, finished_at = MAX(COALESCE(finished_at, 0), ?5) WHERE run_id = ?1",
                )
                .bind(&[int(run_id), int(1 - failed), int(changed), int(failed), int(now)])?,
        );
        Ok(())
    }

    pub async fn commit(self) -> Result<()> {
        if !self.statements.is_empty() {
            self.db.batch(self.statements).await?;
        }
        Ok(())
    }
}

/// Providers whose API asked us (Retry-After) to wait past `now`.
pub async fn paused_providers(db: &D1Database, now: i64) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Row {
        provider: String,
    }
    let rows: Vec<Row> = db
        .prepare("SELECT provider FROM provider_health WHERE paused_until > ?1")
        .bind(&[int(now)])?
        .all()
        .await?
        .results()?;
    Ok(rows.into_iter().map(|r| r.provider).collect())
}

pub struct CronRun {
    pub run_id: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub due: u32,
    pub enqueued: u32,
    pub skipped: String,
}

/// Record a cron run, and keep only the latest 100.
pub async fn record_cron_run(db: &D1Database, run: &CronRun) -> Result<()> {
    let insert = db
        .prepare(
            "INSERT INTO cron_runs (run_id, started_at, duration_ms, due, enqueued, skipped) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (run_id) DO UPDATE SET \
             started_at = ?2, duration_ms = ?3, due = ?4, enqueued = ?5, skipped = ?6",
        )
        .bind(&[
            int(run.run_id),
            int(run.started_at),
            int(run.duration_ms),
            int(i64::from(run.due)),
            int(i64::from(run.enqueued)),
            text(&run.skipped),
        ])?;
    let prune = db.prepare(
        "DELETE FROM cron_runs WHERE run_id NOT IN (SELECT run_id FROM cron_runs ORDER BY run_id DESC LIMIT 100)",
    );
    db.batch(vec![insert, prune]).await?;
    Ok(())
}

/// Delete history older than the retention.
pub async fn prune_events(db: &D1Database, before: i64) -> Result<()> {
    db.prepare("DELETE FROM events WHERE at < ?1")
        .bind(&[int(before)])?
        .run()
        .await?;
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StatusCount {
    pub provider: String,
    pub status: String,
    pub n: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Counter {
    pub name: String,
    pub value: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ProviderHealth {
    pub provider: String,
    pub consecutive_failures: u32,
    pub last_failure_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_success_at: Option<i64>,
    pub paused_until: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CronRunRow {
    pub run_id: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub due: u32,
    pub enqueued: u32,
    pub skipped: Option<String>,
    pub reconciled: u32,
    pub changed: u32,
    pub failed: u32,
    pub finished_at: Option<i64>,
}

pub struct Snapshot {
    pub statuses: Vec<StatusCount>,
    pub counters: Vec<Counter>,
    pub health: Vec<ProviderHealth>,
    pub last_run: Option<CronRunRow>,
}

pub async fn snapshot(db: &D1Database) -> Result<Snapshot> {
    let results = db
        .batch(vec![
            db.prepare("SELECT provider, status, COUNT(*) AS n FROM subjects GROUP BY provider, status"),
            db.prepare("SELECT name, value FROM counters"),
            db.prepare(
                "SELECT provider, consecutive_failures, last_failure_at, last_error, last_success_at, paused_until \
                 FROM provider_health",
            ),
            db.prepare(
                "SELECT run_id, started_at, duration_ms, due, enqueued, skipped, reconciled, changed, failed, \
                 finished_at FROM cron_runs ORDER BY run_id DESC LIMIT 1",
            ),
        ])
        .await?;
    let [statuses, counters, health, last_run] = results.as_slice() else {
        return Err(worker::Error::RustError(
            "stats batch returned an unexpected shape".into(),
        ));
    };
    Ok(Snapshot {
        statuses: statuses.results()?,
        counters: counters.results()?,
        health: health.results()?,
        last_run: last_run.results()?.into_iter().next(),
    })
}
