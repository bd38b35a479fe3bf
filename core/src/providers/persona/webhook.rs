//! Persona webhook bodies (JSON:API events): which event, which inquiry, whose (its
//! `reference-id`). Only those fields are deserialized: the inquiry's personal attributes
//! (`name-first`, `birthdate`, `address-*`, `email-address`, …) never are.

use super::map_status;
use crate::providers::{
    event_kind, parse_json, IngressError, Malformed, WebhookEvent, WebhookSubject,
};
use crate::status::KycStatus;
use crate::subject::{RefKind, SubjectRef};
use crate::time::{parse_rfc3339, Timestamp};
use crate::transition::Announcement;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

/// Longest event id kept as the dedup id; a longer one falls back to the body's hash.
const MAX_EVENT_ID_LEN: usize = 256;

/// A value of the expected shape, or anything else ignored (not refused).
#[derive(Deserialize)]
#[serde(untagged)]
enum Lenient<T> {
    Known(T),
    Other(IgnoredAny),
}

impl<T> Lenient<T> {
    fn known(&self) -> Option<&T> {
        match self {
            Lenient::Known(value) => Some(value),
            Lenient::Other(_) => None,
        }
    }
}

#[derive(Deserialize)]
struct WireBody {
    data: Option<WireEvent>,
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: Option<Value>,
    id: Option<Value>,
    attributes: Option<WireEventAttributes>,
}

#[derive(Deserialize)]
struct WireEventAttributes {
    name: Option<Value>,
    #[serde(rename = "created-at")]
    created_at: Option<Value>,
    payload: Option<Lenient<WirePayload>>,
}

#[derive(Deserialize)]
struct WirePayload {
    data: Option<Lenient<WireResource>>,
}

/// The object the event is about (an inquiry for `inquiry.*` events).
#[derive(Deserialize)]
struct WireResource {
    #[serde(rename = "type")]
    kind: Option<Value>,
    attributes: Option<Lenient<WireInquiryAttributes>>,
}

#[derive(Deserialize)]
struct WireInquiryAttributes {
    status: Option<Value>,
    #[serde(rename = "reference-id")]
    reference_id: Option<Value>,
}

/// Inquiry events kyc-edge acts on. Any other name (Persona adds them) is acknowledged and
/// recorded without a subject: it triggers nothing.
const INQUIRY_EVENTS: [&str; 10] = [
    "inquiry.created",
    "inquiry.started",
    "inquiry.expired",
    "inquiry.completed",
    "inquiry.failed",
    "inquiry.marked-for-review",
    "inquiry.approved",
    "inquiry.declined",
    "inquiry.transitioned",
    "inquiry.redacted",
];

fn text(value: &Option<Value>) -> Option<&str> {
    value.as_ref().and_then(Value::as_str)
}

/// What an inquiry event claims (counted against what the API then says, never applied).
fn announces(name: &str, status: Option<&str>, require_decision: bool) -> Announcement {
    let claim = |word: &str| {
        map_status(word, require_decision).map_or(Announcement::AnyChange, Announcement::Status)
    };
    match name {
        "inquiry.created" => Announcement::Status(KycStatus::NotStarted),
        "inquiry.started" | "inquiry.expired" => Announcement::Status(KycStatus::Incomplete),
        "inquiry.completed" => claim("completed"),
        "inquiry.failed" | "inquiry.declined" => Announcement::Status(KycStatus::Rejected),
        "inquiry.marked-for-review" => Announcement::Status(KycStatus::Pending),
        "inquiry.approved" => Announcement::Status(KycStatus::Approved),
        // A workflow moved the inquiry: its status says where, if it says.
        "inquiry.transitioned" => status.map_or(Announcement::AnyChange, claim),
        // Redaction removes personal data, not the decision.
        _ => Announcement::Nothing,
    }
}

/// Parse an authenticated body. Only a trigger: the user's status is read across all their
/// inquiries from the API, so nothing in one inquiry's event is applied as it is.
pub fn read(
    body: &[u8],
    received_at: Timestamp,
    require_decision: bool,
) -> Result<WebhookEvent, IngressError> {
    let wire: WireBody = parse_json(body)?;
    let event = wire
        .data
        .ok_or(IngressError::Malformed(Malformed::MissingField("data")))?;
    if text(&event.kind).is_some_and(|kind| kind != "event") {
        return Err(IngressError::Malformed(Malformed::WrongField {
            field: "data.type",
            kind: "event",
        }));
    }
    let attributes = event
        .attributes
        .ok_or(IngressError::Malformed(Malformed::MissingField(
            "data.attributes",
        )))?;
    let name = text(&attributes.name)
        .filter(|name| !name.trim().is_empty())
        .ok_or(IngressError::Malformed(Malformed::MissingField(
            "data.attributes.name",
        )))?;
    let kind = event_kind(Some(name));
    let event_id = text(&event.id)
        .filter(|id| !id.is_empty() && id.len() <= MAX_EVENT_ID_LEN)
        .map(str::to_owned);
    // A time after arrival cannot be true: capped.
    let provider_at = text(&attributes.created_at)
        .and_then(parse_rfc3339)
        .map(|at| at.min(received_at));
    let inquiry = attributes
        .payload
        .as_ref()
        .and_then(Lenient::known)
        .and_then(|payload| payload.data.as_ref())
        .and_then(Lenient::known)
        .filter(|resource| text(&resource.kind) == Some("inquiry"));
    let known = INQUIRY_EVENTS.contains(&kind.as_str());
    let (subject, announced) = match inquiry {
        Some(inquiry) if known => {
            let attributes = inquiry.attributes.as_ref().and_then(Lenient::known);
            let status = attributes.and_then(|a| text(&a.status));
            let subject = attributes
                .map(|a| subject(&a.reference_id))
                .transpose()?
                .flatten();
            (subject, announces(&kind, status, require_decision))
        }
        // Unknown names, and known ones without an inquiry: recorded, nothing else.
        _ => (None, Announcement::Nothing),
    };
    Ok(WebhookEvent {
        subject,
        kind,
        provider_at,
        announces: announced,
        trusted: None,
        about_aml: false,
        event_id,
    })
}

/// The inquiry's `reference-id`: the application's user id. Absent, null or blank: the
/// inquiry names nobody, and is never attached to a user by guess. One that cannot be a
/// subject ref makes the body malformed (the message does not quote it: it may be PII).
fn subject(reference_id: &Option<Value>) -> Result<Option<WebhookSubject>, IngressError> {
    let Some(id) = reference_id else {
        return Ok(None);
    };
    let id = match id {
        Value::Null => return Ok(None),
        Value::String(id) if id.trim().is_empty() => return Ok(None),
        Value::String(id) => id,
        _ => {
            return Err(IngressError::Malformed(Malformed::WrongField {
                field: "reference-id",
                kind: "a string",
            }))
        }
    };
    let subject_ref = SubjectRef::parse(id).map_err(|error| {
        IngressError::Malformed(Malformed::InvalidRef {
            field: "reference-id",
            error,
        })
    })?;
    Ok(Some(WebhookSubject {
        subject_ref,
        ref_kind: RefKind::User,
    }))
}
