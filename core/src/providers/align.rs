//! Align (AlignLabs): `x-hmac-signature` webhooks and `GET /v0/customers/{id}`.
//! Protocol facts: shared/reference/providers.md §1.

use super::{
    event_kind, join_url, json_error, ApiError, InboundWebhook, IngressError, ProviderProtocol,
    StatusRequest, WebhookEvent, WebhookSubject,
};
use crate::headers;
use crate::observation::{Observation, Source};
use crate::secret::Secret;
use crate::status::{provider_value, KycStatus};
use crate::subject::{RefKind, SubjectRef};
use crate::timefmt::parse_rfc3339;
use crate::transition::Announcement;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

pub const KYCS_UPDATED: &str = "customer.kycs.updated";
const RESUBMISSION_REQUIRED: &str = "kyc_form_resubmission_required";

#[derive(Debug, Clone)]
pub struct Align {
    api_key: Secret,
    api_base: String,
}

impl Align {
    pub fn new(api_key: Secret, api_base: String) -> Self {
        Self { api_key, api_base }
    }
}

/// Check `x-hmac-signature` = hex(HMAC-SHA256(api key, raw body)), either hex case, in
/// constant time (`verify_slice`). Runs before any parsing.
pub fn verify_signature(
    api_key: &Secret,
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), IngressError> {
    let signature = signature
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(IngressError::Unauthenticated("missing x-hmac-signature"))?;
    let invalid = IngressError::Unauthenticated("invalid x-hmac-signature");
    let presented = hex::decode(signature).map_err(|_| invalid.clone())?;
    // A truncated signature must fail, not verify a prefix.
    if presented.len() != 32 {
        return Err(invalid);
    }
    let mut mac =
        Hmac::<Sha256>::new_from_slice(api_key.expose().as_bytes()).map_err(|_| invalid.clone())?;
    mac.update(body);
    mac.verify_slice(&presented).map_err(|_| invalid)
}

/// Only the fields we keep. Everything else in the payload (names, e-mail, address) is
/// never deserialized.
#[derive(Deserialize)]
struct WireEvent {
    event_type: Option<String>,
    entity_id: Option<String>,
    entity_type: Option<String>,
    created_at: Option<Value>,
    entity_object: Option<WireCustomer>,
}

#[derive(Deserialize)]
struct WireCustomer {
    customer_id: Option<String>,
    kycs: Option<Value>,
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
fn read_kycs(kycs: Option<&Value>) -> Result<KycReading, String> {
    let kyc = match kycs {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => items.first().cloned(),
        Some(object @ Value::Object(_)) => Some(object.clone()),
        Some(_) => return Err("kycs is neither an object nor an array".into()),
    };
    let kyc: Option<WireKyc> = kyc
        .map(serde_json::from_value)
        .transpose()
        .map_err(|_| "kycs has an unexpected shape".to_owned())?;
    let (status, sub_status) = kyc.map_or((None, None), |k| (k.status, k.sub_status));
    Ok(map_status(status.as_deref(), sub_status.as_deref()))
}

/// The status table of PRODUCT.md for Align.
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
        provider_status: status.and_then(provider_value),
        sub_status: sub_status.and_then(provider_value),
    }
}

impl ProviderProtocol for Align {
    fn authenticate(&self, webhook: &InboundWebhook<'_>) -> Result<(), IngressError> {
        let signature = (webhook.header)(headers::ALIGN_SIGNATURE);
        verify_signature(&self.api_key, webhook.body, signature.as_deref())
    }

    fn parse_webhook(&self, body: &[u8], received_at: i64) -> Result<WebhookEvent, IngressError> {
        let wire: WireEvent =
            serde_json::from_slice(body).map_err(|e| IngressError::Malformed(json_error(&e)))?;
        let event_type = wire
            .event_type
            .ok_or_else(|| IngressError::Malformed("event_type is missing".into()))?;
        let entity_id = wire
            .entity_id
            .ok_or_else(|| IngressError::Malformed("entity_id is missing".into()))?;
        // A timestamp later than its arrival cannot be true; capping it keeps a skewed clock
        // from outranking the polls that follow.
        let provider_at = wire
            .created_at
            .as_ref()
            .and_then(Value::as_str)
            .and_then(parse_rfc3339)
            .map(|at| at.min(received_at));
        let about_customer =
            event_type == KYCS_UPDATED || wire.entity_type.as_deref() == Some("customer");
        if !about_customer {
            return Ok(WebhookEvent {
                subject: None,
                kind: event_kind(Some(&event_type)),
                provider_at,
                announces: Announcement::Nothing,
                trusted: None,
            });
        }
        let subject_ref = SubjectRef::parse(&entity_id)
            .map_err(|e| IngressError::Malformed(format!("entity_id {e}")))?;
        let subject = Some(WebhookSubject {
            subject_ref,
            ref_kind: RefKind::User,
        });
        if event_type != KYCS_UPDATED {
            return Ok(WebhookEvent {
                subject,
                kind: event_kind(Some(&event_type)),
                provider_at,
                announces: Announcement::Nothing,
                trusted: None,
            });
        }
        let Some(customer) = wire.entity_object else {
            // Older payloads carry no entity_object: the fetch decides.
            return Ok(WebhookEvent {
                subject,
                kind: KYCS_UPDATED.to_owned(),
                provider_at,
                announces: Announcement::AnyChange,
                trusted: None,
            });
        };
        if customer.customer_id.is_some_and(|id| id != entity_id) {
            return Err(IngressError::Malformed(
                "entity_object.customer_id differs from entity_id".into(),
            ));
        }
        let reading = read_kycs(customer.kycs.as_ref()).map_err(IngressError::Malformed)?;
        let trusted = provider_at.map(|at| Observation {
            status: reading.status,
            provider_status: reading.provider_status.clone(),
            sub_status: reading.sub_status.clone(),
            aml: None,
            status_at: Some(at),
            observed_at: at,
            source: Source::Webhook,
        });
        Ok(WebhookEvent {
            subject,
            kind: KYCS_UPDATED.to_owned(),
            provider_at,
            announces: Announcement::Status(reading.status),
            trusted,
        })
    }

    fn status_request(&self, subject_ref: &SubjectRef, _ref_kind: RefKind) -> StatusRequest {
        StatusRequest {
            url: join_url(&self.api_base, &format!("/v0/customers/{subject_ref}")),
            headers: vec![(
                headers::ALIGN_AUTHORIZATION,
                self.api_key.expose().to_owned(),
            )],
        }
    }

    fn parse_status(
        &self,
        body: &[u8],
        subject_ref: &SubjectRef,
        _ref_kind: RefKind,
        fetched_at: i64,
    ) -> Result<Observation, ApiError> {
        let customer: WireCustomer =
            serde_json::from_slice(body).map_err(|e| ApiError::Malformed(json_error(&e)))?;
        if customer
            .customer_id
            .is_some_and(|id| id != subject_ref.as_str())
        {
            return Err(ApiError::WrongSubject);
        }
        let reading = read_kycs(customer.kycs.as_ref()).map_err(ApiError::Malformed)?;
        Ok(Observation {
            status: reading.status,
            provider_status: reading.provider_status,
            sub_status: reading.sub_status,
            aml: None,
            status_at: None,
            observed_at: fetched_at,
            source: Source::Poll,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../tests/fixtures/align/key.txt");
    const NOW: i64 = 1_795_000_000_000; // 2026-11-17, after every fixture's created_at

    fn align() -> Align {
        Align::new(Secret::new(KEY).unwrap(), "http://127.0.0.1:9/".into())
    }

    fn key() -> Secret {
        Secret::new(KEY).unwrap()
    }

    macro_rules! vector {
        ($name:literal) => {
            (
                include_bytes!(concat!("../../tests/fixtures/align/", $name, ".json")).as_slice(),
                include_str!(concat!("../../tests/fixtures/align/", $name, ".sig")),
            )
        };
    }

    const VECTORS: [(&[u8], &str); 4] = [
        vector!("kycs_updated_object"),
        vector!("kycs_updated_array"),
        vector!("kycs_updated_bare"),
        vector!("onramp_status"),
    ];

    #[test]
    fn openssl_vectors_verify() {
        for (body, sig) in VECTORS {
            assert_eq!(verify_signature(&key(), body, Some(sig)), Ok(()));
        }
    }

    #[test]
    fn upper_case_hex_verifies() {
        let (body, sig) = VECTORS[0];
        assert_eq!(
            verify_signature(&key(), body, Some(&sig.to_uppercase())),
            Ok(())
        );
    }

    #[test]
    fn a_tampered_body_fails() {
        let (body, sig) = VECTORS[0];
        let mut tampered = body.to_vec();
        let at = tampered.windows(8).position(|w| w == b"approved").unwrap();
        tampered[at..at + 8].copy_from_slice(b"rejected");
        assert_eq!(
            verify_signature(&key(), &tampered, Some(sig)),
            Err(IngressError::Unauthenticated("invalid x-hmac-signature"))
        );
    }

    #[test]
    fn a_wrong_key_fails() {
        let (body, sig) = VECTORS[0];
        let other = Secret::new("sk_test_align_other").unwrap();
        assert!(verify_signature(&other, body, Some(sig)).is_err());
    }

    #[test]
    fn missing_empty_truncated_or_garbage_signatures_fail() {
        let (body, sig) = VECTORS[0];
        let missing = Err(IngressError::Unauthenticated("missing x-hmac-signature"));
        assert_eq!(verify_signature(&key(), body, None), missing);
        assert_eq!(verify_signature(&key(), body, Some("  ")), missing);
        for bad in [
            &sig[..62],
            &sig[..2],
            "zz",
            "sha256=abc",
            &format!("{sig}00"),
        ] {
            assert_eq!(
                verify_signature(&key(), body, Some(bad)),
                Err(IngressError::Unauthenticated("invalid x-hmac-signature")),
                "{bad}"
            );
        }
    }

    #[test]
    fn authenticate_reads_the_header() {
        let (body, sig) = VECTORS[0];
        let header = |name: &str| (name == "x-hmac-signature").then(|| sig.to_owned());
        let webhook = InboundWebhook {
            path_token: None,
            client_ip: None,
            header: &header,
            body,
        };
        assert_eq!(align().authenticate(&webhook), Ok(()));
        let none = |_: &str| None;
        let unsigned = InboundWebhook {
            header: &none,
            ..webhook
        };
        assert!(align().authenticate(&unsigned).is_err());
    }

    #[test]
    fn kycs_object_is_a_trusted_reading_at_created_at() {
        let event = align().parse_webhook(VECTORS[0].0, NOW).unwrap();
        let created_at = parse_rfc3339("2026-11-20T10:15:30.250Z").unwrap();
        // NOW is before created_at: the claim is capped to its arrival.
        assert_eq!(event.provider_at, Some(created_at.min(NOW)));
        let later = created_at + 1000;
        let event = align().parse_webhook(VECTORS[0].0, later).unwrap();
        assert_eq!(event.kind, KYCS_UPDATED);
        assert_eq!(
            event.subject.unwrap().subject_ref.as_str(),
            "123e4567-e89b-12d3-a456-426614174000"
        );
        assert_eq!(event.announces, Announcement::Status(KycStatus::Approved));
        let trusted = event.trusted.unwrap();
        assert_eq!(trusted.status, KycStatus::Approved);
        assert_eq!(
            trusted.sub_status.as_deref(),
            Some("kyc_form_submission_accepted")
        );
        assert_eq!(trusted.observed_at, created_at);
        assert_eq!(trusted.source, Source::Webhook);
    }

    #[test]
    fn kycs_array_reads_its_first_element() {
        let event = align().parse_webhook(VECTORS[1].0, NOW * 2).unwrap();
        assert_eq!(
            event.announces,
            Announcement::Status(KycStatus::ResubmissionRequired)
        );
        let trusted = event.trusted.unwrap();
        assert_eq!(trusted.provider_status.as_deref(), Some("rejected"));
        assert_eq!(
            trusted.observed_at,
            parse_rfc3339("2026-11-20T10:00:00Z").unwrap()
        );
    }

    #[test]
    fn without_entity_object_the_webhook_is_only_a_trigger() {
        let event = align().parse_webhook(VECTORS[2].0, NOW * 2).unwrap();
        assert!(event.subject.is_some());
        assert_eq!(event.announces, Announcement::AnyChange);
        assert_eq!(event.trusted, None);
    }

    #[test]
    fn other_event_types_are_recorded_not_applied() {
        let event = align().parse_webhook(VECTORS[3].0, NOW * 2).unwrap();
        assert_eq!(event.kind, "onramp_transfer.status.updated");
        assert_eq!(event.subject, None);
        assert_eq!(event.announces, Announcement::Nothing);
        assert_eq!(event.trusted, None);
        let unknown =
            br#"{"event_type":"customer.created","entity_id":"c1","entity_type":"customer"}"#;
        let event = align().parse_webhook(unknown, NOW).unwrap();
        assert_eq!(event.subject.unwrap().subject_ref.as_str(), "c1");
        assert_eq!(event.trusted, None);
    }

    #[test]
    fn an_unparseable_created_at_is_not_trusted() {
        let body = br#"{"event_type":"customer.kycs.updated","entity_id":"c1","created_at":"yesterday","entity_object":{"kycs":{"status":"approved"}}}"#;
        let event = align().parse_webhook(body, NOW).unwrap();
        assert_eq!(event.announces, Announcement::Status(KycStatus::Approved));
        assert_eq!(event.trusted, None);
    }

    #[test]
    fn malformed_bodies_are_refused_without_quoting_them() {
        let cases: [&[u8]; 6] = [
            b"not json",
            br#"{"entity_id":"c1"}"#,
            br#"{"event_type":"customer.kycs.updated"}"#,
            br#"{"event_type":"customer.kycs.updated","entity_id":"a/b"}"#,
            br#"{"event_type":"customer.kycs.updated","entity_id":"c1","entity_object":{"customer_id":"c2"}}"#,
            br#"{"event_type":"customer.kycs.updated","entity_id":"c1","entity_object":{"kycs":"jane@example.com"}}"#,
        ];
        for body in cases {
            match align().parse_webhook(body, NOW) {
                Err(IngressError::Malformed(why)) => assert!(!why.contains("jane"), "{why}"),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }

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
                Some("kyc_form_resubmission_required"),
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
    fn status_request_uses_the_raw_key() {
        let ref_ = SubjectRef::parse("c-1").unwrap();
        let req = align().status_request(&ref_, RefKind::User);
        assert_eq!(req.url, "http://127.0.0.1:9/v0/customers/c-1");
        assert_eq!(req.headers, vec![("authorization", KEY.to_owned())]);
    }

    #[test]
    fn customer_answers_map_and_must_be_about_the_subject() {
        let ref_ = SubjectRef::parse("c-1").unwrap();
        let body = br#"{"customer_id":"c-1","email":"a@b.c","kycs":{"status":"pending","sub_status":"kyc_form_submission_started"}}"#;
        let obs = align()
            .parse_status(body, &ref_, RefKind::User, NOW)
            .unwrap();
        assert_eq!(
            (obs.status, obs.observed_at, obs.source),
            (KycStatus::Pending, NOW, Source::Poll)
        );
        let other = br#"{"customer_id":"c-2","kycs":null}"#;
        assert_eq!(
            align().parse_status(other, &ref_, RefKind::User, NOW),
            Err(ApiError::WrongSubject)
        );
        assert!(align()
            .parse_status(b"<html>", &ref_, RefKind::User, NOW)
            .is_err());
    }
}
