//! The Cron Trigger: lease due subjects (oldest first, within the budget), fan them out as
//! reconcile jobs, prune old history. It never calls a provider itself.

use crate::clock;
use crate::jobs::{self, Job, ReconcileJob};
use crate::store::bookkeeping::{self, CronRun};
use crate::store::{self, subjects};
use kyc_core::subject::{Provider, RefKind, SubjectRef};
use worker::{console_error, console_log, console_warn, Env, Result};

const DAY_MS: i64 = 86_400_000;

/// `scheduled_at` is the run's scheduled time: the clock for choosing due subjects.
pub async fn run(scheduled_at: i64, env: &Env) {
    if let Err(error) = run_at(scheduled_at, env).await {
        console_error!("cron run {scheduled_at} failed: {error}");
    }
}

async fn run_at(now: i64, env: &Env) -> Result<()> {
    let started = clock::now();
    let config = crate::config::load(env).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let db = store::db(env)?;
    bookkeeping::prune_events(&db, now - i64::from(config.event_retention_days) * DAY_MS).await?;

    let paused = bookkeeping::paused_providers(&db, now).await?;
    let mut active = vec![];
    let mut skipped = vec![];
    for provider in Provider::ALL {
        if config.protocol(provider).is_none() {
            skipped.push(format!("{provider}:disabled"));
        } else if paused.iter().any(|p| p == provider.as_str()) {
            skipped.push(format!("{provider}:paused"));
        } else {
            active.push(provider);
        }
    }
    let due = subjects::count_due(&db, now).await?;
    let claimed = subjects::claim_due(
        &db,
        &active,
        now,
        now + config.schedule.lease,
        config.reconcile_budget,
    )
    .await?;
    let jobs: Vec<Job> = claimed
        .iter()
        .filter_map(|due| {
            let job = Some(ReconcileJob {
                provider: Provider::parse(&due.provider)?,
                subject_ref: SubjectRef::parse(&due.subject_ref).ok()?,
                ref_kind: RefKind::parse(&due.ref_kind).unwrap_or(RefKind::User),
                trusted: None,
                run: Some(now),
            });
            if job.is_none() {
                console_warn!(
                    "skipping unreadable subject row {}/{}",
                    due.provider,
                    due.subject_ref
                );
            }
            job.map(Job::Reconcile)
        })
        .collect();
    let mut run = CronRun {
        run_id: now,
        started_at: started,
        duration_ms: 0,
        due,
        enqueued: jobs.len() as u32,
        skipped: skipped.join(","),
    };
    // The run's row exists before its jobs can report into it.
    bookkeeping::record_cron_run(&db, &run).await?;
    if let Err(error) = jobs::send_all(env, &jobs).await {
        console_error!(
            "queueing {} reconcile jobs failed, releasing them: {error}",
            jobs.len()
        );
        subjects::release(&db, &claimed, now).await?;
        run.enqueued = 0;
    }
    run.duration_ms = clock::now() - started;
    bookkeeping::record_cron_run(&db, &run).await?;
    console_log!(
        "cron run {now}: {due} due, {} enqueued, skipped [{}], {} ms",
        run.enqueued,
        run.skipped,
        run.duration_ms
    );
    Ok(())
}
