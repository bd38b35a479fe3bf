//! The queue consumer: every message of a batch concurrently, each acked or retried on its
//! own, all within the invocation's subrequest budget.

use crate::calls::Calls;
use crate::error::StoreError;
use crate::log::Line;
use crate::reconcile::{project, reconcile};
use crate::services::Services;
use crate::{alerts, config, d1, notify};
use futures_util::future::join_all;
use kyc_core::jobs::Job;
use serde_json::Value;
use worker::{Env, Message, MessageBatch, MessageExt, QueueRetryOptionsBuilder};

/// What the queue should do with a message.
enum Verdict {
    Ack,
    Retry { delay_seconds: u32 },
}

/// Calls a job makes when nothing unusual happens, set aside from the batch's budget before it
/// starts: the batch's jobs run concurrently, and a job admitted on what was merely left could
/// make its provider call and then find the budget spent by the others before it can write.
fn calls_needed(job: &Job) -> u32 {
    match job {
        // Load, one provider call, the write, its notifications queued, the KV put, the check
        // of what it projected and perhaps a delete. More pages top the reservation up.
        Job::Reconcile(_) => 7,
        // Claim, POST, outcome, the next one queued.
        Job::Notify { .. } => 4,
        // Claim, POST, outcome, perhaps its retry queued.
        Job::Alert { .. } => 4,
        // Load, put, the check of what it projected, perhaps a delete.
        Job::Project { .. } => 4,
    }
}
/// Delay before a job that hit an infrastructure error (D1, KV) runs again.
const RETRY_DELAY_SECONDS: u32 = 30;

pub async fn consume(batch: &MessageBatch<Value>, env: &Env) {
    let mut log = Line::new("batch");
    let calls = Calls::new(0);
    let messages = match batch.messages() {
        Ok(messages) => messages,
        Err(error) => {
            log.error(format!("queue batch unreadable, retrying it: {error}"));
            batch.retry_all();
            return log.emit(&calls);
        }
    };
    let config = match config::load(env) {
        Ok(config) => config,
        Err(error) => {
            log.error(format!("configuration error, retrying the batch: {error}"));
            batch.retry_all();
            return log.emit(&calls);
        }
    };
    let db = match d1::database(env) {
        Ok(db) => db,
        Err(error) => {
            log.error(error);
            batch.retry_all();
            return log.emit(&calls);
        }
    };
    let calls = Calls::new(config.workers_plan.subrequests());
    let gather = d1::Gather::default();
    join_all(messages.iter().map(|message| {
        let services = Services {
            env,
            config: &config,
            db: &db,
            calls: calls.share(),
            gather: Some(&gather),
        };
        async move {
            let mut log = Line::new("job");
            log.set("message_id", message.id());
            let started = worker::Date::now().as_millis();
            let verdict = handle(&services, message, &mut log).await;
            // What the job set aside and did not spend goes back to the batch's other jobs.
            services.calls.release();
            match verdict {
                Verdict::Ack => {
                    log.set("verdict", "ack");
                    message.ack();
                }
                Verdict::Retry { delay_seconds } => {
                    log.set("verdict", "retry");
                    message.retry_with_options(
                        &QueueRetryOptionsBuilder::new()
                            .with_delay_seconds(delay_seconds)
                            .build(),
                    );
                }
            }
            log.set(
                "duration_ms",
                worker::Date::now().as_millis().saturating_sub(started),
            );
            log.emit(&services.calls);
        }
    }))
    .await;
    // One line for the batch when its jobs' D1 calls were gathered, or re-sent after a gathered
    // call failed: the calls they asked for and the calls made.
    let (made, asked) = gather.served();
    if asked != made {
        log.set("messages", messages.len())
            .set("d1_calls_asked", asked)
            .set("d1_calls", made);
        log.emit(&calls);
    }
}

async fn handle(services: &Services<'_>, message: &Message<Value>, log: &mut Line) -> Verdict {
    let job = message
        .body()
        .as_str()
        .ok_or_else(|| "not a JSON text".to_owned())
        .and_then(|text| Job::decode(text).map_err(|e| e.to_string()));
    let job = match job {
        Ok(job) => job,
        Err(error) => {
            // A retry cannot fix it, but retrying sends it to the dead-letter queue, where it
            // can be inspected instead of vanishing.
            log.error(format!("unreadable job: {error}"));
            return Verdict::Retry { delay_seconds: 0 };
        }
    };
    if services.calls.reserve(calls_needed(&job)).is_err() {
        log.set("outcome", "deferred: batch budget spent");
        return Verdict::Retry { delay_seconds: 1 };
    }
    let result = match &job {
        Job::Reconcile(job) => {
            log.set("job", "reconcile");
            reconcile(services, job, log).await
        }
        Job::Project {
            provider,
            subject_ref,
        } => {
            log.set("job", "project");
            project(services, *provider, subject_ref, log).await
        }
        Job::Notify { seq } => {
            log.set("job", "notify");
            notify::deliver(services, *seq, log).await
        }
        Job::Alert { seq } => {
            log.set("job", "alert");
            alerts::deliver(services, *seq, log).await
        }
    };
    match result {
        Ok(()) => Verdict::Ack,
        // Nothing was written; the next invocation has a fresh budget.
        Err(StoreError::OverBudget) => {
            log.set("outcome", "deferred: batch budget spent");
            Verdict::Retry { delay_seconds: 1 }
        }
        Err(error) => {
            log.error(error);
            Verdict::Retry {
                delay_seconds: RETRY_DELAY_SECONDS,
            }
        }
    }
}
