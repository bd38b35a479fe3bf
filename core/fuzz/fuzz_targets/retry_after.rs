//! `Retry-After` values (`schedule::parse_retry_after`): delta-seconds or an HTTP date.
#![no_main]

use kyc_core::schedule::parse_retry_after;
use kyc_core::time::{parse_http_date, TimeDelta};
use kyc_core_fuzz::arrivals;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Header values reach the core as strings.
    let text = String::from_utf8_lossy(data);
    let trimmed = text.trim();
    for now in arrivals() {
        let wait = parse_retry_after(&text, now);
        if let Some(wait) = wait {
            assert!(wait >= TimeDelta::zero(), "a negative wait {wait}");
        }
        if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            // delta-seconds: exactly that many seconds, saturating when absurd.
            let want = trimmed
                .parse::<i64>()
                .ok()
                .and_then(TimeDelta::try_seconds)
                .unwrap_or(TimeDelta::MAX);
            assert_eq!(wait, Some(want), "{trimmed:?}");
        } else if let Some(at) = parse_http_date(trimmed) {
            // A date: how long until then, or no wait when it has passed.
            assert_eq!(wait, Some((at - now).max(TimeDelta::zero())), "{trimmed:?}");
        }
    }
});
