//! Reconcile one subject: learn its state (a trusted webhook body, or the provider's API
//! through the protocol's check), let the core plan the write, run the plan as one D1 batch,
//! and on a lost guard re-read and plan again. Then project the written row to KV.

use crate::clock;
use crate::d1;
use crate::error::StoreError;
use crate::kv;
use crate::log::Line;
use crate::outbound::{self, NotSent};
use crate::queue;
use crate::services::Services;
use kyc_core::db::subjects::{self, SubjectRow};
use kyc_core::jobs::{Job, ReconcileJob};
use kyc_core::outbound::CheckFailure;
use kyc_core::providers::{CheckTarget, ProviderProtocol};
use kyc_core::reconcile::{plan, Context, Effect, Outcome, Reading, Written};
use kyc_core::status::KycStatus;
use kyc_core::time::format;

/// Writers that raced us get this many re-reads before the job is retried.
const MAX_CONFLICTS: u32 = 5;

pub async fn reconcile(
    services: &Services<'_>,
    job: &ReconcileJob,
    log: &mut Line,
) -> Result<(), StoreError> {
    log.set("provider", job.provider.as_str())
        .set("ref", job.subject_ref.as_str());
    let Some(protocol) = services.config.protocol(job.provider) else {
        log.set("outcome", "provider disabled");
        return Ok(());
    };
    let Some(mut stored) = load(services, job).await? else {
        log.set("outcome", "not tracked");
        return Ok(());
    };
    let outcome = match job
        .trusted
        .as_ref()
        .filter(|trusted| trusted.observed_at > stored.observed_at)
    {
        Some(trusted) => Outcome::Read(Reading {
            observation: trusted.clone(),
            polled_at: None,
        }),
        None => {
            let target = CheckTarget {
                subject_ref: job.subject_ref.clone(),
                ref_kind: stored.ref_kind,
                // AML screening runs after approval and can change any time.
                aml: job.aml || stored.status == KycStatus::Approved,
            };
            check(services, protocol, target).await?
        }
    };
    let context = |now| Context {
        now,
        schedule: &services.config.schedule,
    };
    for conflicts in 0..=MAX_CONFLICTS {
        let plan = plan(&stored, &outcome, context(clock::now()));
        // Once the write is made, its notifications must be queued and its projection written
        // and checked (put, version read, perhaps a delete): with the write itself, these calls
        // are set aside first (topping up what the consumer reserved, spent by extra pages or
        // a reload), or nothing is written and the job runs again with a fresh budget.
        let projection_calls = if plan.project { 3 } else { 0 };
        services.calls.reserve(2 + projection_calls)?;
        let results = d1::batch(&services.calls, services.db, &plan.statements).await?;
        let written = plan
            .written(&results)
            .map_err(|e| StoreError::Unreadable(e.to_string()))?;
        match written {
            Written::Nothing => {
                log.set("outcome", "stale");
                return Ok(());
            }
            Written::Lost => {
                log.set("conflicts", conflicts + 1);
                let Some(reloaded) = load(services, job).await? else {
                    log.set("outcome", "not tracked");
                    return Ok(());
                };
                stored = reloaded;
            }
            Written::Won {
                row,
                drift,
                notifications,
            } => {
                describe(log, &plan.effect, &row, drift);
                if !notifications.is_empty() {
                    log.set("notifications", notifications.clone());
                }
                // The outbox rows are committed with the change: if this send fails, the cron
                // finds them due. Without an endpoint they are recorded, not sent.
                if services.config.delivery.is_some() {
                    let jobs: Vec<Job> = notifications
                        .into_iter()
                        .map(|seq| Job::Notify { seq })
                        .collect();
                    if let (_, Err(error)) =
                        queue::send_all(&services.calls, services.env, &jobs).await
                    {
                        log.set("queue_error", error.to_string());
                    }
                }
                if plan.project {
                    let projection = kv::project(
                        &services.calls,
                        services.env,
                        services.db,
                        &row,
                        services.config.kv_ttl,
                    )
                    .await;
                    match projection {
                        Ok(kv::Projection::Written) => log.set("kv", "written"),
                        Ok(kv::Projection::Superseded) => log.set("kv", "superseded"),
                        // D1 holds the change; the KV entry expires (or was removed).
                        Err(error) => log.set("kv_error", error.to_string()),
                    };
                }
                return Ok(());
            }
        }
    }
    Err(StoreError::Contended(MAX_CONFLICTS))
}

fn describe(log: &mut Line, effect: &Effect, row: &SubjectRow, drift: bool) {
    let outcome = match effect {
        Effect::Stale => "stale",
        Effect::Confirmed => "confirmed",
        Effect::Changed(change) => {
            log.set("from", change.previous.as_str());
            "changed"
        }
        Effect::Failed { class, .. } => {
            log.set("check_error", class.as_str());
            "check failed"
        }
    };
    log.set("outcome", outcome)
        .set("status", row.status.as_str())
        .set("version", row.version)
        .set("drift", drift)
        .set("next_check_at", format(row.next_check_at));
}

async fn load(
    services: &Services<'_>,
    job: &ReconcileJob,
) -> Result<Option<SubjectRow>, StoreError> {
    let rows = d1::run(
        &services.calls,
        services.db,
        &subjects::load(job.provider, &job.subject_ref),
    )
    .await?;
    d1::first(&rows)
}

/// Drive the protocol's check: send each request it asks for, hand back each answer.
async fn check(
    services: &Services<'_>,
    protocol: &dyn ProviderProtocol,
    target: CheckTarget,
) -> Result<Outcome, StoreError> {
    let sent_at = clock::now();
    let failed = |failure| Outcome::Failed { failure, sent_at };
    let mut check = protocol.check(target);
    while let Some(request) = check.next_request() {
        match outbound::get(&services.calls, &request, services.config.provider_timeout).await {
            Ok(body) => {
                if let Err(error) = check.read(&body, clock::now()) {
                    return Ok(failed(CheckFailure::Answer(error)));
                }
            }
            Err(NotSent::OverBudget) => return Err(StoreError::OverBudget),
            Err(NotSent::Failed(error)) => return Ok(failed(CheckFailure::Outbound(error))),
        }
    }
    Ok(match check.conclude(sent_at) {
        Ok(observation) => Outcome::Read(Reading {
            observation,
            polled_at: Some(sent_at),
        }),
        Err(error) => failed(CheckFailure::Answer(error)),
    })
}
