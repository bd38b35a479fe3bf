//! KV: the projection of subjects for fast reads (what to write and when is decided in
//! `kyc_core::projection`); this module only performs its calls.

use crate::calls::{Call, Calls};
use crate::d1;
use crate::error::StoreError;
use crate::queue;
use crate::services::Services;
use kyc_core::db::subjects::SubjectRow;
use kyc_core::jobs::Job;
use kyc_core::projection::{self, Outcome, Projection, ProjectionStep};
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

/// Projects `row` (as D1 returned it from a write); if a KV call fails, queues a `project`
/// job that repairs the key a moment later. Returns what the log says.
pub async fn project(services: &Services<'_>, row: &SubjectRow) -> Result<&'static str, String> {
    let mut projection = Projection::new(row.clone());
    let mut input = Input::Begin;
    let outcome = loop {
        match projection.resume(input, services.config.kv_ttl) {
            ProjectionStep::Over(outcome) => break outcome,
            step => input = perform(services, &step).await,
        }
    };
    match outcome {
        Outcome::Written => Ok("written"),
        Outcome::Current => Ok("current"),
        Outcome::Superseded => Ok("superseded"),
        Outcome::Failed(error) => {
            let repair = Job::Project {
                provider: row.provider,
                subject_ref: row.subject_ref.clone(),
            };
            let queued = queue::send_later(
                &services.calls,
                services.env,
                &repair,
                projection::REPAIR_DELAY_SECONDS,
            )
            .await;
            Err(match queued {
                Ok(()) => error,
                Err(queue_error) => format!("{error}; the repair was not queued: {queue_error}"),
            })
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
