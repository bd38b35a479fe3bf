//! Files built into the worker: the dashboard (dashboard/) and the OpenAPI document (from
//! openapi.yaml, by build.rs). The dashboard is served with a strict Content-Security-Policy:
//! it loads nothing from anywhere else and talks only to this API.

use crate::error::ApiError;
use worker::Response;

const OPENAPI: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));
const INDEX_HTML: &str = include_str!("../../dashboard/index.html");
const APP_JS: &str = include_str!("../../dashboard/app.js");
const APP_CSS: &str = include_str!("../../dashboard/app.css");

const DASHBOARD_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

fn file(body: &'static str, content_type: &str) -> Result<Response, ApiError> {
    let mut response = Response::ok(body)?;
    let headers = response.headers_mut();
    headers.set("content-type", content_type)?;
    headers.set("x-content-type-options", "nosniff")?;
    headers.set("cache-control", "no-cache")?;
    Ok(response)
}

pub fn openapi() -> Result<Response, ApiError> {
    file(OPENAPI, "application/json")
}

/// One of `kyc_core::api::DASHBOARD_FILES`.
pub fn dashboard(name: &str) -> Result<Response, ApiError> {
    let (body, content_type) = match name {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => (INDEX_HTML, "text/html; charset=utf-8"),
    };
    let mut response = file(body, content_type)?;
    let headers = response.headers_mut();
    headers.set("content-security-policy", DASHBOARD_POLICY)?;
    headers.set("referrer-policy", "no-referrer")?;
    headers.set("x-frame-options", "DENY")?;
    Ok(response)
}
