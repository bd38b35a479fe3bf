//! Adopting kyc-edge on a live product: `POST /v1/subjects/batch` registers up to 1,000
//! subjects at once, their first checks paced by the cron; `/v1/backfill/{provider}` starts
//! (POST) or shows (GET) a walk of the provider's list that registers the subjects the
//! application never told kyc-edge about.

use super::body::{self, SMALL_BODY_BYTES};
use crate::error::ApiError;
use crate::log::Line;
use crate::services::Services;
use crate::{clock, d1};
use kyc_core::api::ErrorCode;
use kyc_core::db::backfills::{self, Backfill};
use kyc_core::import::{parse_batch, BatchError, Line as BatchLine, NewSubject};
use kyc_core::providers::ListWalk;
use kyc_core::registration::ImportPlan;
use kyc_core::subject::Provider;
use kyc_core::time::{day, format, parse_day};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use worker::{Request, Response};

type Result<T> = std::result::Result<T, ApiError>;

/// 1,000 subjects with long refs and external ids fit; more is not a batch of ours.
const BATCH_BODY_BYTES: usize = 1024 * 1024;

pub async fn import_subjects(
    mut req: Request,
    services: &Services<'_>,
    log: &mut Line,
) -> Result<Response> {
    let body = body::read(&mut req, BATCH_BODY_BYTES).await?;
    let config = services.config;
    let lines = parse_batch(&body, &|p| config.protocol(p).is_some()).map_err(|e| match e {
        BatchError::ProviderNotConfigured { provider, line } => {
            let mut error =
                ApiError::provider_not_configured(provider, config.missing_secrets(provider));
            error.message = format!("line {line}: {}", error.message);
            error
        }
        _ => ApiError::bad_request(e.to_string()),
    })?;
    let valid: Vec<&NewSubject> = lines
        .iter()
        .filter_map(|(_, line)| match line {
            BatchLine::Valid(subject) => Some(subject),
            _ => None,
        })
        .collect();
    // One batch for every provider's lines: all of the request is written, or none of it.
    let plan = ImportPlan::batch(&valid, config.first_check_step(), clock::now());
    let results = if plan.statements.is_empty() {
        vec![]
    } else {
        d1::batch(&services.calls, services.db, &plan.statements).await?
    };
    let imported = plan.read(&results);
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    let answers: Vec<Value> = lines
        .iter()
        .map(|(number, line)| {
            let mut answer = Map::new();
            answer.insert("line".into(), json!(number));
            let result = match line {
                BatchLine::Valid(s) => {
                    answer.insert("provider".into(), json!(s.provider));
                    answer.insert("ref".into(), json!(s.subject_ref.as_str()));
                    if imported.was_created(s) {
                        "created"
                    } else {
                        "existing"
                    }
                }
                BatchLine::Repeat(first) => {
                    answer.insert("same_as_line".into(), json!(first));
                    "repeat"
                }
                BatchLine::Invalid(why) => {
                    answer.insert("error".into(), json!(why));
                    "invalid"
                }
            };
            *counts.entry(result).or_default() += 1;
            answer.insert("result".into(), json!(result));
            Value::Object(answer)
        })
        .collect();
    let first_checks: Map<String, Value> = imported
        .first_checks_until
        .iter()
        .map(|(provider, at)| (provider.as_str().to_owned(), json!(format(*at))))
        .collect();
    for (name, n) in &counts {
        log.set(name, *n);
    }
    let count = |name: &str| counts.get(name).copied().unwrap_or(0);
    Ok(Response::from_json(&json!({
        "created": count("created"),
        "existing": count("existing"),
        "repeat": count("repeat"),
        "invalid": count("invalid"),
        "first_checks_until": first_checks,
        "results": answers,
    }))?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    since: Option<String>,
}

fn enabled(services: &Services<'_>, provider: Provider) -> Result<Provider> {
    services.configured(provider)?;
    Ok(provider)
}

async fn load(services: &Services<'_>, provider: Provider) -> Result<Option<Backfill>> {
    let rows = d1::run(&services.calls, services.db, &backfills::load(provider)).await?;
    Ok(d1::first(&rows)?)
}

/// `POST /v1/backfill/{provider}` `{"since": "YYYY-MM-DD"}` (optional): 202 with the walk,
/// which the cron then reads a few pages of per run; 409 while one is running.
pub async fn start_backfill(
    mut req: Request,
    services: &Services<'_>,
    provider: Provider,
    log: &mut Line,
) -> Result<Response> {
    let provider = enabled(services, provider)?;
    log.set("provider", provider.as_str());
    let raw = body::read(&mut req, SMALL_BODY_BYTES).await?;
    let body: StartBody = if raw.iter().all(u8::is_ascii_whitespace) {
        StartBody { since: None }
    } else {
        serde_json::from_slice(&raw)
            .map_err(|_| ApiError::bad_request("body must be {\"since\": \"YYYY-MM-DD\"}"))?
    };
    let now = clock::now();
    let until = day(now);
    let since = body
        .since
        .as_deref()
        .map(|since| parse_day(since, now))
        .transpose()
        .map_err(|why| ApiError::bad_request(format!("since {why}")))?;
    let protocol = services.configured(provider)?;
    // Whatever the provider cannot list (Align has no date filter) is refused now, not later.
    protocol
        .list_request(&ListWalk {
            since: since.as_deref(),
            until: &until,
            cursor: None,
        })
        .map_err(ApiError::bad_request)?;
    let rows = d1::run(
        &services.calls,
        services.db,
        &backfills::start(provider, since.as_deref(), &until, now),
    )
    .await?;
    match d1::first::<Backfill>(&rows)? {
        Some(started) => {
            log.set("outcome", "started");
            Ok(Response::from_json(&started.view())?.with_status(202))
        }
        None => {
            let running = load(services, provider).await?;
            let mut error = ApiError::new(
                ErrorCode::Conflict,
                format!("a {provider} backfill is running; it must finish first"),
            );
            if let Some(running) = running {
                error.message = format!(
                    "a {provider} backfill is running since {} ({} pages read)",
                    format(running.started_at),
                    running.pages_read
                );
            }
            Err(error)
        }
    }
}

/// `GET /v1/backfill/{provider}`: the latest walk, 404 when there was none.
pub async fn get_backfill(services: &Services<'_>, provider: Provider) -> Result<Response> {
    let provider = enabled(services, provider)?;
    match load(services, provider).await? {
        Some(backfill) => Ok(Response::from_json(&backfill.view())?),
        None => Err(ApiError::not_found(format!("no {provider} backfill yet"))),
    }
}
