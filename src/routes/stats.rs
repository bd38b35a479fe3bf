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
use kyc_core::db::{row, Row, Rows, Statement};
use kyc_core::schedule::DEGRADED_AFTER_FAILURES;
use kyc_core::statement;
use kyc_core::subject::Provider;
use kyc_core::time::{format, from_millis, Timestamp};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
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

/// The one batch `GET /v1/stats` reads, by name.
struct StatsBatch {
    tallies: Rows,
    since_fold: Rows,
    health: Rows,
    last_run: Rows,
    pending: Rows,
    dead: Rows,
    disabled: Rows,
    backfills: Rows,
    suspected: Rows,
    /// Per provider, in `Provider::all()` order: subjects waiting for a first check.
    waiting: Vec<Rows>,
    /// Per provider: retired subjects (the provider has no record of them; checked no more).
    retired: Vec<Rows>,
    alerts_open: Rows,
    alert_delivery: Rows,
}

impl StatsBatch {
    fn statements() -> Vec<Statement> {
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
        statements.extend(Provider::all().map(|p| unchecked(p, WAITING_CAP)));
        statements.extend(Provider::all().map(|p| retired(p, WAITING_CAP)));
        statements.push(statement!(
            "SELECT COUNT(*) AS open FROM alerts WHERE resolved_at IS NULL"
        ));
        statements.push(statement!(alerts::DELIVERY));
        statements
    }

    /// The answers in the order `statements` asks; a missing one reads as no rows.
    fn read(results: Vec<Rows>) -> Self {
        let mut results = results.into_iter();
        let mut next = || results.next().unwrap_or_default();
        let per_provider = |next: &mut dyn FnMut() -> Rows| -> Vec<Rows> {
            Provider::all().map(|_| next()).collect()
        };
        Self {
            tallies: next(),
            since_fold: next(),
            health: next(),
            last_run: next(),
            pending: next(),
            dead: next(),
            disabled: next(),
            backfills: next(),
            suspected: next(),
            waiting: per_provider(&mut next),
            retired: per_provider(&mut next),
            alerts_open: next(),
            alert_delivery: next(),
        }
    }
}

/// A count a row holds under `name`; 0 without one.
fn number(rows: &Rows, name: &str) -> i64 {
    rows.first()
        .and_then(|r| r.get(name))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// Per provider, the `n` of the row naming it (rows grouped by provider).
fn per_provider_count(rows: &Rows) -> Map<String, Value> {
    Provider::all()
        .map(|provider| {
            let n = rows
                .iter()
                .find(|r| r.get("provider").and_then(Value::as_str) == Some(provider.as_str()))
                .and_then(|r| r.get("n"))
                .and_then(Value::as_u64);
            (provider.as_str().into(), json!(n.unwrap_or(0)))
        })
        .collect()
}

pub async fn get(services: &Services<'_>) -> Result<Response, ApiError> {
    let results = d1::batch(&services.calls, services.db, &StatsBatch::statements()).await?;
    let batch = StatsBatch::read(results);
    let counts = counts(&batch.tallies, &batch.since_fold);
    let now = clock::now();
    let retired: Map<String, Value> = Provider::all()
        .zip(&batch.retired)
        .map(|(provider, rows)| (provider.as_str().into(), json!(number(rows, "n"))))
        .collect();
    let backfills: Vec<Value> = batch
        .backfills
        .iter()
        .filter_map(|found| row::<Backfill>(found).ok())
        .map(|b| json!(b.view()))
        .collect();
    let (mut subjects, mut webhooks, mut changes, mut drift) =
        (Map::new(), Map::new(), Map::new(), Map::new());
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
    }
    Ok(Response::from_json(&json!({
        "alerts": alerts_view(services, &batch),
        "notifications": notifications_view(services, &batch, counts.delivered, now),
        "subjects": subjects,
        "webhooks": webhooks,
        "changes": changes,
        "drift": drift,
        // Changes no webhook had announced when found, not settled yet (the cron settles
        // them once late webhooks had time to arrive: DRIFT_GRACE).
        "drift_suspected": per_provider_count(&batch.suspected),
        "retired": retired,
        "providers": providers_view(services, &batch.health),
        "reconcile_budget": services.config.reconcile_budget,
        "first_checks": first_checks_view(services, &batch, &counts.first_checks_until, now),
        "backfills": backfills,
        "last_cron_run": batch.last_run.first().map(run_view),
    }))?)
}

/// Per provider: enabled, and the health its checks left.
fn providers_view(services: &Services<'_>, health: &Rows) -> Map<String, Value> {
    Provider::all()
        .map(|provider| {
            let p = provider.as_str();
            let found = health
                .iter()
                .find(|h| h.get("provider").and_then(Value::as_str) == Some(p));
            let field = |name: &str| found.and_then(|h| h.get(name));
            let failures = field("consecutive_failures")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let view = json!({
                "enabled": services.config.protocol(provider).is_some(),
                "degraded": failures >= u64::from(DEGRADED_AFTER_FAILURES),
                "consecutive_failures": failures,
                "last_error": field("last_error").cloned().unwrap_or(Value::Null),
                "last_failure_at": time(field("last_failure_at")),
                "last_success_at": time(field("last_success_at")),
                "paused_until": time(field("paused_until")),
            });
            (p.into(), view)
        })
        .collect()
}

/// Per provider: subjects waiting for a first check and when the last is scheduled.
fn first_checks_view(
    services: &Services<'_>,
    batch: &StatsBatch,
    first_checks_until: &BTreeMap<Provider, i64>,
    now: Timestamp,
) -> Map<String, Value> {
    Provider::all()
        .zip(&batch.waiting)
        .map(|(provider, rows)| {
            let waiting = number(rows, "n").max(0);
            // The last scheduled first check falls due just before the imports' cursor; if
            // every run takes its share, all have had one by then.
            let until = first_checks_until
                .get(&provider)
                .copied()
                .and_then(from_millis)
                .filter(|until| waiting > 0 && *until > now);
            let view = json!({
                "waiting": waiting,
                "per_run": services.config.first_checks_per_run,
                "all_scheduled_by": until.map(format),
                "eta_seconds": until.map_or(0, |t| (t - now).num_seconds()),
            });
            (provider.as_str().into(), view)
        })
        .collect()
}

fn notifications_view(
    services: &Services<'_>,
    batch: &StatsBatch,
    delivered: i64,
    now: Timestamp,
) -> Value {
    let configured = services.config.delivery.is_some();
    let oldest = batch
        .pending
        .first()
        .and_then(|r| r.get("oldest"))
        .and_then(Value::as_i64)
        .and_then(from_millis);
    let disabled = batch
        .disabled
        .first()
        .map(|row| json!({ "since": time(row.get("disabled_at")), "reason": row.get("reason") }));
    json!({
        "delivery": if configured { "configured" } else { "not configured" },
        "pending": number(&batch.pending, "pending"),
        "delivered": delivered,
        "dead": number(&batch.dead, "dead"),
        "disabled": disabled,
        // Without an endpoint nothing is late: the rows are a feed, not a backlog.
        "oldest_undelivered_age_seconds": oldest
            .filter(|_| configured)
            .map(|t| (now - t).num_seconds()),
    })
}

fn alerts_view(services: &Services<'_>, batch: &StatsBatch) -> Value {
    let delivery = &batch.alert_delivery;
    json!({
        "delivery": if services.config.alerts.delivery.is_some() { "configured" } else { "not configured" },
        "open": number(&batch.alerts_open, "open"),
        "pending": number(delivery, "pending"),
        "failing": number(delivery, "failing"),
        "dead": number(delivery, "dead"),
        "delivered": number(delivery, "delivered"),
        "last_error": delivery.first().and_then(|r| r.get("last_error")).cloned().unwrap_or(Value::Null),
    })
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

/// The one query parameter of a list: `limit` (1..=500), `default` without it.
fn limit_only(req: &Request, default: u32) -> Result<u32, ApiError> {
    let mut limit = default;
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
    Ok(limit)
}

/// `GET /v1/runs?limit=`: the latest cron runs, newest first.
pub async fn runs(req: &Request, services: &Services<'_>) -> Result<Response, ApiError> {
    let limit = limit_only(req, 48)?;
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
    let limit = limit_only(req, 50)?;
    let [alerts, delivery] = d1::batch_of(
        &services.calls,
        services.db,
        [alerts::recent(limit), statement!(alerts::DELIVERY)],
    )
    .await?;
    let (open, recent): (Vec<Value>, Vec<Value>) = alerts
        .iter()
        .map(alert_view)
        .partition(|a| a["state"] == "open");
    let delivery = delivery.first();
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
