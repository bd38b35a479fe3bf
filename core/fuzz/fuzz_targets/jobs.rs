//! Queue messages (`jobs::Job::decode`): they are JSON text, and may come from another
//! producer or another version of the worker. A job that decodes encodes back to itself; a
//! refusal (logged by the consumer) never quotes what looks like an e-mail address.
#![no_main]

use kyc_core::jobs::Job;
use kyc_core_fuzz::{assert_no_email_quoted, assert_valid_ref};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Queue bodies reach the consumer as strings.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Job::decode(text) {
        Ok(job) => {
            let encoded = job.encode();
            assert!(!encoded.is_empty());
            let again = Job::decode(&encoded).expect("an encoded job decodes");
            assert_eq!(again, job);
            assert_eq!(again.encode(), encoded);
            if let Job::Reconcile(reconcile) = &job {
                assert_valid_ref(&reconcile.subject_ref);
            }
        }
        Err(error) => assert_no_email_quoted(&error.to_string(), data),
    }
});
