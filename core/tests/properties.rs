//! Properties of kyc-core's public API, with proptest: observation ordering, the ARGOS
//! envelope, query strings and Retry-After. The fuzz targets in `core/fuzz` cover the same
//! parsers with arbitrary bytes; these generate well-formed inputs and check exact results.

use aes::Aes256;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ecb::cipher::block_padding::Pkcs7;
use ecb::cipher::{BlockEncryptMut, KeyInit};
use kyc_core::api::query_pairs;
use kyc_core::observation::{AmlReading, Observation, Source, Window};
use kyc_core::providers::argos::{Argos, Encryption, DEFAULT_MAX_PAGES};
use kyc_core::providers::ProviderProtocol;
use kyc_core::schedule::parse_retry_after;
use kyc_core::secret::Secret;
use kyc_core::status::{Aml, KycStatus};
use kyc_core::time::{format, from_millis, TimeDelta, Timestamp};
use kyc_core::transition::{decide, Decided, Recorded};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// No regression files: they would be written next to this file.
fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn at(ms: i64) -> Timestamp {
    from_millis(ms).expect("in range")
}

// --- ordering ---

/// What one reading says, before it is given a stamp.
#[derive(Debug, Clone)]
struct Reading {
    status: KycStatus,
    provider_status: Option<String>,
    sub_status: Option<String>,
    aml: Option<Aml>,
    status_at_before: Option<i64>,
    source: Source,
    no_record: bool,
}

fn word() -> impl Strategy<Value = String> {
    "[a-z_]{1,12}"
}

fn aml() -> impl Strategy<Value = Option<Aml>> {
    prop::option::of(
        (
            prop::sample::select(vec!["Not Screened", "Red Flag", "Clear"]),
            prop::option::of(prop::sample::select(vec!["LOW", "HIGH"])),
        )
            .prop_map(|(status, risk)| Aml {
                status: status.into(),
                risk_level: risk.map(Into::into),
            }),
    )
}

/// A reading as a provider gives it: any status, words and AML, from a webhook or a poll.
fn reading() -> impl Strategy<Value = Reading> {
    (
        prop::sample::select(KycStatus::ALL.to_vec()),
        prop::option::of(word()),
        prop::option::of(word()),
        aml(),
        prop::option::of(0i64..1_000),
        prop::sample::select(vec![Source::Webhook, Source::Poll]),
    )
        .prop_map(
            |(status, provider_status, sub_status, aml, status_at_before, source)| Reading {
                status,
                provider_status,
                sub_status,
                aml,
                status_at_before,
                source,
                no_record: false,
            },
        )
}

/// What an ARGOS poll reads when the provider holds no record of the subject.
fn no_record() -> Reading {
    Reading {
        status: KycStatus::NotStarted,
        provider_status: None,
        sub_status: None,
        aml: None,
        status_at_before: None,
        source: Source::Poll,
        no_record: true,
    }
}

/// Readings stamped with distinct times (two readings of one instant have no order), and a
/// permutation of them: the order they reach the record in.
fn observations(
    reading: impl Strategy<Value = Reading>,
) -> impl Strategy<Value = (Vec<Observation>, Vec<usize>)> {
    prop::collection::vec(reading, 1..12)
        .prop_flat_map(|readings| {
            let n = readings.len();
            (
                Just(readings),
                prop::collection::btree_set(1i64..5_000_000, n),
                Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
            )
        })
        .prop_map(|(readings, stamps, order)| {
            let observations = readings
                .into_iter()
                .zip(stamps)
                .map(|(r, stamp)| Observation {
                    status: r.status,
                    provider_status: r.provider_status,
                    sub_status: r.sub_status,
                    aml: r.aml.map(|aml| AmlReading {
                        aml,
                        window: Window::at(at(stamp)),
                    }),
                    status_at: r.status_at_before.map(|before| at(stamp - before)),
                    window: Window::at(at(stamp)),
                    source: r.source,
                    no_record: r.no_record,
                })
                .collect();
            (observations, order)
        })
}

/// Apply observations the way the reconciler does: `decide`, then write what it says. A
/// learned status is never replaced by a reading of no record; instants never contest.
fn apply_all<'a>(observations: impl IntoIterator<Item = &'a Observation>) -> Recorded {
    let mut record = Recorded::unknown();
    for observation in observations {
        let (before, read_before) = (record.status, record.window != Window::never());
        let decision = decide(&record, observation);
        assert!(!decision.contested, "distinct instants are always ordered");
        match decision.outcome {
            Decided::Stale => {}
            Decided::Confirmed(next) => record = next,
            Decided::Apply(change) => {
                assert_eq!(change.previous, record.status);
                record = change.next;
            }
        }
        if observation.no_record && read_before {
            assert_eq!(record.status, before, "no record replaced a learned status");
        }
    }
    record
}

fn in_stamp_order(observations: &[Observation]) -> Recorded {
    let mut sorted: Vec<&Observation> = observations.iter().collect();
    sorted.sort_by_key(|o| o.window.from);
    apply_all(sorted)
}

proptest! {
    #![proptest_config(config(2048))]

    /// Any arrival order ends where stamp order ends: the newest reading's status and words,
    /// observed at the newest stamp.
    #[test]
    fn ordering_is_monotone((observations, order) in observations(reading())) {
        let newest = observations.iter().map(|o| o.window).max_by_key(|w| w.from).unwrap();
        let sorted = in_stamp_order(&observations);
        let arrived = apply_all(order.iter().map(|&i| &observations[i]));
        prop_assert_eq!(sorted.window, newest);
        prop_assert_eq!(arrived.window, newest);
        prop_assert_eq!(arrived.status, sorted.status);
        prop_assert_eq!(&arrived.provider_status, &sorted.provider_status);
        prop_assert_eq!(&arrived.sub_status, &sorted.sub_status);
    }

    /// Readings of no record among them: in any order (checked at every step by `apply_all`)
    /// a learned status is never traded for no record; in stamp order the record ends at the
    /// newest reading that found one, or at not_started if none did.
    #[test]
    fn no_record_never_replaces_a_learned_status(
        (observations, order) in observations(prop_oneof![3 => reading(), 1 => Just(no_record())])
    ) {
        let sorted = in_stamp_order(&observations);
        apply_all(order.iter().map(|&i| &observations[i]));
        let newest_found = observations
            .iter()
            .filter(|o| !o.no_record)
            .max_by_key(|o| o.window.from);
        prop_assert_eq!(
            sorted.status,
            newest_found.map_or(KycStatus::NotStarted, |o| o.status)
        );
    }
}

// --- the ARGOS envelope ---

const TRIGGERS: [&str; 12] = [
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
    "token_expired",
    "a_future_trigger",
];

const RESULTS: [&str; 6] = [
    "approved",
    "rejected",
    "pending",
    "incomplete",
    "imcomplete",
    "on_hold",
];

fn iso_time() -> impl Strategy<Value = String> {
    // 1970 to 2100.
    (0i64..4_102_444_800_000).prop_map(|ms| format(at(ms)))
}

/// An ARGOS-like webhook body: a trigger, a user id from a safe alphabet, and optionally the
/// other fields ARGOS sends (times, results, PII) in the shapes its samples use.
fn argos_body() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(TRIGGERS.to_vec()),
        // A valid ref: not only dots (those are refused; README, "Refs").
        "[A-Za-z0-9][A-Za-z0-9_.:@+~-]{0,39}",
        prop::option::of("[A-Za-z0-9]{12}"),
        prop::option::of(iso_time()),
        prop::option::of((
            prop::sample::select(RESULTS.to_vec()),
            prop::option::of(iso_time()),
            any::<bool>(),
        )),
        prop::option::of(prop::sample::select(RESULTS.to_vec())),
        prop::option::of("[a-z.]{1,12}@example\\.com"),
        prop::option::of(".{0,40}"),
    )
        .prop_map(
            |(trigger, userid, submission_id, time, kyc_result, data_result, email, name)| {
                let mut body = json!({ "webhook_trigger": trigger, "userid": userid });
                let fields = body.as_object_mut().unwrap();
                if let Some(id) = submission_id {
                    fields.insert("submission_id".into(), id.into());
                }
                if let Some(time) = time {
                    let field = match trigger {
                        "updated" => "update_time",
                        "token_expired" => "expired_at",
                        _ => "created_at",
                    };
                    fields.insert(field.into(), time.into());
                }
                if let Some((word, updated_at, as_object)) = kyc_result {
                    let value = if as_object {
                        json!({ "status": word, "updated_at": updated_at })
                    } else {
                        word.into()
                    };
                    fields.insert("kyc_result".into(), value);
                }
                if let Some(word) = data_result {
                    fields.insert(
                        "data".into(),
                        json!({ "update": ["kycStatus"], "kyc_result": word }),
                    );
                }
                if let Some(email) = email {
                    fields.insert("email".into(), email.into());
                }
                if let Some(name) = name {
                    fields.insert("fullName".into(), name.into());
                }
                body
            },
        )
}

/// What ARGOS sends with encryption on: AES-256-ECB with key = SHA-256(API key), PKCS#7,
/// standard base64 in `{"data": ...}`.
fn seal(api_key: &str, plaintext: &[u8]) -> Vec<u8> {
    let key = Sha256::digest(api_key.as_bytes());
    let ciphertext = ecb::Encryptor::<Aes256>::new(&key).encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    serde_json::to_vec(&json!({ "data": BASE64.encode(ciphertext) })).unwrap()
}

fn argos(api_key: &str, encryption: Encryption) -> Argos {
    Argos::new(
        Secret::new(api_key).unwrap(),
        Secret::new("whk_property_token").unwrap(),
        "https://rest-api.argosidentity.com/".into(),
        vec![],
        encryption,
        DEFAULT_MAX_PAGES,
    )
}

proptest! {
    #![proptest_config(config(1024))]

    /// Encrypting a body the way ARGOS does and parsing it with `Aes256Ecb` gives exactly
    /// the event parsing the plaintext with encryption off gives.
    #[test]
    fn the_argos_envelope_round_trips(
        body in argos_body(),
        api_key in "[!-~]{1,48}",
        pretty in any::<bool>(),
        received_ms in 0i64..4_102_444_800_000,
    ) {
        let plaintext = if pretty {
            serde_json::to_vec_pretty(&body).unwrap()
        } else {
            serde_json::to_vec(&body).unwrap()
        };
        let received_at = at(received_ms);
        let plain = argos(&api_key, Encryption::Off).parse_webhook(&plaintext, received_at);
        prop_assert!(plain.is_ok(), "{:?}", plain);
        let sealed = seal(&api_key, &plaintext);
        let opened = argos(&api_key, Encryption::Aes256Ecb).parse_webhook(&sealed, received_at);
        prop_assert_eq!(opened, plain);
    }
}

// --- query strings ---

/// `application/x-www-form-urlencoded`: unreserved bytes as they are, space as `+`, every
/// other byte of the UTF-8 percent-encoded.
const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'*');

fn form(value: &str, plus_for_space: bool) -> String {
    let encoded = utf8_percent_encode(value, FORM).to_string();
    if plus_for_space {
        encoded.replace("%20", "+")
    } else {
        encoded
    }
}

proptest! {
    #![proptest_config(config(2048))]

    /// Any (key, value) strings, form-encoded into a URL's query, parse back in order.
    #[test]
    fn query_pairs_decode_what_forms_encode(
        pairs in prop::collection::vec((any::<String>(), any::<String>()), 0..8),
        plus_for_space in any::<bool>(),
        fragment in prop::option::of("[a-z#?&=]{0,8}"),
    ) {
        let query: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", form(k, plus_for_space), form(v, plus_for_space)))
            .collect();
        let mut url = format!("https://kyc.test/v1/subjects?{}", query.join("&"));
        if let Some(fragment) = fragment {
            url.push('#');
            url.push_str(&fragment);
        }
        prop_assert_eq!(query_pairs(&url), pairs);
    }
}

// --- Retry-After ---

fn expected_wait(seconds: u128) -> TimeDelta {
    i64::try_from(seconds)
        .ok()
        .and_then(TimeDelta::try_seconds)
        .unwrap_or(TimeDelta::MAX)
}

proptest! {
    #![proptest_config(config(2048))]

    /// Any non-negative delta-seconds, with leading zeros and surrounding whitespace, is
    /// exactly that many seconds, or saturates when no TimeDelta holds it.
    #[test]
    fn retry_after_seconds_are_exact_or_saturate(
        seconds in prop_oneof![0u128..100_000, 0u128..=u128::from(u64::MAX), any::<u128>()],
        zeros in 0usize..3,
        padding in prop::sample::select(vec!["", " ", "\t", " \r\n"]),
        now_ms in 0i64..4_102_444_800_000,
    ) {
        let value = format!("{padding}{}{seconds}{padding}", "0".repeat(zeros));
        prop_assert_eq!(
            parse_retry_after(&value, at(now_ms)),
            Some(expected_wait(seconds))
        );
    }

    /// Any text at all: never a panic, never a negative wait.
    #[test]
    fn retry_after_never_panics_or_goes_negative(
        value in any::<String>(),
        now_ms in -8_000_000_000_000_000i64..8_000_000_000_000_000,
    ) {
        let Some(now) = from_millis(now_ms) else {
            return Ok(());
        };
        if let Some(wait) = parse_retry_after(&value, now) {
            prop_assert!(wait >= TimeDelta::zero());
        }
    }
}
