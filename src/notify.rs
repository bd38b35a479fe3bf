//! Deliver one notification: claim the attempt, sign it (Standard Webhooks), POST it to
//! `APP_WEBHOOK_URL`, record what the answer means, and hand the subject's next
//! notification to the queue once this one is settled.

use crate::error::StoreError;
use crate::log::Line;
use crate::outbound::{self, NotSent};
use crate::services::Services;
use crate::{clock, d1, queue};
use kyc_core::config::Delivery;
use kyc_core::db::notifications::Notification;
use kyc_core::notify::delivery::{claim, plan_settlement, Reply};
use kyc_core::notify::{WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
use kyc_core::subject::ref_for_log;

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
    let claimed = d1::run(&services.calls, services.db, &claim(seq, clock::now())).await?;
    let Some(notification) = d1::first::<Notification>(&claimed)? else {
        log.set("outcome", "not claimed");
        return Ok(());
    };
    log.set("id", notification.id().as_str())
        .set("provider", notification.provider.as_str())
        .set(
            "ref",
            ref_for_log(notification.subject_ref.as_str()).as_ref(),
        )
        .set("attempt", notification.attempts);
    let answer = post(services, delivery, &notification).await;
    let reply = match &answer {
        Ok(answer) => Reply::Answered {
            status: answer.status,
            retry_after: answer.retry_after,
            location: answer.location.as_deref(),
        },
        Err(NotSent::Failed(error)) => Reply::NotAnswered(error.to_string()),
        // The lease expires and the cron offers it again.
        Err(NotSent::OverBudget) => return Err(StoreError::OverBudget),
    };
    let now = clock::now();
    let settlement = plan_settlement(&notification, &reply, delivery.max_age, now);
    log.set("response", settlement.response.as_str())
        .set("outcome", settlement.outcome_name());
    let results = d1::batch(&services.calls, services.db, &settlement.statements).await?;
    if let Some(next) = settlement.follow_up(&results) {
        // If this send fails, the cron finds the notification due: delayed, never lost.
        if let Err(error) =
            queue::send_later(&services.calls, services.env, &next.job, next.delay_seconds).await
        {
            log.set("queue_error", error.to_string());
        }
    }
    Ok(())
}

/// The attempt: the notification signed (Standard Webhooks) and POSTed to `APP_WEBHOOK_URL`.
async fn post(
    services: &Services<'_>,
    delivery: &Delivery,
    notification: &Notification,
) -> Result<outbound::Reply, NotSent> {
    let id = notification.id();
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
    outbound::post(
        &services.calls,
        &delivery.url,
        &headers,
        body,
        delivery.timeout,
    )
    .await
}
