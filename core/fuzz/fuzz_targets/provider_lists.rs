//! Backfill pages: ARGOS `GET /v3/submission` list answers and Align's `GET /v0/customers`
//! (`ProviderProtocol::read_list`), and the walk's step through them (`backfill::next_step`).
//! Only ids come out; a continuation goes back into a well-formed next request; the walk
//! always moves forward and never repeats a subject of the page.
#![no_main]

use kyc_core::backfill::{next_step, Position};
use kyc_core::import::MAX_LINES;
use kyc_core::providers::align::Align;
use kyc_core::providers::argos::Encryption;
use kyc_core::providers::{ListWalk, ProviderProtocol};
use kyc_core::secret::Secret;
use kyc_core::subject::SubjectRef;
use kyc_core_fuzz::{argos, assert_no_email_quoted, ALIGN_KEY, API_BASE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let argos = argos(Encryption::Off, 10);
    let align = Align::new(Secret::new(ALIGN_KEY).unwrap(), API_BASE.into());
    for protocol in [&argos as &dyn ProviderProtocol, &align] {
        match protocol.read_list(body) {
            Ok(page) => {
                for (subject_ref, _) in &page.subjects {
                    assert!(SubjectRef::parse(subject_ref.as_str()).is_ok());
                }
                if let Some(next) = &page.next {
                    assert!(!page.subjects.is_empty() || page.skipped > 0);
                    let request = protocol
                        .list_request(&ListWalk {
                            since: Some("2026-01-01"),
                            until: "2026-11-29",
                            cursor: Some(next),
                        })
                        .expect("a continuation it wrote is one it reads");
                    assert!(request
                        .url
                        .starts_with("https://provider.test/v3/submission?"));
                    assert!(!request.url.contains(' ') && !request.url.contains('#'));
                }
                // Walk the page in chunks as the cron does: forward only, each subject once.
                let mut at = Position::default();
                let mut covered = 0;
                loop {
                    let step = next_step(&page, &at);
                    assert_eq!(step.range.start, covered);
                    assert!(step.range.len() <= MAX_LINES);
                    covered = step.range.end;
                    let Some(cursor) = step.next else { break };
                    let next = Position::parse(Some(&cursor)).expect("its own cursor");
                    if next.offset == 0 {
                        assert_eq!(
                            covered,
                            page.subjects.len(),
                            "a page is finished before the next"
                        );
                        break;
                    }
                    assert!(next.offset > at.offset || at.offset == 0);
                    at = next;
                }
                assert_eq!(covered, page.subjects.len());
            }
            Err(error) => assert_no_email_quoted(&error.to_string(), body),
        }
    }
});
