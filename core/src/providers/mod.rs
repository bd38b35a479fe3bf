//! The provider layer. Each provider is one module implementing [`ProviderProtocol`]:
//! how its webhooks are authenticated and parsed, and how its API is asked for a subject's
//! authoritative state. Sans-IO: the adapter performs the requests these describe.

pub mod align;
pub mod argos;

use crate::observation::Observation;
use crate::subject::{RefKind, SubjectRef};
use crate::transition::Announcement;
use std::fmt;

/// A webhook as it arrived, before anything was parsed.
pub struct InboundWebhook<'a> {
    /// The `{token}` path segment, for providers that authenticate by URL.
    pub path_token: Option<&'a str>,
    /// `CF-Connecting-IP`.
    pub client_ip: Option<&'a str>,
    /// Case-insensitive header lookup.
    pub header: &'a dyn Fn(&str) -> Option<String>,
    /// The exact bytes received.
    pub body: &'a [u8],
}

/// Why a webhook was refused. Nothing is written for any of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngressError {
    /// 401: missing or invalid signature or token.
    Unauthenticated(&'static str),
    /// 403: the sender's address is not allowed.
    Forbidden(&'static str),
    /// 400: authenticated (as far as the provider allows) but not a payload we understand.
    Malformed(String),
}

impl fmt::Display for IngressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IngressError::Unauthenticated(why) | IngressError::Forbidden(why) => f.write_str(why),
            IngressError::Malformed(why) => f.write_str(why),
        }
    }
}

/// Who a webhook is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSubject {
    pub subject_ref: SubjectRef,
    pub ref_kind: RefKind,
}

/// A parsed webhook: ids, the event kind, timestamps and claims. Never PII.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// `None` for events that are not about a KYC subject (Align transfers).
    pub subject: Option<WebhookSubject>,
    /// The provider's event type or trigger, as a bounded word (`unknown` when not one).
    pub kind: String,
    /// The provider's timestamp of the event, when it gives one.
    pub provider_at: Option<i64>,
    pub announces: Announcement,
    /// A reading the webhook proves by itself (authenticated body with a timestamp). It may
    /// be applied without asking the provider; everything else is only a trigger.
    pub trusted: Option<Observation>,
}

/// An API request to learn a subject's authoritative state (always a GET).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
}

/// Why an API answer could not be turned into an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    Malformed(String),
    /// The answer is about someone else: never applied.
    WrongSubject,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Malformed(why) => write!(f, "malformed provider answer: {why}"),
            ApiError::WrongSubject => f.write_str("provider answered about another subject"),
        }
    }
}

pub trait ProviderProtocol {
    /// Fail closed: anything not proven authentic is an error.
    fn authenticate(&self, webhook: &InboundWebhook<'_>) -> Result<(), IngressError>;

    /// Parse an authenticated body. `received_at` bounds provider timestamps: a claim dated
    /// in the future must not outrank the polls that follow it.
    fn parse_webhook(&self, body: &[u8], received_at: i64) -> Result<WebhookEvent, IngressError>;

    fn status_request(&self, subject_ref: &SubjectRef, ref_kind: RefKind) -> StatusRequest;

    /// Turn a 2xx API body into an observation made at `fetched_at`.
    fn parse_status(
        &self,
        body: &[u8],
        subject_ref: &SubjectRef,
        ref_kind: RefKind,
        fetched_at: i64,
    ) -> Result<Observation, ApiError>;
}

/// A provider event kind as a bounded word: event names are not free text.
pub(crate) fn event_kind(value: Option<&str>) -> String {
    value
        .and_then(crate::status::provider_value)
        .unwrap_or_else(|| "unknown".to_owned())
}

/// serde's messages can quote input (PII): say only where the problem is.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    format!(
        "body is not the expected JSON (line {}, column {})",
        e.line(),
        e.column()
    )
}

/// `base` + `path`, tolerating a trailing slash on the configured base.
pub(crate) fn join_url(base: &str, path: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path)
}

/// Percent-encode a query value (refs are already path-safe; this keeps `+`, `@`, `:` exact).
pub(crate) fn query_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The dedup key of a webhook: hex SHA-256 of the exact body. Neither provider sends an
/// event id, and two deliveries of one event carry the same bytes.
pub fn dedup_key(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_key_is_the_sha256_of_the_body() {
        // printf '%s' 'hello' | openssl dgst -sha256
        assert_eq!(
            dedup_key(b"hello"),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(query_value("a+b@c:d~e_f.g-h"), "a%2Bb%40c%3Ad~e_f.g-h");
    }
}
