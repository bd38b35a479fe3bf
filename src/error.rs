//! The errors of the adapter's boundaries: storage (`StoreError`) and the HTTP answer
//! (`ApiError`, whose status comes from a fixed code). A 500 says little; the log says why,
//! without payload content or secrets.

use kyc_core::api::ErrorCode;
use kyc_core::config::ConfigError;
use kyc_core::subject::Provider;
use serde_json::json;
use std::fmt;
use worker::Response;

/// A failure of D1, KV or the Queue (with the platform's error as its source), or a row this
/// version cannot read (with the deserializer's).
#[derive(Debug)]
pub enum StoreError {
    D1(worker::Error),
    Kv(worker::Error),
    Queue(worker::Error),
    /// A stored row that does not deserialize into its typed shape.
    Unreadable(serde_json::Error),
    /// A write that returns its row (`RETURNING`) returned none.
    NotReturned(&'static str),
    /// The invocation spent its plan's subrequests; the work is retried later.
    OverBudget,
    /// A job's run ended without finishing (D1 failed, writers kept winning its
    /// compare-and-set, a row it could not read): the core's run reports why as text, since
    /// it holds no worker types. The job is retried later.
    Unfinished(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::D1(error) => write!(f, "D1: {error}"),
            StoreError::Kv(error) => write!(f, "KV: {error}"),
            StoreError::Queue(error) => write!(f, "queue: {error}"),
            StoreError::Unreadable(error) => write!(f, "unreadable row: {error}"),
            StoreError::NotReturned(what) => write!(f, "{what} was not returned"),
            StoreError::OverBudget => f.write_str("subrequest budget spent"),
            StoreError::Unfinished(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::D1(error) | StoreError::Kv(error) | StoreError::Queue(error) => Some(error),
            StoreError::Unreadable(error) => Some(error),
            StoreError::NotReturned(_) | StoreError::OverBudget | StoreError::Unfinished(_) => None,
        }
    }
}

/// An error answer: a code (which fixes the status, unless a route says otherwise), a message
/// safe to show, and for a 405 the methods the path allows.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub status: u16,
    pub message: String,
    pub allow: Option<&'static str>,
    /// The variables a `provider_not_configured` answer names (`missing`).
    pub missing: Vec<&'static str>,
    /// What the log records about a 500 (never sent).
    pub cause: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            status: code.status(),
            message: message.into(),
            allow: None,
            missing: vec![],
            cause: None,
        }
    }

    /// `provider` is registered but lacks `missing` secrets: 409 for the API (the request
    /// cannot be served as configured); its webhook route answers it with 404.
    pub fn provider_not_configured(provider: Provider, missing: &[&'static str]) -> Self {
        let names = missing.join(", ");
        Self {
            missing: missing.to_vec(),
            ..Self::new(
                ErrorCode::ProviderNotConfigured,
                format!("{provider} is not configured: set {names}"),
            )
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
        let mut error = json!({ "code": self.code.as_str(), "message": self.message });
        if !self.missing.is_empty() {
            error["missing"] = json!(self.missing);
        }
        let mut response =
            Response::from_json(&json!({ "error": error }))?.with_status(self.status);
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
