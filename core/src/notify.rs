//! Notifications to the application, as Standard Webhooks (docs/notifications.md): the
//! payload of each change, its stable id, the signature of an attempt, and what the
//! application's answer means for the next one. [`delivery`]: one attempt, as plans.

pub mod delivery;

use crate::db::subjects::SubjectRow;
use crate::observation::Source;
use crate::schedule::jitter_by;
use crate::status::{Aml, KycStatus};
use crate::subject::Provider;
use crate::time::{format, TimeDelta, Timestamp};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::fmt;

/// The Standard Webhooks headers.
pub const WEBHOOK_ID: &str = "webhook-id";
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// What a notification says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    #[serde(rename = "kyc.status.changed")]
    StatusChanged,
    #[serde(rename = "kyc.aml.updated")]
    AmlUpdated,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::StatusChanged => "kyc.status.changed",
            Kind::AmlUpdated => "kyc.aml.updated",
        }
    }
}

/// The body of a notification: ids and statuses, never PII.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payload<'a> {
    #[serde(rename = "type")]
    pub kind: Kind,
    /// When the change was recorded.
    pub timestamp: String,
    pub data: Data<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Data<'a> {
    pub provider: Provider,
    #[serde(rename = "ref")]
    pub subject_ref: &'a str,
    pub external_id: Option<&'a str>,
    pub status: KycStatus,
    pub previous_status: KycStatus,
    pub provider_status: Option<&'a str>,
    pub sub_status: Option<&'a str>,
    pub aml: Option<&'a Aml>,
    pub previous_aml: Option<&'a Aml>,
    pub source: Source,
    pub status_at: Option<String>,
    /// The subject's version after the change: notifications of one subject order by it.
    pub version: i64,
}

/// The JSON body of a change's notification of `kind`.
pub fn payload(
    kind: Kind,
    stored: &SubjectRow,
    change: &crate::transition::Change,
    source: Source,
    now: Timestamp,
) -> String {
    let state = &change.next;
    let previous_aml = stored.aml();
    let payload = Payload {
        kind,
        timestamp: format(now),
        data: Data {
            provider: stored.provider,
            subject_ref: stored.subject_ref.as_str(),
            external_id: stored.external_id.as_deref(),
            status: state.status,
            previous_status: change.previous,
            provider_status: state.provider_status.as_deref(),
            sub_status: state.sub_status.as_deref(),
            aml: state.aml.as_ref(),
            previous_aml: previous_aml.as_ref(),
            source,
            status_at: state.status_at.map(format),
            version: stored.version + 1,
        },
    };
    // Plain data with derived impls: serializing cannot fail.
    serde_json::to_string(&payload).unwrap_or_default()
}

/// The `webhook-id` of notification `seq`: stable across retries, unique across databases
/// (the creation time tells two databases' `seq` apart), and it names its row.
pub fn message_id(seq: i64, created_at: Timestamp) -> String {
    format!("msg_{seq}_{}", base36(created_at.timestamp_millis()))
}

/// The `seq` and creation time (ms) a `webhook-id` names; `None` when it is not one.
pub fn parse_message_id(id: &str) -> Option<(i64, i64)> {
    let (seq_text, created_text) = id.strip_prefix("msg_")?.split_once('_')?;
    let seq = seq_text.parse::<i64>().ok().filter(|s| *s > 0)?;
    let created = i64::from_str_radix(created_text, 36).ok()?;
    // Only the canonical spelling names the row (no sign, no leading zeros).
    (seq.to_string() == seq_text && base36(created) == created_text).then_some((seq, created))
}

fn base36(mut n: i64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if n <= 0 {
        return "0".into();
    }
    let mut out = vec![];
    while n > 0 {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The secrets notifications are signed with (`APP_WEBHOOK_SECRET`): one, or several
/// space-separated during a rotation (each attempt is signed with every one). `Debug` never
/// shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeys(Vec<Vec<u8>>);

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKeys([REDACTED; {}])", self.0.len())
    }
}

/// Why `APP_WEBHOOK_SECRET` is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretError {
    Empty,
    /// A secret is not `whsec_` followed by base64.
    NotBase64 {
        position: usize,
    },
    /// Standard Webhooks secrets are 24 to 64 random bytes.
    Length {
        position: usize,
        bytes: usize,
    },
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretError::Empty => f.write_str("no secret given"),
            SecretError::NotBase64 { position } => {
                write!(f, "secret {position} is not whsec_ followed by base64")
            }
            SecretError::Length { position, bytes } => write!(
                f,
                "secret {position} decodes to {bytes} bytes; Standard Webhooks secrets are 24 to 64"
            ),
        }
    }
}

impl SigningKeys {
    /// `whsec_<base64>` (the prefix is optional, as in the official libraries), several
    /// separated by spaces. Errors name the secret's position, never its value.
    pub fn parse(value: &str) -> Result<Self, SecretError> {
        let keys: Vec<Vec<u8>> = value
            .split_whitespace()
            .enumerate()
            .map(|(i, secret)| {
                let position = i + 1;
                let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
                let key = BASE64
                    .decode(encoded)
                    .map_err(|_| SecretError::NotBase64 { position })?;
                if !(24..=64).contains(&key.len()) {
                    return Err(SecretError::Length {
                        position,
                        bytes: key.len(),
                    });
                }
                Ok(key)
            })
            .collect::<Result<_, _>>()?;
        if keys.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self(keys))
    }

    /// The `webhook-signature` value: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` for
    /// each secret, space-separated.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        self.0
            .iter()
            // HMAC takes keys of any length: `new_from_slice` never refuses one.
            .filter_map(|key| Hmac::<Sha256>::new_from_slice(key).ok())
            .map(|mut mac| {
                mac.update(id.as_bytes());
                mac.update(b".");
                mac.update(timestamp.to_string().as_bytes());
                mac.update(b".");
                mac.update(body);
                format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What the application's answer to an attempt means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 2xx.
    Delivered,
    /// 410: the endpoint is gone; delivery stops until re-enabled through the API.
    Gone,
    /// Anything else (3xx, 4xx, 429, 5xx, a timeout, no connection): try again later, no
    /// sooner than `Retry-After` when it said.
    Failed { retry_after: Option<TimeDelta> },
}

pub fn classify(status: u16, retry_after: Option<TimeDelta>) -> Answer {
    match status {
        200..=299 => Answer::Delivered,
        410 => Answer::Gone,
        _ => Answer::Failed { retry_after },
    }
}

/// What an attempt's record says of the application's answer: its status, and for a redirect
/// (never followed: a failed attempt) where it pointed, so the operator can fix the URL.
pub fn describe_reply(status: u16, location: Option<&str>) -> String {
    if !crate::outbound::is_redirect(status) {
        return format!("HTTP {status}");
    }
    match location {
        Some(location) => format!("HTTP {status} redirect (not followed) to {location}"),
        None => format!("HTTP {status} redirect (not followed) without Location"),
    }
}

/// First retry after 5 s, doubling to a ceiling of an hour, ±20 % jitter (so notifications
/// that failed together do not retry together); a `Retry-After` is a floor.
pub const RETRY_BASE: TimeDelta = TimeDelta::seconds(5);
pub const RETRY_CAP: TimeDelta = TimeDelta::hours(1);

/// When to try again after the `attempt`-th failed attempt.
pub fn retry_delay(attempt: u32, retry_after: Option<TimeDelta>, seed: &str) -> TimeDelta {
    let exponent = attempt.saturating_sub(1).min(20);
    let delay = RETRY_BASE
        .checked_mul(1 << exponent)
        .map_or(RETRY_CAP, |d| d.min(RETRY_CAP));
    let delay = jitter_by(delay, 20, seed, attempt);
    retry_after.map_or(delay, |r| {
        r.clamp(TimeDelta::zero(), TimeDelta::days(1)).max(delay)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_millis;

    /// Official vectors (docs/notifications.md): libraries/go/webhook_test.go and
    /// libraries/rust/src/lib.rs of standard-webhooks/standard-webhooks.
    #[test]
    fn the_official_standard_webhooks_vectors() {
        let keys = SigningKeys::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            keys.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let keys = SigningKeys::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            keys.sign(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn a_rotation_signs_with_every_secret_and_the_prefix_is_optional() {
        let both = SigningKeys::parse(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw  C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        )
        .unwrap();
        let signature = both.sign("msg_1", 1, b"{}");
        let parts: Vec<&str> = signature.split(' ').collect();
        assert_eq!(parts.len(), 2);
        let first = SigningKeys::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let second = SigningKeys::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            parts,
            [
                first.sign("msg_1", 1, b"{}"),
                second.sign("msg_1", 1, b"{}")
            ]
        );
    }

    #[test]
    fn unusable_secrets_are_clear_errors_that_never_quote_them() {
        assert_eq!(SigningKeys::parse("  "), Err(SecretError::Empty));
        assert_eq!(
            SigningKeys::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_not*base64"),
            Err(SecretError::NotBase64 { position: 2 })
        );
        assert_eq!(
            SigningKeys::parse("whsec_c2hvcnQ="),
            Err(SecretError::Length {
                position: 1,
                bytes: 5
            })
        );
        let message = SecretError::NotBase64 { position: 2 }.to_string();
        assert!(!message.contains("base64!") && message.contains("secret 2"));
        let keys = SigningKeys::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(format!("{keys:?}"), "SigningKeys([REDACTED; 1])");
    }

    #[test]
    fn message_ids_are_stable_and_name_their_row() {
        let created = from_millis(1_795_000_000_123).unwrap();
        let id = message_id(42, created);
        assert_eq!(id, message_id(42, created));
        assert!(id.starts_with("msg_42_"), "{id}");
        assert_eq!(parse_message_id(&id), Some((42, 1_795_000_000_123)));
        for bad in [
            "",
            "msg_",
            "msg_42",
            "msg_x_1",
            "msg_0_1",
            "msg_042_1",
            "msg_1_-1",
            "evt_1_1",
            "msg_1_00",
        ] {
            assert_eq!(parse_message_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn answers() {
        assert_eq!(classify(200, None), Answer::Delivered);
        assert_eq!(classify(204, None), Answer::Delivered);
        assert_eq!(classify(410, None), Answer::Gone);
        for status in [301, 400, 404, 429, 500, 503] {
            assert!(
                matches!(classify(status, None), Answer::Failed { .. }),
                "{status}"
            );
        }
    }

    #[test]
    fn a_redirect_is_a_failed_attempt_that_names_its_location() {
        for status in [301, 302, 303, 307, 308] {
            assert!(matches!(classify(status, None), Answer::Failed { .. }));
        }
        assert_eq!(
            describe_reply(302, Some("https://app.example/new")),
            "HTTP 302 redirect (not followed) to https://app.example/new"
        );
        assert_eq!(
            describe_reply(301, None),
            "HTTP 301 redirect (not followed) without Location"
        );
        assert_eq!(describe_reply(204, Some("ignored")), "HTTP 204");
    }

    #[test]
    fn retries_back_off_from_five_seconds_to_an_hour_honouring_retry_after() {
        let within = |actual: TimeDelta, expected: TimeDelta| {
            (actual - expected).abs() <= expected / 5 + TimeDelta::milliseconds(1)
        };
        let expected = [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600];
        for (attempt, seconds) in (1..).zip(expected) {
            let delay = retry_delay(attempt, None, "msg_1");
            assert!(
                within(delay, TimeDelta::seconds(seconds)),
                "{attempt}: {delay}"
            );
        }
        assert_eq!(
            retry_delay(1, Some(TimeDelta::minutes(10)), "msg_1"),
            TimeDelta::minutes(10)
        );
        let spread: std::collections::HashSet<_> = (0..40)
            .map(|i| retry_delay(3, None, &format!("msg_{i}")))
            .collect();
        assert!(spread.len() > 30, "jittered");
    }
}
