//! Align's `x-hmac-signature` check (`verify_signature`). Input: the header value, a
//! newline, then the body. The oracle is an HMAC computed here: a header verifies exactly
//! when, trimmed, it is the hex HMAC-SHA256 of the body in either case.
#![no_main]

use hmac::{Hmac, Mac};
use kyc_core::providers::align::verify_signature;
use kyc_core::providers::IngressError;
use kyc_core::secret::Secret;
use kyc_core_fuzz::ALIGN_KEY;
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    // Header values reach the core as strings.
    let header = String::from_utf8_lossy(header);
    let key = Secret::new(ALIGN_KEY).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes()).unwrap();
    mac.update(body);
    let genuine = hex::encode(mac.finalize().into_bytes());

    let outcome = verify_signature(&key, body, Some(&header));
    let should_verify = header.trim().eq_ignore_ascii_case(&genuine);
    match &outcome {
        Ok(()) => assert!(should_verify, "accepted a wrong signature {header:?}"),
        Err(IngressError::Unauthenticated(_)) => {
            assert!(!should_verify, "refused the genuine signature {header:?}")
        }
        Err(other) => panic!("a signature failure is a 401, not {other:?}"),
    }

    // The genuine signature verifies in either case and with surrounding whitespace;
    // nothing else does: absent, truncated, extended, or with one digit changed.
    assert_eq!(verify_signature(&key, body, Some(&genuine)), Ok(()));
    assert_eq!(
        verify_signature(&key, body, Some(&genuine.to_uppercase())),
        Ok(())
    );
    assert_eq!(
        verify_signature(&key, body, Some(&format!(" {genuine}\t"))),
        Ok(())
    );
    assert!(verify_signature(&key, body, None).is_err());
    assert!(verify_signature(&key, body, Some(&genuine[..62])).is_err());
    assert!(verify_signature(&key, body, Some(&format!("{genuine}00"))).is_err());
    let position = header.len() % genuine.len();
    let mut altered = genuine.clone().into_bytes();
    altered[position] = if altered[position] == b'0' {
        b'1'
    } else {
        b'0'
    };
    let altered = String::from_utf8(altered).unwrap();
    assert!(verify_signature(&key, body, Some(&altered)).is_err());
});
