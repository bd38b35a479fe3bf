//! Persona's webhook signature: `Persona-Signature: t=<unix seconds>,v1=<hex>` where `v1` is
//! hex HMAC-SHA256(webhook secret, "{t}.{raw body}"). While a secret rotates the header holds
//! several sets separated by spaces (`t=…,v1=… t=…,v1=…`): any set that verifies is enough.

use crate::providers::Unauthenticated;
use crate::secret::Secret;
use crate::time::Timestamp;
use chrono::TimeDelta;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Sets one header may hold: a rotation needs two; more is not a header Persona sends.
const MAX_SETS: usize = 8;
/// Digits a `t` may have: seconds until the year 33658.
const MAX_T_DIGITS: usize = 12;

/// Why a signature was refused (each is a 401, and nothing is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    /// Not `t=<digits>,v1=<64 hex>` sets separated by spaces.
    Malformed,
    /// Well formed, but no `v1` is the HMAC of its `t` and the body.
    Invalid,
    /// A set verifies, but its `t` is older than the bound (or too far in the future).
    Stale,
}

/// The header's name as refusals show it.
const NAME: &str = "Persona-Signature";

impl From<SignatureError> for Unauthenticated {
    fn from(error: SignatureError) -> Self {
        match error {
            SignatureError::Missing => Unauthenticated::Missing(NAME),
            SignatureError::Malformed => Unauthenticated::Unreadable(NAME),
            SignatureError::Invalid => Unauthenticated::Invalid(NAME),
            SignatureError::Stale => Unauthenticated::Stale(NAME),
        }
    }
}

/// One `t=…,v1=…` set: `t` as sent (it is signed as text) and its value, and every `v1`.
#[derive(Debug, PartialEq, Eq)]
struct Set<'a> {
    t_text: &'a str,
    t: i64,
    v1: Vec<[u8; 32]>,
}

/// The sets of a header. Keys other than `t` and `v1` (a future `v2`) are ignored; a set
/// without exactly one `t` or without a `v1`, or any part that is not `key=value`, makes the
/// whole header malformed: it is not something Persona sent.
fn parse(header: &str) -> Result<Vec<Set<'_>>, SignatureError> {
    let mut sets = Vec::new();
    for text in header.split_ascii_whitespace() {
        if sets.len() == MAX_SETS {
            return Err(SignatureError::Malformed);
        }
        let (mut t, mut v1) = (None, Vec::new());
        for part in text.split(',') {
            let (key, value) = part.split_once('=').ok_or(SignatureError::Malformed)?;
            match key {
                "t" if t.is_none() => {
                    if value.is_empty()
                        || value.len() > MAX_T_DIGITS
                        || !value.bytes().all(|b| b.is_ascii_digit())
                    {
                        return Err(SignatureError::Malformed);
                    }
                    let seconds = value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?;
                    t = Some((value, seconds));
                }
                "t" => return Err(SignatureError::Malformed),
                "v1" => {
                    let mut mac = [0u8; 32];
                    hex::decode_to_slice(value, &mut mac).map_err(|_| SignatureError::Malformed)?;
                    v1.push(mac);
                }
                "" => return Err(SignatureError::Malformed),
                _ => {}
            }
        }
        let (Some((t_text, t)), false) = (t, v1.is_empty()) else {
            return Err(SignatureError::Malformed);
        };
        sets.push(Set { t_text, t, v1 });
    }
    if sets.is_empty() {
        return Err(SignatureError::Missing);
    }
    Ok(sets)
}

/// Whether `mac` is HMAC-SHA256(secret, "{t}.{body}"), in constant time (`verify_slice`).
fn signs(secret: &Secret, t_text: &str, body: &[u8], mac: &[u8; 32]) -> bool {
    let Ok(mut hmac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        return false;
    };
    hmac.update(t_text.as_bytes());
    hmac.update(b".");
    hmac.update(body);
    hmac.verify_slice(mac).is_ok()
}

/// Accept the body when any set of the header verifies with a `t` no older than `max_age`
/// and no further ahead of `received_at` than [`super::SIGNATURE_FUTURE_SKEW`]. Runs before
/// any parsing of the body.
pub fn verify(
    secret: &Secret,
    body: &[u8],
    header: Option<&str>,
    received_at: Timestamp,
    max_age: TimeDelta,
) -> Result<(), SignatureError> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    let sets = parse(header)?;
    let now = received_at.timestamp();
    let mut verified = false;
    for set in &sets {
        // Every `v1` of every set is computed: which one matched is not told by the timing.
        let matched = set
            .v1
            .iter()
            .fold(false, |any, mac| signs(secret, set.t_text, body, mac) | any);
        if !matched {
            continue;
        }
        verified = true;
        let age = now.saturating_sub(set.t);
        if age <= max_age.num_seconds() && -age <= super::SIGNATURE_FUTURE_SKEW.num_seconds() {
            return Ok(());
        }
    }
    Err(if verified {
        SignatureError::Stale
    } else {
        SignatureError::Invalid
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_millis;

    /// The secret of the vectors below.
    const SECRET: &str = "wbhsec_test_3b9f0c7e1a5d";
    /// The rotated-out secret of the rotation vector.
    const OLD_SECRET: &str = "wbhsec_test_old_77e2";
    const BODY: &[u8] =
        br#"{"data":{"type":"event","id":"evt_vec1","attributes":{"name":"inquiry.approved"}}}"#;
    const T: i64 = 1_793_491_200;
    // printf '%s' '1793491200.{"data":{"type":"event","id":"evt_vec1","attributes":{"name":"inquiry.approved"}}}' \
    //   | openssl dgst -sha256 -hmac 'wbhsec_test_3b9f0c7e1a5d'
    const V1: &str = "fc6ccea34edc7a94e463b03948eb59b1dec109a42297d637f750e2065a224222";
    // printf '%s' '1793491200.{"data":{"type":"event","id":"evt_vec1","attributes":{"name":"inquiry.approved"}}}' \
    //   | openssl dgst -sha256 -hmac 'wbhsec_test_old_77e2'
    const V1_OLD: &str = "40c703503cc2b53aa3f5e64dad8225be63d2fc3230a011207072d8977e7cd851";

    fn secret() -> Secret {
        Secret::new(SECRET).unwrap()
    }

    fn at(seconds: i64) -> Timestamp {
        from_millis(seconds * 1000).unwrap()
    }

    fn check(header: &str, now: i64) -> Result<(), SignatureError> {
        verify(&secret(), BODY, Some(header), at(now), TimeDelta::days(4))
    }

    #[test]
    fn the_openssl_vector_verifies() {
        assert_eq!(check(&format!("t={T},v1={V1}"), T + 10), Ok(()));
        assert_eq!(check(&format!("t={T},v1={}", V1.to_uppercase()), T), Ok(()));
        assert_eq!(check(&format!("  v1={V1},t={T}\t"), T), Ok(()));
    }

    #[test]
    fn during_rotation_any_set_may_verify() {
        let old = Secret::new(OLD_SECRET).unwrap();
        let both = format!("t={T},v1={V1_OLD} t={T},v1={V1}");
        assert_eq!(check(&both, T), Ok(()));
        let reversed = format!("t={T},v1={V1} t={T},v1={V1_OLD}");
        assert_eq!(check(&reversed, T), Ok(()));
        // The old secret verifies its own set.
        assert_eq!(
            verify(&old, BODY, Some(&both), at(T), TimeDelta::days(4)),
            Ok(())
        );
        // Several v1 in one set.
        assert_eq!(check(&format!("t={T},v1={V1_OLD},v1={V1}"), T), Ok(()));
        // Neither matches.
        let neither = format!("t={T},v1={V1_OLD} t={T},v1={V1_OLD}");
        assert_eq!(check(&neither, T), Err(SignatureError::Invalid));
    }

    #[test]
    fn t_is_signed_and_bounded() {
        // The same v1 under another t is not a signature of it.
        assert_eq!(
            check(&format!("t={},v1={V1}", T + 1), T),
            Err(SignatureError::Invalid)
        );
        // Leading zeros change the signed text.
        assert_eq!(
            check(&format!("t=0{T},v1={V1}"), T),
            Err(SignatureError::Invalid)
        );
        let four_days = 4 * 24 * 3600;
        assert_eq!(check(&format!("t={T},v1={V1}"), T + four_days), Ok(()));
        assert_eq!(
            check(&format!("t={T},v1={V1}"), T + four_days + 1),
            Err(SignatureError::Stale)
        );
        assert_eq!(check(&format!("t={T},v1={V1}"), T - 300), Ok(()));
        assert_eq!(
            check(&format!("t={T},v1={V1}"), T - 301),
            Err(SignatureError::Stale)
        );
        // A stale set does not hide a fresh one, nor a fresh forgery make it fresh.
        assert_eq!(
            check(
                &format!("t={},v1={V1_OLD} t={T},v1={V1}", T + 999),
                T + 1000
            ),
            Ok(())
        );
        assert_eq!(
            check(
                &format!("t={T},v1={V1} t={},v1={V1_OLD}", T + four_days),
                T + four_days + 5
            ),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn a_tampered_body_or_another_secret_fails() {
        let header = format!("t={T},v1={V1}");
        let mut tampered = BODY.to_vec();
        let last = tampered.len() - 5;
        tampered[last] = b'X';
        assert_eq!(
            verify(
                &secret(),
                &tampered,
                Some(&header),
                at(T),
                TimeDelta::days(4)
            ),
            Err(SignatureError::Invalid)
        );
        let other = Secret::new("wbhsec_other").unwrap();
        assert_eq!(
            verify(&other, BODY, Some(&header), at(T), TimeDelta::days(4)),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn missing_and_malformed_headers_fail() {
        assert_eq!(
            verify(&secret(), BODY, None, at(T), TimeDelta::days(4)),
            Err(SignatureError::Missing)
        );
        assert_eq!(check("   ", T), Err(SignatureError::Missing));
        let many = vec![format!("t={T},v1={V1}"); MAX_SETS + 1].join(" ");
        for bad in [
            V1.to_owned(),
            format!("t={T}"),
            format!("v1={V1}"),
            format!("t={T},v1={}", &V1[..62]),
            format!("t={T},v1={V1}00"),
            format!("t={T},v1=zz{}", &V1[2..]),
            format!("t=,v1={V1}"),
            format!("t=-{T},v1={V1}"),
            format!("t=1e9,v1={V1}"),
            format!("t=9999999999999,v1={V1}"),
            format!("t={T},t={T},v1={V1}"),
            format!("t={T};v1={V1}"),
            format!("t={T}, v1={V1}"),
            format!("t={T},v1={V1},"),
            format!("t={T},v1={V1},=x"),
            format!("t={T},v1={V1} garbage"),
            format!("t={T},v1={V1},t={T}"),
            many,
        ] {
            assert_eq!(check(&bad, T), Err(SignatureError::Malformed), "{bad}");
        }
        // Unknown schemes beside v1 are ignored.
        assert_eq!(check(&format!("t={T},v2=abc,v1={V1}"), T), Ok(()));
    }
}
