//! `POST /webhooks/{provider}`: verify (fail closed), record durably, queue a reconcile,
//! answer. A refused request writes nothing anywhere: it is counted in the log line and in
//! Analytics Engine (when bound), so a flood of forged requests cannot spend D1's writes.

use super::body;
use crate::error::ApiError;
use crate::log::Line;
use crate::services::Services;
use crate::{clock, d1, queue, random};
use kyc_core::api::ErrorCode;
use kyc_core::db::events::{record_webhook, WebhookOutcome};
use kyc_core::db::{subjects, Row};
use kyc_core::headers::{is_form, CF_CONNECTING_IP, CONTENT_LENGTH, CONTENT_TYPE};
use kyc_core::jobs::{Job, ReconcileJob};
use kyc_core::providers::{InboundWebhook, IngressError, WebhookEvent};
use kyc_core::subject::{ref_for_log, Provider};
use serde_json::json;
use worker::{AnalyticsEngineDataPointBuilder, Request, Response};

/// Refusals are written here when the binding exists (wrangler.toml).
pub const REFUSALS_BINDING: &str = "INGRESS";

pub async fn receive(
    mut req: Request,
    services: &Services<'_>,
    provider: Provider,
    path_token: Option<&str>,
    log: &mut Line,
) -> Result<Response, ApiError> {
    log.set("provider", provider.as_str());
    // A provider without its secrets is disabled: the route does not exist (404), and says
    // which secrets would make it.
    let protocol = services.configured(provider).map_err(|mut error| {
        error.status = 404;
        error
    })?;
    let limit = services.config.max_body_bytes;
    let too_large = || body::too_large(limit);
    let headers = req.headers();
    // Refused on the declared size before a byte of the body is read.
    let declared = headers
        .get(CONTENT_LENGTH)?
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(refuse(services, provider, log, too_large()));
    }
    if headers.get(CONTENT_TYPE)?.is_some_and(|t| is_form(&t)) {
        let error = ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "a webhook is JSON, not a form post",
        );
        return Err(refuse(services, provider, log, error));
    }
    let Some(body) = body::read_at_most(&mut req, limit).await? else {
        return Err(refuse(services, provider, log, too_large()));
    };
    let headers = req.headers();
    let lookup = |name: &str| headers.get(name).ok().flatten();
    let client_ip = headers.get(CF_CONNECTING_IP)?;
    let inbound = InboundWebhook {
        path_token,
        client_ip: client_ip.as_deref(),
        header: &lookup,
        body: &body,
    };
    let now = clock::now();
    let event = match protocol
        .authenticate_at(&inbound, now)
        .and_then(|()| protocol.parse_webhook(&body, now))
    {
        Ok(event) => event,
        Err(refusal) => {
            let code = match &refusal {
                IngressError::Unauthenticated(_) => ErrorCode::Unauthorized,
                IngressError::Forbidden(_) => ErrorCode::Forbidden,
                IngressError::Malformed(_) => ErrorCode::BadRequest,
            };
            let error = ApiError::new(code, refusal.to_string());
            return Err(refuse(services, provider, log, error));
        }
    };
    if protocol.requires_registered() && !registered(services, provider, &event, log).await? {
        return Ok(Response::from_json(&json!({
            "ok": true,
            "ignored": "not_registered",
            "event": event.kind,
        }))?);
    }
    // Unique per request: marks the event row this request inserted, so the rest of its
    // batch can tell a new event from a repeat of one.
    let receipt = random::hex_token(16)
        .map_err(|e| ApiError::from(worker::Error::RustError(format!("no randomness: {e}"))))?;
    let record = record_webhook(provider, &event, &event.dedup_key(&body), &receipt, now);
    let results = d1::batch(&services.calls, services.db, &record.statements).await?;
    let WebhookOutcome {
        duplicate,
        created,
        made_due,
        subject,
    } = record.outcome(&results);
    let subject_ref = event.subject.as_ref().map(|s| s.subject_ref.to_string());
    let queued =
        (created || made_due) && queue_check(services, provider, &event, subject, log).await;
    log.set("event", event.kind.as_str())
        .set(
            "ref",
            subject_ref.as_deref().map(ref_for_log).map(String::from),
        )
        .set("outcome", if duplicate { "duplicate" } else { "accepted" })
        .set("queued", queued);
    Ok(Response::from_json(&json!({
        "ok": true,
        "duplicate": duplicate,
        "queued": queued,
        "event": event.kind,
        "ref": subject_ref,
    }))?)
}

/// A provider whose refs the end user can edit (ARGOS's Liveform `userid`) may be told to
/// track only subjects the application registered: a webhook about any other ref is
/// acknowledged (so the provider does not retry it) and ignored, at the cost of one read.
async fn registered(
    services: &Services<'_>,
    provider: Provider,
    event: &WebhookEvent,
    log: &mut Line,
) -> Result<bool, ApiError> {
    let Some(subject) = &event.subject else {
        return Ok(true);
    };
    let found = d1::run(
        &services.calls,
        services.db,
        &subjects::load(provider, &subject.subject_ref),
    )
    .await?;
    if found.is_empty() {
        count(services, provider, "unregistered", log);
        log.set("event", event.kind.as_str())
            .set("ref", ref_for_log(subject.subject_ref.as_str()).as_ref())
            .set("outcome", "ignored: not registered");
    }
    Ok(!found.is_empty())
}

/// Queue the check the webhook asked for, starting from `row` (the subject as the webhook's
/// batch wrote it); whether it was queued. The subject is already due in D1: if the queue is
/// down, the next cron run takes it, so the accepted event is not lost either way.
async fn queue_check(
    services: &Services<'_>,
    provider: Provider,
    event: &WebhookEvent,
    row: Option<Row>,
    log: &mut Line,
) -> bool {
    let Some(subject) = &event.subject else {
        return false;
    };
    let job = Job::Reconcile(ReconcileJob {
        provider,
        subject_ref: subject.subject_ref.clone(),
        ref_kind: subject.ref_kind,
        trusted: event.trusted.clone(),
        aml: event.about_aml,
        subject: row,
    });
    match queue::send(&services.calls, services.env, &job).await {
        Ok(()) => true,
        Err(error) => {
            log.set("queue_error", error.to_string());
            false
        }
    }
}

/// Count a refusal where it costs no D1 or KV write, and pass the error on.
fn refuse(
    services: &Services<'_>,
    provider: Provider,
    log: &mut Line,
    error: ApiError,
) -> ApiError {
    log.set("outcome", "rejected")
        .set("reason", error.message.as_str());
    count(services, provider, error.code.as_str(), log);
    error
}

/// Count a refused or ignored webhook in Analytics Engine (when bound): never a D1 or KV write.
fn count(services: &Services<'_>, provider: Provider, reason: &str, log: &mut Line) {
    if let Ok(dataset) = services.env.analytics_engine(REFUSALS_BINDING) {
        let point = AnalyticsEngineDataPointBuilder::new()
            .indexes([provider.as_str()])
            .add_blob(provider.as_str())
            .add_blob(reason)
            .add_double(1.0)
            .build();
        if let Err(e) = dataset.write_data_point(&point) {
            log.set("analytics_error", e.to_string());
        }
    }
}
