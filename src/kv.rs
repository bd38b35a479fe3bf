//! KV: the projection of subjects for fast reads (what to write and when is decided in
//! `kyc_core::projection`); this module only performs its calls.

use crate::calls::{Call, Calls};
use crate::clock;
use crate::d1;
use crate::error::StoreError;
use crate::queue;
use crate::services::Services;
use kyc_core::db::subjects::SubjectRow;
use kyc_core::jobs::Job;
use kyc_core::projection::{self, Outcome, Projection, ProjectionStep, Timing};
use kyc_core::reconcile::run::Input;
use kyc_core::subject::{Provider, SubjectRef};
use worker::Env;

pub const BINDING: &str = "STATUS";

/// Performs one KV call of a projection (the version read is a D1 statement).
pub async fn perform(services: &Services<'_>, step: &ProjectionStep) -> Input {
    let answer = match step {
        ProjectionStep::Put {
            key,
            value,
            ttl_seconds,
        } => put(&services.calls, services.env, key, value, *ttl_seconds).await,
        ProjectionStep::Delete { key } => delete(&services.calls, services.env, key).await,
        ProjectionStep::Get { key } => {
            return match get(&services.calls, services.env, key).await {
                Ok(held) => Input::Value(held),
                Err(StoreError::OverBudget) => Input::Refused,
                Err(error) => Input::Failed(error.to_string()),
            }
        }
        ProjectionStep::Verify(statement) => {
            return match d1::run(&services.calls, services.db, statement).await {
                Ok(rows) => Input::Rows(vec![rows]),
                Err(StoreError::OverBudget) => Input::Refused,
                Err(error) => Input::Failed(error.to_string()),
            }
        }
        ProjectionStep::Over(_) => return Input::Done,
    };
    match answer {
        Ok(()) => Input::Done,
        Err(StoreError::OverBudget) => Input::Refused,
        Err(error) => Input::Failed(error.to_string()),
    }
}

/// Projects `row` (as D1 returned it from a write); if a KV call fails, or `settle` (the
/// write may have overtaken the previous version's put), queues a `project` job that looks
/// at the key a moment later. Returns what the log says.
pub async fn project(
    services: &Services<'_>,
    row: &SubjectRow,
    settle: bool,
) -> Result<&'static str, String> {
    let timing = Timing::new(services.config.kv_ttl);
    let mut projection = Projection::new(row.clone(), timing);
    let mut input = Input::Begin;
    let outcome = loop {
        match projection.resume(input, clock::now()) {
            ProjectionStep::Over(outcome) => break outcome,
            step => input = perform(services, &step).await,
        }
    };
    let (said, error) = match outcome {
        Outcome::Written => ("written", None),
        Outcome::Current => ("current", None),
        Outcome::Superseded => ("superseded", None),
        Outcome::Failed(error) => ("failed", Some(error)),
    };
    if error.is_none() && !settle {
        return Ok(said);
    }
    let delay = if settle {
        timing.settle_seconds()
    } else {
        projection::REPAIR_DELAY_SECONDS
    };
    let repair = Job::Project {
        provider: row.provider,
        subject_ref: row.subject_ref.clone(),
    };
    let queued = queue::send_later(&services.calls, services.env, &repair, delay).await;
    match (error, queued) {
        (None, Ok(())) => Ok(said),
        (None, Err(queue_error)) => Err(format!("the KV check was not queued: {queue_error}")),
        (Some(error), Ok(())) => Err(error),
        (Some(error), Err(queue_error)) => {
            Err(format!("{error}; the repair was not queued: {queue_error}"))
        }
    }
}

async fn put(
    calls: &Calls,
    env: &Env,
    key: &str,
    value: &str,
    ttl_seconds: u64,
) -> Result<(), StoreError> {
    calls.spend(Call::KvWrite)?;
    env.kv(BINDING)
        .map_err(StoreError::Kv)?
        .put(key, value)
        .map_err(|e| StoreError::Kv(e.into()))?
        .expiration_ttl(ttl_seconds)
        .execute()
        .await
        .map_err(|e| StoreError::Kv(e.into()))
}

async fn delete(calls: &Calls, env: &Env, key: &str) -> Result<(), StoreError> {
    calls.spend(Call::KvWrite)?;
    env.kv(BINDING)
        .map_err(StoreError::Kv)?
        .delete(key)
        .await
        .map_err(|e| StoreError::Kv(e.into()))
}

/// The projected subject as JSON text, if KV has it.
pub async fn read(
    calls: &Calls,
    env: &Env,
    provider: Provider,
    subject_ref: &SubjectRef,
) -> Result<Option<String>, StoreError> {
    get(calls, env, &projection::key(provider, subject_ref)).await
}

async fn get(calls: &Calls, env: &Env, key: &str) -> Result<Option<String>, StoreError> {
    calls.spend(Call::KvRead)?;
    env.kv(BINDING)
        .map_err(StoreError::Kv)?
        .get(key)
        .text()
        .await
        .map_err(|e| StoreError::Kv(e.into()))
}
