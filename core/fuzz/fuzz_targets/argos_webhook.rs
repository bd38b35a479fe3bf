//! ARGOS webhook bodies in plain JSON (`Argos::parse_webhook` with `Encryption::Off`).
//! ARGOS signs nothing: whatever a body says, it is never a trusted reading.
#![no_main]

use kyc_core::providers::argos::{Encryption, DEFAULT_MAX_PAGES};
use kyc_core::providers::{IngressError, ProviderProtocol};
use kyc_core::status::KycStatus;
use kyc_core::transition::Announcement;
use kyc_core_fuzz::{argos, arrivals, assert_event, assert_no_email_quoted, timeless};
use libfuzzer_sys::fuzz_target;

/// Triggers about one submission: an event of one of these always names its subject.
const SUBMISSION_TRIGGERS: [&str; 10] = [
    "created",
    "retry",
    "submit",
    "approved",
    "rejected",
    "updated",
    "delete",
    "injection",
    "aml",
    "aml_monitor",
];

fuzz_target!(|body: &[u8]| {
    let argos = argos(Encryption::Off, DEFAULT_MAX_PAGES);
    let outcomes: Vec<_> = arrivals()
        .into_iter()
        .map(|received_at| (received_at, argos.parse_webhook(body, received_at)))
        .collect();
    for (received_at, outcome) in &outcomes {
        match outcome {
            Ok(event) => {
                assert_event(event, *received_at);
                assert!(event.trusted.is_none(), "an ARGOS body was trusted");
                let kind = event.kind.as_str();
                assert_eq!(event.about_aml, matches!(kind, "aml" | "aml_monitor"));
                if SUBMISSION_TRIGGERS.contains(&kind) {
                    assert!(event.subject.is_some(), "{kind} without a subject");
                }
                // Only the triggers about the KYC decision announce anything, and only
                // `approved` and an admin's `updated` can announce an approval.
                match event.announces {
                    Announcement::Nothing => {}
                    Announcement::AnyChange => assert!(matches!(kind, "updated" | "delete")),
                    Announcement::Status(KycStatus::Approved) => {
                        assert!(matches!(kind, "approved" | "updated"))
                    }
                    Announcement::Status(_) => assert!(matches!(
                        kind,
                        "created" | "retry" | "submit" | "rejected" | "updated"
                    )),
                }
            }
            Err(IngressError::Malformed(why)) => assert_no_email_quoted(&why.to_string(), body),
            Err(other) => panic!("parsing authenticates nothing, yet: {other:?}"),
        }
    }
    let (_, first) = &outcomes[0];
    for pair in outcomes.windows(2) {
        if let ((_, Ok(earlier)), (_, Ok(later))) = (&pair[0], &pair[1]) {
            assert!(earlier.provider_at <= later.provider_at);
        }
    }
    for (_, outcome) in &outcomes[1..] {
        match (first, outcome) {
            (Ok(a), Ok(b)) => assert_eq!(timeless(a), timeless(b)),
            (Err(a), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!("the arrival time decided the outcome: {a:?} vs {b:?}"),
        }
    }
});
