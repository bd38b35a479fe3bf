//! Align's webhook signature: `x-hmac-signature` = hex(HMAC-SHA256(API key, raw body)).

use crate::providers::{IngressError, Unauthenticated};

/// The header carrying Align's signature.
const HEADER: &str = "x-hmac-signature";
use crate::secret::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Check the signature, either hex case, in constant time (`verify_slice`). Runs before any
/// parsing. Surrounding whitespace is not part of a header value (HTTP strips it); anything
/// else, such as a repeated header joined with a comma, is invalid.
pub fn verify(api_key: &Secret, body: &[u8], signature: Option<&str>) -> Result<(), IngressError> {
    let signature =
        signature
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(IngressError::Unauthenticated(Unauthenticated::Missing(
                HEADER,
            )))?;
    let invalid = IngressError::Unauthenticated(Unauthenticated::Invalid(HEADER));
    let presented = hex::decode(signature).map_err(|_| invalid.clone())?;
    // A truncated signature must fail, not verify a prefix.
    if presented.len() != 32 {
        return Err(invalid);
    }
    let mut mac =
        Hmac::<Sha256>::new_from_slice(api_key.expose().as_bytes()).map_err(|_| invalid.clone())?;
    mac.update(body);
    mac.verify_slice(&presented).map_err(|_| invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::align::tests::{key, VECTORS};

    #[test]
    fn openssl_vectors_verify() {
        for (body, sig) in VECTORS {
            assert_eq!(verify(&key(), body, Some(sig)), Ok(()));
        }
    }

    #[test]
    fn upper_case_hex_and_surrounding_whitespace_verify() {
        let (body, sig) = VECTORS[0];
        assert_eq!(verify(&key(), body, Some(&sig.to_uppercase())), Ok(()));
        assert_eq!(verify(&key(), body, Some(&format!(" {sig}\t"))), Ok(()));
    }

    #[test]
    fn a_tampered_body_fails() {
        let (body, sig) = VECTORS[0];
        let mut tampered = body.to_vec();
        let at = tampered.windows(8).position(|w| w == b"approved").unwrap();
        tampered[at..at + 8].copy_from_slice(b"rejected");
        assert_eq!(
            verify(&key(), &tampered, Some(sig)),
            Err(IngressError::Unauthenticated(Unauthenticated::Invalid(
                HEADER
            )))
        );
    }

    #[test]
    fn a_wrong_key_fails() {
        let (body, sig) = VECTORS[0];
        let other = Secret::new("sk_test_align_other").unwrap();
        assert!(verify(&other, body, Some(sig)).is_err());
    }

    #[test]
    fn missing_empty_truncated_repeated_or_garbage_signatures_fail() {
        let (body, sig) = VECTORS[0];
        let missing = Err(IngressError::Unauthenticated(Unauthenticated::Missing(
            HEADER,
        )));
        assert_eq!(verify(&key(), body, None), missing);
        assert_eq!(verify(&key(), body, Some("  ")), missing);
        for bad in [
            &sig[..62],
            &sig[..2],
            "zz",
            "sha256=abc",
            &format!("{sig}00"),
            // A repeated header reaches us joined with ", ".
            &format!("{sig}, {sig}"),
            &format!("{sig} {sig}"),
        ] {
            assert_eq!(
                verify(&key(), body, Some(bad)),
                Err(IngressError::Unauthenticated(Unauthenticated::Invalid(
                    HEADER
                ))),
                "{bad}"
            );
        }
    }
}
