//! Sumsub: the webhook digest (`verify_digest`), webhook bodies (`Sumsub::parse_webhook`) and
//! applicant answers (`Sumsub::check` → `next_request` / `read` / `conclude`).
//!
//! Input: the `X-Payload-Digest-Alg` value, a newline, the `X-Payload-Digest` value, a newline,
//! then bytes used both as a webhook body and as an API answer. The digest oracle is an HMAC
//! computed here with the hash the header names.
#![no_main]

use hmac::{Hmac, Mac};
use kyc_core::observation::{Exchange, Source};
use kyc_core::providers::sumsub::{verify_digest, Sumsub};
use kyc_core::providers::{CheckTarget, IngressError, ProviderProtocol};
use kyc_core::secret::Secret;
use kyc_core::subject::{RefKind, SubjectRef};
use kyc_core::time::seconds;
use kyc_core_fuzz::{
    arrivals, assert_bounded_word, assert_no_email_quoted, assert_valid_ref, now, API_BASE,
};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const WEBHOOK_SECRET: &str = "sumsub_fuzz_webhook_secret";
const USER: &str = "user-0001";

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    }
}

fuzz_target!(|data: &[u8]| {
    let (alg, rest) = split_line(data);
    let (digest, body) = split_line(rest);
    let alg = String::from_utf8_lossy(alg);
    let digest = String::from_utf8_lossy(digest);
    let secret = Secret::new(WEBHOOK_SECRET).unwrap();

    // Digest: SHA-256 is checked against an oracle; every failure is a 401.
    let outcome = verify_digest(&secret, body, Some(&digest), Some(&alg));
    let trimmed = alg.trim();
    if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("HMAC_SHA256_HEX") {
        let mut mac = Hmac::<Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
        mac.update(body);
        let genuine = hex::encode(mac.finalize().into_bytes());
        assert_eq!(
            outcome.is_ok(),
            digest.trim().eq_ignore_ascii_case(&genuine)
        );
        assert_eq!(
            verify_digest(&secret, body, Some(&genuine), Some(&alg)),
            Ok(())
        );
        assert!(verify_digest(&secret, body, Some(&genuine[..63]), Some(&alg)).is_err());
    }
    if let Err(error) = &outcome {
        assert!(
            matches!(error, IngressError::Unauthenticated(_)),
            "{error:?}"
        );
    }

    // Webhook bodies, sandbox and production tokens: never trusted; words bounded; times
    // capped; a sandbox mismatch names no subject; refusals quote no e-mail.
    for token in ["sbx:fuzzAppToken", "prd:fuzzAppToken"] {
        let sumsub = Sumsub::new(
            Secret::new(token).unwrap(),
            Secret::new("sumsub_fuzz_secret_key").unwrap(),
            secret.clone(),
            API_BASE.into(),
        );
        for received_at in arrivals() {
            match sumsub.parse_webhook(body, received_at) {
                Ok(event) => {
                    assert!(event.trusted.is_none(), "a Sumsub body was trusted");
                    assert!(!event.about_aml);
                    if event.kind != "unknown" {
                        assert_bounded_word("kind", &event.kind);
                    }
                    if let Some(subject) = &event.subject {
                        assert_valid_ref(&subject.subject_ref);
                    }
                    if event.kind == "sandbox_mismatch" || event.kind == "test_webhook" {
                        assert!(event.subject.is_none());
                    }
                    if let Some(at) = event.provider_at {
                        assert!(at <= received_at);
                    }
                }
                Err(IngressError::Malformed(why)) => assert_no_email_quoted(&why.to_string(), body),
                Err(other) => panic!("parsing authenticates nothing, yet: {other:?}"),
            }
        }

        // The same bytes as the applicant answer of one check.
        let mut check = sumsub.check(CheckTarget {
            subject_ref: SubjectRef::parse(USER).unwrap(),
            ref_kind: RefKind::User,
            aml: false,
        });
        let sent_at = now();
        let request = check.next_request(sent_at).expect("one request");
        assert!(request
            .url
            .ends_with("/resources/applicants/-;externalUserId=user-0001/one"));
        assert!(check.next_request(sent_at).is_none(), "one request only");
        let received_at = sent_at + seconds(2);
        let exchange = Exchange {
            sent_at,
            received_at,
        };
        match check.read(body, exchange) {
            Ok(()) => {
                let observation = check.conclude().expect("a read answer concludes");
                assert_eq!(observation.source, Source::Poll);
                assert!(observation.aml.is_none() && !observation.no_record);
                assert!(observation.window.from >= sent_at && observation.window.to <= received_at);
                if let Some(at) = observation.status_at {
                    assert!(at <= received_at);
                }
                for word in [&observation.provider_status, &observation.sub_status]
                    .into_iter()
                    .flatten()
                {
                    assert_bounded_word("status word", word);
                }
            }
            Err(error) => assert_no_email_quoted(&error.to_string(), body),
        }
    }
});
