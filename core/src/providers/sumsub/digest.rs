//! The webhook signature: `X-Payload-Digest` = lowercase hex HMAC of the raw body with the
//! webhook's secret, the hash named by `X-Payload-Digest-Alg` (SHA-256 when absent).

use crate::providers::{IngressError, Unauthenticated};
use crate::secret::Secret;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};

/// The algorithms Sumsub names in `X-Payload-Digest-Alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlg {
    Sha256,
    Sha512,
    /// Legacy, still offered by Sumsub's Webhook manager.
    Sha1,
}

impl DigestAlg {
    /// The header's value; absent or blank means SHA-256 (Sumsub's default). An unknown name
    /// is refused rather than guessed.
    pub fn parse(header: Option<&str>) -> Result<Self, IngressError> {
        match header.map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(DigestAlg::Sha256),
            Some(name) if name.eq_ignore_ascii_case("HMAC_SHA256_HEX") => Ok(DigestAlg::Sha256),
            Some(name) if name.eq_ignore_ascii_case("HMAC_SHA512_HEX") => Ok(DigestAlg::Sha512),
            Some(name) if name.eq_ignore_ascii_case("HMAC_SHA1_HEX") => Ok(DigestAlg::Sha1),
            Some(_) => Err(IngressError::Unauthenticated(
                Unauthenticated::UnknownAlgorithm("X-Payload-Digest-Alg"),
            )),
        }
    }

    fn output_len(self) -> usize {
        match self {
            DigestAlg::Sha256 => 32,
            DigestAlg::Sha512 => 64,
            DigestAlg::Sha1 => 20,
        }
    }
}

/// Check the digest, either hex case, in constant time (`verify_slice`), before anything is
/// parsed. Surrounding whitespace is not part of a header value; anything else (a repeated
/// header joined with a comma, a truncated digest) is invalid.
pub fn verify(
    secret: &Secret,
    body: &[u8],
    digest: Option<&str>,
    alg: Option<&str>,
) -> Result<(), IngressError> {
    let alg = DigestAlg::parse(alg)?;
    let digest =
        digest
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(IngressError::Unauthenticated(Unauthenticated::Missing(
                "X-Payload-Digest",
            )))?;
    let invalid = IngressError::Unauthenticated(Unauthenticated::Invalid("X-Payload-Digest"));
    let presented = hex::decode(digest).map_err(|_| invalid.clone())?;
    if presented.len() != alg.output_len() {
        return Err(invalid);
    }
    let key = secret.expose().as_bytes();
    // HMAC takes keys of any length: `new_from_slice` cannot fail, and is not unwrapped.
    macro_rules! verify_with {
        ($hash:ty) => {{
            let mut mac = Hmac::<$hash>::new_from_slice(key).map_err(|_| invalid.clone())?;
            mac.update(body);
            mac.verify_slice(&presented).map_err(|_| invalid)
        }};
    }
    match alg {
        DigestAlg::Sha256 => verify_with!(Sha256),
        DigestAlg::Sha512 => verify_with!(Sha512),
        DigestAlg::Sha1 => verify_with!(Sha1),
    }
}
