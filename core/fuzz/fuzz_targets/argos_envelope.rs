//! ARGOS's encrypted webhook bodies (`Argos::parse_webhook` with `Encryption::Aes256Ecb`):
//! `{"data": "<base64>"}`, AES-256-ECB with key = SHA-256(API key), PKCS#7.
//!
//! Two readings of every input, both checked against an envelope implemented here with the
//! raw AES block cipher and hand-written PKCS#7 (not the `ecb` crate kyc-core uses):
//! 1. the input as an envelope: it parses exactly as its plaintext does unencrypted, or is
//!    refused when it does not open;
//! 2. the input as a plaintext, sealed here: the envelope parses exactly as the plaintext.
#![no_main]

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes256;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use kyc_core::providers::argos::{Encryption, DEFAULT_MAX_PAGES};
use kyc_core::providers::{IngressError, ProviderProtocol};
use kyc_core_fuzz::{argos, arrivals, assert_no_email_quoted, now, ARGOS_KEY};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

const BLOCK: usize = 16;

/// The envelope's JSON layer as kyc-core reads it (a derived struct: `data` may be any value).
#[derive(Deserialize)]
struct Envelope {
    data: Option<Value>,
}

fn cipher() -> Aes256 {
    let key = Sha256::digest(ARGOS_KEY.as_bytes());
    Aes256::new(GenericArray::from_slice(&key))
}

/// Open an envelope, or `None` when kyc-core must refuse it.
fn open(body: &[u8]) -> Option<Vec<u8>> {
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    let data = envelope.data?;
    let data = data.as_str()?;
    let mut bytes = BASE64
        .decode(data.trim_matches(|c: char| c.is_ascii_whitespace()))
        .ok()?;
    if bytes.is_empty() || bytes.len() % BLOCK != 0 {
        return None;
    }
    let cipher = cipher();
    for block in bytes.chunks_mut(BLOCK) {
        cipher.decrypt_block(GenericArray::from_mut_slice(block));
    }
    let pad = *bytes.last()? as usize;
    if pad == 0
        || pad > BLOCK
        || !bytes[bytes.len() - pad..]
            .iter()
            .all(|&b| b as usize == pad)
    {
        return None;
    }
    bytes.truncate(bytes.len() - pad);
    Some(bytes)
}

/// Seal a plaintext the way ARGOS does.
fn seal(plaintext: &[u8]) -> Vec<u8> {
    let pad = BLOCK - plaintext.len() % BLOCK;
    let mut bytes = plaintext.to_vec();
    bytes.extend(std::iter::repeat_n(pad as u8, pad));
    let cipher = cipher();
    for block in bytes.chunks_mut(BLOCK) {
        cipher.encrypt_block(GenericArray::from_mut_slice(block));
    }
    serde_json::to_vec(&serde_json::json!({ "data": BASE64.encode(bytes) })).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let encrypted = argos(Encryption::Aes256Ecb, DEFAULT_MAX_PAGES);
    let plain = argos(Encryption::Off, DEFAULT_MAX_PAGES);

    // 1. The input as an envelope.
    let plaintext = open(data);
    for received_at in arrivals() {
        let outcome = encrypted.parse_webhook(data, received_at);
        match &plaintext {
            Some(plaintext) => {
                assert_eq!(outcome, plain.parse_webhook(plaintext, received_at));
            }
            None => assert!(
                matches!(outcome, Err(IngressError::Malformed(_))),
                "an envelope that does not open was read: {outcome:?}"
            ),
        }
        match &outcome {
            Ok(event) => assert!(event.trusted.is_none(), "a decrypted body was trusted"),
            Err(IngressError::Malformed(why)) => {
                assert_no_email_quoted(&why.to_string(), data);
                assert_no_email_quoted(&why.to_string(), plaintext.as_deref().unwrap_or_default());
            }
            Err(other) => panic!("parsing authenticates nothing, yet: {other:?}"),
        }
    }

    // 2. The input as a plaintext.
    let sealed = seal(data);
    assert_eq!(open(&sealed).as_deref(), Some(data));
    let outcome = encrypted.parse_webhook(&sealed, now());
    assert_eq!(outcome, plain.parse_webhook(data, now()));
    if let Err(IngressError::Malformed(why)) = &outcome {
        assert_no_email_quoted(&why.to_string(), data);
    }
});
