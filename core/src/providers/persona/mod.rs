//! Persona: `Persona-Signature` webhooks (JSON:API events about inquiries) and
//! `GET /api/v1/inquiries?filter[reference-id]=…`. Protocol facts, the status mapping, and
//! what is assumed rather than confirmed: docs/providers/persona.md.
//!
//! A webhook is signed and dated, but it describes one inquiry while a user's status is read
//! across all their inquiries (the newest decided one, else the newest): a webhook is only a
//! trigger, and the API answer decides.

mod inquiries;
mod signature;
mod webhook;

pub use signature::{verify as verify_signature, SignatureError};

use super::{
    check_client_ip, AnswerError, CheckTarget, InboundWebhook, IngressError, ListPage, ListWalk,
    ProviderProtocol, Registration, StatusCheck, StatusRequest, Unauthenticated, WebhookEvent,
};
use crate::config::{to_u32, ConfigError, Vars};
use crate::secret::Secret;
use crate::status::KycStatus;
use crate::subject::RefKind;
use crate::time::Timestamp;
use chrono::TimeDelta;
use std::net::IpAddr;

pub const DEFAULT_API_BASE: &str = "https://api.withpersona.com";
/// The webhook signature header: `t=<unix seconds>,v1=<hex>`, several space-separated sets
/// while a secret rotates.
pub const SIGNATURE_HEADER: &str = "persona-signature";
/// Optional API version pin (`PERSONA_VERSION`, `YYYY-MM-DD`).
const VERSION_HEADER: &str = "persona-version";
const AUTHORIZATION_HEADER: &str = "authorization";
/// Pages of a user's inquiries one check reads at most (`PERSONA_MAX_PAGES`).
pub const DEFAULT_MAX_PAGES: u32 = 10;
/// How old a signature's `t` may be (`PERSONA_SIGNATURE_MAX_AGE_SECONDS`): 4 days. Persona
/// retries a failed delivery for about 3 days and does not say whether a retry is signed
/// afresh, so a tighter bound could refuse its own genuine retries. A replay inside the bound
/// costs little: the event is deduplicated on its `evt_…` id, and at most triggers a check,
/// which is idempotent and reads the truth from Persona's API.
pub const DEFAULT_SIGNATURE_MAX_AGE: TimeDelta = TimeDelta::days(4);
/// How far in the future a `t` may be (Persona's clock ahead of ours).
pub const SIGNATURE_FUTURE_SKEW: TimeDelta = TimeDelta::minutes(5);

pub const REGISTRATION: Registration = Registration {
    name: "persona",
    webhook_token_in_path: false,
    ref_kinds: &[RefKind::User],
    // 300 requests a minute per environment; a cron run's checks go out within about a
    // minute, and a check may read more than one page: 200 leaves a third of the minute for
    // webhook-triggered checks and extra pages.
    max_checks_per_run: Some(200),
    secrets: &["PERSONA_API_KEY", "PERSONA_WEBHOOK_SECRET"],
    configure,
};

/// `PERSONA_API_KEY` and `PERSONA_WEBHOOK_SECRET` together enable Persona.
fn configure(vars: &Vars<'_>) -> Result<Option<Box<dyn ProviderProtocol>>, ConfigError> {
    let require_decision = vars.one_of(
        "PERSONA_REQUIRE_DECISION",
        false,
        &[("true", true), ("false", false)],
    )?;
    let max_pages = to_u32(
        "PERSONA_MAX_PAGES",
        vars.positive_or("PERSONA_MAX_PAGES", i64::from(DEFAULT_MAX_PAGES))?,
    )?;
    let max_age = vars.seconds(
        "PERSONA_SIGNATURE_MAX_AGE_SECONDS",
        DEFAULT_SIGNATURE_MAX_AGE,
    )?;
    let version = match vars.text("PERSONA_VERSION") {
        None => None,
        Some(v) if is_version(&v) => Some(v),
        Some(v) => {
            return Err(ConfigError {
                key: "PERSONA_VERSION",
                problem: format!("{v:?} is not a date YYYY-MM-DD"),
            })
        }
    };
    let (Some(api_key), Some(webhook_secret)) = (
        vars.secret("PERSONA_API_KEY"),
        vars.secret("PERSONA_WEBHOOK_SECRET"),
    ) else {
        return Ok(None);
    };
    Ok(Some(Box::new(Persona {
        api_key,
        webhook_secret,
        api_base: vars
            .endpoint("PERSONA_API_BASE", DEFAULT_API_BASE)?
            .trim_end_matches('/')
            .to_owned(),
        version,
        allowed_ips: vars.ip_list("PERSONA_ALLOWED_IPS")?,
        require_decision,
        max_pages,
        max_age,
    })))
}

/// `YYYY-MM-DD`, digits only: the value goes into a request header.
fn is_version(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

#[derive(Debug, Clone)]
pub struct Persona {
    api_key: Secret,
    webhook_secret: Secret,
    api_base: String,
    version: Option<String>,
    /// Empty = any address (the signature still applies).
    allowed_ips: Vec<IpAddr>,
    /// `completed` is not a decision: the customer's workflow or reviewer decides.
    require_decision: bool,
    max_pages: u32,
    max_age: TimeDelta,
}

impl Persona {
    pub fn new(api_key: Secret, webhook_secret: Secret, api_base: String) -> Self {
        Self {
            api_key,
            webhook_secret,
            api_base,
            version: None,
            allowed_ips: vec![],
            require_decision: false,
            max_pages: DEFAULT_MAX_PAGES,
            max_age: DEFAULT_SIGNATURE_MAX_AGE,
        }
    }

    /// The headers of every API request.
    fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![(
            AUTHORIZATION_HEADER,
            format!("Bearer {}", self.api_key.expose()),
        )];
        if let Some(version) = &self.version {
            headers.push((VERSION_HEADER, version.clone()));
        }
        headers
    }
}

/// An inquiry status as docs/providers/persona.md maps it. `None`: not a status Persona documents.
pub fn map_status(word: &str, require_decision: bool) -> Option<KycStatus> {
    match word.trim() {
        "created" => Some(KycStatus::NotStarted),
        "pending" | "expired" => Some(KycStatus::Incomplete),
        "needs_review" => Some(KycStatus::Pending),
        "completed" if require_decision => Some(KycStatus::Pending),
        "completed" | "approved" => Some(KycStatus::Approved),
        "declined" | "failed" => Some(KycStatus::Rejected),
        _ => None,
    }
}

/// Statuses that count as decided when choosing the inquiry that stands for a user.
pub fn is_decided(word: &str) -> bool {
    matches!(
        word.trim(),
        "approved" | "declined" | "failed" | "needs_review" | "completed"
    )
}

impl ProviderProtocol for Persona {
    /// Fails closed: a dated signature cannot be judged without the time it arrived
    /// ([`ProviderProtocol::authenticate_at`] is the route's call).
    fn authenticate(&self, _webhook: &InboundWebhook<'_>) -> Result<(), IngressError> {
        Err(IngressError::Unauthenticated(
            Unauthenticated::NeedsArrivalTime("Persona-Signature"),
        ))
    }

    /// The signature (any set of the header, its `t` within the bound), then the sender's
    /// address when a list is set.
    fn authenticate_at(
        &self,
        webhook: &InboundWebhook<'_>,
        received_at: Timestamp,
    ) -> Result<(), IngressError> {
        let header = (webhook.header)(SIGNATURE_HEADER);
        signature::verify(
            &self.webhook_secret,
            webhook.body,
            header.as_deref(),
            received_at,
            self.max_age,
        )
        .map_err(|e| IngressError::Unauthenticated(e.into()))?;
        check_client_ip(&self.allowed_ips, webhook.client_ip)
    }

    fn parse_webhook(
        &self,
        body: &[u8],
        received_at: Timestamp,
    ) -> Result<WebhookEvent, IngressError> {
        webhook::read(body, received_at, self.require_decision)
    }

    fn check(&self, target: CheckTarget) -> Box<dyn StatusCheck + '_> {
        Box::new(inquiries::InquiriesCheck::new(self, target))
    }

    fn list_request(&self, walk: &ListWalk<'_>) -> Result<StatusRequest, String> {
        inquiries::list_request(self, walk)
    }

    fn read_list(&self, body: &[u8]) -> Result<ListPage, AnswerError> {
        inquiries::read_list(body)
    }
}

#[cfg(test)]
mod tests;
