//! `/v1/subjects`: the application's view of its subjects.

use super::body::{self, SMALL_BODY_BYTES};
use crate::error::{ApiError, StoreError};
use crate::log::Line;
use crate::services::Services;
use crate::{clock, d1, kv, queue};
use kyc_core::api::{query_pairs, SubjectPath};
use kyc_core::db::events::history;
use kyc_core::db::subjects::{self as statements, ListFilter, SubjectRow};
use kyc_core::headers::READ_FROM;
use kyc_core::jobs::{Job, ReconcileJob};
use kyc_core::reconcile::{DRIFT, SUSPECTED_DRIFT};
use kyc_core::registration::plan_register;
use kyc_core::status::KycStatus;
use kyc_core::subject::{ref_for_log, ExternalId, Provider, SubjectRef};
use kyc_core::time::{format, from_millis};
use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{Request, Response};

type Result<T> = std::result::Result<T, ApiError>;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

/// The subject the router parsed; an unusable ref is answered here, after authorization.
fn subject_key(subject: SubjectPath) -> Result<(Provider, SubjectRef)> {
    let subject_ref = subject
        .subject_ref
        .map_err(|e| ApiError::bad_request(format!("ref {e}")))?;
    Ok((subject.provider, subject_ref))
}

fn json_text(body: String, read_from: &str) -> Result<Response> {
    let mut response = Response::ok(body)?;
    response
        .headers_mut()
        .set("content-type", "application/json")?;
    response.headers_mut().set(READ_FROM, read_from)?;
    Ok(response)
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| ApiError::from(worker::Error::RustError(e.to_string())))
}

async fn load(
    services: &Services<'_>,
    provider: Provider,
    subject_ref: &SubjectRef,
) -> Result<Option<SubjectRow>> {
    let rows = d1::run(
        &services.calls,
        services.db,
        &statements::load(provider, subject_ref),
    )
    .await?;
    Ok(d1::first(&rows)?)
}

/// From KV when the projection exists (the status as of its last change), else from D1 (with
/// the schedule). `?consistency=strong` always reads D1.
pub async fn get(
    req: &Request,
    services: &Services<'_>,
    subject: SubjectPath,
    log: &mut Line,
) -> Result<Response> {
    let (provider, subject_ref) = subject_key(subject)?;
    log.set("provider", provider.as_str())
        .set("ref", ref_for_log(subject_ref.as_str()).as_ref());
    let mut strong = false;
    for (key, value) in query_pairs(&req.inner().url()) {
        match (key.as_str(), value.as_str()) {
            ("consistency", "strong") => strong = true,
            ("consistency", "eventual") => strong = false,
            _ => {
                return Err(ApiError::bad_request(
                    "the only parameter is consistency=strong|eventual",
                ))
            }
        }
    }
    if !strong {
        match kv::read(&services.calls, services.env, provider, &subject_ref).await {
            Ok(Some(projected)) => return json_text(projected, "kv"),
            Ok(None) => {}
            // KV is a cache: D1 answers.
            Err(error) => {
                log.set("kv_error", error.to_string());
            }
        }
    }
    let row = load(services, provider, &subject_ref)
        .await?
        .ok_or_else(|| ApiError::not_found("subject is not tracked"))?;
    json_text(to_json(&row.full_view())?, "d1")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    external_id: Option<String>,
}

/// Start tracking a subject before any webhook arrives; 201 new, 200 existing.
pub async fn put(
    mut req: Request,
    services: &Services<'_>,
    subject: SubjectPath,
    log: &mut Line,
) -> Result<Response> {
    let (provider, subject_ref) = subject_key(subject)?;
    services.configured(provider)?;
    log.set("provider", provider.as_str())
        .set("ref", ref_for_log(subject_ref.as_str()).as_ref());
    let raw = body::read(&mut req, SMALL_BODY_BYTES).await?;
    let body: PutBody = if raw.iter().all(u8::is_ascii_whitespace) {
        PutBody { external_id: None }
    } else {
        serde_json::from_slice(&raw)
            .map_err(|_| ApiError::bad_request("body must be {\"external_id\": \"...\"}"))?
    };
    let external_id = body
        .external_id
        .as_deref()
        .map(ExternalId::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("external_id {e}")))?;
    let plan = plan_register(provider, &subject_ref, external_id.as_ref(), clock::now());
    let results = d1::batch(&services.calls, services.db, &plan.statements).await?;
    let registration = plan
        .read(&results)
        .map_err(|e| ApiError::from(StoreError::Unreadable(e)))?
        .ok_or_else(|| ApiError::from(StoreError::NotReturned("the registered subject")))?;
    if registration.project() {
        // A new external id is a new version of a row whose own put may still be under way:
        // its time is not known here, so the key is looked at again once that put has landed.
        if let Err(error) = kv::project(services, &registration.row, registration.renamed).await {
            log.set("kv_error", error);
        }
    }
    if let Some(job) = registration.check_now() {
        if let Err(error) = queue::send(&services.calls, services.env, &job).await {
            log.set("queue_error", error.to_string());
        }
    }
    log.set("outcome", registration.outcome());
    Ok(Response::from_json(&registration.row.full_view())?.with_status(registration.http_status()))
}

/// Reconcile one subject now.
pub async fn refresh(
    services: &Services<'_>,
    subject: SubjectPath,
    log: &mut Line,
) -> Result<Response> {
    let (provider, subject_ref) = subject_key(subject)?;
    services.configured(provider)?;
    log.set("provider", provider.as_str())
        .set("ref", ref_for_log(subject_ref.as_str()).as_ref());
    let rows = d1::run(
        &services.calls,
        services.db,
        &statements::request_check(provider, &subject_ref, clock::now()),
    )
    .await?;
    let Some(row) = d1::first::<SubjectRow>(&rows)? else {
        return Err(ApiError::not_found("subject is not tracked"));
    };
    let job = Job::Reconcile(ReconcileJob {
        provider,
        subject_ref,
        ref_kind: row.ref_kind,
        trusted: None,
        aml: false,
        subject: None,
    });
    // The subject is due in D1: if the queue is down, the cron does it.
    let queued = match queue::send(&services.calls, services.env, &job).await {
        Ok(()) => true,
        Err(error) => {
            log.set("queue_error", error.to_string());
            false
        }
    };
    Ok(Response::from_json(&json!({ "queued": queued }))?.with_status(202))
}

#[derive(Deserialize)]
struct EventRow {
    id: i64,
    #[serde(rename = "type")]
    event_type: String,
    kind: Option<String>,
    announces: Option<String>,
    provider_at: Option<i64>,
    at: i64,
    last_at: Option<i64>,
    source: Option<String>,
    from_status: Option<String>,
    to_status: Option<String>,
    drift: i64,
}

#[derive(Serialize)]
struct EventView {
    #[serde(rename = "type")]
    event_type: String,
    kind: Option<String>,
    announces: Option<String>,
    provider_at: Option<String>,
    at: String,
    /// A repeat of this webhook that last asked for a check.
    last_at: Option<String>,
    source: Option<String>,
    from_status: Option<String>,
    to_status: Option<String>,
    drift: bool,
    drift_suspected: bool,
}

fn time(ms: i64) -> String {
    from_millis(ms).map(format).unwrap_or_default()
}

/// The subject's history, newest first: webhooks received (and repeats), changes applied.
/// `?limit=&cursor=` pages it.
pub async fn events(
    req: &Request,
    services: &Services<'_>,
    subject: SubjectPath,
) -> Result<Response> {
    let (provider, subject_ref) = subject_key(subject)?;
    let (mut limit, mut before) = (MAX_PAGE, None);
    for (key, value) in query_pairs(&req.inner().url()) {
        match key.as_str() {
            "limit" => limit = page_size(&value)?,
            "cursor" => {
                before = Some(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|id| *id > 0)
                        .ok_or_else(|| ApiError::bad_request("invalid cursor"))?,
                )
            }
            _ => return Err(ApiError::bad_request(format!("unknown parameter {key:?}"))),
        }
    }
    if load(services, provider, &subject_ref).await?.is_none() {
        return Err(ApiError::not_found("subject is not tracked"));
    }
    let rows = d1::run(
        &services.calls,
        services.db,
        &history(provider, &subject_ref, before, limit),
    )
    .await?;
    let rows: Vec<EventRow> = d1::all(&rows)?;
    let next_cursor = (rows.len() as u32 == limit)
        .then(|| rows.last().map(|r| r.id.to_string()))
        .flatten();
    let events: Vec<EventView> = rows
        .into_iter()
        .map(|r| EventView {
            event_type: r.event_type,
            kind: r.kind,
            announces: r.announces,
            provider_at: r.provider_at.map(time),
            at: time(r.at),
            last_at: r.last_at.map(time),
            source: r.source,
            from_status: r.from_status,
            to_status: r.to_status,
            drift: r.drift == DRIFT,
            drift_suspected: r.drift == SUSPECTED_DRIFT,
        })
        .collect();
    Ok(Response::from_json(
        &json!({ "events": events, "next_cursor": next_cursor }),
    )?)
}

fn page_size(value: &str) -> Result<u32> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_PAGE).contains(n))
        .ok_or_else(|| ApiError::bad_request(format!("limit must be 1..={MAX_PAGE}")))
}

/// `GET /v1/subjects?status=&provider=&external_id=&limit=&cursor=`.
pub async fn list(req: &Request, services: &Services<'_>) -> Result<Response> {
    let mut filter = ListFilter {
        limit: DEFAULT_PAGE,
        ..ListFilter::default()
    };
    for (key, value) in query_pairs(&req.inner().url()) {
        match key.as_str() {
            "provider" => {
                filter.provider = Some(
                    Provider::parse(&value)
                        .ok_or_else(|| ApiError::bad_request("unknown provider"))?,
                )
            }
            "status" => {
                filter.status = Some(
                    KycStatus::parse(&value)
                        .ok_or_else(|| ApiError::bad_request("unknown status"))?,
                )
            }
            "external_id" => {
                filter.external_id = Some(
                    ExternalId::parse(&value)
                        .map_err(|e| ApiError::bad_request(format!("external_id {e}")))?
                        .as_str()
                        .to_owned(),
                )
            }
            "limit" => filter.limit = page_size(&value)?,
            "cursor" => {
                let cursor = value
                    .split_once('/')
                    .and_then(|(p, r)| Some((Provider::parse(p)?, SubjectRef::parse(r).ok()?)))
                    .ok_or_else(|| ApiError::bad_request("invalid cursor"))?;
                filter.after = Some(cursor);
            }
            _ => return Err(ApiError::bad_request(format!("unknown parameter {key:?}"))),
        }
    }
    let rows = d1::run(&services.calls, services.db, &statements::list(&filter)).await?;
    let rows: Vec<SubjectRow> = d1::all(&rows)?;
    let next_cursor = (rows.len() as u32 == filter.limit)
        .then(|| {
            rows.last()
                .map(|r| format!("{}/{}", r.provider, r.subject_ref))
        })
        .flatten();
    let subjects: Vec<_> = rows.iter().map(SubjectRow::full_view).collect();
    Ok(Response::from_json(
        &json!({ "subjects": subjects, "next_cursor": next_cursor }),
    )?)
}

/// `GET /v1/subjects/stuck?limit=`: undecided subjects, longest in their status first.
pub async fn stuck(req: &Request, services: &Services<'_>) -> Result<Response> {
    let mut limit = 20;
    for (key, value) in query_pairs(&req.inner().url()) {
        match key.as_str() {
            "limit" => limit = page_size(&value)?,
            _ => return Err(ApiError::bad_request(format!("unknown parameter {key:?}"))),
        }
    }
    let rows = d1::run(&services.calls, services.db, &statements::stuck(limit)).await?;
    let rows: Vec<SubjectRow> = d1::all(&rows)?;
    let subjects: Vec<_> = rows.iter().map(SubjectRow::full_view).collect();
    Ok(Response::from_json(&json!({ "subjects": subjects }))?)
}
