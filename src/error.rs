//! The errors of the adapter's boundaries: storage (`StoreError`) and the HTTP answer
//! (`ApiError`, whose status comes from a fixed code). A 500 says little; the log says why,
//! without payload content or secrets.

use kyc_core::api::ErrorCode;
use kyc_core::config::ConfigError;
use serde_json::json;
use std::fmt;
use worker::Response;

/// A failure of D1, KV or the Queue, or a row this version cannot read.
#[derive(Debug)]
pub enum StoreError {
    D1(String),
    Kv(String),
    Queue(String),
    /// A stored row that does not deserialize into its typed shape.
    Unreadable(String),
    /// The invocation spent its plan's subrequests; the work is retried later.
    OverBudget,
    /// A job's run ended without finishing (D1 failed, writers kept winning its
    /// compare-and-set, a row it could not read); the job is retried later.
    Failed(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::D1(why) => write!(f, "D1: {why}"),
            StoreError::Kv(why) => write!(f, "KV: {why}"),
            StoreError::Queue(why) => write!(f, "queue: {why}"),
            StoreError::Unreadable(why) => write!(f, "unreadable row: {why}"),
            StoreError::OverBudget => f.write_str("subrequest budget spent"),
            StoreError::Failed(why) => f.write_str(why),
        }
    }
}

/// An error answer: a code (which fixes the status), a message safe to show, and for a 405
/// the methods the path allows.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub allow: Option<&'static str>,
    /// What the log records about a 500 (never sent).
    pub cause: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            allow: None,
            cause: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(ErrorCode::MethodNotAllowed, format!("allowed: {allow}"))
        }
    }

    pub fn into_response(self) -> worker::Result<Response> {
        let body = json!({ "error": { "code": self.code.as_str(), "message": self.message } });
        let mut response = Response::from_json(&body)?.with_status(self.code.status());
        if let Some(allow) = self.allow {
            response.headers_mut().set("allow", allow)?;
        }
        Ok(response)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        Self {
            cause: Some(error.to_string()),
            ..Self::new(ErrorCode::Internal, "internal error")
        }
    }
}

impl From<worker::Error> for ApiError {
    fn from(error: worker::Error) -> Self {
        Self {
            cause: Some(error.to_string()),
            ..Self::new(ErrorCode::Internal, "internal error")
        }
    }
}

/// The variable's name and problem go to the log; an unauthenticated caller of a webhook
/// route learns only that the deployment is misconfigured.
impl From<ConfigError> for ApiError {
    fn from(error: ConfigError) -> Self {
        Self {
            cause: Some(format!("configuration error: {error}")),
            ..Self::new(ErrorCode::ConfigurationError, "configuration_error")
        }
    }
}
