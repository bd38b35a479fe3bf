//! `POST /webhooks/{provider}`: verify (fail closed), record durably, queue a reconcile,
//! answer. The provider is never called on this path.

use crate::error::ApiError;
use crate::jobs::{self, Job, ReconcileJob};
use crate::store::webhooks::{self, Recorded};
use crate::{clock, store};
use kyc_core::headers::CF_CONNECTING_IP;
use kyc_core::providers::{dedup_key, InboundWebhook, IngressError};
use kyc_core::subject::Provider;
use serde_json::json;
use worker::{
    console_error, console_log, console_warn, js_sys, D1Database, Env, Request, Response,
};

pub async fn receive(
    mut req: Request,
    env: &Env,
    provider: Provider,
    path_token: Option<&str>,
) -> Result<Response, ApiError> {
    let config = crate::config::load(env)?;
    // A provider without its secrets is disabled: the route does not exist.
    let Some(protocol) = config.protocol(provider) else {
        return Err(ApiError::not_found("no such webhook route"));
    };
    let db = store::db(env)?;
    let too_large = || {
        ApiError::new(
            413,
            "payload_too_large",
            format!("body exceeds {} bytes", config.max_body_bytes),
        )
    };
    let declared = req
        .headers()
        .get("content-length")?
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > config.max_body_bytes) {
        return Err(reject(&db, provider, too_large()).await);
    }
    let body = req.bytes().await?;
    if body.len() > config.max_body_bytes {
        return Err(reject(&db, provider, too_large()).await);
    }
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
        .authenticate(&inbound)
        .and_then(|()| protocol.parse_webhook(&body, now))
    {
        Ok(event) => event,
        Err(refusal) => {
            let error = match &refusal {
                IngressError::Unauthenticated(_) => ApiError::unauthorized(refusal.to_string()),
                IngressError::Forbidden(_) => ApiError::new(403, "forbidden", refusal.to_string()),
                IngressError::Malformed(_) => ApiError::bad_request(refusal.to_string()),
            };
            console_warn!("{provider} webhook refused ({}): {refusal}", error.status);
            return Err(reject(&db, provider, error).await);
        }
    };
    let dedup = dedup_key(&body);
    // Unique per request: marks the event row this request inserted, if it did.
    let receipt = format!(
        "{now:x}-{:x}",
        (js_sys::Math::random() * 9_007_199_254_740_991.0) as u64
    );
    let recorded = webhooks::record(&db, provider, &event, &dedup, &receipt, now).await?;
    let subject_ref = event.subject.as_ref().map(|s| s.subject_ref.to_string());
    let duplicate = matches!(recorded, Recorded::Duplicate);
    let mut queued = false;
    if let (Recorded::New, Some(subject)) = (recorded, event.subject) {
        let job = Job::Reconcile(ReconcileJob {
            provider,
            subject_ref: subject.subject_ref,
            ref_kind: subject.ref_kind,
            trusted: event.trusted,
            run: None,
        });
        // The subject is already due in D1: if the queue is down, the next cron run picks it
        // up, so the accepted event is not lost either way.
        match jobs::send(env, &job).await {
            Ok(()) => queued = true,
            Err(error) => {
                console_error!("queueing reconcile for {provider} webhook failed: {error}")
            }
        }
    }
    console_log!(
        "{provider} webhook {} for {}: {}",
        event.kind,
        subject_ref.as_deref().unwrap_or("-"),
        if duplicate { "duplicate" } else { "accepted" }
    );
    Ok(Response::from_json(&json!({
        "ok": true,
        "duplicate": duplicate,
        "queued": queued,
        "event": event.kind,
        "ref": subject_ref,
    }))?)
}

/// Count the refusal (the only write a refused request causes) and pass the error on.
async fn reject(db: &D1Database, provider: Provider, error: ApiError) -> ApiError {
    if let Err(count_error) = webhooks::count_rejected(db, provider).await {
        console_error!("counting a refused {provider} webhook failed: {count_error}");
    }
    error
}
