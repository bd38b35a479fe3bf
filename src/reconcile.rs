//! Runs the core's sans-IO jobs (`kyc_core::reconcile::run`, `kyc_core::projection`): each
//! step is one call to D1, a provider, the queue or KV, made here and answered back with the
//! time. Every decision, the retry loop included, is the core's.

use crate::clock;
use crate::d1;
use crate::error::StoreError;
use crate::kv;
use crate::log::Line;
use crate::outbound::{self, NotSent};
use crate::queue;
use crate::services::Services;
use kyc_core::db::{Rows, Statement};
use kyc_core::jobs::ReconcileJob;
use kyc_core::projection::{ProjectRun, Timing};
use kyc_core::reconcile::run::{Input, Report, RetryReason, Run, Settings, Step};
use kyc_core::reconcile::Effect;
use kyc_core::subject::{ref_for_log, Provider, SubjectRef};
use kyc_core::time::{format, Timestamp};

/// A job the core runs step by step.
trait Machine {
    fn resume(&mut self, input: Input, now: Timestamp) -> Step;
}

impl Machine for Run<'_> {
    fn resume(&mut self, input: Input, now: Timestamp) -> Step {
        Run::resume(self, input, now)
    }
}

impl Machine for ProjectRun {
    fn resume(&mut self, input: Input, now: Timestamp) -> Step {
        ProjectRun::resume(self, input, now)
    }
}

/// Reconcile one subject.
pub async fn reconcile(
    services: &Services<'_>,
    job: &ReconcileJob,
    log: &mut Line,
) -> Result<(), StoreError> {
    log.set("provider", job.provider.as_str())
        .set("ref", ref_for_log(job.subject_ref.as_str()).as_ref());
    let Some(protocol) = services.config.protocol(job.provider) else {
        log.set("outcome", "provider disabled");
        return Ok(());
    };
    let settings = Settings {
        schedule: &services.config.schedule,
        notify: services.config.delivery.is_some(),
        kv: Timing::new(services.config.kv_ttl),
    };
    let mut run = Run::new(job.clone(), protocol, settings);
    let report = drive(services, &mut run).await;
    describe(log, &report);
    verdict(report)
}

/// Put D1's row of a subject into KV again.
pub async fn project(
    services: &Services<'_>,
    provider: Provider,
    subject_ref: &SubjectRef,
    log: &mut Line,
) -> Result<(), StoreError> {
    log.set("provider", provider.as_str())
        .set("ref", ref_for_log(subject_ref.as_str()).as_ref());
    let mut run = ProjectRun::new(
        provider,
        subject_ref.clone(),
        Timing::new(services.config.kv_ttl),
    );
    let report = drive(services, &mut run).await;
    describe(log, &report);
    verdict(report)
}

fn verdict(report: Report) -> Result<(), StoreError> {
    match report.retry {
        None => Ok(()),
        Some(RetryReason::OverBudget) => Err(StoreError::OverBudget),
        Some(RetryReason::Error(error)) => Err(StoreError::Unfinished(error)),
    }
}

async fn drive(services: &Services<'_>, machine: &mut impl Machine) -> Report {
    let mut input = Input::Begin;
    let _unit = services.gather.map(|gather| gather.enter());
    loop {
        input = match machine.resume(input, clock::now()) {
            Step::Finished(report) => return *report,
            Step::Reserve(calls) => match services.calls.reserve(calls) {
                Ok(()) => Input::Granted,
                Err(_) => Input::Refused,
            },
            Step::Read(statement) => {
                answer(batch(services, std::slice::from_ref(&statement)).await)
            }
            Step::Write(statements) => answer(batch(services, &statements).await),
            Step::Fetch(request) => {
                match outbound::get(
                    &services.calls,
                    &request,
                    services.config.provider_timeout,
                    services.config.provider_max_answer_bytes,
                )
                .await
                {
                    Ok(body) => Input::Answered(body),
                    Err(NotSent::OverBudget) => Input::Refused,
                    Err(NotSent::Failed(error)) => Input::FetchFailed(error),
                }
            }
            Step::Enqueue {
                jobs,
                delay_seconds,
            } => {
                let sent = if delay_seconds == 0 {
                    queue::send_all(&services.calls, services.env, &jobs)
                        .await
                        .1
                } else {
                    queue::send_all_later(&services.calls, services.env, &jobs, delay_seconds).await
                };
                match sent {
                    Ok(()) => Input::Done,
                    Err(StoreError::OverBudget) => Input::Refused,
                    Err(error) => Input::Failed(error.to_string()),
                }
            }
            Step::Kv(step) => kv::perform(services, &step).await,
        };
    }
}

/// One D1 call, gathered with the batch's other jobs' when in a queue batch.
async fn batch(services: &Services<'_>, statements: &[Statement]) -> Result<Vec<Rows>, StoreError> {
    match services.gather {
        Some(gather) => d1::gathered_batch(gather, &services.calls, services.db, statements).await,
        None => d1::batch(&services.calls, services.db, statements).await,
    }
}

fn answer(result: Result<Vec<Rows>, StoreError>) -> Input {
    match result {
        Ok(rows) => Input::Rows(rows),
        Err(StoreError::OverBudget) => Input::Refused,
        Err(error) => Input::Failed(error.to_string()),
    }
}

fn describe(log: &mut Line, report: &Report) {
    if let Some(outcome) = report.outcome {
        log.set("outcome", outcome);
    }
    match &report.effect {
        Some(Effect::Changed(change)) => {
            log.set("from", change.previous.as_str());
        }
        Some(Effect::Failed { class, .. }) => {
            log.set("check_error", class.as_str());
        }
        _ => {}
    }
    if let Some(row) = &report.row {
        log.set("status", row.status.as_str())
            .set("version", row.version)
            .set("next_check_at", format(row.next_check_at));
    }
    if report.effect.is_some() {
        log.set("drift", report.drift);
    }
    if let Some(seq) = report.notification {
        log.set("notifications", vec![seq]);
    }
    if report.conflicts > 0 {
        log.set("conflicts", report.conflicts);
    }
    if let Some(kv) = report.kv {
        log.set("kv", kv);
    }
    if report.kv_settle {
        log.set("kv_settle", true);
    }
    if let Some(error) = &report.kv_error {
        log.set("kv_error", error.as_str());
    }
    if let Some(error) = &report.queue_error {
        log.set("queue_error", error.as_str());
    }
}
