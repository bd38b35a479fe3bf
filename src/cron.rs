//! The Cron Trigger: fold the counts, prune old history, lease due subjects per provider
//! (oldest first, within the budget) and fan them out as reconcile jobs, record the run.
//! It never calls a provider itself.

use crate::calls::Calls;
use crate::error::StoreError;
use crate::log::Line;
use crate::services::Services;
use crate::{alerts, backfill, clock, config, d1, queue};
use kyc_core::cron::{self, ClaimPlan, Housekeeping, Lane, Leased, Partition, Surveyed};
use kyc_core::db::notifications as outbox;
use kyc_core::db::runs::{self, CronRun};
use kyc_core::db::tallies::counts;
use kyc_core::db::Rows;
use kyc_core::jobs::Job;
use kyc_core::time::Timestamp;
use worker::Env;

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
                        gather: None,
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
    let (calls, db) = (&services.calls, services.db);
    let budget = config.reconcile_budget;
    // Due counts every enabled provider's subjects (a paused provider's wait); a disabled
    // provider's never drain, so they are not counted.
    let enabled = config.enabled_providers();
    let kept = config.event_retention;
    let survey = cron::survey(&enabled, now, budget, kept);
    let surveyed = Surveyed::read(&d1::batch(calls, db, &survey).await?);
    let housekeeping = Housekeeping::plan(&surveyed.agenda, now, kept, config.delivery.is_some());
    // A quiet run (nothing to fold, nothing old enough to prune) makes no call for it.
    let results = if housekeeping.statements.is_empty() {
        vec![]
    } else {
        d1::batch(calls, db, &housekeeping.statements).await?
    };
    let folded = housekeeping.read(&results, &surveyed);
    let partition = Partition::of(&enabled, &surveyed.agenda.paused);
    let due: u32 = enabled.iter().map(|&p| surveyed.agenda.due(p)).sum();
    let lease_until = now + config.schedule.lease;
    let leased = lease(
        services,
        &ClaimPlan::first_round(budget, &Lane::all(&partition.active, &surveyed.agenda)),
        now,
        lease_until,
        log,
    )
    .await?;
    let (sent, result) = queue::send_all(calls, services.env, &cron::jobs(&leased.subjects)).await;
    if let Err(error) = result {
        // Give back what could not be queued: due again now, instead of at the lease's end.
        log.set("send_error", error.to_string());
        for release in cron::releases(&leased.subjects[sent..], now) {
            d1::run(calls, db, &release).await?;
        }
    }
    notify_due(services, now, log).await?;
    // Alerts after the run's reconciles and notifications are queued: their reads and any
    // write come after the work they watch, and a failure here only shows in the log.
    if let Err(error) = alerts::evaluate_in_cron(services, now, &folded.tallies, log).await {
        log.set("alerts_error", error.to_string());
    }
    // Backfills last: they use what the run's own work left of the invocation's calls.
    if let Err(error) = backfill::run(services, now, log).await {
        log.set("backfill_error", error.to_string());
    }
    let activity = serde_json::to_value(&folded.activity).unwrap_or_default();
    // After the fold, which is what moves status counts: the statuses at the run.
    let statuses = serde_json::to_value(counts(&folded.tallies, &[]).statuses).unwrap_or_default();
    let run = CronRun {
        scheduled_at: now,
        started_at: started,
        duration_ms: (clock::now() - started).num_milliseconds(),
        due,
        enqueued: sent as u32,
        skipped: partition.skipped_names(),
        activity: activity.to_string(),
        statuses: statuses.to_string(),
    };
    d1::batch(calls, db, &runs::record(&run)).await?;
    log.set("due", due)
        .set("enqueued", sent as u64)
        .set("unreadable", leased.unreadable.len() as u32)
        .set("skipped", run.skipped)
        .set("activity", activity);
    Ok(())
}

/// Run the plan's claims, then the refills of the providers that filled their share, one
/// statement each: what they leased, oldest due first within each provider.
async fn lease(
    services: &Services<'_>,
    plan: &ClaimPlan,
    now: Timestamp,
    lease_until: Timestamp,
    log: &mut Line,
) -> Result<Leased, StoreError> {
    let mut leased = Leased::default();
    let mut counts = vec![];
    for claim in &plan.claims {
        let rows = d1::run(
            &services.calls,
            services.db,
            &claim.statement(now, lease_until),
        )
        .await?;
        counts.push(rows.len() as u32);
        take(&mut leased, &rows, log);
    }
    let mut refills = plan.refills(&counts);
    while let Some(claim) = refills.next(leased.subjects.len() as u32) {
        let rows = d1::run(
            &services.calls,
            services.db,
            &claim.statement(now, lease_until),
        )
        .await?;
        take(&mut leased, &rows, log);
    }
    Ok(leased)
}

/// Add a lease's rows; an unreadable row is logged and skipped, never guessed.
fn take(leased: &mut Leased, rows: &Rows, log: &mut Line) {
    let found = Leased::read(rows);
    for unreadable in &found.unreadable {
        log.set("unreadable_row", unreadable.as_str());
    }
    leased.subjects.extend(found.subjects);
    leased.unreadable.extend(found.unreadable);
}

/// Notifications whose attempt is due: first ones a queue message was lost for, retries too
/// far out to wait in the queue, those held back behind an older one.
async fn notify_due(
    services: &Services<'_>,
    now: Timestamp,
    log: &mut Line,
) -> Result<(), StoreError> {
    let mut notified = 0;
    if services.config.delivery.is_some() {
        let budget = services.config.reconcile_budget;
        let due = d1::run(&services.calls, services.db, &outbox::due(now, budget)).await?;
        let jobs: Vec<Job> = outbox::seqs(&due)
            .into_iter()
            .map(|seq| Job::Notify { seq })
            .collect();
        let (sent, result) = queue::send_all(&services.calls, services.env, &jobs).await;
        notified = sent;
        if let Err(error) = result {
            log.set("notify_send_error", error.to_string());
        }
    }
    log.set("notifications_sent", notified as u64);
    Ok(())
}
