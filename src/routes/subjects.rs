//! `/v1/subjects`: the application's view of its subjects.

use crate::clock;
use crate::error::ApiError;
use crate::jobs::{self, Job, ReconcileJob};
use crate::store::subjects::{self as repo, ListFilter};
use crate::store::{self, int, kv, text};
use kyc_core::status::KycStatus;
use kyc_core::subject::{ExternalId, Provider, RefKind, SubjectRef};
use kyc_core::timefmt::format_rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{console_error, Env, Request, Response};

type Result<T> = std::result::Result<T, ApiError>;

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

fn parse_key(provider: &str, subject_ref: &str) -> Result<(Provider, SubjectRef)> {
    let provider = Provider::parse(provider)
        .ok_or_else(|| ApiError::not_found(format!("unknown provider {provider:?}")))?;
    let subject_ref =
        SubjectRef::parse(subject_ref).map_err(|e| ApiError::bad_request(format!("ref {e}")))?;
    Ok((provider, subject_ref))
}

fn json_text(body: String, read_from: &str) -> Result<Response> {
    let mut response = Response::ok(body)?;
    response
        .headers_mut()
        .set("content-type", "application/json")?;
    response.headers_mut().set("x-kyc-edge-read", read_from)?;
    Ok(response)
}

/// From KV when the projection exists, else from D1.
pub async fn get(env: &Env, provider: &str, subject_ref: &str) -> Result<Response> {
    let (provider, subject_ref) = parse_key(provider, subject_ref)?;
    if let Some(projected) = kv::read(env, provider, subject_ref.as_str()).await {
        return json_text(projected, "kv");
    }
    let db = store::db(env)?;
    let row = repo::load(&db, provider, subject_ref.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("subject is not tracked"))?;
    let body = serde_json::to_string(&row.view())
        .map_err(|e| ApiError::from(worker::Error::RustError(e.to_string())))?;
    json_text(body, "d1")
}

#[derive(Deserialize)]
struct PutBody {
    external_id: Option<String>,
}

/// Start tracking a subject before any webhook arrives; 201 new, 200 existing.
pub async fn put(
    mut req: Request,
    env: &Env,
    provider: &str,
    subject_ref: &str,
) -> Result<Response> {
    let (provider, subject_ref) = parse_key(provider, subject_ref)?;
    let raw = req.text().await?;
    let body: PutBody = if raw.trim().is_empty() {
        PutBody { external_id: None }
    } else {
        serde_json::from_str(&raw)
            .map_err(|_| ApiError::bad_request("body must be {\"external_id\": \"...\"}"))?
    };
    let external_id = body
        .external_id
        .as_deref()
        .map(ExternalId::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("external_id {e}")))?;
    let db = store::db(env)?;
    let now = clock::now();
    let created = repo::register(&db, provider, &subject_ref, external_id.as_ref(), now).await?;
    let row = repo::load(&db, provider, subject_ref.as_str())
        .await?
        .ok_or_else(|| {
            ApiError::from(worker::Error::RustError(
                "registered subject not found".into(),
            ))
        })?;
    kv::project(env, &row).await;
    if created {
        // Learn its status now rather than at the next cron run (which would also do).
        let job = Job::Reconcile(ReconcileJob {
            provider,
            subject_ref,
            ref_kind: RefKind::User,
            trusted: None,
            run: None,
        });
        if let Err(error) = jobs::send(env, &job).await {
            console_error!("queueing first reconcile failed (the cron will do it): {error}");
        }
    }
    Ok(Response::from_json(&row.view())?.with_status(if created { 201 } else { 200 }))
}

/// Reconcile one subject now.
pub async fn refresh(env: &Env, provider: &str, subject_ref: &str) -> Result<Response> {
    let (provider, subject_ref) = parse_key(provider, subject_ref)?;
    let db = store::db(env)?;
    let Some(row) = repo::load(&db, provider, subject_ref.as_str()).await? else {
        return Err(ApiError::not_found("subject is not tracked"));
    };
    repo::make_due(&db, provider, &subject_ref, clock::now()).await?;
    let job = Job::Reconcile(ReconcileJob {
        provider,
        subject_ref,
        ref_kind: row.ref_kind(),
        trusted: None,
        run: None,
    });
    let queued = match jobs::send(env, &job).await {
        Ok(()) => true,
        Err(error) => {
            console_error!(
                "queueing refresh failed (the subject is due; the cron will do it): {error}"
            );
            false
        }
    };
    Ok(Response::from_json(&json!({ "queued": queued }))?.with_status(202))
}

#[derive(Deserialize)]
struct EventRow {
    #[serde(rename = "type")]
    event_type: String,
    kind: Option<String>,
    announces: Option<String>,
    provider_at: Option<i64>,
    at: i64,
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
    source: Option<String>,
    from_status: Option<String>,
    to_status: Option<String>,
    drift: bool,
}

/// The subject's history, newest first: webhooks received and changes applied (no PII).
pub async fn events(env: &Env, provider: &str, subject_ref: &str) -> Result<Response> {
    let (provider, subject_ref) = parse_key(provider, subject_ref)?;
    let db = store::db(env)?;
    if repo::load(&db, provider, subject_ref.as_str())
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("subject is not tracked"));
    }
    let rows: Vec<EventRow> = db
        .prepare(
            "SELECT type, kind, announces, provider_at, at, source, from_status, to_status, drift \
             FROM events WHERE provider = ?1 AND ref = ?2 ORDER BY id DESC LIMIT ?3",
        )
        .bind(&[
            text(provider.as_str()),
            text(subject_ref.as_str()),
            int(i64::from(MAX_PAGE)),
        ])?
        .all()
        .await?
        .results()?;
    let events: Vec<EventView> = rows
        .into_iter()
        .map(|r| EventView {
            event_type: r.event_type,
            kind: r.kind,
            announces: r.announces,
            provider_at: r.provider_at.map(format_rfc3339),
            at: format_rfc3339(r.at),
            source: r.source,
            from_status: r.from_status,
            to_status: r.to_status,
            drift: r.drift != 0,
        })
        .collect();
    Ok(Response::from_json(&json!({ "events": events }))?)
}

/// `GET /v1/subjects?status=&provider=&external_id=&limit=&cursor=`.
pub async fn list(req: Request, env: &Env) -> Result<Response> {
    let url = req.url()?;
    let mut filter = ListFilter {
        limit: DEFAULT_PAGE,
        ..ListFilter::default()
    };
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
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
            "external_id" => filter.external_id = Some(value.into_owned()),
            "limit" => {
                filter.limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| ApiError::bad_request(format!("limit must be 1..={MAX_PAGE}")))?
            }
            "cursor" => {
                let (p, r) = value
                    .split_once('/')
                    .ok_or_else(|| ApiError::bad_request("invalid cursor"))?;
                filter.after = Some((p.to_owned(), r.to_owned()));
            }
            _ => return Err(ApiError::bad_request(format!("unknown parameter {key:?}"))),
        }
    }
    let db = store::db(env)?;
    let rows = repo::list(&db, &filter).await?;
    let next_cursor = (rows.len() as u32 == filter.limit)
        .then(|| {
            rows.last()
                .map(|r| format!("{}/{}", r.provider, r.subject_ref))
        })
        .flatten();
    let subjects: Vec<_> = rows.iter().map(|r| r.view()).collect();
    Ok(Response::from_json(
        &json!({ "subjects": subjects, "next_cursor": next_cursor }),
    )?)
}
