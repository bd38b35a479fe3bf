//! HTTP routing: one line per route to a named handler.

mod stats;
mod subjects;
mod webhooks;

use crate::error::ApiError;
use kyc_core::config::Config;
use kyc_core::headers::AUTHORIZATION;
use kyc_core::subject::Provider;
use serde_json::json;
use worker::{Env, Method, Request, Response, Result};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub async fn handle(req: Request, env: &Env) -> Result<Response> {
    match route(req, env).await {
        Ok(response) => Ok(response),
        Err(error) => error.into_response(),
    }
}

async fn route(req: Request, env: &Env) -> std::result::Result<Response, ApiError> {
    let path = req.path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method();
    match (method.clone(), segments.as_slice()) {
        (Method::Get, ["healthz"]) => Ok(Response::from_json(
            &json!({ "ok": true, "version": VERSION }),
        )?),
        (Method::Post, ["webhooks", "align"]) => {
            webhooks::receive(req, env, Provider::Align, None).await
        }
        (Method::Post, ["webhooks", "argos", token]) => {
            webhooks::receive(req, env, Provider::Argos, Some(token)).await
        }
        (_, ["webhooks", ..]) => Err(ApiError::not_found("no such webhook route")),
        (_, ["v1", rest @ ..]) => {
            let config = crate::config::load(env)?;
            authorize(&req, &config)?;
            match (method, rest) {
                (Method::Get, ["subjects"]) => subjects::list(req, env).await,
                (Method::Get, ["subjects", provider, subject_ref]) => {
                    subjects::get(env, provider, subject_ref).await
                }
                (Method::Put, ["subjects", provider, subject_ref]) => {
                    subjects::put(req, env, provider, subject_ref).await
                }
                (Method::Get, ["subjects", provider, subject_ref, "events"]) => {
                    subjects::events(env, provider, subject_ref).await
                }
                (Method::Post, ["subjects", provider, subject_ref, "refresh"]) => {
                    subjects::refresh(env, provider, subject_ref).await
                }
                (Method::Get, ["stats"]) => stats::get(env, &config).await,
                _ => Err(ApiError::not_found("no such route")),
            }
        }
        _ => Err(ApiError::not_found("no such route")),
    }
}

/// `Authorization: Bearer <API_TOKEN>`, compared in constant time. Without a configured
/// token nobody gets in.
fn authorize(req: &Request, config: &Config) -> std::result::Result<(), ApiError> {
    let Some(token) = &config.api_token else {
        return Err(ApiError::unauthorized("API_TOKEN is not configured"));
    };
    let presented = req.headers().get(AUTHORIZATION)?.unwrap_or_default();
    match presented.strip_prefix("Bearer ") {
        Some(presented) if token.matches(presented.trim()) => Ok(()),
        _ => Err(ApiError::unauthorized("missing or invalid bearer token")),
    }
}
