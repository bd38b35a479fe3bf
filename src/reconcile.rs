//! Reconcile one subject: learn its state (a trusted webhook reading or the provider's API),
//! let the core decide, persist under a version check, project to KV, account for it.

use crate::clock;
use crate::jobs::ReconcileJob;
use crate::outbound;
use crate::store::bookkeeping::{JobResult, Ledger};
use crate::store::subjects::{self, SubjectRow};
use crate::store::{self, kv};
use kyc_core::config::Config;
use kyc_core::observation::Observation;
use kyc_core::providers::ProviderProtocol;
use kyc_core::schedule::{self, ResponseClass};
use kyc_core::transition::{decide, is_drift, Decision};
use worker::{console_error, console_warn, D1Database, Env, Result};

/// What the queue should do with the job.
pub enum Verdict {
    Done,
    /// An infrastructure error (D1): run the job again later.
    Retry,
}

/// Writers that raced us get this many re-decisions before the job is retried.
const MAX_CONFLICTS: usize = 3;

pub async fn run(env: &Env, config: &Config, job: &ReconcileJob) -> Verdict {
    match reconcile(env, config, job).await {
        Ok(()) => Verdict::Done,
        Err(error) => {
            console_error!(
                "reconcile {}/{} failed, retrying: {error}",
                job.provider,
                job.subject_ref
            );
            Verdict::Retry
        }
    }
}

/// Why a check learned nothing. Never changes a subject's status.
enum Failure {
    Transport(String),
    RateLimited { retry_after: Option<i64> },
    Http(u16),
    Malformed(String),
}

impl Failure {
    /// A short class for logs and stats; never a response body.
    fn class(&self) -> String {
        match self {
            Failure::Transport(why) if why.starts_with("timed out") => "timeout".into(),
            Failure::Transport(_) => "transport error".into(),
            Failure::RateLimited { .. } => "HTTP 429".into(),
            Failure::Http(status) => format!("HTTP {status}"),
            Failure::Malformed(_) => "malformed answer".into(),
        }
    }
}

/// A reading and, for a fetch, when the check started.
struct Reading {
    observation: Observation,
    checked_at: Option<i64>,
}

async fn fetch(
    protocol: &dyn ProviderProtocol,
    config: &Config,
    row: &SubjectRow,
    job: &ReconcileJob,
) -> std::result::Result<Reading, Failure> {
    let checked_at = clock::now();
    let request = protocol.status_request(&job.subject_ref, row.ref_kind());
    let answer = outbound::get(&request, config.provider_timeout_ms)
        .await
        .map_err(Failure::Transport)?;
    let fetched_at = clock::now();
    match schedule::classify_response(answer.status, answer.retry_after.as_deref(), fetched_at) {
        ResponseClass::Ok => protocol
            .parse_status(&answer.body, &job.subject_ref, row.ref_kind(), fetched_at)
            .map(|observation| Reading {
                observation,
                checked_at: Some(checked_at),
            })
            .map_err(|e| Failure::Malformed(e.to_string())),
        ResponseClass::RateLimited { retry_after } => Err(Failure::RateLimited { retry_after }),
        ResponseClass::Transient | ResponseClass::Permanent => Err(Failure::Http(answer.status)),
    }
}

async fn reconcile(env: &Env, config: &Config, job: &ReconcileJob) -> Result<()> {
    let Some(protocol) = config.protocol(job.provider) else {
        console_warn!(
            "{} is disabled; dropping its job for {}",
            job.provider,
            job.subject_ref
        );
        return Ok(());
    };
    let db = store::db(env)?;
    let Some((mut row, mut announcements)) =
        subjects::load_for_reconcile(&db, job.provider, &job.subject_ref).await?
    else {
        return Ok(()); // no longer tracked
    };
    let trusted = job
        .trusted
        .as_ref()
        .filter(|t| t.observed_at > row.observed_at)
        .map(|t| Reading {
            observation: t.clone(),
            checked_at: None,
        });
    let fetched = trusted.is_none();
    let reading = match trusted {
        Some(reading) => reading,
        None => match fetch(protocol, config, &row, job).await {
            Ok(reading) => reading,
            Err(failure) => return record_failure(env, &db, config, job, &row, failure).await,
        },
    };
    let seed = format!("{}/{}", job.provider, job.subject_ref);
    for _ in 0..MAX_CONFLICTS {
        let now = clock::now();
        let mut ledger = Ledger::new(&db);
        if fetched {
            ledger.provider_ok(job.provider, now)?;
        }
        let result = match decide(&row.recorded(), &reading.observation) {
            Decision::Stale => JobResult::Unchanged,
            Decision::Confirmed { observed_at } => {
                let next = schedule::after_check(
                    &config.schedule,
                    row.recorded().status,
                    false,
                    row.check_step,
                    now,
                    &seed,
                );
                if !subjects::confirm(&db, &row, observed_at, reading.checked_at, next).await? {
                    (row, announcements) = reload(&db, job).await?;
                    continue;
                }
                // KV serves reads: keep its schedule fields in step with D1.
                let confirmed = SubjectRow {
                    observed_at,
                    last_checked_at: reading.checked_at.or(row.last_checked_at),
                    next_check_at: next.at,
                    check_step: next.step,
                    failures: 0,
                    ..row.clone()
                };
                kv::project(env, &confirmed).await;
                JobResult::Unchanged
            }
            Decision::Apply(change) => {
                let source = reading.observation.source;
                let drift = is_drift(&change, source, &announcements);
                let next = schedule::after_check(
                    &config.schedule,
                    change.next.status,
                    true,
                    row.check_step,
                    now,
                    &seed,
                );
                if !subjects::apply_change(
                    &db,
                    &row,
                    &change,
                    source,
                    reading.checked_at,
                    next,
                    drift,
                    now,
                )
                .await?
                {
                    (row, announcements) = reload(&db, job).await?;
                    continue;
                }
                if drift {
                    console_warn!(
                        "drift: {seed} changed {} -> {} and no webhook announced it",
                        change.previous,
                        change.next.status
                    );
                    ledger.drift(job.provider)?;
                }
                kv::project(
                    env,
                    &row.with_change(&change, source, reading.checked_at, next, now),
                )
                .await;
                JobResult::Changed
            }
        };
        if let Some(run) = job.run {
            ledger.cron_job(run, result, now)?;
        }
        return ledger.commit().await;
    }
    Err(worker::Error::RustError(format!(
        "{seed}: {MAX_CONFLICTS} write conflicts in a row"
    )))
}

async fn reload(
    db: &D1Database,
    job: &ReconcileJob,
) -> Result<(SubjectRow, Vec<kyc_core::transition::Announcement>)> {
    subjects::load_for_reconcile(db, job.provider, &job.subject_ref)
        .await?
        .ok_or_else(|| {
            worker::Error::RustError(format!(
                "{}/{} vanished during reconcile",
                job.provider, job.subject_ref
            ))
        })
}

async fn record_failure(
    env: &Env,
    db: &D1Database,
    config: &Config,
    job: &ReconcileJob,
    row: &SubjectRow,
    failure: Failure,
) -> Result<()> {
    let now = clock::now();
    let retry_after = match failure {
        Failure::RateLimited { retry_after } => retry_after,
        _ => None,
    };
    let seed = format!("{}/{}", job.provider, job.subject_ref);
    let next = schedule::after_failure(&config.schedule, row.failures + 1, retry_after, now, &seed);
    let detail = match &failure {
        Failure::Transport(why) | Failure::Malformed(why) => why.clone(),
        _ => String::new(),
    };
    console_warn!(
        "check of {seed} failed ({}) {detail}; status kept, next try in {} s",
        failure.class(),
        (next - now) / 1000
    );
    subjects::record_failure(db, row, next).await?;
    let failed = SubjectRow {
        failures: row.failures + 1,
        next_check_at: next,
        ..row.clone()
    };
    kv::project(env, &failed).await;
    let mut ledger = Ledger::new(db);
    ledger.provider_failed(
        job.provider,
        &failure.class(),
        retry_after.map(|r| now + r),
        now,
    )?;
    if let Some(run) = job.run {
        ledger.cron_job(run, JobResult::Failed, now)?;
    }
    ledger.commit().await
}
