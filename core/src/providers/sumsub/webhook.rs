//! Sumsub webhook bodies: who they are about, what they announce, and when. Only the fields
//! used are deserialized (Sumsub documents no personal data in webhooks; anything else a body
//! carries is skipped unread).

use super::{parse_time, Environment, Review};
use crate::providers::{
    event_kind, parse_json, IngressError, Malformed, WebhookEvent, WebhookSubject,
};
use crate::status::KycStatus;
use crate::subject::{RefKind, SubjectRef};
use crate::time::Timestamp;
use crate::transition::Announcement;
use serde::Deserialize;
use serde_json::Value;

/// What a body whose `sandboxMode` is not the app token's environment is recorded as.
pub const SANDBOX_MISMATCH: &str = "sandbox_mismatch";
/// What a manual "test webhook" send (`testMode: true`) is recorded as.
pub const TEST_WEBHOOK: &str = "test_webhook";

/// The applicant events kyc-edge acts on: each asks for a check of its applicant. Any other
/// type (`applicantPersonalInfoChanged`, transaction monitoring, types Sumsub adds later) is
/// recorded and acknowledged, and triggers nothing.
const APPLICANT_EVENTS: [&str; 12] = [
    "applicantCreated",
    "applicantPending",
    "applicantPrechecked",
    "applicantReviewed",
    "applicantOnHold",
    "applicantAwaitingService",
    "applicantReset",
    "applicantLevelChanged",
    "applicantWorkflowCompleted",
    "applicantDeleted",
    "applicantActivated",
    "applicantDeactivated",
];

/// Every field as any JSON value: one of an unexpected type is absent, not a refusal (a 4xx
/// makes Sumsub resend, and eventually disable the webhook).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireWebhook {
    #[serde(rename = "type")]
    event_type: Option<Value>,
    correlation_id: Option<Value>,
    external_user_id: Option<Value>,
    review_status: Option<Value>,
    /// `{reviewAnswer, reviewRejectType, …}`; read field by field, whatever its shape.
    review_result: Option<Value>,
    created_at_ms: Option<Value>,
    sandbox_mode: Option<Value>,
    test_mode: Option<Value>,
}

fn text(value: &Option<Value>) -> Option<&str> {
    value.as_ref()?.as_str().filter(|s| !s.trim().is_empty())
}

impl WireWebhook {
    fn review(&self) -> Option<Review<'_>> {
        let field = |name: &str| {
            self.review_result
                .as_ref()?
                .get(name)?
                .as_str()
                .filter(|s| !s.trim().is_empty())
        };
        Some(Review {
            status: text(&self.review_status)?,
            answer: field("reviewAnswer"),
            reject_type: field("reviewRejectType"),
        })
    }
}

/// Parse an authenticated body. Never a trusted reading: the API decides the status.
pub fn read(
    body: &[u8],
    received_at: Timestamp,
    environment: Environment,
) -> Result<WebhookEvent, IngressError> {
    let wire: WireWebhook = parse_json(body)?;
    let event_type =
        text(&wire.event_type).ok_or(IngressError::Malformed(Malformed::MissingField("type")))?;
    // Sumsub's own id of the event: deliveries of one event share it.
    let event_id = text(&wire.correlation_id).map(|id| format!("{event_type}:{id}"));
    // Capped at arrival: a time after it cannot be true.
    let provider_at = text(&wire.created_at_ms)
        .and_then(parse_time)
        .map(|at| at.min(received_at));
    let ignored = |kind: &str| WebhookEvent {
        subject: None,
        kind: kind.to_owned(),
        provider_at,
        announces: Announcement::Nothing,
        trusted: None,
        about_aml: false,
        event_id: event_id.clone(),
    };
    let sandbox_mode = wire.sandbox_mode.as_ref().and_then(Value::as_bool);
    if environment.disagrees_with(sandbox_mode) {
        return Ok(ignored(SANDBOX_MISMATCH));
    }
    if wire.test_mode.as_ref().and_then(Value::as_bool) == Some(true) {
        return Ok(ignored(TEST_WEBHOOK));
    }
    let kind = event_kind(Some(event_type));
    if !APPLICANT_EVENTS.contains(&kind.as_str()) {
        return Ok(ignored(&kind));
    }
    // An applicant created without an externalUserId (by Sumsub's SDK or dashboard) cannot
    // be tracked: acknowledged, so that Sumsub does not resend it.
    let Some(external_user_id) = text(&wire.external_user_id) else {
        return Ok(ignored(&kind));
    };
    let subject_ref = SubjectRef::parse(external_user_id).map_err(|error| {
        IngressError::Malformed(Malformed::InvalidRef {
            field: "externalUserId",
            error,
        })
    })?;
    let announces = match kind.as_str() {
        "applicantCreated" | "applicantReset" => Announcement::Status(KycStatus::NotStarted),
        "applicantPending"
        | "applicantPrechecked"
        | "applicantOnHold"
        | "applicantAwaitingService" => Announcement::Status(KycStatus::Pending),
        "applicantReviewed" | "applicantWorkflowCompleted" => wire
            .review()
            .and_then(|review| review.status())
            .map_or(Announcement::AnyChange, Announcement::Status),
        // A level change usually resets the review; a deletion keeps the decision on record
        // (the API then answers 404); (de)activation says nothing about the review.
        "applicantLevelChanged" | "applicantDeleted" => Announcement::AnyChange,
        _ => Announcement::Nothing,
    };
    Ok(WebhookEvent {
        subject: Some(WebhookSubject {
            subject_ref,
            ref_kind: RefKind::User,
        }),
        kind,
        provider_at,
        announces,
        trusted: None,
        about_aml: false,
        event_id,
    })
}
