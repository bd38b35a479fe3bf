//! Sumsub: `X-Payload-Digest` webhooks and `GET /resources/applicants/-;externalUserId=…/one`.
//! Protocol facts, what kyc-edge relies on, and what is assumed rather than confirmed:
//! docs/providers/sumsub.md.
//!
//! A webhook is authenticated by an HMAC of its raw bytes, but it is only a trigger: the
//! applicant's review, read from Sumsub's API with a signed request, decides the status.

mod applicant;
mod digest;
mod signing;
mod webhook;

pub use digest::{verify as verify_digest, DigestAlg};
pub use signing::signature as request_signature;

use super::{
    AnswerError, CheckTarget, InboundWebhook, IngressError, ListPage, ListWalk, ProviderProtocol,
    Registration, StatusCheck, StatusRequest, WebhookEvent,
};
use crate::config::{ConfigError, Vars};
use crate::secret::Secret;
use crate::status::{provider_value, KycStatus};
use crate::subject::RefKind;
use crate::time::Timestamp;
use chrono::{DateTime, Datelike, NaiveDateTime, Utc};

pub const DEFAULT_API_BASE: &str = "https://api.sumsub.com";
/// The webhook's signature and its algorithm.
pub const DIGEST_HEADER: &str = "x-payload-digest";
pub const DIGEST_ALG_HEADER: &str = "x-payload-digest-alg";

/// Sumsub's GET limit is 300 requests per 5 s. The cron queues a run's checks at once and the
/// queue may send them within one such window: 250 leaves 50 for webhook-triggered checks.
pub const MAX_CHECKS_PER_RUN: u32 = 250;

pub const REGISTRATION: Registration = Registration {
    name: "sumsub",
    webhook_token_in_path: false,
    ref_kinds: &[RefKind::User],
    max_checks_per_run: Some(MAX_CHECKS_PER_RUN),
    secrets: &[
        "SUMSUB_APP_TOKEN",
        "SUMSUB_SECRET_KEY",
        "SUMSUB_WEBHOOK_SECRET",
    ],
    configure,
};

/// `SUMSUB_APP_TOKEN`, `SUMSUB_SECRET_KEY` and `SUMSUB_WEBHOOK_SECRET` together enable Sumsub.
fn configure(vars: &Vars<'_>) -> Result<Option<Box<dyn ProviderProtocol>>, ConfigError> {
    let (Some(app_token), Some(secret_key), Some(webhook_secret)) = (
        vars.secret("SUMSUB_APP_TOKEN"),
        vars.secret("SUMSUB_SECRET_KEY"),
        vars.secret("SUMSUB_WEBHOOK_SECRET"),
    ) else {
        return Ok(None);
    };
    let api_base = vars.endpoint("SUMSUB_API_BASE", DEFAULT_API_BASE)?;
    Ok(Some(Box::new(Sumsub::new(
        app_token,
        secret_key,
        webhook_secret,
        api_base,
    ))))
}

/// Which of Sumsub's environments the app token belongs to (its `sbx:` / `prd:` prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Sandbox,
    Production,
    /// A token without either prefix: webhooks' `sandboxMode` cannot be judged against it.
    Unknown,
}

impl Environment {
    pub fn of_token(app_token: &str) -> Self {
        if app_token.starts_with("sbx:") {
            Environment::Sandbox
        } else if app_token.starts_with("prd:") {
            Environment::Production
        } else {
            Environment::Unknown
        }
    }

    /// Whether a body's `sandboxMode` belongs to another environment than the token's.
    fn disagrees_with(self, sandbox_mode: Option<bool>) -> bool {
        matches!(
            (self, sandbox_mode),
            (Environment::Sandbox, Some(false)) | (Environment::Production, Some(true))
        )
    }
}

#[derive(Debug, Clone)]
pub struct Sumsub {
    app_token: Secret,
    secret_key: Secret,
    webhook_secret: Secret,
    api_base: String,
    environment: Environment,
}

impl Sumsub {
    pub fn new(
        app_token: Secret,
        secret_key: Secret,
        webhook_secret: Secret,
        api_base: String,
    ) -> Self {
        let environment = Environment::of_token(app_token.expose());
        Self {
            app_token,
            secret_key,
            webhook_secret,
            api_base,
            environment,
        }
    }
}

/// A review as Sumsub states it: `reviewStatus`, and `reviewAnswer` / `reviewRejectType`,
/// which count only when the review is `completed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Review<'a> {
    pub status: &'a str,
    pub answer: Option<&'a str>,
    pub reject_type: Option<&'a str>,
}

impl Review<'_> {
    /// The mapping in docs/providers/sumsub.md. `None`: a review kyc-edge does not know how
    /// to read (an unknown `reviewStatus`, or `completed` without a GREEN/RED answer): never
    /// guessed.
    pub fn status(&self) -> Option<KycStatus> {
        match self.status.trim() {
            "init" => Some(KycStatus::NotStarted),
            "pending" | "queued" | "prechecked" | "onHold" | "awaitingService" => {
                Some(KycStatus::Pending)
            }
            "completed" => match self.answer.map(str::trim)? {
                "GREEN" => Some(KycStatus::Approved),
                "RED" => match self.reject_type.map(str::trim) {
                    Some("RETRY") => Some(KycStatus::ResubmissionRequired),
                    // FINAL, none, or a type we do not know: a rejection.
                    _ => Some(KycStatus::Rejected),
                },
                _ => None,
            },
            _ => None,
        }
    }

    /// `provider_status`: the review status, a bounded word.
    pub fn provider_status(&self) -> Option<String> {
        provider_value(self.status)
    }

    /// `sub_status`: the answer of a completed review, with its reject type when RED
    /// (`GREEN`, `RED_RETRY`, `RED_FINAL`, `RED`); bounded words only.
    pub fn sub_status(&self) -> Option<String> {
        if self.status.trim() != "completed" {
            return None;
        }
        let answer = provider_value(self.answer?)?;
        match (answer.as_str(), self.reject_type.and_then(provider_value)) {
            ("RED", Some(kind)) => provider_value(&format!("RED_{kind}")),
            _ => Some(answer),
        }
    }
}

/// Sumsub's times: `yyyy-MM-dd HH:mm:ss[.fff]`, UTC (`createdAtMs` in webhooks), or the same
/// followed by an offset such as `+0000` (review dates in API answers). Anything else, or a
/// year no RFC 3339 text can write, is absent.
pub fn parse_time(value: &str) -> Option<Timestamp> {
    let value = value.trim();
    let at = DateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S%.f%z")
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S%.f").map(|t| t.and_utc())
        })
        .ok()?;
    (0..=9999).contains(&at.year()).then_some(at)
}

impl ProviderProtocol for Sumsub {
    fn authenticate(&self, webhook: &InboundWebhook<'_>) -> Result<(), IngressError> {
        let digest = (webhook.header)(DIGEST_HEADER);
        let alg = (webhook.header)(DIGEST_ALG_HEADER);
        verify_digest(
            &self.webhook_secret,
            webhook.body,
            digest.as_deref(),
            alg.as_deref(),
        )
    }

    fn parse_webhook(
        &self,
        body: &[u8],
        received_at: Timestamp,
    ) -> Result<WebhookEvent, IngressError> {
        webhook::read(body, received_at, self.environment)
    }

    fn check(&self, target: CheckTarget) -> Box<dyn StatusCheck + '_> {
        Box::new(applicant::ApplicantCheck::new(self, target))
    }

    /// Sumsub documents no API that lists applicants (none kyc-edge could confirm): a
    /// backfill cannot walk them. Existing applicants are adopted with an import.
    fn list_request(&self, _walk: &ListWalk<'_>) -> Result<StatusRequest, String> {
        Err(NO_LIST.into())
    }

    fn read_list(&self, _body: &[u8]) -> Result<ListPage, AnswerError> {
        Err(AnswerError::Malformed(NO_LIST.into()))
    }
}

const NO_LIST: &str = "Sumsub offers no confirmed API to list applicants: backfill cannot walk \
                       them; adopt existing applicants with an import (scripts/import.mjs) of \
                       their externalUserId";

#[cfg(test)]
mod tests;
