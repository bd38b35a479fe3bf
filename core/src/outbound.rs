//! Outbound calls (provider APIs, the application's webhook endpoint): how they fail, and
//! what a failure means for the subject and the provider.

use crate::providers::AnswerError;
use chrono::TimeDelta;
use std::fmt;

/// Why an outbound call got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundError {
    /// No answer within the configured timeout.
    Timeout,
    /// No answer at all: connection refused or reset, DNS, TLS.
    Transport,
    /// A non-2xx answer; `retry_after` when it said how long to wait.
    Http {
        status: u16,
        retry_after: Option<TimeDelta>,
    },
    /// A 3xx answer: redirects are never followed (the request carries a key or a signature
    /// meant for the configured origin). `location` is where it pointed, for the operator to
    /// fix the URL ([`location_for_record`]).
    Redirect {
        status: u16,
        location: Option<String>,
    },
    /// The answer was longer than `limit` bytes (declared or read): abandoned unparsed.
    TooLarge { limit: usize },
}

/// Longest `Location` kept in a log line or an attempt's record.
pub const MAX_LOCATION_LEN: usize = 200;

/// A redirect's `Location` as logs and records may show it: visible ASCII only (no header or
/// log injection), at most [`MAX_LOCATION_LEN`] characters, `…` when cut.
pub fn location_for_record(raw: &str) -> String {
    let clean: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .collect();
    if clean.len() > MAX_LOCATION_LEN {
        format!("{}…", &clean[..MAX_LOCATION_LEN])
    } else {
        clean
    }
}

/// What an answer's status means before its body is read: redirects (3xx) are failures of
/// their own, never followed.
pub fn is_redirect(status: u16) -> bool {
    (300..400).contains(&status)
}

/// An answer's body read within a byte limit: refused on a declared `Content-Length` above it
/// before a byte is read, and abandoned as soon as the bytes read pass it.
#[derive(Debug)]
pub struct CappedBody {
    limit: usize,
    bytes: Vec<u8>,
}

impl CappedBody {
    /// Starts reading; `Err` when the declared length is already over the limit.
    pub fn new(limit: usize, content_length: Option<&str>) -> Result<Self, OutboundError> {
        let declared = content_length.and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(OutboundError::TooLarge { limit });
        }
        Ok(Self {
            limit,
            bytes: Vec::new(),
        })
    }

    /// Adds a chunk; `Err` once the body passes the limit (stop reading then).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), OutboundError> {
        // bytes.len() <= limit holds throughout, so this cannot underflow.
        if chunk.len() > self.limit - self.bytes.len() {
            return Err(OutboundError::TooLarge { limit: self.limit });
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

impl fmt::Display for OutboundError {
    /// A short class for logs and stats; never a response body.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutboundError::Timeout => f.write_str("timeout"),
            OutboundError::Transport => f.write_str("transport error"),
            OutboundError::Http { status, .. } => write!(f, "HTTP {status}"),
            OutboundError::Redirect {
                status,
                location: Some(location),
            } => write!(f, "HTTP {status} {NOT_FOLLOWED}{TO}{location}"),
            OutboundError::Redirect {
                status,
                location: None,
            } => write!(f, "HTTP {status} {NOT_FOLLOWED} without Location"),
            OutboundError::TooLarge { limit } => write!(f, "answer larger than {limit} bytes"),
        }
    }
}

/// How a recorded redirect reads, before where it pointed ([`OutboundError`]'s `Display`).
const NOT_FOLLOWED: &str = "redirect (not followed)";
const TO: &str = " to ";

/// A recorded failure (a subject's or a provider's `last_error`, as `Display` wrote it)
/// without a redirect's `Location`: it may name a subject or carry a token, and some readers
/// (alerts in chat rooms) must not show it. Read back here, beside the format that wrote it.
pub fn class_of_recorded(error: &str) -> &str {
    let redirect = format!("{NOT_FOLLOWED}{TO}");
    match error.find(&redirect) {
        Some(at) => &error[..at + NOT_FOLLOWED.len()],
        None => error,
    }
}

/// Why a check of one subject learned nothing. A failure never changes a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckFailure {
    Outbound(OutboundError),
    Answer(AnswerError),
}

/// What a provider's failed answer says, whatever was asked of it: the one rule a check of
/// one subject ([`CheckFailure::scope`]) and a page of a list walk
/// ([`crate::backfill::ends_walk`]) both read. Each then acts on it in its own terms: a check
/// is asked again on the subject's schedule whatever happens, while a walk is a one-off the
/// operator started, one per provider at a time, that must end with a reason they can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderAnswer {
    /// 400, 404, 410, 422, or an answer too large to read within the configured bound: the
    /// provider answered this very request for good (it has no record of what was asked, or
    /// will never accept the request). The same request will get the same answer; other
    /// requests are unaffected, so the provider is healthy. A check: about its subject. A
    /// walk: ends (a bad range, an expired cursor, a list too long to read).
    Final,
    /// 401, 403, any other 4xx, a redirect (never followed): the provider refuses kyc-edge
    /// itself (its key, its permissions, an endpoint that moved) until the operator acts. A
    /// check: against the provider (back-off, counted toward `degraded`; checks resume by
    /// themselves once the key is fixed). A walk: ends with the reason, since retrying cannot
    /// help and a running walk holds the provider's only slot.
    Refused,
    /// 429: wait, no sooner than its `Retry-After`. A check: pauses the provider. A walk:
    /// retried next run.
    RateLimited { retry_after: Option<TimeDelta> },
    /// 408, 5xx, a timeout, no connection: the provider is unwell for now. A check: backs off.
    /// A walk: retried next run.
    Unavailable,
}

impl OutboundError {
    /// What this failure says of the provider ([`ProviderAnswer`]).
    pub fn provider_answer(&self) -> ProviderAnswer {
        match self {
            OutboundError::Http {
                status: 400 | 404 | 410 | 422,
                ..
            }
            | OutboundError::TooLarge { .. } => ProviderAnswer::Final,
            OutboundError::Http {
                status: 429,
                retry_after,
            } => ProviderAnswer::RateLimited {
                retry_after: *retry_after,
            },
            OutboundError::Http { status: 408, .. } => ProviderAnswer::Unavailable,
            OutboundError::Http { status, .. } if (400..500).contains(status) => {
                ProviderAnswer::Refused
            }
            OutboundError::Redirect { .. } => ProviderAnswer::Refused,
            OutboundError::Http { .. } | OutboundError::Timeout | OutboundError::Transport => {
                ProviderAnswer::Unavailable
            }
        }
    }
}

/// Who a failure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureScope {
    /// The provider is unwell or refuses us ([`ProviderAnswer::Refused`],
    /// [`ProviderAnswer::RateLimited`], [`ProviderAnswer::Unavailable`], unreadable answers):
    /// back off exponentially, count toward marking the provider degraded; a 429's
    /// `Retry-After` pauses the provider's checks.
    Provider {
        retry_after: Option<TimeDelta>,
        rate_limited: bool,
    },
    /// The provider answered about this subject for good ([`ProviderAnswer::Final`], or an
    /// answer about someone else): recorded on the subject, checked again at the slow
    /// cadence. The provider is healthy.
    Subject,
}

impl CheckFailure {
    /// The provider said it has no such subject (or will never accept a request about it):
    /// enough of these in a row retire the subject. An answer too large to read is final too,
    /// yet says nothing of whether the subject exists.
    pub fn is_unfound(&self) -> bool {
        matches!(self, CheckFailure::Outbound(error @ OutboundError::Http { .. })
            if error.provider_answer() == ProviderAnswer::Final)
    }

    pub fn scope(&self) -> FailureScope {
        match self {
            CheckFailure::Outbound(error) => match error.provider_answer() {
                ProviderAnswer::Final => FailureScope::Subject,
                ProviderAnswer::RateLimited { retry_after } => FailureScope::Provider {
                    retry_after,
                    rate_limited: true,
                },
                ProviderAnswer::Refused | ProviderAnswer::Unavailable => FailureScope::Provider {
                    retry_after: None,
                    rate_limited: false,
                },
            },
            CheckFailure::Answer(AnswerError::WrongSubject | AnswerError::Incomplete(_)) => {
                FailureScope::Subject
            }
            CheckFailure::Answer(AnswerError::Malformed(_)) => FailureScope::Provider {
                retry_after: None,
                rate_limited: false,
            },
        }
    }
}

impl fmt::Display for CheckFailure {
    /// A short class for logs, stats and the subject's `last_error`; never a response body.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckFailure::Outbound(error) => error.fmt(f),
            CheckFailure::Answer(AnswerError::Malformed(_)) => f.write_str("malformed answer"),
            CheckFailure::Answer(AnswerError::WrongSubject) => f.write_str("wrong subject"),
            CheckFailure::Answer(AnswerError::Incomplete(_)) => f.write_str("answer too large"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16) -> CheckFailure {
        CheckFailure::Outbound(OutboundError::Http {
            status,
            retry_after: None,
        })
    }

    const PROVIDER: FailureScope = FailureScope::Provider {
        retry_after: None,
        rate_limited: false,
    };

    #[test]
    fn permanent_answers_about_one_subject_are_not_provider_outages() {
        for status in [400, 404, 410, 422] {
            assert_eq!(http(status).scope(), FailureScope::Subject, "{status}");
        }
        assert_eq!(
            CheckFailure::Answer(AnswerError::WrongSubject).scope(),
            FailureScope::Subject
        );
    }

    #[test]
    fn transient_failures_and_refusals_of_our_key_are_the_providers() {
        for status in [401, 403, 408, 500, 502, 503, 504] {
            assert_eq!(http(status).scope(), PROVIDER, "{status}");
        }
        for error in [OutboundError::Timeout, OutboundError::Transport] {
            assert_eq!(CheckFailure::Outbound(error).scope(), PROVIDER);
        }
        assert_eq!(
            CheckFailure::Answer(AnswerError::Malformed("x".into())).scope(),
            PROVIDER
        );
    }

    #[test]
    fn one_rule_says_what_a_providers_failed_answer_means() {
        let answer = |status: u16| {
            OutboundError::Http {
                status,
                retry_after: None,
            }
            .provider_answer()
        };
        for status in [400, 404, 410, 422] {
            assert_eq!(answer(status), ProviderAnswer::Final, "{status}");
        }
        assert_eq!(
            OutboundError::TooLarge { limit: 1 }.provider_answer(),
            ProviderAnswer::Final
        );
        for status in [401, 403, 405, 409, 413, 451] {
            assert_eq!(answer(status), ProviderAnswer::Refused, "{status}");
        }
        let redirect = OutboundError::Redirect {
            status: 301,
            location: None,
        };
        assert_eq!(redirect.provider_answer(), ProviderAnswer::Refused);
        for status in [408, 500, 502, 503, 504, 599] {
            assert_eq!(answer(status), ProviderAnswer::Unavailable, "{status}");
        }
        for error in [OutboundError::Timeout, OutboundError::Transport] {
            assert_eq!(error.provider_answer(), ProviderAnswer::Unavailable);
        }
        let wait = Some(TimeDelta::seconds(30));
        assert_eq!(
            OutboundError::Http {
                status: 429,
                retry_after: wait
            }
            .provider_answer(),
            ProviderAnswer::RateLimited { retry_after: wait }
        );
    }

    #[test]
    fn rate_limits_carry_their_retry_after() {
        let wait = Some(TimeDelta::seconds(30));
        let failure = CheckFailure::Outbound(OutboundError::Http {
            status: 429,
            retry_after: wait,
        });
        assert_eq!(
            failure.scope(),
            FailureScope::Provider {
                retry_after: wait,
                rate_limited: true
            }
        );
    }

    #[test]
    fn redirects_are_provider_failures_that_name_their_location() {
        let redirect = CheckFailure::Outbound(OutboundError::Redirect {
            status: 302,
            location: Some(location_for_record(
                " https://new.example/v0/x\r\nSet-Cookie: a ",
            )),
        });
        assert_eq!(redirect.scope(), PROVIDER);
        assert!(!redirect.is_unfound());
        assert_eq!(
            redirect.to_string(),
            "HTTP 302 redirect (not followed) to https://new.example/v0/xSet-Cookie:a"
        );
        for status in [300, 301, 302, 303, 307, 308, 399] {
            assert!(is_redirect(status), "{status}");
        }
        for status in [200, 204, 299, 400, 404] {
            assert!(!is_redirect(status), "{status}");
        }
        let long = location_for_record(&format!("https://x.example/{}", "a".repeat(500)));
        assert_eq!(long.chars().count(), MAX_LOCATION_LEN + 1);
    }

    #[test]
    fn answers_are_read_within_the_cap() {
        assert_eq!(
            CappedBody::new(10, Some("11")).unwrap_err(),
            OutboundError::TooLarge { limit: 10 }
        );
        let mut body = CappedBody::new(10, Some("10")).unwrap();
        assert_eq!(body.push(b"12345"), Ok(()));
        assert_eq!(body.push(b"67890"), Ok(()));
        assert_eq!(body.finish(), b"1234567890");
        // A lying or missing Content-Length: the bytes read are capped too.
        for declared in [None, Some("3"), Some("nonsense")] {
            let mut body = CappedBody::new(10, declared).unwrap();
            assert_eq!(body.push(b"123456"), Ok(()));
            assert_eq!(
                body.push(b"12345"),
                Err(OutboundError::TooLarge { limit: 10 })
            );
        }
        assert_eq!(
            CheckFailure::Outbound(OutboundError::TooLarge { limit: 10 }).scope(),
            FailureScope::Subject
        );
    }

    #[test]
    fn classes_say_what_failed_without_content() {
        assert_eq!(http(503).to_string(), "HTTP 503");
        assert_eq!(
            CheckFailure::Outbound(OutboundError::Timeout).to_string(),
            "timeout"
        );
        assert_eq!(
            CheckFailure::Answer(AnswerError::Malformed("secret detail".into())).to_string(),
            "malformed answer"
        );
    }
}
