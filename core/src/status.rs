//! The normalized status model: the statuses are listed in README.md ("Application API
//! (v1)"), and each provider's mapping onto them in docs/providers/<provider>.md.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KycStatus {
    /// Registered, nothing learned from the provider yet.
    Unknown,
    NotStarted,
    /// Started, not submitted.
    Incomplete,
    /// Under review.
    Pending,
    ResubmissionRequired,
    Approved,
    Rejected,
}

impl KycStatus {
    pub const ALL: [KycStatus; 7] = [
        KycStatus::Unknown,
        KycStatus::NotStarted,
        KycStatus::Incomplete,
        KycStatus::Pending,
        KycStatus::ResubmissionRequired,
        KycStatus::Approved,
        KycStatus::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KycStatus::Unknown => "unknown",
            KycStatus::NotStarted => "not_started",
            KycStatus::Incomplete => "incomplete",
            KycStatus::Pending => "pending",
            KycStatus::ResubmissionRequired => "resubmission_required",
            KycStatus::Approved => "approved",
            KycStatus::Rejected => "rejected",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Decided by the provider. Terminal subjects are still re-checked, slowly, because
    /// providers can flip decisions (ARGOS `updated`, Align resubmission).
    pub fn is_terminal(self) -> bool {
        matches!(self, KycStatus::Approved | KycStatus::Rejected)
    }
}

impl fmt::Display for KycStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An AML screening result (ARGOS `aml_result`): provider vocabulary, kept as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aml {
    pub status: String,
    pub risk_level: Option<String>,
}

/// Longest provider vocabulary value we keep. Anything longer is not a status word.
pub const MAX_PROVIDER_VALUE_LEN: usize = 64;

/// A provider status word, bounded, so a hostile or broken payload cannot make us store
/// free text (which could carry PII) in a status column.
pub fn provider_value(value: &str) -> Option<String> {
    let value = value.trim();
    let ok = !value.is_empty()
        && value.len() <= MAX_PROVIDER_VALUE_LEN
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _-.".contains(c));
    ok.then(|| value.to_owned())
}

/// Longest provider status word kept in `provider_status`.
pub const MAX_STATUS_WORD_LEN: usize = 40;

/// A provider's status word (`provider_status`, Align's `sub_status`, ARGOS's `result`): one
/// token of letters, digits and `_ - .` starting with a letter, never free text. A name
/// ("Jane Doe"), an address, a date or a sentence put there by a broken or hostile payload is
/// dropped, not stored.
pub fn status_word(value: &str) -> Option<String> {
    let value = value.trim();
    let ok = value.len() <= MAX_STATUS_WORD_LEN
        && value.starts_with(|c: char| c.is_ascii_alphabetic())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    ok.then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words_are_never_free_text() {
        for word in [
            "approved",
            "in_review",
            "kyc_form_submission_accepted",
            "v2.pending",
        ] {
            assert_eq!(status_word(word).as_deref(), Some(word));
        }
        for text in [
            "Jane Doe",
            "jane@example.com",
            "1990-01-01",
            "",
            "rejected: passport of Jane Doe expired",
            &"a".repeat(41),
        ] {
            assert_eq!(status_word(text), None, "{text:?}");
        }
    }

    #[test]
    fn status_names_round_trip() {
        for s in KycStatus::ALL {
            assert_eq!(KycStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(KycStatus::parse("APPROVED"), None);
    }

    #[test]
    fn only_decisions_are_terminal() {
        let terminal: Vec<_> = KycStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(terminal, [KycStatus::Approved, KycStatus::Rejected]);
    }

    #[test]
    fn provider_values_are_bounded_words() {
        assert_eq!(
            provider_value(" Not Screened "),
            Some("Not Screened".into())
        );
        assert_eq!(
            provider_value("kyc_form_resubmission_required"),
            Some("kyc_form_resubmission_required".into())
        );
        assert_eq!(provider_value(""), None);
        assert_eq!(provider_value("john@example.com"), None);
        assert_eq!(provider_value(&"a".repeat(65)), None);
    }
}
