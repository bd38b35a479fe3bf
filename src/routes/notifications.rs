//! `/v1/notifications`: what the application was (or will be) told, and the levers an
//! operator needs: send a dead one again, turn delivery back on after a 410.

use crate::error::ApiError;
use crate::log::Line;
use crate::services::Services;
use crate::{clock, d1, queue};
use kyc_core::api::query_pairs;
use kyc_core::db::notifications::{self as outbox, ListFilter, Notification, State};
use kyc_core::jobs::Job;
use kyc_core::notify::parse_message_id;
use kyc_core::statement;
use kyc_core::subject::{Provider, SubjectRef};
use kyc_core::time::TimeDelta;
use serde_json::json;
use worker::{Request, Response};

type Result<T> = std::result::Result<T, ApiError>;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

/// `GET /v1/notifications?state=pending|delivered|dead&subject=provider/ref&limit=&cursor=`,
/// newest first.
pub async fn list(req: &Request, services: &Services<'_>) -> Result<Response> {
    let mut filter = ListFilter {
        limit: DEFAULT_PAGE,
        ..ListFilter::default()
    };
    for (key, value) in query_pairs(&req.inner().url()) {
        match key.as_str() {
            "state" => {
                filter.state = Some(State::parse(&value).ok_or_else(|| {
                    ApiError::bad_request("state must be pending, delivered or dead")
                })?)
            }
            "subject" => {
                let subject = value
                    .split_once('/')
                    .and_then(|(p, r)| Some((Provider::parse(p)?, SubjectRef::parse(r).ok()?)))
                    .ok_or_else(|| ApiError::bad_request("subject must be provider/ref"))?;
                filter.subject = Some(subject);
            }
            "limit" => {
                filter.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| ApiError::bad_request(format!("limit must be 1..={MAX_PAGE}")))?
            }
            "cursor" => {
                filter.before = Some(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|seq| *seq > 0)
                        .ok_or_else(|| ApiError::bad_request("invalid cursor"))?,
                )
            }
            _ => return Err(ApiError::bad_request(format!("unknown parameter {key:?}"))),
        }
    }
    let rows = d1::run(&services.calls, services.db, &outbox::list(&filter)).await?;
    let notifications: Vec<Notification> = d1::all(&rows)?;
    let next_cursor = (notifications.len() as u32 == filter.limit)
        .then(|| notifications.last().map(|n| n.seq.to_string()))
        .flatten();
    let views: Vec<_> = notifications.iter().map(Notification::view).collect();
    Ok(Response::from_json(
        &json!({ "notifications": views, "next_cursor": next_cursor }),
    )?)
}

/// `POST /v1/notifications/{id}/redeliver`: a dead (or delivered) notification is sent
/// again, with the same `webhook-id`, retried for another NOTIFY_MAX_AGE_SECONDS.
pub async fn redeliver(services: &Services<'_>, id: &str, log: &mut Line) -> Result<Response> {
    let (seq, created_ms) =
        parse_message_id(id).ok_or_else(|| ApiError::not_found("no such notification"))?;
    log.set("id", id);
    let now = clock::now();
    let max_age = services
        .config
        .delivery
        .as_ref()
        .map_or(TimeDelta::days(1), |d| d.max_age);
    let [redelivered, loaded] = d1::batch_of(
        &services.calls,
        services.db,
        [
            outbox::redeliver(seq, created_ms, now, now + max_age),
            outbox::load(seq, created_ms),
        ],
    )
    .await?;
    let Some(notification) = d1::first::<Notification>(&loaded)? else {
        return Err(ApiError::not_found("no such notification"));
    };
    if redelivered.is_empty() {
        return Err(ApiError::new(
            kyc_core::api::ErrorCode::BadRequest,
            "only a dead or delivered notification can be redelivered",
        ));
    }
    let queued = send(services, &[seq], log).await;
    Ok(Response::from_json(&json!({
        "queued": queued,
        "notification": notification.view(),
    }))?
    .with_status(202))
}

/// `POST /v1/notifications/enable`: delivery resumes after a 410; what is due is sent now.
pub async fn enable(services: &Services<'_>, log: &mut Line) -> Result<Response> {
    let now = clock::now();
    let [enabled, due] = d1::batch_of(
        &services.calls,
        services.db,
        [
            statement!(outbox::ENABLE),
            outbox::due(now, services.config.reconcile_budget),
        ],
    )
    .await?;
    let was_disabled = !enabled.is_empty();
    let queued = send(services, &outbox::seqs(&due), log).await;
    log.set("was_disabled", was_disabled);
    Ok(Response::from_json(&json!({
        "enabled": true,
        "was_disabled": was_disabled,
        "queued": queued,
    }))?)
}

/// Queue attempts of `seqs` when an endpoint is configured; how many were queued. A failed
/// send leaves them due for the cron.
async fn send(services: &Services<'_>, seqs: &[i64], log: &mut Line) -> usize {
    if services.config.delivery.is_none() {
        return 0;
    }
    let jobs: Vec<Job> = seqs.iter().map(|&seq| Job::Notify { seq }).collect();
    let (sent, result) = queue::send_all(&services.calls, services.env, &jobs).await;
    if let Err(error) = result {
        log.set("queue_error", error.to_string());
    }
    sent
}
