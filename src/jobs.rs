//! Queue jobs: what webhooks, the cron and refreshes ask the consumer to do.

use crate::reconcile::{self, Verdict};
use futures_util::future::join_all;
use kyc_core::observation::Observation;
use kyc_core::subject::{Provider, RefKind, SubjectRef};
use serde::{Deserialize, Serialize};
use worker::{console_error, Env, MessageBatch, MessageExt, QueueRetryOptionsBuilder, Result};

pub const QUEUE_BINDING: &str = "JOBS";
/// `sendBatch` takes at most 100 messages.
pub const MAX_SEND_BATCH: usize = 100;
/// Delay before a job that hit an infrastructure error (D1, KV) runs again.
const RETRY_DELAY_SECONDS: u32 = 30;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Job {
    Reconcile(ReconcileJob),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReconcileJob {
    pub provider: Provider,
    pub subject_ref: SubjectRef,
    pub ref_kind: RefKind,
    /// A reading the webhook proved by itself; applied without a fetch when it is newer.
    #[serde(default)]
    pub trusted: Option<Observation>,
    /// The cron run that enqueued the job, for its figures.
    #[serde(default)]
    pub run: Option<i64>,
}

/// Jobs travel as JSON text, so a message from another producer or an older version cannot
/// fail the whole batch's deserialization.
fn encode(job: &Job) -> Result<String> {
    serde_json::to_string(job).map_err(|e| worker::Error::RustError(e.to_string()))
}

pub async fn send(env: &Env, job: &Job) -> Result<()> {
    env.queue(QUEUE_BINDING)?.send(encode(job)?).await
}

pub async fn send_all(env: &Env, jobs: &[Job]) -> Result<()> {
    let queue = env.queue(QUEUE_BINDING)?;
    for chunk in jobs.chunks(MAX_SEND_BATCH) {
        let messages = chunk.iter().map(encode).collect::<Result<Vec<_>>>()?;
        queue.send_batch(messages).await?;
    }
    Ok(())
}

/// Process a batch: every message concurrently, each acked or retried on its own.
pub async fn consume(batch: &MessageBatch<serde_json::Value>, env: &Env) {
    let messages = match batch.messages() {
        Ok(messages) => messages,
        Err(error) => {
            console_error!("queue batch unreadable, retrying it: {error}");
            batch.retry_all();
            return;
        }
    };
    let config = match crate::config::load(env) {
        Ok(config) => config,
        Err(error) => {
            console_error!("configuration error, retrying batch: {error}");
            batch.retry_all();
            return;
        }
    };
    let config = &config;
    join_all(messages.into_iter().map(|message| async move {
        let job = message
            .body()
            .as_str()
            .ok_or_else(|| "not a JSON text".to_owned())
            .and_then(|text| serde_json::from_str::<Job>(text).map_err(|e| e.to_string()));
        let verdict = match job {
            Ok(Job::Reconcile(job)) => reconcile::run(env, config, &job).await,
            Err(error) => {
                // A retry cannot fix it, but retrying sends it to the dead-letter queue,
                // where it can be inspected instead of vanishing.
                console_error!("unreadable job {}: {error}", message.id());
                Verdict::Retry
            }
        };
        match verdict {
            Verdict::Done => message.ack(),
            Verdict::Retry => message.retry_with_options(
                &QueueRetryOptionsBuilder::new()
                    .with_delay_seconds(RETRY_DELAY_SECONDS)
                    .build(),
            ),
        }
    }))
    .await;
}
