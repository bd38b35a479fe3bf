//! The timestamp parsers (`time::parse_rfc3339`, `parse_argos`, `parse_http_date`) and
//! `time::format`: any time a parser accepts is shown as text that parses back to the
//! same millisecond (the API and notifications show times with `format`, storage keeps
//! milliseconds).
#![no_main]

use kyc_core::time::{format, from_millis, parse_argos, parse_http_date, parse_rfc3339};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = [
        ("rfc3339", parse_rfc3339(text)),
        ("argos", parse_argos(text)),
        ("http-date", parse_http_date(text)),
    ];
    for (parser, at) in parsed {
        let Some(at) = at else { continue };
        let ms = at.timestamp_millis();
        let shown = format(at);
        assert_eq!(
            parse_rfc3339(&shown).map(|t| t.timestamp_millis()),
            Some(ms),
            "{parser} read {text:?} as {shown:?}, which does not parse back"
        );
        // What storage keeps (milliseconds) shows as a time that parses back to itself too
        // (not always the same text: a leap second is stored as the next second's ms).
        let stored = from_millis(ms).expect("a parsed time is within range");
        assert_eq!(
            parse_rfc3339(&format(stored)).map(|t| t.timestamp_millis()),
            Some(ms),
            "{parser} read {text:?}, stored as {ms} ms, shown as {:?}",
            format(stored)
        );
        // Surrounding whitespace never changes a reading.
        let padded = format!(" {text}\n");
        let again = match parser {
            "rfc3339" => parse_rfc3339(&padded),
            "argos" => parse_argos(&padded),
            _ => parse_http_date(&padded),
        };
        assert_eq!(again, Some(at));
    }
    // The two provider formats cannot be confused: no text is both.
    assert!(parse_rfc3339(text).is_none() || parse_argos(text).is_none());
});
