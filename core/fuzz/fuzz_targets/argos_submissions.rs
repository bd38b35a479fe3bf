//! ARGOS `GET /v3/submission` answers, page by page (`ProviderProtocol::check`):
//! `next_request()` / `read(body, received_at)` / `conclude(sent_at)`.
//!
//! Input: one flags byte, then the page bodies separated by NUL bytes (JSON text never
//! contains a raw NUL). Flags: bit 0 = also read AML results, bit 1 = the subject is a
//! submission id (else a user id), bits 2-4 = ARGOS_MAX_PAGES (0-7).
#![no_main]

use kyc_core::observation::Source;
use kyc_core::providers::argos::Encryption;
use kyc_core::providers::{AnswerError, CheckTarget, ProviderProtocol};
use kyc_core::status::KycStatus;
use kyc_core::subject::{RefKind, SubjectRef};
use kyc_core::time::seconds;
use kyc_core_fuzz::{argos, assert_no_email_quoted, assert_observation, now, ARGOS_KEY};
use libfuzzer_sys::fuzz_target;

/// The fixtures' user and one of its submissions.
const USER: &str = "user_8f3a21";
const SUBMISSION: &str = "kSm3Xq9TzW1a";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, pages)) = data.split_first() else {
        return;
    };
    let aml = flags & 1 != 0;
    let (ref_kind, id, field) = if flags & 2 != 0 {
        (RefKind::Submission, SUBMISSION, "submission_id")
    } else {
        (RefKind::User, USER, "userid")
    };
    let max_pages = u32::from((flags >> 2) & 7);
    let argos = argos(Encryption::Off, max_pages);
    let mut check = argos.check(CheckTarget {
        subject_ref: SubjectRef::parse(id).unwrap(),
        ref_kind,
        aml,
    });

    let sent_at = now();
    let mut last_received = sent_at;
    let mut pages = pages.split(|&b| b == 0);
    let per_listing = max_pages.max(1);
    let limit = per_listing * if aml { 2 } else { 1 };
    let mut requests = 0;
    let mut failed = false;
    while let Some(request) = check.next_request() {
        requests += 1;
        assert!(
            requests <= limit,
            "{requests} requests with max_pages {max_pages}"
        );
        // Always a GET of this subject's submissions, with the API key, and nothing else.
        let query = request
            .url
            .strip_prefix("https://provider.test/v3/submission?")
            .unwrap_or_else(|| panic!("unexpected url {}", request.url));
        assert!(query.starts_with(&format!("{field}={id}&request_type=")));
        assert!(query.contains("request_type=kyc") || (aml && query.contains("request_type=aml")));
        assert_eq!(request.headers, vec![("x-api-key", ARGOS_KEY.to_owned())]);
        let Some(page) = pages.next() else {
            break;
        };
        let received_at = sent_at + seconds(i64::from(requests));
        match check.read(page, received_at) {
            Ok(()) => last_received = received_at,
            Err(error) => {
                // The adapter gives up on the check here.
                assert_no_email_quoted(&error.to_string(), data);
                assert!(!matches!(error, AnswerError::Incomplete(_)));
                failed = true;
                break;
            }
        }
    }

    match check.conclude(sent_at) {
        Ok(observation) => {
            assert_observation(&observation);
            assert_eq!(observation.source, Source::Poll);
            assert!(observation.sub_status.is_none());
            // A lower bound of when ARGOS was in this state: never before the request was
            // sent, never after the last answer arrived.
            assert!(observation.observed_at >= sent_at);
            assert!(observation.observed_at <= last_received);
            if let Some(status_at) = observation.status_at {
                assert!(status_at <= last_received);
            }
            if observation.no_record {
                assert_eq!(observation.status, KycStatus::NotStarted);
                assert!(observation.provider_status.is_none() && observation.aml.is_none());
            }
            assert_ne!(observation.status, KycStatus::ResubmissionRequired);
        }
        Err(error) => {
            assert_no_email_quoted(&error.to_string(), data);
            assert!(
                failed || matches!(error, AnswerError::Incomplete(_)),
                "a check whose answers all read failed: {error:?}"
            );
        }
    }
});
