//! `GET /v3/submission`: a user's submissions, read page by page (`nextpageKey`), and the
//! one that stands for the user. Only ids, times and results are deserialized: `data`
//! (names, birth date, documents) and `email` never are.

use super::{map_result, timestamp, Argos};
use crate::observation::{AmlReading, Exchange, Observation, Source, Window};
use crate::providers::{
    join_url, json_error, query, AnswerError, CheckTarget, StatusCheck, StatusRequest,
};
use crate::status::{provider_value, status_word, Aml, KycStatus};
use crate::subject::{RefKind, SubjectRef};
use crate::time::Timestamp;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct WirePage {
    #[serde(rename = "Items")]
    items: Option<Vec<WireSubmission>>,
    #[serde(rename = "nextpageKey")]
    next_page: Option<WirePageKey>,
}

/// Where the next page starts: sent back as `nextpage_id` / `nextpage_date`.
#[derive(Deserialize)]
struct WirePageKey {
    id: Option<String>,
    created_at: Option<String>,
}

#[derive(Deserialize)]
struct WireSubmission {
    submission_id: Option<String>,
    userid: Option<String>,
    created_at: Option<Value>,
    updated_at: Option<Value>,
    kyc_result_at: Option<Value>,
    pending_at: Option<Value>,
    kyc: Option<WireKyc>,
    aml_result: Option<WireAml>,
}

#[derive(Deserialize)]
struct WireKyc {
    result: Option<String>,
}

#[derive(Deserialize)]
struct WireAml {
    currentstatus: Option<String>,
    risk_level_summary: Option<String>,
}

fn read_time(value: &Option<Value>) -> Option<Timestamp> {
    value.as_ref().and_then(timestamp)
}

/// What kyc-edge keeps of one submission.
#[derive(Debug, Clone)]
struct Submission {
    id: Option<String>,
    status: KycStatus,
    result: Option<String>,
    decided_at: Option<Timestamp>,
    started_at: Option<Timestamp>,
    status_at: Option<Timestamp>,
    /// The newest time the item mentions: its last change as ARGOS saw it.
    newest_at: Option<Timestamp>,
    aml: Option<Aml>,
}

impl WireSubmission {
    fn result(&self) -> Option<&str> {
        self.kyc
            .as_ref()?
            .result
            .as_deref()
            .filter(|r| !r.trim().is_empty())
    }

    /// ARGOS does not document `kyc.result` for undecided submissions (docs/providers/argos.md):
    /// without one, `pending_at` says the submission reached review, else it was never
    /// submitted.
    fn status(&self) -> KycStatus {
        match self.result() {
            Some(word) => map_result(word).unwrap_or(KycStatus::Unknown),
            None if self
                .pending_at
                .as_ref()
                .and_then(Value::as_str)
                .is_some_and(|at| !at.trim().is_empty()) =>
            {
                KycStatus::Pending
            }
            None => KycStatus::Incomplete,
        }
    }

    fn aml(&self) -> Option<Aml> {
        let aml = self.aml_result.as_ref()?;
        Some(Aml {
            status: aml.currentstatus.as_deref().and_then(provider_value)?,
            risk_level: aml.risk_level_summary.as_deref().and_then(provider_value),
        })
    }

    /// An item names its subject only when ARGOS includes the field (`request_type=kyc` may
    /// leave `userid` out); one that names someone else is not about this subject.
    fn is_about(&self, subject_ref: &SubjectRef, ref_kind: RefKind) -> bool {
        let named = match ref_kind {
            RefKind::User => &self.userid,
            RefKind::Submission => &self.submission_id,
        };
        named.as_deref().is_none_or(|id| id == subject_ref.as_str())
    }

    /// Times later than the answer's arrival cannot be true: capped.
    fn keep(&self, received_at: Timestamp) -> Submission {
        let status = self.status();
        let cap = |t: Option<Timestamp>| t.map(|t| t.min(received_at));
        let own_status_time = if status == KycStatus::Pending {
            &self.pending_at
        } else {
            &self.kyc_result_at
        };
        let times = [
            &self.created_at,
            &self.updated_at,
            &self.kyc_result_at,
            &self.pending_at,
        ];
        Submission {
            id: self.submission_id.clone(),
            status,
            result: self.result().and_then(status_word),
            decided_at: cap(read_time(&self.kyc_result_at)
                .or_else(|| read_time(&self.updated_at))
                .or_else(|| read_time(&self.created_at))),
            started_at: cap(read_time(&self.created_at).or_else(|| read_time(&self.updated_at))),
            status_at: cap(read_time(own_status_time)
                .or_else(|| read_time(&self.updated_at))
                .or_else(|| read_time(&self.created_at))),
            newest_at: cap(times.into_iter().filter_map(read_time).max()),
            aml: self.aml(),
        }
    }
}

/// The submission that stands for the user (ARGOS FAQ; docs/providers/argos.md): the most
/// recently approved one if any, because a newer attempt can be rejected (or an incomplete one
/// expire to rejected) while the user stays verified; else the most recent one. Ties go to the
/// later item; a submission without readable times sorts oldest.
fn representative(submissions: &[Submission]) -> Option<&Submission> {
    submissions
        .iter()
        .filter(|s| s.status == KycStatus::Approved)
        .max_by_key(|s| s.decided_at)
        .or_else(|| submissions.iter().max_by_key(|s| s.started_at))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestType {
    /// KYC fields only: the least PII ARGOS offers (docs/providers/argos.md).
    Kyc,
    /// AML results (a `kyc` answer carries none).
    Aml,
}

impl RequestType {
    fn as_str(self) -> &'static str {
        match self {
            RequestType::Kyc => "kyc",
            RequestType::Aml => "aml",
        }
    }
}

/// One phase of the conversation: the pages of one `request_type`.
struct Listing {
    request_type: RequestType,
    pages_read: u32,
    /// When its requests were sent and answered: the window of what it read.
    window: Option<Window>,
    /// `(nextpage_id, nextpage_date)` of the page still to read, if any.
    next: Option<(String, String)>,
    /// More pages remained when the bound was reached.
    truncated: bool,
}

impl Listing {
    fn new(request_type: RequestType) -> Self {
        Self {
            request_type,
            pages_read: 0,
            window: None,
            next: None,
            truncated: false,
        }
    }

    fn wants_page(&self, max_pages: u32) -> bool {
        self.pages_read == 0 || (self.next.is_some() && self.pages_read < max_pages)
    }
}

/// A check of one ARGOS subject: every page of its KYC submissions (up to the bound), then,
/// when asked, every page of its AML results.
pub(super) struct SubmissionsCheck<'a> {
    argos: &'a Argos,
    target: CheckTarget,
    listing: Listing,
    /// The AML listing still to run after the KYC one.
    aml_listing: Option<Listing>,
    kyc: Vec<Submission>,
    aml: Vec<Submission>,
    kyc_truncated: bool,
    /// The windows of the KYC and the AML listings, once each has run.
    kyc_window: Option<Window>,
    aml_window: Option<Window>,
    /// The newest time the KYC answers carried: ARGOS read its state after it.
    newest_at: Option<Timestamp>,
}

impl<'a> SubmissionsCheck<'a> {
    pub(super) fn new(argos: &'a Argos, target: CheckTarget) -> Self {
        let aml_listing = target.aml.then(|| Listing::new(RequestType::Aml));
        Self {
            argos,
            target,
            listing: Listing::new(RequestType::Kyc),
            aml_listing,
            kyc: vec![],
            aml: vec![],
            kyc_truncated: false,
            kyc_window: None,
            aml_window: None,
            newest_at: None,
        }
    }

    fn request(&self) -> StatusRequest {
        let field = match self.target.ref_kind {
            RefKind::User => "userid",
            RefKind::Submission => "submission_id",
        };
        let mut pairs = vec![
            (field, self.target.subject_ref.as_str()),
            ("request_type", self.listing.request_type.as_str()),
        ];
        if let Some((id, date)) = &self.listing.next {
            pairs.push(("nextpage_id", id));
            pairs.push(("nextpage_date", date));
        }
        StatusRequest {
            url: join_url(
                &self.argos.api_base,
                &format!("/v3/submission?{}", query(&pairs)),
            ),
            headers: vec![(
                super::API_KEY_HEADER,
                self.argos.api_key.expose().to_owned(),
            )],
        }
    }
}

impl StatusCheck for SubmissionsCheck<'_> {
    fn next_request(&mut self, _now: Timestamp) -> Option<StatusRequest> {
        loop {
            if self.listing.wants_page(self.argos.max_pages) {
                return Some(self.request());
            }
            self.listing.truncated = self.listing.next.is_some();
            match self.listing.request_type {
                RequestType::Kyc => {
                    self.kyc_truncated = self.listing.truncated;
                    self.kyc_window = self.listing.window;
                }
                RequestType::Aml => self.aml_window = self.listing.window,
            }
            self.listing = self.aml_listing.take()?;
        }
    }

    fn read(&mut self, body: &[u8], exchange: Exchange) -> Result<(), AnswerError> {
        let received_at = exchange.received_at;
        let page: WirePage =
            serde_json::from_slice(body).map_err(|e| AnswerError::Malformed(json_error(&e)))?;
        // Without `Items` the answer is not a submission list: reading it as "no submissions"
        // would turn an approved user into not_started on a provider hiccup.
        let items = page
            .items
            .ok_or_else(|| AnswerError::Malformed("Items is missing".into()))?;
        let listed = items.len();
        let ours: Vec<Submission> = items
            .iter()
            .filter(|s| s.is_about(&self.target.subject_ref, self.target.ref_kind))
            .map(|s| s.keep(received_at))
            .collect();
        if listed > 0 && ours.is_empty() {
            return Err(AnswerError::WrongSubject);
        }
        self.listing.window = Some(
            self.listing
                .window
                .map_or(Window::of(exchange), |w| w.including(exchange)),
        );
        match self.listing.request_type {
            RequestType::Kyc => {
                self.newest_at = self
                    .newest_at
                    .max(ours.iter().filter_map(|s| s.newest_at).max());
                self.kyc.extend(ours);
            }
            RequestType::Aml => self.aml.extend(ours),
        }
        self.listing.pages_read += 1;
        // An empty page ends the listing whatever its key says.
        self.listing.next = page
            .next_page
            .filter(|_| listed > 0)
            .and_then(|key| Some((key.id?, key.created_at?)))
            .filter(|(id, date)| !id.is_empty() && !date.is_empty());
        Ok(())
    }

    fn conclude(mut self: Box<Self>) -> Result<Observation, AnswerError> {
        // A check concludes once it asks for nothing more; that also closes its listings.
        if self.next_request(crate::time::epoch()).is_some() {
            return Err(AnswerError::Malformed("the check was not finished".into()));
        }
        let kyc_window = self
            .kyc_window
            .ok_or_else(|| AnswerError::Malformed("no answer was read".into()))?;
        // ARGOS read its state after the newest time its KYC answers mention.
        let window = self.newest_at.map_or(kyc_window, |newest| {
            kyc_window.not_before_provider_time(newest)
        });
        let Some(chosen) = representative(&self.kyc) else {
            return Ok(Observation {
                status: KycStatus::NotStarted,
                provider_status: None,
                sub_status: None,
                aml: None,
                status_at: None,
                window,
                source: Source::Poll,
                no_record: true,
            });
        };
        // An unread page may hold the approval that stands for the user: without one among
        // the pages read, the answer cannot be trusted to be complete.
        if self.kyc_truncated && chosen.status != KycStatus::Approved {
            return Err(AnswerError::Incomplete(format!(
                "more than {} pages of submissions (ARGOS_MAX_PAGES)",
                self.argos.max_pages
            )));
        }
        // AML of the chosen submission, with the window of the requests it came from: the
        // AML listing when it ran, else whatever the KYC answer carried.
        let listed = self
            .aml
            .iter()
            .find(|s| s.id.is_some() && s.id == chosen.id)
            .and_then(|s| s.aml.clone())
            .zip(self.aml_window);
        let aml = listed
            .or_else(|| chosen.aml.clone().map(|aml| (aml, kyc_window)))
            .map(|(aml, window)| AmlReading { aml, window });
        Ok(Observation {
            status: chosen.status,
            provider_status: chosen.result.clone(),
            sub_status: None,
            aml,
            status_at: chosen.status_at,
            window,
            source: Source::Poll,
            no_record: false,
        })
    }
}
