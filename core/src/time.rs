//! Time: every timestamp in the core is a `DateTime<Utc>`; storage and the queue carry
//! milliseconds since the Unix epoch (D1 has no date type, and no BigInt: ms stay exact).
//! Parsers for the formats providers send, all with chrono.

pub use chrono::TimeDelta;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

pub type Timestamp = DateTime<Utc>;

/// The timestamp `ms` milliseconds after the epoch; `None` outside chrono's range.
pub fn from_millis(ms: i64) -> Option<Timestamp> {
    DateTime::from_timestamp_millis(ms)
}

/// The epoch: "never" for ordering marks (an observation newer than nothing).
pub fn epoch() -> Timestamp {
    DateTime::UNIX_EPOCH
}

pub fn millis(duration: i64) -> TimeDelta {
    TimeDelta::milliseconds(duration)
}

pub fn seconds(duration: i64) -> TimeDelta {
    TimeDelta::seconds(duration)
}

/// Only times in the years RFC 3339 can write (0000-9999, UTC) are read: [`format`] shows any
/// other (`+10000-…`, `-0001-…`) as text no RFC 3339 parser reads back, and no provider means
/// one. Measured in milliseconds, as storage keeps times: a leap second ending 9999 is stored
/// as a millisecond of 10000.
fn writable(at: Timestamp) -> Option<Timestamp> {
    /// 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z.
    const FIRST_MS: i64 = -62_167_219_200_000;
    const AFTER_LAST_MS: i64 = 253_402_300_800_000;
    (FIRST_MS..AFTER_LAST_MS)
        .contains(&at.timestamp_millis())
        .then_some(at)
}

/// RFC 3339 with a zone (`2023-07-06T02:01:03.494Z`, `…+09:00`), as ARGOS webhooks and
/// (assumed) Align's `created_at` carry it. A time without a zone is refused: guessing one
/// would misorder observations.
pub fn parse_rfc3339(value: &str) -> Option<Timestamp> {
    DateTime::parse_from_rfc3339(value.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .and_then(writable)
}

/// ARGOS API timestamps: `YYYY-MM-DD-HH-MM-SS-ZZZ`, UTC, `ZZZ` = milliseconds.
pub fn parse_argos(value: &str) -> Option<Timestamp> {
    NaiveDateTime::parse_from_str(value.trim(), "%Y-%m-%d-%H-%M-%S-%3f")
        .ok()
        .map(|t| t.and_utc())
        .and_then(writable)
}

/// The HTTP-date form of `Retry-After` (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn parse_http_date(value: &str) -> Option<Timestamp> {
    DateTime::parse_from_rfc2822(value.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .and_then(writable)
}

/// `2026-11-22T03:56:50.123Z`: what the API and notifications show.
pub fn format(at: Timestamp) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A backfill's range bound: `YYYY-MM-DD`, checked to be a real day, not after `today`'s
/// (UTC). Returns it as given.
pub fn parse_day(value: &str, today: Timestamp) -> Result<String, &'static str> {
    let day = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|_| "must be a date, YYYY-MM-DD")?;
    if value.len() != 10 {
        return Err("must be a date, YYYY-MM-DD");
    }
    if day > today.date_naive() {
        return Err("is in the future");
    }
    Ok(value.to_owned())
}

/// The UTC day of a time, `YYYY-MM-DD`.
pub fn day(at: Timestamp) -> String {
    at.format("%Y-%m-%d").to_string()
}

/// Serde for timestamps stored as milliseconds (D1 columns, queue messages).
pub mod as_millis {
    pub use chrono::serde::ts_milliseconds::{deserialize, serialize};

    pub mod option {
        pub use chrono::serde::ts_milliseconds_option::{deserialize, serialize};
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_for_backfill_ranges() {
        let today = parse_rfc3339("2026-11-29T23:59:59Z").unwrap();
        assert_eq!(day(today), "2026-11-29");
        assert_eq!(parse_day("2026-11-29", today).as_deref(), Ok("2026-11-29"));
        assert_eq!(parse_day("2024-02-29", today).as_deref(), Ok("2024-02-29"));
        assert_eq!(parse_day("2026-11-30", today), Err("is in the future"));
        for bad in [
            "2026-02-30",
            "20260101",
            "2026-1-01",
            "yesterday",
            "",
            "2026-01-01T00:00:00Z",
        ] {
            assert_eq!(
                parse_day(bad, today),
                Err("must be a date, YYYY-MM-DD"),
                "{bad}"
            );
        }
    }

    // Reference values from `date -u -d '<time>' +%s%3N`.
    const JUL_6_2023_020103_494: i64 = 1_688_608_863_494;

    fn ms(at: Option<Timestamp>) -> Option<i64> {
        at.map(|t| t.timestamp_millis())
    }

    #[test]
    fn rfc3339_with_z_and_millis() {
        assert_eq!(
            ms(parse_rfc3339("2023-07-06T02:01:03.494Z")),
            Some(JUL_6_2023_020103_494)
        );
    }

    #[test]
    fn rfc3339_with_offsets_and_precision() {
        for (input, expected) in [
            ("2023-07-06T11:01:03.494+09:00", JUL_6_2023_020103_494),
            ("2023-07-05T21:01:03.494-05:00", JUL_6_2023_020103_494),
            // Finer than milliseconds: storage keeps whole milliseconds (truncated).
            ("2023-07-06T02:01:03.494999Z", JUL_6_2023_020103_494),
            ("2023-07-06T02:01:03Z", JUL_6_2023_020103_494 - 494),
            ("2023-07-06T02:01:03.4Z", JUL_6_2023_020103_494 - 94),
            (" 2023-07-06T02:01:03.494Z\n", JUL_6_2023_020103_494),
        ] {
            assert_eq!(ms(parse_rfc3339(input)), Some(expected), "{input:?}");
        }
    }

    #[test]
    fn rfc3339_rejects_zoneless_and_invalid_dates() {
        for bad in [
            "2023-07-06T02:01:03.494",
            "2023-07-06T02:01:03",
            "2023-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-07-06T24:00:00Z",
            "2023-07-06T02:01:03.Z",
            "2023-07-06T02:01:03+0900",
            "not a date at all, really",
            "",
            "2023-07-06T02:01:03éZ",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn argos_api_format() {
        assert_eq!(
            ms(parse_argos("2023-07-06-02-01-03-494")),
            Some(JUL_6_2023_020103_494)
        );
        for bad in [
            "2023-07-06-02-01-03",
            "2023-07-06T02:01:03.494Z",
            "2023-07-06-02-01-03-4940",
            "2023-07-06-25-01-03-494",
            "2023-02-29-00-00-00-000",
        ] {
            assert_eq!(parse_argos(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            ms(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT")),
            Some(784_111_777_000)
        );
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date("soon"), None);
    }

    #[test]
    fn formatting_round_trips_through_milliseconds() {
        for value in [0, JUL_6_2023_020103_494, 1_951_610_400_001, 951_782_400_000] {
            let at = from_millis(value).unwrap();
            assert_eq!(ms(parse_rfc3339(&format(at))), Some(value), "{value}");
        }
        assert_eq!(
            format(from_millis(JUL_6_2023_020103_494).unwrap()),
            "2023-07-06T02:01:03.494Z"
        );
    }

    #[test]
    fn only_times_format_can_write_are_read() {
        // Found by the timestamps fuzz target: parse_http_date read " 06 Nov 19098 08:49:37 K"
        // and `format` showed it as "+19098-11-06T08:49:37.000Z", which parse_rfc3339 (and
        // any RFC 3339 reader of the API) refuses. Offsets and signed years did the same.
        for outside in [
            parse_http_date(" 06 Nov 19098 08:49:37 K"),
            parse_http_date("Fri, 31 Dec 9999 23:59:59 -0001"),
            parse_http_date("01 Jan 0000 00:00:00 +0001"),
            parse_rfc3339("9999-12-31T23:59:59-00:01"),
            parse_rfc3339("0000-01-01T00:00:00+00:01"),
            parse_argos("+12345-01-01-00-00-00-000"),
            parse_argos("-0001-01-01-00-00-00-000"),
        ] {
            assert_eq!(outside.map(format), None);
        }
        for edge in [
            parse_rfc3339("0000-01-01T00:00:00Z"),
            parse_rfc3339("9999-12-31T23:59:59.999Z"),
            parse_argos("0000-01-01-00-00-00-000"),
            parse_http_date("Fri, 31 Dec 9999 23:59:59 +0000"),
        ] {
            let at = edge.expect("the edges of the range are read");
            assert_eq!(parse_rfc3339(&format(at)), Some(at));
        }
    }

    #[test]
    fn a_leap_second_is_stored_as_a_time_format_can_write() {
        // Found by the timestamps fuzz target once years were bounded:
        // "9999-12-31T23:59:60.991Z" is in 9999, but its milliseconds (what storage keeps)
        // are 10000-01-01T00:00:00.991Z, which `format` writes as "+10000-…".
        assert_eq!(parse_rfc3339("9999-12-31T23:59:60.991Z"), None);
        // Any other leap second is read, and stored as the next second's milliseconds.
        let leap = parse_rfc3339("2016-12-31T23:59:60.500Z").unwrap();
        let stored = from_millis(leap.timestamp_millis()).unwrap();
        assert_eq!(format(stored), "2017-01-01T00:00:00.500Z");
        assert_eq!(parse_rfc3339(&format(stored)), Some(stored));
    }
}
