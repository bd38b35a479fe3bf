//! Timestamps providers send, parsed exactly (no chrono: it would weigh on the wasm).
//! All values are milliseconds since the Unix epoch, UTC.

const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

struct Fields {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
}

impl Fields {
    fn to_millis(&self) -> Option<i64> {
        let valid = (1970..=9999).contains(&self.year)
            && (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60
            && self.millis < 1000;
        valid.then(|| {
            days_from_civil(self.year, self.month, self.day) * MS_PER_DAY
                + i64::from(self.hour) * 3_600_000
                + i64::from(self.minute) * 60_000
                + i64::from(self.second) * 1000
                + i64::from(self.millis)
        })
    }
}

/// Exactly `n` ASCII digits.
fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// RFC 3339 / ISO-8601 date-time with a zone (`Z` or `±hh:mm`), as ARGOS webhooks and
/// (assumed) Align's `created_at` carry it: `2023-07-06T02:01:03.494Z`. Fractions beyond
/// milliseconds are truncated. A time without a zone is refused: guessing one would
/// misorder observations.
pub fn parse_rfc3339(value: &str) -> Option<i64> {
    let value = value.trim();
    if value.len() < 20 || !value.is_char_boundary(19) {
        return None;
    }
    let (head, rest) = value.split_at(19);
    let b = head.as_bytes();
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (fraction, zone) = match rest.strip_prefix('.') {
        Some(r) => {
            let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            (&r[..end], &r[end..])
        }
        None => ("", rest),
    };
    let millis = fraction
        .chars()
        .chain(std::iter::repeat('0'))
        .take(3)
        .collect::<String>()
        .parse()
        .ok()?;
    let offset_ms = match zone {
        "Z" | "z" => 0,
        _ => {
            let (sign, hm) = match zone.as_bytes().first()? {
                b'+' => (1, &zone[1..]),
                b'-' => (-1, &zone[1..]),
                _ => return None,
            };
            let (h, m) = hm.split_once(':')?;
            let (h, m) = (digits(h, 2)?, digits(m, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (i64::from(h) * 3_600_000 + i64::from(m) * 60_000)
        }
    };
    let fields = Fields {
        year: i64::from(digits(&head[0..4], 4)?),
        month: digits(&head[5..7], 2)?,
        day: digits(&head[8..10], 2)?,
        hour: digits(&head[11..13], 2)?,
        minute: digits(&head[14..16], 2)?,
        second: digits(&head[17..19], 2)?,
        millis,
    };
    Some(fields.to_millis()? - offset_ms)
}

/// ARGOS API timestamps: `YYYY-MM-DD-HH-MM-SS-ZZZ`, UTC, `ZZZ` = milliseconds.
pub fn parse_argos(value: &str) -> Option<i64> {
    let parts: Vec<&str> = value.trim().split('-').collect();
    let [year, month, day, hour, minute, second, millis] = parts.as_slice() else {
        return None;
    };
    Fields {
        year: i64::from(digits(year, 4)?),
        month: digits(month, 2)?,
        day: digits(day, 2)?,
        hour: digits(hour, 2)?,
        minute: digits(minute, 2)?,
        second: digits(second, 2)?,
        millis: digits(millis, 3)?,
    }
    .to_millis()
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the HTTP-date form of `Retry-After`.
pub fn parse_http_date(value: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_weekday, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = MONTHS.iter().position(|m| m == month)? as u32 + 1;
    let hms: Vec<&str> = time.split(':').collect();
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    Fields {
        year: i64::from(digits(year, 4)?),
        month,
        day: digits(day, 2)?,
        hour: digits(h, 2)?,
        minute: digits(m, 2)?,
        second: digits(s, 2)?,
        millis: 0,
    }
    .to_millis()
}

/// `2026-11-22T03:56:50.123Z`.
pub fn format_rfc3339(millis: i64) -> String {
    let days = millis.div_euclid(MS_PER_DAY);
    let rem = millis.rem_euclid(MS_PER_DAY);
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from `date -u -d '<time>' +%s%3N`.
    const JUL_6_2023_020103_494: i64 = 1_688_608_863_494;

    #[test]
    fn rfc3339_with_z_and_millis() {
        assert_eq!(
            parse_rfc3339("2023-07-06T02:01:03.494Z"),
            Some(JUL_6_2023_020103_494)
        );
    }

    #[test]
    fn rfc3339_with_offsets_and_precision() {
        assert_eq!(
            parse_rfc3339("2023-07-06T11:01:03.494+09:00"),
            Some(JUL_6_2023_020103_494)
        );
        assert_eq!(
            parse_rfc3339("2023-07-05T21:01:03.494-05:00"),
            Some(JUL_6_2023_020103_494)
        );
        assert_eq!(
            parse_rfc3339("2023-07-06T02:01:03.494999Z"),
            Some(JUL_6_2023_020103_494)
        );
        assert_eq!(
            parse_rfc3339("2023-07-06T02:01:03Z"),
            Some(JUL_6_2023_020103_494 - 494)
        );
        assert_eq!(
            parse_rfc3339("2023-07-06T02:01:03.4Z"),
            Some(JUL_6_2023_020103_494 - 94)
        );
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
            parse_argos("2023-07-06-02-01-03-494"),
            Some(JUL_6_2023_020103_494)
        );
        for bad in [
            "2023-07-06-02-01-03",
            "2023-07-06T02:01:03.494Z",
            "2023-07-06-02-01-03-4940",
            "2023-07-06-25-01-03-494",
        ] {
            assert_eq!(parse_argos(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777_000)
        );
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
    }

    #[test]
    fn formatting_round_trips() {
        for ms in [0, JUL_6_2023_020103_494, 1_951_610_400_001, 951_782_400_000] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Some(ms), "{ms}");
        }
        assert_eq!(
            format_rfc3339(JUL_6_2023_020103_494),
            "2023-07-06T02:01:03.494Z"
        );
    }
}
