//! Align's JSON: only the fields kyc-edge keeps. Everything else in a payload (names,
//! e-mail, address) is never deserialized.

use crate::providers::Malformed;
use crate::status::{status_word, KycStatus};
use serde::Deserialize;
use serde_json::Value;

const RESUBMISSION_REQUIRED: &str = "kyc_form_resubmission_required";

#[derive(Deserialize)]
pub(super) struct WireEvent {
    pub event_type: Option<String>,
    pub entity_id: Option<String>,
    pub entity_type: Option<String>,
    pub created_at: Option<Value>,
    pub entity_object: Option<WireCustomer>,
}

/// `GET /v0/customers/{id}` and a webhook's `entity_object`.
#[derive(Deserialize)]
pub(super) struct WireCustomer {
    pub customer_id: Option<String>,
    pub kycs: Option<Value>,
}

/// `GET /v0/customers`: `{"items": [customer, ...]}`; only each `customer_id` is read.
#[derive(Deserialize)]
pub(super) struct WireCustomerList {
    pub items: Option<Vec<WireListedCustomer>>,
}

#[derive(Deserialize)]
pub(super) struct WireListedCustomer {
    pub customer_id: Option<String>,
}

#[derive(Deserialize)]
struct WireKyc {
    status: Option<String>,
    sub_status: Option<String>,
}

/// A KYC reading: normalized status plus the raw words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KycReading {
    pub status: KycStatus,
    pub provider_status: Option<String>,
    pub sub_status: Option<String>,
}

/// `kycs` arrives as an object, as an array (integrators read its first element), or
/// null/absent for a customer who has not started.
pub(super) fn read_kycs(kycs: Option<&Value>) -> Result<KycReading, Malformed> {
    let kyc = match kycs {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => items.first().cloned(),
        Some(object @ Value::Object(_)) => Some(object.clone()),
        Some(_) => {
            return Err(Malformed::WrongField {
                field: "kycs",
                kind: "an object or an array",
            })
        }
    };
    let kyc: Option<WireKyc> =
        kyc.map(serde_json::from_value)
            .transpose()
            .map_err(|_| Malformed::WrongField {
                field: "kycs",
                kind: "the documented shape",
            })?;
    let (status, sub_status) = kyc.map_or((None, None), |k| (k.status, k.sub_status));
    Ok(map_status(status.as_deref(), sub_status.as_deref()))
}

/// Align's status table (docs/providers/align.md, "Status").
pub fn map_status(status: Option<&str>, sub_status: Option<&str>) -> KycReading {
    let normalized = match status {
        None | Some("not_started") => KycStatus::NotStarted,
        Some("pending") => KycStatus::Pending,
        Some("approved") => KycStatus::Approved,
        Some("rejected") if sub_status == Some(RESUBMISSION_REQUIRED) => {
            KycStatus::ResubmissionRequired
        }
        Some("rejected") => KycStatus::Rejected,
        // A word Align has not documented: kept raw, shown as unknown, never guessed.
        Some(_) => KycStatus::Unknown,
    };
    KycReading {
        status: normalized,
        provider_status: status.and_then(status_word),
        sub_status: sub_status.and_then(status_word),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_table() {
        use KycStatus::*;
        let cases = [
            (None, None, NotStarted),
            (Some("not_started"), None, NotStarted),
            (
                Some("pending"),
                Some("kyc_form_submission_started"),
                Pending,
            ),
            (
                Some("approved"),
                Some("kyc_form_submission_accepted"),
                Approved,
            ),
            (
                Some("rejected"),
                Some(RESUBMISSION_REQUIRED),
                ResubmissionRequired,
            ),
            (Some("rejected"), None, Rejected),
            (Some("rejected"), Some("something_else"), Rejected),
            (Some("in_review"), None, Unknown),
        ];
        for (status, sub, want) in cases {
            assert_eq!(map_status(status, sub).status, want, "{status:?}/{sub:?}");
        }
    }

    #[test]
    fn kycs_null_absent_or_empty_array_is_not_started() {
        for kycs in [None, Some(Value::Null), Some(serde_json::json!([]))] {
            assert_eq!(
                read_kycs(kycs.as_ref()).unwrap().status,
                KycStatus::NotStarted
            );
        }
    }

    #[test]
    fn kycs_of_another_shape_is_refused_without_quoting_it() {
        for kycs in [
            serde_json::json!("jane@example.com"),
            serde_json::json!({"status": 7}),
        ] {
            let why = read_kycs(Some(&kycs)).unwrap_err();
            assert!(!why.to_string().contains("jane"), "{why}");
        }
    }
}
