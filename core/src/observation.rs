//! What a provider told us about a subject, and when.

use crate::status::{Aml, KycStatus};
use crate::time::{as_millis, Timestamp};
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
/// Invariant: `observed_at` is a lower bound of the moment the provider was in this state, so
/// ordering by it never lets an older reading outrank a newer one: an authenticated body's
/// own timestamp (capped at its arrival), or for an API answer the later of when the request
/// was *sent* and the newest decision time the answer carries (capped at its arrival). Never
/// the response time: a slow answer read before a newer one must not outrank it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub status: KycStatus,
    /// The provider's raw status word (`kycs.status`, `kyc.result`).
    pub provider_status: Option<String>,
    pub sub_status: Option<String>,
    /// `None` when this reading says nothing about AML (it keeps what is on record).
    pub aml: Option<Aml>,
    /// When the provider says the status took effect, if it says.
    #[serde(with = "as_millis::option", default)]
    pub status_at: Option<Timestamp>,
    #[serde(with = "as_millis")]
    pub observed_at: Timestamp,
    pub source: Source,
    /// The provider holds no record of the subject at all (ARGOS: no submissions, e.g. after
    /// `delete`). Such a reading never erases a decision.
    #[serde(default)]
    pub no_record: bool,
}
