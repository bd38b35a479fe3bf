//! `GET /v1/stats`: what an operator watches.

use crate::error::ApiError;
use crate::store::{self, bookkeeping};
use kyc_core::config::Config;
use kyc_core::schedule::DEGRADED_AFTER_FAILURES;
use kyc_core::subject::Provider;
use kyc_core::timefmt::format_rfc3339;
use serde_json::{json, Map, Value};
use worker::{Env, Response};

pub async fn get(env: &Env, config: &Config) -> Result<Response, ApiError> {
    let db = store::db(env)?;
    let snapshot = bookkeeping::snapshot(&db).await?;
    let counter = |name: String| {
        snapshot
            .counters
            .iter()
            .find(|c| c.name == name)
            .map_or(0, |c| c.value)
    };
    let mut subjects = Map::new();
    let mut webhooks = Map::new();
    let mut drift = Map::new();
    let mut providers = Map::new();
    for provider in Provider::ALL {
        let p = provider.as_str();
        let by_status: Map<String, Value> = snapshot
            .statuses
            .iter()
            .filter(|s| s.provider == p)
            .map(|s| (s.status.clone(), json!(s.n)))
            .collect();
        subjects.insert(p.into(), Value::Object(by_status));
        webhooks.insert(
            p.into(),
            json!({
                "accepted": counter(format!("webhook.accepted.{p}")),
                "duplicate": counter(format!("webhook.duplicate.{p}")),
                "rejected": counter(format!("webhook.rejected.{p}")),
            }),
        );
        drift.insert(p.into(), json!(counter(format!("drift.{p}"))));
        let health = snapshot.health.iter().find(|h| h.provider == p);
        let failures = health.map_or(0, |h| h.consecutive_failures);
        providers.insert(
            p.into(),
            json!({
                "enabled": config.protocol(provider).is_some(),
                "degraded": failures >= DEGRADED_AFTER_FAILURES,
                "consecutive_failures": failures,
                "last_error": health.and_then(|h| h.last_error.clone()),
                "last_failure_at": health.and_then(|h| h.last_failure_at).map(format_rfc3339),
                "last_success_at": health.and_then(|h| h.last_success_at).map(format_rfc3339),
                "paused_until": health.and_then(|h| h.paused_until).map(format_rfc3339),
            }),
        );
    }
    let last_cron_run = snapshot.last_run.map(|r| {
        json!({
            "scheduled_at": format_rfc3339(r.run_id),
            "started_at": format_rfc3339(r.started_at),
            "duration_ms": r.duration_ms,
            "due": r.due,
            "enqueued": r.enqueued,
            "skipped": r.skipped.filter(|s| !s.is_empty()).map(|s| s.split(',').map(str::to_owned).collect::<Vec<_>>()),
            "reconciled": r.reconciled,
            "changed": r.changed,
            "failed": r.failed,
            "finished_at": r.finished_at.map(format_rfc3339),
        })
    });
    Ok(Response::from_json(&json!({
        "subjects": subjects,
        "webhooks": webhooks,
        "drift": drift,
        "providers": providers,
        "reconcile_budget": config.reconcile_budget,
        "last_cron_run": last_cron_run,
    }))?)
}
