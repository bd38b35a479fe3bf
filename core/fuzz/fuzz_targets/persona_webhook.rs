//! Persona webhooks as the route sees them (`authenticate_at`, then `parse_webhook`). Input:
//! the `Persona-Signature` header value, a newline, then the body. The oracle is an HMAC
//! computed here: a header is accepted only if one of its whitespace-separated sets has a
//! `t=` and a `v1=` that is the hex HMAC-SHA256 of `"{t}.{body}"`, with `t` within the
//! bound. Whatever the body says, a Persona event is never a trusted reading.
#![no_main]

use hmac::{Hmac, Mac};
use kyc_core::providers::persona::{Persona, DEFAULT_SIGNATURE_MAX_AGE, SIGNATURE_FUTURE_SKEW};
use kyc_core::providers::{InboundWebhook, IngressError, ProviderProtocol};
use kyc_core::secret::Secret;
use kyc_core_fuzz::{
    arrivals, assert_bounded_word, assert_no_email_quoted, assert_valid_ref, now, API_BASE,
};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &str = "wbhsec_fuzz_persona";

fn hmac_hex(t: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Whether some set of `header` carries a genuine `v1` for its `t` (the bound aside).
fn has_genuine_set(header: &str, body: &[u8]) -> bool {
    header.split_ascii_whitespace().any(|set| {
        let parts: Vec<(&str, &str)> = set.split(',').filter_map(|p| p.split_once('=')).collect();
        let Some((_, t)) = parts.iter().find(|(k, _)| *k == "t") else {
            return false;
        };
        let genuine = hmac_hex(t, body);
        parts
            .iter()
            .any(|(k, v)| *k == "v1" && v.eq_ignore_ascii_case(&genuine))
    })
}

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let header = String::from_utf8_lossy(header).into_owned();
    let persona = Persona::new(
        Secret::new("persona_fuzz_key").unwrap(),
        Secret::new(SECRET).unwrap(),
        API_BASE.into(),
    );
    let lookup = |name: &str| (name == "persona-signature").then(|| header.clone());
    let webhook = InboundWebhook {
        path_token: None,
        client_ip: None,
        header: &lookup,
        body,
    };
    for received_at in arrivals() {
        match persona.authenticate_at(&webhook, received_at) {
            Ok(()) => assert!(has_genuine_set(&header, body), "accepted {header:?}"),
            Err(IngressError::Unauthenticated(_)) => {}
            Err(other) => panic!("no allow-list is set, yet {other:?}"),
        }
        match persona.parse_webhook(body, received_at) {
            Ok(event) => {
                assert!(event.trusted.is_none(), "a Persona body was trusted");
                if event.kind != "unknown" {
                    assert_bounded_word("kind", &event.kind);
                }
                if let Some(subject) = &event.subject {
                    assert_valid_ref(&subject.subject_ref);
                }
                if let Some(at) = event.provider_at {
                    assert!(at <= received_at);
                }
                if let Some(id) = &event.event_id {
                    assert!(!id.is_empty() && id.len() <= 256);
                }
            }
            Err(IngressError::Malformed(why)) => assert_no_email_quoted(&why.to_string(), body),
            Err(other) => panic!("parsing authenticates nothing, yet: {other:?}"),
        }
    }

    // The genuine signature of this body, dated now, is accepted alone and beside any set;
    // dated past the bound, it is not.
    let t = now().timestamp();
    let genuine = format!("t={t},v1={}", hmac_hex(&t.to_string(), body));
    let accepted = |value: String| {
        let lookup = move |name: &str| (name == "persona-signature").then(|| value.clone());
        let webhook = InboundWebhook {
            path_token: None,
            client_ip: None,
            header: &lookup,
            body,
        };
        persona.authenticate_at(&webhook, now()).is_ok()
    };
    assert!(accepted(genuine.clone()));
    let other = format!("t={t},v1={}", "0".repeat(64));
    assert!(accepted(format!("{other} {genuine}")));
    let old = t - DEFAULT_SIGNATURE_MAX_AGE.num_seconds() - 1;
    assert!(!accepted(format!(
        "t={old},v1={}",
        hmac_hex(&old.to_string(), body)
    )));
    let ahead = t + SIGNATURE_FUTURE_SKEW.num_seconds() + 1;
    assert!(!accepted(format!(
        "t={ahead},v1={}",
        hmac_hex(&ahead.to_string(), body)
    )));
});
