//! Align webhook bodies (`Align::parse_webhook`): arbitrary bytes, read at several arrival
//! times. The HMAC is checked before parsing in production, but Align's own payloads are
//! still input we do not control, so the parser must hold on anything.
#![no_main]

use kyc_core::observation::Source;
use kyc_core::providers::align::{Align, KYCS_UPDATED};
use kyc_core::providers::{IngressError, ProviderProtocol};
use kyc_core::secret::Secret;
use kyc_core::transition::Announcement;
use kyc_core_fuzz::{
    arrivals, assert_event, assert_no_email_quoted, timeless, ALIGN_KEY, API_BASE,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let align = Align::new(Secret::new(ALIGN_KEY).unwrap(), API_BASE.into());
    let outcomes: Vec<_> = arrivals()
        .into_iter()
        .map(|received_at| (received_at, align.parse_webhook(body, received_at)))
        .collect();
    for (received_at, outcome) in &outcomes {
        match outcome {
            Ok(event) => {
                assert_event(event, *received_at);
                assert!(!event.about_aml, "Align has no AML events");
                if event.subject.is_none() {
                    assert_eq!(event.announces, Announcement::Nothing);
                }
                if let Some(trusted) = &event.trusted {
                    // Only a kycs.updated body with an entity_object and a readable
                    // created_at is a reading, stamped with that (capped) time.
                    assert_eq!(event.kind, KYCS_UPDATED);
                    assert!(event.subject.is_some());
                    assert_eq!(event.announces, Announcement::Status(trusted.status));
                    assert_eq!(trusted.source, Source::Webhook);
                    assert_eq!(Some(trusted.observed_at), event.provider_at);
                    assert_eq!(trusted.status_at, event.provider_at);
                    assert!(trusted.observed_at <= *received_at);
                    assert!(trusted.aml.is_none() && !trusted.no_record);
                }
            }
            Err(IngressError::Malformed(why)) => assert_no_email_quoted(&why.to_string(), body),
            Err(other) => panic!("parsing authenticates nothing, yet: {other:?}"),
        }
    }
    // Whether and what a body says does not depend on when it arrived; its time is only
    // capped by the arrival, so it never decreases as the arrival gets later.
    let (_, first) = &outcomes[0];
    for pair in outcomes.windows(2) {
        let ((_, earlier), (_, later)) = (&pair[0], &pair[1]);
        if let (Ok(earlier), Ok(later)) = (earlier, later) {
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
