//! `GET /v1/stats`: what an operator watches. Every figure comes from a handful of small
//! rows (tallies, provider health, the last cron run, backfills) plus the events since the
//! last fold and one index entry per subject still waiting for a first check: its cost does
//! not grow with the number of subjects.

use crate::error::ApiError;
use crate::services::Services;
use crate::{clock, d1};
use kyc_core::api::query_pairs;
use kyc_core::db::alerts;
use kyc_core::db::backfills::{self, Backfill};
use kyc_core::db::notifications as outbox;
use kyc_core::db::runs::{self, HEALTH};
use kyc_core::db::subjects::{retired, unchecked};
use kyc_core::db::tallies::{counts, ALL, SINCE_FOLD, SUSPECTED};
use kyc_core::db::{row, Row, Statement};
use kyc_core::schedule::DEGRADED_AFTER_FAILURES;
use kyc_core::statement;
use kyc_core::subject::Provider;
use kyc_core::time::{format, from_millis};
use serde_json::{json, Map, Value};
use worker::{Request, Response};

/// Subjects waiting for a first check are counted up to this many (one index entry read each).
const WAITING_CAP: u32 = 100_000;

fn time(value: Option<&Value>) -> Value {
    value
        .and_then(Value::as_i64)
        .and_then(from_millis)
        .map_or(Value::Null, |t| Value::from(format(t)))
}

fn parsed(value: Option<&Value>) -> Value {
    value
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null)
}

pub async fn get(services: &Services<'_>) -> Result<Response, ApiError> {
    let mut statements: Vec<Statement> = vec![
        statement!(ALL),
        statement!(SINCE_FOLD),
        statement!(HEALTH),
        runs::latest(1),
        statement!(outbox::PENDING),
        statement!(outbox::DEAD),
        statement!(outbox::DISABLED),
        backfills::all(),
        statement!(SUSPECTED),
    ];
    // Per provider, after the fixed ones: subjects waiting for a first check, then retired
    // subjects (a provider answering "no such record" for them, checked no more).
    const WAITING: usize = 9;
    let providers_count = Provider::all().count();
    statements.extend(Provider::all().map(|p| unchecked(p, WAITING_CAP)));
    statements.extend(Provider::all().map(|p| retired(p, WAITING_CAP)));
    // Last: the alerts open and the alert endpoint's delivery.
    let alerts_at = statements.len();
    statements.push(statement!(
        "SELECT COUNT(*) AS open FROM alerts WHERE resolved_at IS NULL"
    ));
    statements.push(statement!(alerts::DELIVERY));
    let results = d1::batch(&services.calls, services.db, &statements).await?;
    let counts = counts(&results[0], &results[1]);
    let mut subjects = Map::new();
    let mut webhooks = Map::new();
    let mut changes = Map::new();
    let mut drift = Map::new();
    let mut providers = Map::new();
    let mut first_checks = Map::new();
    let now = clock::now();
    // Changes no webhook had announced when found, not settled yet (the cron settles them once
    // late webhooks had time to arrive: DRIFT_GRACE).
    let mut suspected = Map::new();
    for provider in Provider::all() {
        let n = results[8]
            .iter()
            .find(|r| r.get("provider").and_then(Value::as_str) == Some(provider.as_str()))
            .and_then(|r| r.get("n"))
            .and_then(Value::as_u64);
        suspected.insert(provider.as_str().into(), json!(n.unwrap_or(0)));
    }
    let mut retired_by_provider = Map::new();
    for (provider, rows) in
        Provider::all().zip(results.get(WAITING + providers_count..).unwrap_or_default())
    {
        let n = rows
            .first()
            .and_then(|r| r.get("n"))
            .and_then(Value::as_u64);
        retired_by_provider.insert(provider.as_str().into(), json!(n.unwrap_or(0)));
    }
    for (provider, rows) in Provider::all().zip(results.get(WAITING..).unwrap_or_default()) {
        let waiting = rows
            .first()
            .and_then(|r| r.get("n"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        // The last scheduled first check falls due just before the imports' cursor; if every
        // run takes its share, all have had one by then.
        let until = counts
            .first_checks_until
            .get(&provider)
            .copied()
            .and_then(from_millis)
            .filter(|until| waiting > 0 && *until > now);
        first_checks.insert(
            provider.as_str().into(),
            json!({
                "waiting": waiting,
                "per_run": services.config.first_checks_per_run,
                "all_scheduled_by": until.map(format),
                "eta_seconds": until.map_or(0, |t| (t - now).num_seconds()),
            }),
        );
    }
    let backfill: Vec<Value> = results[7]
        .iter()
        .filter_map(|found| row::<Backfill>(found).ok())
        .map(|b| json!(b.view()))
        .collect();
    for provider in Provider::all() {
        let p = provider.as_str();
        let mut statuses = counts.statuses.get(&provider).cloned().unwrap_or_default();
        statuses.retain(|_, n| *n != 0);
        subjects.insert(p.into(), json!(statuses));
        let activity = counts.activity.get(&provider).copied().unwrap_or_default();
        webhooks.insert(
            p.into(),
            json!({ "accepted": activity.webhooks, "duplicate": activity.duplicates }),
        );
        changes.insert(p.into(), json!(activity.changes));
        drift.insert(p.into(), json!(activity.drift));
        let health = results[2]
            .iter()
            .find(|h| h.get("provider").and_then(Value::as_str) == Some(p));
        let field = |name: &str| health.and_then(|h| h.get(name));
        let failures = field("consecutive_failures")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        providers.insert(
            p.into(),
            json!({
                "enabled": services.config.protocol(provider).is_some(),
                "degraded": failures >= u64::from(DEGRADED_AFTER_FAILURES),
                "consecutive_failures": failures,
                "last_error": field("last_error").cloned().unwrap_or(Value::Null),
                "last_failure_at": time(field("last_failure_at")),
                "last_success_at": time(field("last_success_at")),
                "paused_until": time(field("paused_until")),
            }),
        );
    }
    let last_cron_run = results[3].first().map(run_view);
    let pending = results[4].first();
    let number = |row: Option<&kyc_core::db::Row>, name: &str| {
        row.and_then(|r| r.get(name))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let oldest = pending
        .and_then(|r| r.get("oldest"))
        .and_then(Value::as_i64)
        .and_then(from_millis);
    let disabled = results[6]
        .first()
        .map(|row| json!({ "since": time(row.get("disabled_at")), "reason": row.get("reason") }));
    let notifications = json!({
        "delivery": if services.config.delivery.is_some() { "configured" } else { "not configured" },
        "pending": number(pending, "pending"),
        "delivered": counts.delivered,
        "dead": number(results[5].first(), "dead"),
        "disabled": disabled,
        // Without an endpoint nothing is late: the rows are a feed, not a backlog.
        "oldest_undelivered_age_seconds": oldest
            .filter(|_| services.config.delivery.is_some())
            .map(|t| (now - t).num_seconds()),
    });
    let alert_delivery = results.get(alerts_at + 1).and_then(|rows| rows.first());
    let alerts = json!({
        "delivery": if services.config.alerts.delivery.is_some() { "configured" } else { "not configured" },
        "open": number(results.get(alerts_at).and_then(|rows| rows.first()), "open"),
        "pending": number(alert_delivery, "pending"),
        "failing": number(alert_delivery, "failing"),
        "dead": number(alert_delivery, "dead"),
        "delivered": number(alert_delivery, "delivered"),
        "last_error": alert_delivery.and_then(|r| r.get("last_error")).cloned().unwrap_or(Value::Null),
    });
    Ok(Response::from_json(&json!({
        "alerts": alerts,
        "notifications": notifications,
        "subjects": subjects,
        "webhooks": webhooks,
        "changes": changes,
        "drift": drift,
        "drift_suspected": suspected,
        "retired": retired_by_provider,
        "providers": providers,
        "reconcile_budget": services.config.reconcile_budget,
        "first_checks": first_checks,
        "backfills": backfill,
        "last_cron_run": last_cron_run,
    }))?)
}

/// A cron run as the API shows it.
fn run_view(run: &Row) -> Value {
    let skipped: Vec<&str> = run
        .get("skipped")
        .and_then(Value::as_str)
        .map(|s| s.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    json!({
        "scheduled_at": time(run.get("run_id")),
        "started_at": time(run.get("started_at")),
        "duration_ms": run.get("duration_ms"),
        "due": run.get("due"),
        "enqueued": run.get("enqueued"),
        "skipped": skipped,
        "activity": parsed(run.get("activity")),
        "statuses": parsed(run.get("statuses")),
    })
}

/// `GET /v1/runs?limit=`: the latest cron runs, newest first.
pub async fn runs(req: &Request, services: &Services<'_>) -> Result<Response, ApiError> {
    let mut limit = 48;
    for (key, value) in query_pairs(&req.inner().url()) {
        match key.as_str() {
            "limit" => {
                limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=500).contains(n))
                    .ok_or_else(|| ApiError::bad_request("limit must be 1..=500"))?
            }
            _ => return Err(ApiError::bad_request(format!("unknown parameter {key:?}"))),
        }
    }
    let rows = d1::run(&services.calls, services.db, &runs::latest(limit)).await?;
    let runs: Vec<Value> = rows.iter().map(run_view).collect();
    Ok(Response::from_json(&json!({ "runs": runs }))?)
}

/// An alert as the API shows it.
fn alert_view(alert: &Row) -> Value {
    json!({
        "id": alert.get("id"),
        "alert": alert.get("kind"),
        "severity": alert.get("severity"),
        "text": alert.get("text"),
        "data": parsed(alert.get("data")),
        "state": if alert.get("resolved_at").is_some_and(|v| !v.is_null()) { "resolved" } else { "open" },
        "raised_at": time(alert.get("raised_at")),
        "notified_at": time(alert.get("notified_at")),
        "resolved_at": time(alert.get("resolved_at")),
    })
}

/// `GET /v1/alerts?limit=`: open alerts first, then the latest resolved ones, with the alert
/// endpoint's delivery state.
pub async fn alerts(req: &Request, services: &Services<'_>) -> Result<Response, ApiError> {
    let mut limit = 50;
    for (key, value) in query_pairs(&req.inner().url()) {
        match key.as_str() {
            "limit" => {
                limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=500).contains(n))
                    .ok_or_else(|| ApiError::bad_request("limit must be 1..=500"))?
            }
            _ => return Err(ApiError::bad_request(format!("unknown parameter {key:?}"))),
        }
    }
    let results = d1::batch(
        &services.calls,
        services.db,
        &[alerts::recent(limit), statement!(alerts::DELIVERY)],
    )
    .await?;
    let (open, recent): (Vec<Value>, Vec<Value>) = results[0]
        .iter()
        .map(alert_view)
        .partition(|a| a["state"] == "open");
    let delivery = results[1].first();
    let number = |name: &str| {
        delivery
            .and_then(|r| r.get(name))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    Ok(Response::from_json(&json!({
        "open": open,
        "recent": recent,
        "delivery": {
            "configured": services.config.alerts.delivery.is_some(),
            "pending": number("pending"),
            "failing": number("failing"),
            "dead": number("dead"),
            "delivered": number("delivered"),
            "last_error": delivery.and_then(|r| r.get("last_error")).cloned().unwrap_or(Value::Null),
        },
    }))?)
}
