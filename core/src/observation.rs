//! What a provider told us about a subject, and when.

use crate::status::{Aml, KycStatus};
use serde::{Deserialize, Serialize};

/// Where an observation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// An authenticated webhook body applied as it is (Align HMAC + `kycs` + `created_at`).
    Webhook,
    /// An authoritative fetch from the provider's API.
    Poll,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Webhook => "webhook",
            Source::Poll => "poll",
        }
    }
}

/// One reading of a subject's state.
///
/// Invariant: `observed_at` orders observations: a poll's is the time the response arrived,
/// a webhook body's is the provider's own timestamp (never later than when we received it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub status: KycStatus,
    /// The provider's raw status word (`kycs.status`, `kyc.result`).
    pub provider_status: Option<String>,
    pub sub_status: Option<String>,
    /// `None` when this reading says nothing about AML (it keeps what is on record).
    pub aml: Option<Aml>,
    /// When the provider says the status took effect, if it says.
    pub status_at: Option<i64>,
    pub observed_at: i64,
    pub source: Source,
}
