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
use kyc_core::db::runs::{self, Agenda, CronRun};
use kyc_core::db::subjects::{claim_due, release, DueSubject};
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
            let calls = Calls::new(config.workers_plan.subrequests());
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
    let budget = config.reconcile_budget;
    // Due counts every enabled provider's subjects (a paused provider's wait); a disabled
    // provider's never drain, so they are not counted. The count stops at four budgets: a
    // backlog must not cost a row read per subject on every run.
    let count_cap = budget.saturating_mul(4);
    let enabled = config.enabled_providers();
    // First what there is to do, and the tallies (status counts are written with each change,
    // never by the fold, so reading them first is reading them as of the run).
    let first = d1::batch(
        calls,
        services.db,
        &[
            runs::agenda(&enabled, now, count_cap, now - DRIFT_GRACE),
            statement!(tallies::ALL),
        ],
    )
    .await?;
    let agenda = Agenda::read(&first[0]);
    let statuses = counts(&first[1], &[]).statuses;
    let statuses = serde_json::to_value(&statuses).unwrap_or_default();
    // Retention, after the fold when there is one: pruning only deletes folded events.
    let mut retention = vec![
        prune(now - config.event_retention, PRUNE_BATCH),
        outbox::prune(
            now - config.event_retention,
            PRUNE_BATCH,
            config.delivery.is_none(),
        ),
    ];
    retention.extend(kyc_core::db::alerts::prune(
        now - config.event_retention,
        PRUNE_BATCH,
    ));
    // The alerts watch the tallies as the fold leaves them (drift is counted there): read them
    // again after a fold, or take the ones read first when nothing was folded.
    let (folded, folded_tallies) = if agenda.fold {
        let mut statements = tallies::fold(now, DRIFT_GRACE);
        let after_fold = statements.len();
        statements.push(statement!(tallies::ALL));
        statements.extend(retention);
        let mut results = d1::batch(calls, services.db, &statements).await?;
        let activity = tallies::activity(&results[0]);
        (activity, results.swap_remove(after_fold))
    } else {
        d1::batch(calls, services.db, &retention).await?;
        (Default::default(), first[1].clone())
    };
    let activity = serde_json::to_value(&folded).unwrap_or_default();

    let mut active = vec![];
    let mut skipped = vec![];
    for provider in Provider::all() {
        if config.protocol(provider).is_none() {
            skipped.push(format!("{provider}:disabled"));
        } else if agenda.paused.contains(&provider) {
            skipped.push(format!("{provider}:paused"));
        } else {
            active.push(provider);
        }
    }

    let lease_until = now + config.schedule.lease;
    // Each active provider gets an equal share first; what a provider leaves unused goes to
    // the others, oldest due first within each, never past a provider's own rate limit.
    let share = budget.div_ceil(active.len().max(1) as u32);
    let cap = |provider: Provider| {
        provider
            .registration()
            .max_checks_per_run
            .unwrap_or(u32::MAX)
    };
    let due: u32 = enabled.iter().map(|&p| agenda.due(p)).sum();
    let mut claimed: Vec<DueSubject> = vec![];
    let mut unreadable = 0;
    let mut filled = vec![];
    // A provider with nothing due is not asked for a lease: the count said so.
    for &provider in active.iter().filter(|&&p| agenda.due(p) > 0) {
        let rows = d1::run(
            calls,
            services.db,
            &claim_due(provider, now, lease_until, share.min(cap(provider))),
        )
        .await?;
        if rows.len() as u32 == share && share < cap(provider) {
            filled.push(provider);
        }
        unreadable += read_due(&rows, &mut claimed, log);
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
    if let Err(error) = alerts::evaluate_in_cron(services, now, &folded_tallies, log).await {
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
