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
}

impl fmt::Display for OutboundError {
    /// A short class for logs and stats; never a response body.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutboundError::Timeout => f.write_str("timeout"),
            OutboundError::Transport => f.write_str("transport error"),
            OutboundError::Http { status, .. } => write!(f, "HTTP {status}"),
        }
    }
}

/// Why a check of one subject learned nothing. A failure never changes a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckFailure {
    Outbound(OutboundError),
    Answer(AnswerError),
}

/// Who a failure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureScope {
    /// The provider is unwell or refuses us (5xx, 408, 429, timeouts, transport errors, 401
    /// and 403 for our key, unreadable answers): back off exponentially, count toward marking
    /// the provider degraded; a 429's `Retry-After` pauses the provider's checks.
    Provider {
        retry_after: Option<TimeDelta>,
        rate_limited: bool,
    },
    /// The provider answered about this subject for good (400, 404, 410, 422: unknown to it,
    /// or a request it will never accept; an answer about someone else, or one too large to
    /// read within the configured bound): recorded on the
    /// subject, checked again at the slow cadence. The provider is healthy.
    Subject,
}

impl CheckFailure {
    /// The provider said it has no such subject (or will never accept a request about it):
    /// enough of these in a row retire the subject.
    pub fn is_unfound(&self) -> bool {
        matches!(
            self,
            CheckFailure::Outbound(OutboundError::Http {
                status: 400 | 404 | 410 | 422,
                ..
            })
        )
    }

    pub fn scope(&self) -> FailureScope {
        match self {
            CheckFailure::Outbound(OutboundError::Http {
                status: 400 | 404 | 410 | 422,
                ..
            })
            | CheckFailure::Answer(AnswerError::WrongSubject | AnswerError::Incomplete(_)) => {
                FailureScope::Subject
            }
            CheckFailure::Outbound(OutboundError::Http {
                status: 429,
                retry_after,
            }) => FailureScope::Provider {
                retry_after: *retry_after,
                rate_limited: true,
            },
            CheckFailure::Outbound(_) | CheckFailure::Answer(AnswerError::Malformed(_)) => {
                FailureScope::Provider {
                    retry_after: None,
                    rate_limited: false,
                }
            }
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
