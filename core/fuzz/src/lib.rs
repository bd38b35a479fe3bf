//! What the fuzz targets share: the fixture keys, the arrival times every input is read at,
//! and the invariants that hold for every parser of untrusted bytes.

use chrono::{DateTime, Utc};
use kyc_core::observation::Observation;
use kyc_core::providers::argos::{Argos, Encryption};
use kyc_core::providers::WebhookEvent;
use kyc_core::secret::Secret;
use kyc_core::status::provider_value;
use kyc_core::subject::SubjectRef;
use kyc_core::time::{from_millis, Timestamp};

/// The committed test keys, so the fixture signatures and envelopes in the seed corpora are
/// valid inputs.
pub const ALIGN_KEY: &str = include_str!("../../tests/fixtures/align/key.txt");
pub const ARGOS_KEY: &str = include_str!("../../tests/fixtures/argos/key.txt");
pub const ARGOS_TOKEN: &str = "whk_fuzz_token";
pub const API_BASE: &str = "https://provider.test/";

/// ARGOS with the fixture key, no address list.
pub fn argos(encryption: Encryption, max_pages: u32) -> Argos {
    Argos::new(
        Secret::new(ARGOS_KEY).unwrap(),
        Secret::new(ARGOS_TOKEN).unwrap(),
        API_BASE.into(),
        vec![],
        encryption,
        max_pages,
    )
}

/// 2026-11-17T00:00:00Z-ish: after every fixture's timestamps.
pub const NOW_MS: i64 = 1_795_000_000_000;

pub fn now() -> Timestamp {
    from_millis(NOW_MS).expect("in range")
}

/// Arrival times an input is read at: chrono's extremes, before 1970, the epoch, and after
/// the fixtures' times (so provider timestamps are capped in some runs and not in others).
pub fn arrivals() -> [Timestamp; 5] {
    [
        DateTime::<Utc>::MIN_UTC,
        from_millis(-1).expect("in range"),
        from_millis(0).expect("in range"),
        now(),
        DateTime::<Utc>::MAX_UTC,
    ]
}

fn email_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._%+-@".contains(&b)
}

/// Panics when `message` repeats a 6-byte piece of `input` that looks like part of an e-mail
/// address: e-mail characters with an `@` that has at least one of them on each side.
/// Refusals are logged and stored; they must never carry the PII of the body they refuse.
pub fn assert_no_email_quoted(message: &str, input: &[u8]) {
    for piece in message.as_bytes().windows(6) {
        let Some(at) = piece.iter().position(|&b| b == b'@') else {
            continue;
        };
        if at == 0 || at == piece.len() - 1 || !piece.iter().all(|&b| email_char(b)) {
            continue;
        }
        assert!(
            !input.windows(piece.len()).any(|w| w == piece),
            "the message {message:?} quotes {:?} from the input",
            String::from_utf8_lossy(piece)
        );
    }
}

/// A value kyc-core stores in a status column: a bounded word, exactly as `provider_value`
/// would keep it.
pub fn assert_bounded_word(what: &str, value: &str) {
    assert_eq!(
        provider_value(value).as_deref(),
        Some(value),
        "{what} is not a bounded word"
    );
}

pub fn assert_valid_ref(subject_ref: &SubjectRef) {
    assert_eq!(
        SubjectRef::parse(subject_ref.as_str()).as_ref(),
        Ok(subject_ref),
        "a subject ref that would not parse"
    );
}

/// What holds for every observation a parser produces.
pub fn assert_observation(observation: &Observation) {
    if let Some(word) = &observation.provider_status {
        assert_bounded_word("provider_status", word);
    }
    if let Some(word) = &observation.sub_status {
        assert_bounded_word("sub_status", word);
    }
    if let Some(reading) = &observation.aml {
        assert_bounded_word("aml.status", &reading.aml.status);
        if let Some(level) = &reading.aml.risk_level {
            assert_bounded_word("aml.risk_level", level);
        }
    }
}

/// What holds for every webhook event either provider parses at `received_at`.
pub fn assert_event(event: &WebhookEvent, received_at: Timestamp) {
    if event.kind != "unknown" {
        assert_bounded_word("kind", &event.kind);
    }
    if let Some(subject) = &event.subject {
        assert_valid_ref(&subject.subject_ref);
    }
    if let Some(at) = event.provider_at {
        assert!(
            at <= received_at,
            "provider_at {at} after arrival {received_at}"
        );
    }
    if let Some(trusted) = &event.trusted {
        assert_observation(trusted);
        assert!(
            trusted.window.from <= received_at,
            "trusted reading's window starts at {} after arrival {received_at}",
            trusted.window.from
        );
    }
}

/// The parts of an event that must not depend on when it arrived.
pub fn timeless(event: &WebhookEvent) -> impl PartialEq + std::fmt::Debug + '_ {
    (
        &event.subject,
        &event.kind,
        event.announces,
        event.about_aml,
        event.provider_at.is_some(),
        event.trusted.as_ref().map(|o| {
            (
                o.status,
                &o.provider_status,
                &o.sub_status,
                &o.aml,
                o.source,
                o.no_record,
            )
        }),
    )
}
