//! ARGOS's optional webhook encryption (docs/providers/argos.md): `{"data": "<base64>"}` holding
//! AES-256-ECB ciphertext with key = SHA-256(API key as UTF-8) and PKCS#7 padding.

use crate::providers::{parse_json, IngressError, Malformed};
use crate::secret::Secret;
use aes::Aes256;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ecb::cipher::block_padding::Pkcs7;
use ecb::cipher::{BlockDecryptMut, KeyInit};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

const AES_BLOCK: usize = 16;

/// `data` is read as any value so a plain body (whose `data` may be an object, as in
/// `updated`) is refused with a clear message rather than a type error.
#[derive(Deserialize)]
struct WireEnvelope {
    data: Option<Value>,
}

/// Open the envelope: base64 (standard alphabet, padded; surrounding whitespace such as a
/// trailing newline is tolerated, whitespace inside is not), then AES-256-ECB with PKCS#7.
/// Messages never quote the body. A wrong key almost always fails the padding check.
pub fn decrypt(api_key: &Secret, body: &[u8]) -> Result<Vec<u8>, IngressError> {
    let envelope: WireEnvelope = parse_json(body)?;
    let data = envelope
        .data
        .as_ref()
        .and_then(Value::as_str)
        .ok_or(IngressError::Malformed(Malformed::NotAnEnvelope))?;
    let ciphertext = BASE64
        .decode(data.trim_matches(|c: char| c.is_ascii_whitespace()))
        .map_err(|_| {
            IngressError::Malformed(Malformed::WrongField {
                field: "envelope data",
                kind: "base64",
            })
        })?;
    if ciphertext.is_empty() || ciphertext.len() % AES_BLOCK != 0 {
        return Err(IngressError::Malformed(Malformed::PartialBlocks));
    }
    // Derived per call rather than stored, so the key never sits in `Argos` (which is `Debug`).
    let key = Sha256::digest(api_key.expose().as_bytes());
    // No padding oracle worth hiding: ECB blocks decrypt alone, so a sender cannot steer a
    // block's plaintext, and it must hold the URL token before reaching this.
    ecb::Decryptor::<Aes256>::new(&key)
        .decrypt_padded_vec_mut::<Pkcs7>(&ciphertext)
        .map_err(|_| IngressError::Malformed(Malformed::Undecryptable))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::providers::argos::tests::{envelope, KEY};

    pub(crate) const BAD_PADDING: &str =
        "envelope does not decrypt (wrong key or corrupt ciphertext)";

    macro_rules! vector {
        ($name:literal) => {
            (
                include_str!(concat!("../../../tests/fixtures/argos/", $name, ".enc.b64")),
                include_bytes!(concat!("../../../tests/fixtures/argos/", $name, ".json"))
                    .as_slice(),
            )
        };
    }

    pub(crate) const VECTORS: [(&str, &[u8]); 4] = [
        vector!("approved"),
        vector!("updated"),
        vector!("created"),
        vector!("token_expired"),
    ];

    fn key() -> Secret {
        Secret::new(KEY).unwrap()
    }

    fn message(result: Result<Vec<u8>, IngressError>) -> String {
        match result {
            Err(IngressError::Malformed(why)) => why.to_string(),
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn openssl_vectors_decrypt_to_the_plaintext_bytes() {
        for (b64, plaintext) in VECTORS {
            assert_eq!(decrypt(&key(), &envelope(b64)).unwrap(), plaintext);
        }
        // 160 bytes of plaintext: openssl added a whole block of padding.
        assert_eq!(BASE64.decode(VECTORS[3].0).unwrap().len(), 176);
    }

    #[test]
    fn surrounding_whitespace_in_the_base64_is_tolerated() {
        let (b64, plaintext) = VECTORS[0];
        let body = format!("{{ \"data\": \"{b64}\\n\" }}\n");
        assert_eq!(decrypt(&key(), body.as_bytes()).unwrap(), plaintext);
    }

    #[test]
    fn bad_ciphertexts_are_malformed() {
        let (b64, _) = VECTORS[0];
        assert!(
            b64.contains('+') || b64.contains('/'),
            "the vector exercises the alphabet"
        );
        let url_safe = b64.replace('+', "-").replace('/', "_");
        let (padded, _) = VECTORS[3];
        assert!(padded.ends_with('='));
        let broken_line = format!("{}\\n{}", &b64[..64], &b64[64..]);
        let not_base64 = "envelope data is not base64";
        let not_blocks = "envelope data is not whole AES blocks";
        let cases: [(String, &str); 10] = [
            ("***".into(), not_base64),
            (url_safe, not_base64),
            (padded.trim_end_matches('=').into(), not_base64),
            (broken_line, not_base64),
            (String::new(), not_blocks),
            (BASE64.encode([7u8; 15]), not_blocks),
            (BASE64.encode([7u8; 33]), not_blocks),
            (
                include_str!("../../../tests/fixtures/argos/bad_padding_zero.enc.b64").into(),
                BAD_PADDING,
            ),
            (
                include_str!("../../../tests/fixtures/argos/bad_padding_mixed.enc.b64").into(),
                BAD_PADDING,
            ),
            (
                include_str!("../../../tests/fixtures/argos/bad_padding_too_long.enc.b64").into(),
                BAD_PADDING,
            ),
        ];
        for (data, want) in cases {
            assert_eq!(message(decrypt(&key(), &envelope(&data))), want, "{data:?}");
        }
    }

    #[test]
    fn a_wrong_key_does_not_decrypt() {
        let other = Secret::new("argos_test_other_key").unwrap();
        for (b64, _) in VECTORS {
            let why = message(decrypt(&other, &envelope(b64)));
            assert!(
                !why.contains("Ji Sung") && !why.contains(&b64[..16]),
                "{why}"
            );
        }
    }

    #[test]
    fn a_plain_body_is_not_an_envelope() {
        let expected = "encrypted envelope expected: data is not a string";
        for body in [
            include_bytes!("../../../tests/fixtures/argos/approved.json").as_slice(),
            include_bytes!("../../../tests/fixtures/argos/updated.json"),
            br#"{"data":{"kyc_result":"approved"}}"#,
        ] {
            assert_eq!(message(decrypt(&key(), body)), expected);
        }
        assert_eq!(
            message(decrypt(&key(), b"ji.sung.park@example.com")),
            "body is not the expected JSON (line 1, column 1)"
        );
    }
}
