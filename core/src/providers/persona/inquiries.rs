//! `GET /api/v1/inquiries`: a user's inquiries (`filter[reference-id]`), newest first, read
//! page by page (`links.next`, continued with `page[after]`), and the one that stands for
//! the user; and the unfiltered list for backfills. Only ids, statuses, reference ids and
//! times are deserialized: the inquiry's personal attributes never are.

use super::{is_decided, map_status, Persona};
use crate::observation::{Exchange, Observation, Source, Window};
use crate::providers::{
    join_url, json_error, query, AnswerError, CheckTarget, ListPage, ListWalk, StatusCheck,
    StatusRequest,
};
use crate::status::{provider_value, KycStatus};
use crate::subject::{RefKind, SubjectRef};
use crate::time::{parse_rfc3339, Timestamp};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::Value;

const PATH: &str = "/api/v1/inquiries";
/// Longest `page[after]` cursor accepted from an answer (an inquiry id, `inq_…`).
const MAX_CURSOR_LEN: usize = 128;

#[derive(Deserialize)]
struct WirePage {
    data: Option<Vec<WireInquiry>>,
    links: Option<WireLinks>,
}

#[derive(Deserialize)]
struct WireLinks {
    next: Option<Value>,
}

#[derive(Deserialize)]
struct WireInquiry {
    #[serde(rename = "type")]
    kind: Option<Value>,
    attributes: Option<WireAttributes>,
}

#[derive(Deserialize)]
struct WireAttributes {
    status: Option<Value>,
    #[serde(rename = "reference-id")]
    reference_id: Option<Value>,
    #[serde(rename = "created-at")]
    created_at: Option<Value>,
    #[serde(rename = "started-at")]
    started_at: Option<Value>,
    #[serde(rename = "completed-at")]
    completed_at: Option<Value>,
    #[serde(rename = "failed-at")]
    failed_at: Option<Value>,
    #[serde(rename = "expired-at")]
    expired_at: Option<Value>,
    #[serde(rename = "decisioned-at")]
    decisioned_at: Option<Value>,
    #[serde(rename = "marked-for-review-at")]
    marked_for_review_at: Option<Value>,
}

fn time(value: &Option<Value>) -> Option<Timestamp> {
    value
        .as_ref()
        .and_then(Value::as_str)
        .and_then(parse_rfc3339)
}

fn text(value: &Option<Value>) -> Option<&str> {
    value.as_ref().and_then(Value::as_str)
}

/// A page as JSON with its items checked to be inquiries.
fn read_page(body: &[u8]) -> Result<(Vec<WireInquiry>, Option<Value>), AnswerError> {
    let page: WirePage =
        serde_json::from_slice(body).map_err(|e| AnswerError::Malformed(json_error(&e)))?;
    // Without `data` the answer is not a list: reading it as "no inquiries" would turn an
    // approved user into not_started on a provider hiccup.
    let items = page
        .data
        .ok_or_else(|| AnswerError::Malformed("data is missing".into()))?;
    if items
        .iter()
        .any(|item| text(&item.kind).is_some_and(|kind| kind != "inquiry"))
    {
        return Err(AnswerError::Malformed("an item is not an inquiry".into()));
    }
    Ok((items, page.links.and_then(|links| links.next)))
}

/// The `page[after]` value `links.next` continues with; `None` when there is no next page.
/// The link itself is never followed: requests carry the API key, so they only go to the
/// configured base.
fn next_cursor(next: Option<Value>, listed: usize) -> Result<Option<String>, AnswerError> {
    let link = match next {
        // An empty page ends the walk whatever its link says: one that leads only to empty
        // pages would otherwise loop.
        _ if listed == 0 => return Ok(None),
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(link)) => link,
        Some(_) => return Err(AnswerError::Malformed("links.next is not a string".into())),
    };
    let query = link.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or_default();
    let cursor = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| {
            percent_decode_str(key).decode_utf8().ok().as_deref() == Some("page[after]")
        })
        .and_then(|(_, value)| percent_decode_str(value).decode_utf8().ok())
        .map(|value| value.into_owned())
        .filter(|value| is_cursor(value));
    cursor
        .map(Some)
        .ok_or_else(|| AnswerError::Malformed("links.next has no usable page[after]".into()))
}

/// An inquiry id as a cursor: a bounded word of a safe alphabet.
fn is_cursor(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_CURSOR_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// `/api/v1/inquiries?…`: brackets kept as Persona documents them, values percent-encoded.
fn url(persona: &Persona, reference_id: Option<&str>, after: Option<&str>) -> String {
    let mut parts = Vec::new();
    if let Some(id) = reference_id {
        parts.push(format!("filter[reference-id]={}", &query(&[("", id)])[1..]));
    }
    if let Some(after) = after {
        parts.push(format!("page[after]={}", &query(&[("", after)])[1..]));
    }
    let path = if parts.is_empty() {
        PATH.to_owned()
    } else {
        format!("{PATH}?{}", parts.join("&"))
    };
    join_url(&persona.api_base, &path)
}

/// What kyc-edge keeps of one inquiry.
#[derive(Debug, Clone)]
struct Inquiry {
    /// Its place in the answers: Persona lists the newest first.
    position: usize,
    word: Option<String>,
    status: KycStatus,
    decided: bool,
    created_at: Option<Timestamp>,
    status_at: Option<Timestamp>,
    newest_at: Option<Timestamp>,
}

impl WireAttributes {
    fn keep(&self, position: usize, received_at: Timestamp, require_decision: bool) -> Inquiry {
        let word = text(&self.status).map(str::trim);
        let status = word
            .and_then(|w| map_status(w, require_decision))
            .unwrap_or(KycStatus::Unknown);
        let own = match word.unwrap_or_default() {
            "approved" | "declined" => time(&self.decisioned_at).or(time(&self.completed_at)),
            "completed" => time(&self.completed_at),
            "failed" => time(&self.failed_at),
            "expired" => time(&self.expired_at),
            "needs_review" => time(&self.marked_for_review_at).or(time(&self.completed_at)),
            "pending" => time(&self.started_at),
            _ => None,
        };
        let cap = |t: Option<Timestamp>| t.map(|t| t.min(received_at));
        let times = [
            &self.created_at,
            &self.started_at,
            &self.completed_at,
            &self.failed_at,
            &self.expired_at,
            &self.decisioned_at,
            &self.marked_for_review_at,
        ];
        Inquiry {
            position,
            word: word.and_then(provider_value),
            status,
            decided: word.is_some_and(is_decided),
            created_at: cap(time(&self.created_at)),
            status_at: cap(own.or(time(&self.created_at))),
            newest_at: cap(times.into_iter().filter_map(time).max()),
        }
    }
}

/// The inquiry that stands for the user (docs/providers/persona.md): the newest decided one,
/// else the newest. Newest by `created-at`; without one, or on a tie, by Persona's order
/// (newest first).
fn representative(inquiries: &[Inquiry]) -> Option<&Inquiry> {
    let newest = |i: &&Inquiry| (i.created_at, std::cmp::Reverse(i.position));
    inquiries
        .iter()
        .filter(|i| i.decided)
        .max_by_key(newest)
        .or_else(|| inquiries.iter().max_by_key(newest))
}

/// A check of one Persona user: every page of their inquiries, up to the bound.
pub(super) struct InquiriesCheck<'a> {
    persona: &'a Persona,
    target: CheckTarget,
    pages_read: u32,
    /// The `page[after]` of the page still to read.
    next: Option<String>,
    window: Option<Window>,
    inquiries: Vec<Inquiry>,
    listed: usize,
}

impl<'a> InquiriesCheck<'a> {
    pub(super) fn new(persona: &'a Persona, target: CheckTarget) -> Self {
        Self {
            persona,
            target,
            pages_read: 0,
            next: None,
            window: None,
            inquiries: vec![],
            listed: 0,
        }
    }

    fn truncated(&self) -> bool {
        self.next.is_some() && self.pages_read >= self.persona.max_pages
    }
}

impl StatusCheck for InquiriesCheck<'_> {
    fn next_request(&mut self, _now: Timestamp) -> Option<StatusRequest> {
        let wants = self.pages_read == 0 || (self.next.is_some() && !self.truncated());
        wants.then(|| StatusRequest {
            url: url(
                self.persona,
                Some(self.target.subject_ref.as_str()),
                self.next.as_deref(),
            ),
            headers: self.persona.headers(),
        })
    }

    fn read(&mut self, body: &[u8], exchange: Exchange) -> Result<(), AnswerError> {
        let (items, next) = read_page(body)?;
        let mut ours = Vec::with_capacity(items.len());
        for item in &items {
            let Some(attributes) = &item.attributes else {
                continue;
            };
            match &attributes.reference_id {
                Some(Value::String(id)) if id == self.target.subject_ref.as_str() => {
                    let position = self.listed + ours.len();
                    ours.push(attributes.keep(
                        position,
                        exchange.received_at,
                        self.persona.require_decision,
                    ));
                }
                // Someone else's inquiry in a filtered list: the answer cannot be trusted.
                Some(Value::String(id)) if !id.trim().is_empty() => {
                    return Err(AnswerError::WrongSubject)
                }
                // No reference id: it names nobody, and is never attached by guess.
                _ => {}
            }
        }
        if !items.is_empty() && ours.is_empty() {
            return Err(AnswerError::WrongSubject);
        }
        self.next = next_cursor(next, items.len())?;
        self.listed += items.len();
        self.inquiries.extend(ours);
        self.pages_read += 1;
        self.window = Some(
            self.window
                .map_or(Window::of(exchange), |w| w.including(exchange)),
        );
        Ok(())
    }

    fn conclude(self: Box<Self>) -> Result<Observation, AnswerError> {
        let window = self
            .window
            .ok_or_else(|| AnswerError::Malformed("no answer was read".into()))?;
        if self.next.is_some() && !self.truncated() {
            return Err(AnswerError::Malformed("the check was not finished".into()));
        }
        // An unread page may hold the inquiry that stands for the user: never a guess.
        if self.truncated() {
            return Err(AnswerError::Incomplete(format!(
                "more than {} pages of inquiries (PERSONA_MAX_PAGES)",
                self.persona.max_pages
            )));
        }
        // Persona read its state after the newest time its answers mention.
        let newest = self.inquiries.iter().filter_map(|i| i.newest_at).max();
        let window = newest.map_or(window, |at| window.not_before_provider_time(at));
        let Some(chosen) = representative(&self.inquiries) else {
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
        Ok(Observation {
            status: chosen.status,
            provider_status: chosen.word.clone(),
            sub_status: None,
            aml: None,
            status_at: chosen.status_at,
            window,
            source: Source::Poll,
            no_record: false,
        })
    }
}

/// Backfill: one page of every inquiry, newest first. Persona's list is walked whole: no
/// date filter is relied on, so a walk with `since` is refused (`until` is not applied).
pub(super) fn list_request(
    persona: &Persona,
    walk: &ListWalk<'_>,
) -> Result<StatusRequest, String> {
    if walk.since.is_some() {
        return Err(
            "Persona's inquiry list is walked whole: backfill Persona without since".into(),
        );
    }
    if walk.cursor.is_some_and(|c| !is_cursor(c)) {
        return Err("the stored cursor is not a Persona page[after]".into());
    }
    Ok(StatusRequest {
        url: url(persona, None, walk.cursor),
        headers: persona.headers(),
    })
}

/// The users one page of inquiries names (`reference-id`): an inquiry without one, or with
/// one that cannot be a subject ref, is skipped (counted), never attached by guess.
pub(super) fn read_list(body: &[u8]) -> Result<ListPage, AnswerError> {
    let (items, next) = read_page(body)?;
    let mut subjects: Vec<(SubjectRef, RefKind)> = Vec::new();
    let mut skipped = 0;
    for item in &items {
        let id = item
            .attributes
            .as_ref()
            .and_then(|a| text(&a.reference_id))
            .and_then(|id| SubjectRef::parse(id).ok());
        match id {
            Some(id) if subjects.iter().any(|(known, _)| *known == id) => {}
            Some(id) => subjects.push((id, RefKind::User)),
            None => skipped += 1,
        }
    }
    Ok(ListPage {
        subjects,
        skipped,
        next: next_cursor(next, items.len())?,
    })
}
