//! The job queue: what webhooks, the cron and refreshes hand the consumer.

use crate::calls::{Call, Calls};
use crate::error::StoreError;
use kyc_core::jobs::Job;
use worker::{Env, MessageBuilder};

pub const BINDING: &str = "JOBS";
/// `sendBatch` takes at most 100 messages.
pub const MAX_SEND_BATCH: usize = 100;

pub async fn send(calls: &Calls, env: &Env, job: &Job) -> Result<(), StoreError> {
    send_later(calls, env, job, 0).await
}

/// Send a job to run `delay_seconds` from now.
pub async fn send_later(
    calls: &Calls,
    env: &Env,
    job: &Job,
    delay_seconds: u32,
) -> Result<(), StoreError> {
    calls.spend(Call::Queue(1))?;
    let message = MessageBuilder::new(job.encode())
        .delay_seconds(delay_seconds)
        .build();
    env.queue(BINDING)
        .map_err(StoreError::Queue)?
        .send(message)
        .await
        .map_err(StoreError::Queue)
}

/// Sends every job to run `delay_seconds` from now, one call each (a delayed batch is rare:
/// a re-check after a contested reading, a KV repair).
pub async fn send_all_later(
    calls: &Calls,
    env: &Env,
    jobs: &[Job],
    delay_seconds: u32,
) -> Result<(), StoreError> {
    for job in jobs {
        send_later(calls, env, job, delay_seconds).await?;
    }
    Ok(())
}

/// Sends every job, 100 per call. Returns how many were sent before an error, with it.
pub async fn send_all(calls: &Calls, env: &Env, jobs: &[Job]) -> (usize, Result<(), StoreError>) {
    let queue = match env.queue(BINDING) {
        Ok(queue) => queue,
        Err(error) => return (0, Err(StoreError::Queue(error))),
    };
    let mut sent = 0;
    for chunk in jobs.chunks(MAX_SEND_BATCH) {
        if let Err(error) = calls.spend(Call::Queue(chunk.len() as u32)) {
            return (sent, Err(error));
        }
        let messages: Vec<String> = chunk.iter().map(Job::encode).collect();
        if let Err(error) = queue.send_batch(messages).await {
            return (sent, Err(StoreError::Queue(error)));
        }
        sent += chunk.len();
    }
    (sent, Ok(()))
}
