//! The Cron Trigger: fold the counts, prune old history, lease due subjects per provider
//! (oldest first, within the budget) and fan them out as reconcile jobs, record the run.
//! It never calls a provider itself.

use crate::calls::Calls;
use crate::error::StoreError;
use crate::log::Line;
use crate::services::Services;
use crate::{alerts, backfill, clock, config, d1, queue};
use kyc_core::db::events::prune;
use kyc_core::db::notifications as outbox;
use kyc_core::db::runs::{self, CronRun};
use kyc_core::db::subjects::{claim_due, count_due, release, DueSubject};
use kyc_core::db::tallies::{self, counts};
use kyc_core::db::{row, Rows};
use kyc_core::jobs::{Job, ReconcileJob};
use kyc_core::reconcile::DRIFT_GRACE;
use kyc_core::statement;
use kyc_core::subject::{ref_for_log, Provider, SubjectRef};
use kyc_core::time::Timestamp;
use serde_json::Value;
use worker::Env;

/// Events deleted per run at most: pruning never costs more than this many rows a run.
const PRUNE_BATCH: u32 = 1_000;

/// `scheduled_at` is the run's scheduled time: the clock for choosing due subjects.
pub async fn run(scheduled_at: Timestamp, env: &Env) {
    let mut log = Line::new("cron");
    log.set("scheduled_at", kyc_core::time::format(scheduled_at));
    let started = clock::now();
    alerts::cron_ran(scheduled_at);
    let calls = Calls::new(0);
    let calls = match config::load(env) {
        Ok(config) => {
            let calls = Calls::new(config.plan.subrequests());
            match d1::database(env) {
                Ok(db) => {
                    let services = Services {
                        env,
                        config: &config,
                        db: &db,
                        calls,
                    };
                    if let Err(error) = run_at(&services, scheduled_at, started, &mut log).await {
                        log.error(error);
                    }
                    services.calls
                }
                Err(error) => {
                    log.error(error);
                    calls
                }
            }
        }
        Err(error) => {
            log.error(format!("configuration error: {error}"));
            alerts::configuration_error(env, error.key, &mut log).await;
            calls
        }
    };
    log.set("duration_ms", (clock::now() - started).num_milliseconds());
    log.emit(&calls);
}

async fn run_at(
    services: &Services<'_>,
    now: Timestamp,
    started: Timestamp,
    log: &mut Line,
) -> Result<(), StoreError> {
    let config = services.config;
    let calls = &services.calls;
    // Fold the event counts first: pruning only deletes folded events.
    let mut statements = tallies::fold(now, DRIFT_GRACE);
    let all_tallies = statements.len();
    statements.push(statement!(tallies::ALL));
    statements.push(prune(now - config.event_retention, PRUNE_BATCH));
    statements.push(outbox::prune(
        now - config.event_retention,
        PRUNE_BATCH,
        config.delivery.is_none(),
    ));
    statements.extend(kyc_core::db::alerts::prune(
        now - config.event_retention,
        PRUNE_BATCH,
    ));
    let results = d1::batch(calls, services.db, &statements).await?;
    let folded = tallies::activity(&results[0]);
    let statuses = counts(&results[all_tallies], &[]).statuses;
    let activity = serde_json::to_value(&folded).unwrap_or_default();
    let statuses = serde_json::to_value(&statuses).unwrap_or_default();

    let paused = d1::run(calls, services.db, &runs::paused_providers(now)).await?;
    let mut active = vec![];
    let mut waiting = vec![];
    let mut skipped = vec![];
    for provider in Provider::all() {
        if config.protocol(provider).is_none() {
            skipped.push(format!("{provider}:disabled"));
        } else if paused
            .iter()
            .any(|p| p.get("provider").and_then(Value::as_str) == Some(provider.as_str()))
        {
            skipped.push(format!("{provider}:paused"));
            waiting.push(provider);
        } else {
            active.push(provider);
        }
    }

    let budget = config.reconcile_budget;
    let lease_until = now + config.schedule.lease;
    // Due counts every enabled provider's subjects (a paused provider's wait); a disabled
    // provider's never drain, so they are not counted. The count stops at four budgets: a
    // backlog must not cost a row read per subject on every run.
    let count_cap = budget.saturating_mul(4);
    // Each active provider gets an equal share first; what a provider leaves unused goes to
    // the others, oldest due first within each, never past a provider's own rate limit.
    let share = budget.div_ceil(active.len().max(1) as u32);
    let cap = |provider: Provider| {
        provider
            .registration()
            .max_checks_per_run
            .unwrap_or(u32::MAX)
    };
    let mut due = 0;
    let mut claimed: Vec<DueSubject> = vec![];
    let mut unreadable = 0;
    let mut filled = vec![];
    let due_count = |results: &[Rows]| -> u32 {
        results[0]
            .first()
            .and_then(|r| r.get("n"))
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32
    };
    for &provider in &waiting {
        let results = d1::batch(calls, services.db, &[count_due(provider, now, count_cap)]).await?;
        due += due_count(&results);
    }
    for &provider in &active {
        let results = d1::batch(
            calls,
            services.db,
            &[
                count_due(provider, now, count_cap),
                claim_due(provider, now, lease_until, share.min(cap(provider))),
            ],
        )
        .await?;
        due += due_count(&results);
        let rows = &results[1];
        if rows.len() as u32 == share && share < cap(provider) {
            filled.push(provider);
        }
        unreadable += read_due(rows, &mut claimed, log);
    }
    for provider in filled {
        let left = budget
            .saturating_sub(claimed.len() as u32)
            .min(cap(provider).saturating_sub(share));
        if left == 0 {
            continue;
        }
        let rows = d1::run(
            calls,
            services.db,
            &claim_due(provider, now, lease_until, left),
        )
        .await?;
        unreadable += read_due(&rows, &mut claimed, log);
    }

    let jobs: Vec<Job> = claimed
        .iter()
        .map(|due| {
            Job::Reconcile(ReconcileJob {
                provider: due.provider,
                subject_ref: due.subject_ref.clone(),
                ref_kind: due.ref_kind,
                trusted: None,
                aml: false,
            })
        })
        .collect();
    let (sent, result) = queue::send_all(calls, services.env, &jobs).await;
    if let Err(error) = result {
        // Give back what could not be queued: due again now, instead of at the lease's end.
        log.set("send_error", error.to_string());
        let unsent = &claimed[sent..];
        for provider in Provider::all() {
            let refs: Vec<&SubjectRef> = unsent
                .iter()
                .filter(|d| d.provider == provider)
                .map(|d| &d.subject_ref)
                .collect();
            if !refs.is_empty() {
                d1::run(calls, services.db, &release(provider, &refs, now)).await?;
            }
        }
    }
    // Notifications whose attempt is due: first ones a queue message was lost for, retries
    // too far out to wait in the queue, those held back behind an older one.
    let mut notified = 0;
    if config.delivery.is_some() {
        let due = d1::run(calls, services.db, &outbox::due(now, budget)).await?;
        let jobs: Vec<Job> = outbox::seqs(&due)
            .into_iter()
            .map(|seq| Job::Notify { seq })
            .collect();
        let (sent, result) = queue::send_all(calls, services.env, &jobs).await;
        notified = sent;
        if let Err(error) = result {
            log.set("notify_send_error", error.to_string());
        }
    }
    log.set("notifications_sent", notified as u64);
    // Alerts after the run's reconciles and notifications are queued: their reads and any
    // write come after the work they watch, and a failure here only shows in the log.
    if let Err(error) = alerts::evaluate_in_cron(services, now, &results[all_tallies], log).await {
        log.set("alerts_error", error.to_string());
    }
    // Backfills last: they use what the run's own work left of the invocation's calls.
    if let Err(error) = backfill::run(services, now, log).await {
        log.set("backfill_error", error.to_string());
    }
    let run = CronRun {
        scheduled_at: now,
        started_at: started,
        duration_ms: (clock::now() - started).num_milliseconds(),
        due,
        enqueued: sent as u32,
        skipped: skipped.clone(),
        activity: activity.to_string(),
        statuses: statuses.to_string(),
    };
    d1::batch(calls, services.db, &runs::record(&run)).await?;
    log.set("due", due)
        .set("enqueued", sent as u64)
        .set("unreadable", unreadable)
        .set("skipped", skipped)
        .set("activity", activity);
    Ok(())
}

/// Leased rows into jobs' subjects; an unreadable row is logged and skipped, never guessed.
fn read_due(rows: &Rows, claimed: &mut Vec<DueSubject>, log: &mut Line) -> u32 {
    let mut unreadable = 0;
    for found in rows {
        match row::<DueSubject>(found) {
            Ok(due) => claimed.push(due),
            Err(error) => {
                unreadable += 1;
                let key = format!(
                    "{}/{}",
                    found.get("provider").and_then(Value::as_str).unwrap_or("?"),
                    ref_for_log(found.get("ref").and_then(Value::as_str).unwrap_or("?"))
                );
                log.set("unreadable_row", format!("{key}: {error}"));
            }
        }
    }
    unreadable
}
