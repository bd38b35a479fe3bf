//! `POST /v1/subjects/batch` bodies (`import::parse_batch`): a JSON array or NDJSON lines
//! of subjects from the application. Every line is answered on its own; none quotes its
//! values; valid lines are valid ids; repeats point back at an earlier valid line.
#![no_main]

use kyc_core::import::{parse_batch, BatchError, Line, MAX_LINES};
use kyc_core::subject::{ExternalId, Provider, SubjectRef};
use kyc_core_fuzz::assert_no_email_quoted;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let only_argos = |p: Provider| p == Provider::Argos;
    for enabled in [&(|_| true) as &dyn Fn(Provider) -> bool, &only_argos] {
        match parse_batch(body, enabled) {
            Ok(lines) => {
                assert!(!lines.is_empty() && lines.len() <= MAX_LINES);
                let numbers: Vec<usize> = lines.iter().map(|(n, _)| *n).collect();
                assert!(numbers.windows(2).all(|w| w[0] < w[1]), "numbered in order");
                for (number, line) in &lines {
                    match line {
                        Line::Valid(subject) => {
                            assert!(enabled(subject.provider));
                            let again = SubjectRef::parse(subject.subject_ref.as_str());
                            assert_eq!(again.as_ref(), Ok(&subject.subject_ref));
                            if let Some(id) = &subject.external_id {
                                assert!(ExternalId::parse(id.as_str()).is_ok());
                            }
                        }
                        Line::Repeat(first) => {
                            assert!(first < number);
                            assert!(matches!(
                                lines.iter().find(|(n, _)| n == first),
                                Some((_, Line::Valid(_)))
                            ));
                        }
                        Line::Invalid(why) => {
                            assert!(!why.is_empty() && why.len() < 200, "{why}");
                            assert_no_email_quoted(why, body);
                        }
                    }
                }
            }
            Err(error) => {
                let message = error.to_string();
                assert_no_email_quoted(&message, body);
                if let BatchError::TooMany { lines } = error {
                    assert!(lines > MAX_LINES);
                }
            }
        }
    }
});
