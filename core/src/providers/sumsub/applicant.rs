//! `GET /resources/applicants/-;externalUserId={ref}/one`: the applicant's review. Only the
//! applicant's ids and `review` are deserialized: `info` and `fixedInfo` (names, birth date,
//! document numbers, addresses) never are.

use super::signing::{path_of, signature, SIG_HEADER, TOKEN_HEADER, TS_HEADER};
use super::{parse_time, Review, Sumsub};
use crate::observation::{Exchange, Observation, Source, Window};
use crate::providers::{
    join_url, json_error, AnswerError, CheckTarget, StatusCheck, StatusRequest,
};
use crate::time::Timestamp;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use serde_json::Value;

/// A path segment keeps only RFC 3986's unreserved characters as they are: the ref is sent,
/// and signed, percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireApplicant {
    external_user_id: Option<Value>,
    review: Option<WireReview>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireReview {
    review_status: Option<Value>,
    review_result: Option<WireReviewResult>,
    review_date: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireReviewResult {
    review_answer: Option<Value>,
    review_reject_type: Option<Value>,
}

fn text(value: &Option<Value>) -> Option<&str> {
    value.as_ref()?.as_str().filter(|s| !s.trim().is_empty())
}

/// One request: the applicant by its externalUserId.
pub(super) struct ApplicantCheck<'a> {
    sumsub: &'a Sumsub,
    target: CheckTarget,
    sent: bool,
    /// The reading the answer gave, once read.
    reading: Option<Observation>,
}

impl<'a> ApplicantCheck<'a> {
    pub(super) fn new(sumsub: &'a Sumsub, target: CheckTarget) -> Self {
        Self {
            sumsub,
            target,
            sent: false,
            reading: None,
        }
    }
}

/// The applicant's URL (the ref percent-encoded as one path segment).
pub(super) fn applicant_url(api_base: &str, subject_ref: &str) -> String {
    join_url(
        api_base,
        &format!(
            "/resources/applicants/-;externalUserId={}/one",
            utf8_percent_encode(subject_ref, SEGMENT)
        ),
    )
}

impl StatusCheck for ApplicantCheck<'_> {
    fn next_request(&mut self, now: Timestamp) -> Option<StatusRequest> {
        if self.sent {
            return None;
        }
        self.sent = true;
        let url = applicant_url(&self.sumsub.api_base, self.target.subject_ref.as_str());
        let ts = now.timestamp();
        let sig = signature(&self.sumsub.secret_key, ts, "GET", path_of(&url), b"");
        Some(StatusRequest {
            headers: vec![
                (TOKEN_HEADER, self.sumsub.app_token.expose().to_owned()),
                (TS_HEADER, ts.to_string()),
                (SIG_HEADER, sig),
            ],
            url,
        })
    }

    fn read(&mut self, body: &[u8], exchange: Exchange) -> Result<(), AnswerError> {
        let applicant: WireApplicant =
            serde_json::from_slice(body).map_err(|e| AnswerError::Malformed(json_error(&e)))?;
        if text(&applicant.external_user_id)
            .is_some_and(|id| id != self.target.subject_ref.as_str())
        {
            return Err(AnswerError::WrongSubject);
        }
        let review = applicant
            .review
            .ok_or_else(|| AnswerError::Malformed("review is missing".into()))?;
        let result = review.review_result.as_ref();
        let stated = Review {
            status: text(&review.review_status)
                .ok_or_else(|| AnswerError::Malformed("review.reviewStatus is missing".into()))?,
            answer: result.and_then(|r| text(&r.review_answer)),
            reject_type: result.and_then(|r| text(&r.review_reject_type)),
        };
        // Never guessed: an unknown review status (or a completed review without a GREEN or
        // RED answer) is not applied. Not quoted either: it is the provider's text.
        let status = stated.status().ok_or_else(|| {
            AnswerError::Malformed("review is not one kyc-edge can map (see the log's ref)".into())
        })?;
        let received_at = exchange.received_at;
        // Sumsub read its state after it recorded the review: a decision date narrows the
        // reading's window. A date after the answer's arrival cannot be true: capped.
        let decided_at = text(&review.review_date)
            .and_then(parse_time)
            .map(|at| at.min(received_at));
        let completed = stated.status.trim() == "completed";
        let window = Window::of(exchange);
        let window = match decided_at {
            Some(at) if completed => window.not_before_provider_time(at),
            _ => window,
        };
        self.reading = Some(Observation {
            status,
            provider_status: stated.provider_status(),
            sub_status: stated.sub_status(),
            aml: None,
            status_at: decided_at.filter(|_| completed),
            window,
            source: Source::Poll,
            no_record: false,
        });
        Ok(())
    }

    fn conclude(self: Box<Self>) -> Result<Observation, AnswerError> {
        self.reading
            .ok_or_else(|| AnswerError::Malformed("no answer was read".into()))
    }
}
