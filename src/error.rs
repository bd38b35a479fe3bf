//! One error type for the HTTP surface: a status, a stable code and a message that is safe
//! to show (no secrets, no payload content). Details of 500s go to the log only.

use serde_json::json;
use worker::{console_error, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, "unauthorized", message)
    }

    pub fn into_response(self) -> worker::Result<Response> {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        Ok(Response::from_json(&body)?.with_status(self.status))
    }
}

impl From<worker::Error> for ApiError {
    fn from(error: worker::Error) -> Self {
        console_error!("internal error: {error}");
        Self::new(500, "internal", "internal error")
    }
}

impl From<kyc_core::config::ConfigError> for ApiError {
    fn from(error: kyc_core::config::ConfigError) -> Self {
        console_error!("configuration error: {error}");
        Self::new(
            500,
            "misconfigured",
            format!("configuration error: {error}"),
        )
    }
}
