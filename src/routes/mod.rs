//! HTTP: every request gets an id (echoed or generated), one route (or a 404 / 405), one
//! answer carrying `x-request-id`, and one JSON log line.

mod adoption;
mod assets;
mod body;
mod notifications;
mod stats;
mod subjects;
mod webhooks;

use crate::calls::Calls;
use crate::error::ApiError;
use crate::log::Line;
use crate::services::Services;
use crate::{clock, config, d1, random};
use kyc_core::api::{self, Denied, ErrorCode, Role, Route, RouteError, API_HEADERS};
use kyc_core::config::Config;
use kyc_core::headers::{usable_request_id, AUTHORIZATION, REQUEST_ID};
use kyc_core::schedule::WorkersPlan;
use kyc_core::secret::any_matches;
use kyc_core::subject::Provider;
use serde_json::json;
use worker::{Env, Request, Response, Result};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub async fn handle(req: Request, env: &Env) -> Result<Response> {
    let started = clock::now();
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .ok()
        .flatten()
        .filter(|id| usable_request_id(id))
        .or_else(random::request_id)
        .unwrap_or_default();
    let mut log = Line::new("request");
    log.set("request_id", request_id.as_str())
        .set("method", req.method().as_ref());
    // Before the configuration is read, the smallest plan's limit applies.
    let mut calls = Calls::new(WorkersPlan::Free.subrequests());
    // The path is parsed from the URL on each call: once per request.
    let path = req.path();
    let is_api = path.starts_with("/v1/");
    let answer = dispatch(req, &path, env, &mut calls, &mut log).await;
    let mut response = match answer {
        Ok(response) => response,
        Err(error) => {
            log.set("error_code", error.code.as_str());
            if let Some(cause) = &error.cause {
                log.error(cause);
            }
            error.into_response()?
        }
    };
    response.headers_mut().set(REQUEST_ID, &request_id)?;
    if is_api {
        for (name, value) in API_HEADERS {
            response.headers_mut().set(name, value)?;
        }
    }
    log.set("status", response.status_code())
        .set("duration_ms", (clock::now() - started).num_milliseconds());
    log.emit(&calls);
    Ok(response)
}

async fn dispatch(
    req: Request,
    path: &str,
    env: &Env,
    calls: &mut Calls,
    log: &mut Line,
) -> std::result::Result<Response, ApiError> {
    let method = req.method();
    let route = match api::route(method.as_ref(), path) {
        Ok(route) => route,
        Err(RouteError::NotFound) => return Err(ApiError::not_found("no such route")),
        Err(RouteError::MethodNotAllowed { allow }) => {
            return Err(ApiError::method_not_allowed(allow))
        }
    };
    log.set("route", route.name());
    // Health too: a deployment with a malformed configuration is not healthy.
    let config = config::load(env)?;
    *calls = Calls::new(config.workers_plan.subrequests());
    if route.needs_token() {
        let role = authorize(&req, &config)?;
        log.set("role", role_name(role));
        match api::authorize(route.access(), Some(role)) {
            Ok(()) => {}
            Err(Denied::ReadOnly) => {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "this token can only read (API_READ_TOKEN): writing, calling a provider \
                     or redelivering takes an admin token (API_TOKEN)",
                ))
            }
            Err(Denied::Unauthenticated) => {
                return Err(ApiError::unauthorized("missing or invalid bearer token"))
            }
        }
    }
    let db = d1::database(env)?;
    let services = Services {
        env,
        config: &config,
        db: &db,
        calls: calls.share(),
        gather: None,
    };
    let response = match route {
        Route::Index => index(&req),
        Route::Health => Ok(Response::from_json(&json!({
            "ok": true,
            "version": VERSION,
            "providers": provider_setup(&config),
        }))?),
        Route::Webhook { provider, token } => {
            webhooks::receive(req, &services, provider, token, log).await
        }
        Route::ListSubjects => subjects::list(&req, &services).await,
        Route::GetSubject { subject } => subjects::get(&req, &services, subject, log).await,
        Route::PutSubject { subject } => subjects::put(req, &services, subject, log).await,
        Route::SubjectEvents { subject } => subjects::events(&req, &services, subject).await,
        Route::RefreshSubject { subject } => subjects::refresh(&services, subject, log).await,
        Route::Stats => stats::get(&services).await,
        Route::ListNotifications => notifications::list(&req, &services).await,
        Route::RedeliverNotification { id } => notifications::redeliver(&services, id, log).await,
        Route::EnableNotifications => notifications::enable(&services, log).await,
        Route::StuckSubjects => subjects::stuck(&req, &services).await,
        Route::ImportSubjects => adoption::import_subjects(req, &services, log).await,
        Route::StartBackfill { provider } => {
            adoption::start_backfill(req, &services, provider, log).await
        }
        Route::GetBackfill { provider } => adoption::get_backfill(&services, provider).await,
        Route::CronRuns => stats::runs(&req, &services).await,
        Route::Alerts => stats::alerts(&req, &services).await,
        Route::OpenApi => assets::openapi(),
        Route::Dashboard { file } => assets::dashboard(file),
    };
    // The unit of work's calls, for the log line.
    *calls = services.calls;
    response
}

/// `GET /`: a browser goes to the dashboard; anything else gets the links.
fn index(req: &Request) -> std::result::Result<Response, ApiError> {
    let accept = req.headers().get("accept")?.unwrap_or_default();
    if accept.contains("text/html") {
        let mut response = Response::empty()?.with_status(302);
        response.headers_mut().set("location", "/dashboard/")?;
        return Ok(response);
    }
    Ok(Response::from_json(&json!({
        "name": "kyc-edge",
        "version": VERSION,
        "links": { "dashboard": "/dashboard/", "openapi": "/openapi.json", "health": "/healthz" },
    }))?)
}

/// Which providers are served, and the secrets each of the others lacks.
fn provider_setup(config: &Config) -> serde_json::Value {
    let (enabled, not_configured): (Vec<Provider>, Vec<Provider>) =
        Provider::all().partition(|p| config.protocol(*p).is_some());
    let not_configured: serde_json::Map<String, serde_json::Value> = not_configured
        .into_iter()
        .map(|p| (p.as_str().to_owned(), json!(config.missing_secrets(p))))
        .collect();
    json!({ "enabled": enabled, "not_configured": not_configured })
}

/// `Authorization: Bearer <token>`: one of `API_TOKEN` (admin) or `API_READ_TOKEN` (read
/// only), every configured token compared in constant time. Without a configured token nobody
/// gets in.
fn authorize(req: &Request, config: &Config) -> std::result::Result<Role, ApiError> {
    if config.api_tokens.is_empty() && config.read_tokens.is_empty() {
        return Err(ApiError::unauthorized("API_TOKEN is not configured"));
    }
    let presented = req.headers().get(AUTHORIZATION)?.unwrap_or_default();
    let Some(presented) = presented.strip_prefix("Bearer ").map(str::trim) else {
        return Err(ApiError::unauthorized("missing or invalid bearer token"));
    };
    // Both lists are compared whatever the first says.
    let admin = any_matches(&config.api_tokens, presented);
    let reader = any_matches(&config.read_tokens, presented);
    match (admin, reader) {
        (true, _) => Ok(Role::Admin),
        (false, true) => Ok(Role::Reader),
        (false, false) => Err(ApiError::unauthorized("missing or invalid bearer token")),
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        Role::Reader => "reader",
    }
}
