//! Align `GET /v0/customers/{id}` answers (`ProviderProtocol::check` →
//! `next_request()` / `read(body, received_at)` / `conclude(sent_at)`). The customer read
//! here is the same object a webhook carries as `entity_object`: both must read it alike.
#![no_main]

use kyc_core::observation::Source;
use kyc_core::providers::align::Align;
use kyc_core::providers::{AnswerError, CheckTarget, IngressError, ProviderProtocol};
use kyc_core::secret::Secret;
use kyc_core::subject::{RefKind, SubjectRef};
use kyc_core::time::seconds;
use kyc_core_fuzz::{assert_no_email_quoted, assert_observation, now, ALIGN_KEY, API_BASE};
use libfuzzer_sys::fuzz_target;

/// The fixtures' customer.
const CUSTOMER: &str = "123e4567-e89b-12d3-a456-426614174000";

fuzz_target!(|body: &[u8]| {
    let align = Align::new(Secret::new(ALIGN_KEY).unwrap(), API_BASE.into());
    let mut check = align.check(CheckTarget {
        subject_ref: SubjectRef::parse(CUSTOMER).unwrap(),
        ref_kind: RefKind::User,
        aml: false,
    });
    let request = check.next_request().expect("one request");
    assert_eq!(
        request.url,
        format!("https://provider.test/v0/customers/{CUSTOMER}")
    );
    assert_eq!(
        request.headers,
        vec![("authorization", ALIGN_KEY.to_owned())]
    );
    let sent_at = now();
    let read = check.read(body, sent_at + seconds(2));
    assert_eq!(check.next_request(), None, "one request is the whole check");

    // The same object as a webhook's entity_object, when it is one JSON value.
    let as_webhook = || {
        let mut webhook = format!(
            r#"{{"event_type":"customer.kycs.updated","entity_id":"{CUSTOMER}","created_at":"2026-01-01T00:00:00Z","entity_object":"#
        )
        .into_bytes();
        webhook.extend_from_slice(body);
        webhook.push(b'}');
        align.parse_webhook(&webhook, sent_at)
    };

    match read {
        Ok(()) => {
            let observation = check.conclude(sent_at).expect("an answer was read");
            assert_observation(&observation);
            assert_eq!(observation.observed_at, sent_at, "stamped when sent");
            assert_eq!(observation.source, Source::Poll);
            assert!(observation.status_at.is_none() && observation.aml.is_none());
            assert!(!observation.no_record);
            // serde_json refuses nesting deeper than 128: one level more in a webhook.
            let openers = body.iter().filter(|&&b| b == b'[' || b == b'{').count();
            if openers >= 120 {
                return;
            }
            let event = as_webhook().expect("the same customer in a webhook");
            let trusted = event.trusted.expect("a kycs.updated reading");
            assert_eq!(
                (trusted.status, trusted.provider_status, trusted.sub_status),
                (
                    observation.status,
                    observation.provider_status,
                    observation.sub_status
                )
            );
        }
        Err(error) => {
            assert_no_email_quoted(&error.to_string(), body);
            assert!(!matches!(error, AnswerError::Incomplete(_)));
            if error == AnswerError::WrongSubject {
                assert!(matches!(as_webhook(), Err(IngressError::Malformed(_))));
            }
            assert!(
                check.conclude(sent_at).is_err(),
                "nothing read, nothing concluded"
            );
        }
    }
});
