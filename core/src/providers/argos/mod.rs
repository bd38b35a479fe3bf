//! ARGOS Identity ID Check: `webhook_trigger` webhooks and `GET /v3/submission`.
//! Protocol facts, the status mapping, and what is assumed rather than confirmed:
//! docs/providers/argos.md.
//!
//! ARGOS signs nothing. A webhook is accepted on a secret URL token and, when configured, the
//! sender's address; its body (even a decrypted one: ECB has no integrity) is never trusted.
//! Every webhook is only a trigger, and the API answer decides the status.

mod envelope;
mod listing;
mod submissions;
mod webhook;

use super::{
    check_client_ip, AnswerError, CheckTarget, InboundWebhook, IngressError, ListPage, ListWalk,
    ProviderProtocol, Registration, StatusCheck, StatusRequest, Unauthenticated, WebhookEvent,
};
use crate::config::{to_u32, ConfigError, Vars};
use crate::secret::Secret;
use crate::status::KycStatus;
use crate::subject::RefKind;
use crate::time::{parse_argos, parse_rfc3339, Timestamp};
use serde_json::Value;
use std::net::IpAddr;
use submissions::SubmissionsCheck;

/// How webhook bodies arrive (`ARGOS_ENCRYPTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// Plain JSON.
    Off,
    /// `{"data": "<base64>"}`: AES-256-ECB with key = SHA-256(API key), PKCS#7 padding.
    Aes256Ecb,
}

/// Pages of a user's submissions one check reads at most (50 submissions a page).
pub const DEFAULT_MAX_PAGES: u32 = 10;
pub const DEFAULT_API_BASE: &str = "https://rest-api.argosidentity.com";
/// REST authentication.
const API_KEY_HEADER: &str = "x-api-key";

pub const REGISTRATION: Registration = Registration {
    name: "argos",
    // ARGOS signs nothing: a secret path segment authenticates its webhooks.
    webhook_token_in_path: true,
    ref_kinds: &[RefKind::User, RefKind::Submission],
    // 500,000 requests a day (docs/providers/argos.md): far above what a cron run asks.
    max_checks_per_run: None,
    secrets: &["ARGOS_API_KEY", "ARGOS_WEBHOOK_TOKEN"],
    configure,
};

/// `ARGOS_API_KEY` and `ARGOS_WEBHOOK_TOKEN` together enable ARGOS.
fn configure(vars: &Vars<'_>) -> Result<Option<Box<dyn ProviderProtocol>>, ConfigError> {
    let encryption = vars.one_of(
        "ARGOS_ENCRYPTION",
        Encryption::Off,
        &[
            ("off", Encryption::Off),
            ("aes-256-ecb", Encryption::Aes256Ecb),
        ],
    )?;
    let max_pages = to_u32(
        "ARGOS_MAX_PAGES",
        vars.positive_or("ARGOS_MAX_PAGES", i64::from(DEFAULT_MAX_PAGES))?,
    )?;
    let (Some(api_key), Some(webhook_token)) = (
        vars.secret("ARGOS_API_KEY"),
        vars.token("ARGOS_WEBHOOK_TOKEN")?,
    ) else {
        return Ok(None);
    };
    // Off only when told so: an empty or missing list is a mistake, not "anyone".
    let allowed_ips = match vars.text("ARGOS_ALLOWED_IPS").as_deref() {
        Some("any") => vec![],
        _ => {
            let ips = vars.ip_list("ARGOS_ALLOWED_IPS")?;
            if ips.is_empty() {
                return Err(ConfigError {
                    key: "ARGOS_ALLOWED_IPS",
                    problem: "is empty: list ARGOS's webhook addresses, or set `any` to accept \
                              webhooks from any address (the URL token still applies)"
                        .into(),
                });
            }
            ips
        }
    };
    let require_registered = vars.one_of(
        "ARGOS_REQUIRE_REGISTERED",
        false,
        &[("true", true), ("false", false)],
    )?;
    Ok(Some(Box::new(
        Argos::new(
            api_key,
            webhook_token,
            // ARGOS documents its base both with and without `/v3`; paths carry it.
            vars.endpoint("ARGOS_API_BASE", DEFAULT_API_BASE)?
                .trim_end_matches('/')
                .trim_end_matches("/v3")
                .to_owned(),
            allowed_ips,
            encryption,
            max_pages,
        )
        .requiring_registered(require_registered),
    )))
}

#[derive(Debug, Clone)]
pub struct Argos {
    api_key: Secret,
    webhook_token: Secret,
    api_base: String,
    /// Empty = any address (the URL token still applies).
    allowed_ips: Vec<IpAddr>,
    encryption: Encryption,
    max_pages: u32,
    /// `ARGOS_REQUIRE_REGISTERED`: webhooks about refs never registered are ignored.
    require_registered: bool,
}

impl Argos {
    pub fn new(
        api_key: Secret,
        webhook_token: Secret,
        api_base: String,
        allowed_ips: Vec<IpAddr>,
        encryption: Encryption,
        max_pages: u32,
    ) -> Self {
        Self {
            api_key,
            webhook_token,
            api_base,
            allowed_ips,
            encryption,
            max_pages,
            require_registered: false,
        }
    }

    /// Webhooks about subjects never registered (`PUT`, import, backfill) are acknowledged
    /// and ignored: the Liveform `userid` is the end user's to edit.
    pub fn requiring_registered(mut self, require: bool) -> Self {
        self.require_registered = require;
        self
    }
}

/// Webhooks carry ISO-8601, the API `YYYY-MM-DD-HH-MM-SS-ZZZ`; the two cannot be confused,
/// so either is read wherever it appears. Anything else is absent.
fn timestamp(value: &Value) -> Option<Timestamp> {
    let text = value.as_str()?;
    parse_rfc3339(text).or_else(|| parse_argos(text))
}

/// ARGOS result words (`kyc_result.status`, `data.kyc_result`, `kyc.result`). The docs
/// misspell "imcomplete" once (docs/providers/argos.md), so that spelling means the same.
fn map_result(word: &str) -> Option<KycStatus> {
    match word.trim() {
        "approved" => Some(KycStatus::Approved),
        "rejected" => Some(KycStatus::Rejected),
        "pending" => Some(KycStatus::Pending),
        "incomplete" | "imcomplete" => Some(KycStatus::Incomplete),
        _ => None,
    }
}

impl ProviderProtocol for Argos {
    /// The sender's address first, when a list is set (a disallowed address learns nothing
    /// about the token), then the URL token (constant time).
    fn authenticate(&self, webhook: &InboundWebhook<'_>) -> Result<(), IngressError> {
        // The address first: a sender that is not allowed learns nothing about the token.
        check_client_ip(&self.allowed_ips, webhook.client_ip)?;
        if !self.webhook_token.matches(webhook.path_token.unwrap_or("")) {
            return Err(IngressError::Unauthenticated(Unauthenticated::Invalid(
                "webhook token",
            )));
        }
        Ok(())
    }

    fn requires_registered(&self) -> bool {
        self.require_registered
    }

    fn parse_webhook(
        &self,
        body: &[u8],
        received_at: Timestamp,
    ) -> Result<WebhookEvent, IngressError> {
        match self.encryption {
            Encryption::Off => webhook::read(body, received_at),
            Encryption::Aes256Ecb => {
                webhook::read(&envelope::decrypt(&self.api_key, body)?, received_at)
            }
        }
    }

    fn check(&self, target: CheckTarget) -> Box<dyn StatusCheck + '_> {
        Box::new(SubmissionsCheck::new(self, target))
    }

    fn list_request(&self, walk: &ListWalk<'_>) -> Result<StatusRequest, String> {
        listing::request(self, walk)
    }

    fn read_list(&self, body: &[u8]) -> Result<ListPage, AnswerError> {
        listing::read(body)
    }
}

#[cfg(test)]
pub(crate) mod tests;
