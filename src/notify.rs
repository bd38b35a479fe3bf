//! Deliver one notification: claim the attempt, sign it (Standard Webhooks), POST it to
//! `APP_WEBHOOK_URL`, record what the answer means, and hand the subject's next
//! notification to the queue once this one is settled.

use crate::error::StoreError;
use crate::log::Line;
use crate::outbound::{self, NotSent};
use crate::services::Services;
use crate::{clock, d1, queue};
use kyc_core::db::notifications::{self as outbox, Notification, Outcome};
use kyc_core::jobs::Job;
use kyc_core::notify::{
    classify, describe_reply, retry_delay, Answer, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP,
};
use kyc_core::subject::ref_for_log;
use kyc_core::time::TimeDelta;

/// An attempt in flight is not retried by anyone else before this: longer than the
/// longest POST (NOTIFY_TIMEOUT_MS) plus the writes around it.
const ATTEMPT_LEASE: TimeDelta = TimeDelta::minutes(2);
/// Retries due sooner than this go back to the queue with a delay; later ones are found by
/// the cron.
const QUEUED_RETRY_LIMIT: TimeDelta = TimeDelta::minutes(15);

pub async fn deliver(services: &Services<'_>, seq: i64, log: &mut Line) -> Result<(), StoreError> {
    log.set("seq", seq);
    let Some(delivery) = &services.config.delivery else {
        // Recorded, not sent: nothing to do until APP_WEBHOOK_URL is set.
        log.set("outcome", "not configured");
        return Ok(());
    };
    // The claim, the attempt, writing its outcome and queueing what follows, set aside before
    // any is made: an attempt whose answer could not be recorded would leave the notification
    // leased and sent twice.
    services.calls.reserve(4)?;
    let now = clock::now();
    let claimed = d1::run(
        &services.calls,
        services.db,
        &outbox::claim(seq, now, now + ATTEMPT_LEASE),
    )
    .await?;
    let Some(notification) = d1::first::<Notification>(&claimed)? else {
        // Settled, not due, waiting for an older one of its subject, being attempted
        // elsewhere, or delivery is disabled: not this job's to send.
        log.set("outcome", "not claimed");
        return Ok(());
    };
    let id = notification.id();
    log.set("id", id.as_str())
        .set("provider", notification.provider.as_str())
        .set(
            "ref",
            ref_for_log(notification.subject_ref.as_str()).as_ref(),
        )
        .set("attempt", notification.attempts);
    let timestamp = clock::now().timestamp();
    let body = notification.payload.as_str();
    let headers = [
        ("content-type", "application/json".to_owned()),
        (
            "user-agent",
            format!("kyc-edge/{}", env!("CARGO_PKG_VERSION")),
        ),
        (WEBHOOK_ID, id.clone()),
        (WEBHOOK_TIMESTAMP, timestamp.to_string()),
        (
            WEBHOOK_SIGNATURE,
            delivery.keys.sign(&id, timestamp, body.as_bytes()),
        ),
    ];
    let reply = outbound::post(
        &services.calls,
        &delivery.url,
        &headers,
        body,
        delivery.timeout,
    )
    .await;
    let (answer, response) = match reply {
        Ok(reply) => (
            classify(reply.status, reply.retry_after),
            describe_reply(reply.status, reply.location.as_deref()),
        ),
        Err(NotSent::Failed(error)) => (Answer::Failed { retry_after: None }, error.to_string()),
        // The lease expires and the cron offers it again.
        Err(NotSent::OverBudget) => return Err(StoreError::OverBudget),
    };
    let now = clock::now();
    let deadline = notification
        .expires_at
        .unwrap_or(notification.created_at + delivery.max_age);
    let outcome = match answer {
        Answer::Delivered => Outcome::Delivered,
        Answer::Gone => Outcome::Gone,
        Answer::Failed { .. } if now >= deadline => Outcome::Dead,
        Answer::Failed { retry_after } => Outcome::Retry {
            retry_at: now + retry_delay(notification.attempts, retry_after, &id),
        },
    };
    let described = match outcome {
        Outcome::Delivered => "delivered",
        Outcome::Retry { .. } => "retry",
        Outcome::Dead => "dead",
        Outcome::Gone => "gone",
    };
    log.set("response", response.as_str())
        .set("outcome", described);
    let results = d1::batch(
        &services.calls,
        services.db,
        &outbox::settle(&notification, &outcome, &response, now),
    )
    .await?;
    let next = match &outcome {
        Outcome::Delivered | Outcome::Dead => results
            .last()
            .map(|rows| outbox::seqs(rows))
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(|seq| (Job::Notify { seq }, 0)),
        Outcome::Retry { retry_at } if *retry_at - now <= QUEUED_RETRY_LIMIT => Some((
            Job::Notify { seq },
            // Rounded up, plus a second: a message that arrives before the attempt is due is
            // refused by the claim and would wait for the cron instead.
            ((*retry_at - now).num_milliseconds().max(0) / 1000 + 1) as u32,
        )),
        Outcome::Retry { .. } | Outcome::Gone => None,
    };
    if let Some((job, delay_seconds)) = next {
        // If this send fails, the cron finds the notification due: delayed, never lost.
        if let Err(error) =
            queue::send_later(&services.calls, services.env, &job, delay_seconds).await
        {
            log.set("queue_error", error.to_string());
        }
    }
    Ok(())
}
