//! ARGOS webhook bodies (`webhook_trigger`): who they are about, what they announce, and
//! when. Only the fields used are deserialized: names, e-mail, birth dates, document numbers
//! and addresses in a payload never are.

use super::{map_result, timestamp};
use crate::providers::{
    event_kind, parse_json, IngressError, Malformed, WebhookEvent, WebhookSubject,
};
use crate::status::KycStatus;
use crate::subject::{RefKind, SubjectRef};
use crate::time::Timestamp;
use crate::transition::Announcement;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

/// Triggers about one submission: they must say whose (`userid` or `submission_id`). Other
/// triggers, like `token_expired` (idcheck-token: it names a Token ID, not a submission) and
/// any trigger ARGOS adds later, are recorded and acknowledged with or without a subject.
const SUBMISSION_TRIGGERS: [&str; 10] = [
    "created",
    "retry",
    "submit",
    "approved",
    "rejected",
    "updated",
    "delete",
    "injection",
    "aml",
    "aml_monitor",
];

/// Triggers about AML screening: the check that follows asks for AML results.
const AML_TRIGGERS: [&str; 2] = ["aml", "aml_monitor"];

#[derive(Deserialize)]
struct WireWebhook {
    webhook_trigger: Option<String>,
    userid: Option<String>,
    submission_id: Option<String>,
    /// `submit`.
    created_at: Option<Value>,
    /// `updated`.
    update_time: Option<Value>,
    /// `token_expired`.
    expired_at: Option<Value>,
    kyc_result: Option<WireKycResult>,
    /// `updated`: `{update: [...], kyc_result: "approved" | "rejected", ...}`.
    data: Option<WireData>,
}

/// `kyc_result` is an object in most samples and a bare word in some `updated` ones; any other
/// shape is ignored rather than refused (it is optional).
#[derive(Deserialize)]
#[serde(untagged)]
enum WireKycResult {
    Word(String),
    Object(WireKycObject),
    Other(IgnoredAny),
}

/// Timestamps as any value: one we cannot read is absent, not an error.
#[derive(Deserialize)]
struct WireKycObject {
    status: Option<Value>,
    updated_at: Option<Value>,
    /// The legacy guide's spelling of `updated_at` (fixtures `legacy_*`).
    update_at: Option<Value>,
    kyc_result_at: Option<Value>,
    pending_at: Option<Value>,
    created_at: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireData {
    Update(WireUpdate),
    Other(IgnoredAny),
}

#[derive(Deserialize)]
struct WireUpdate {
    kyc_result: Option<WireKycResult>,
}

impl WireKycResult {
    fn word(&self) -> Option<&str> {
        match self {
            WireKycResult::Word(word) => Some(word),
            WireKycResult::Object(object) => object.status.as_ref().and_then(Value::as_str),
            WireKycResult::Other(_) => None,
        }
    }

    fn timestamps(&self) -> Vec<&Value> {
        let WireKycResult::Object(o) = self else {
            return vec![];
        };
        [
            &o.updated_at,
            &o.update_at,
            &o.kyc_result_at,
            &o.pending_at,
            &o.created_at,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl WireWebhook {
    /// The KYC result an `updated` webhook reports: `data.kyc_result` (new docs), else
    /// `kyc_result` as a word or `{status}` (legacy sample).
    fn updated_result(&self) -> Option<KycStatus> {
        let in_data = match &self.data {
            Some(WireData::Update(update)) => update.kyc_result.as_ref(),
            _ => None,
        };
        in_data
            .and_then(WireKycResult::word)
            .or_else(|| self.kyc_result.as_ref().and_then(WireKycResult::word))
            .and_then(map_result)
    }

    /// The newest time the body mentions. Every one of them precedes the sending, so the
    /// newest is the closest to the event (decision, submission, admin update, expiry).
    fn provider_at(&self) -> Option<Timestamp> {
        let in_kyc_result = self.kyc_result.iter().flat_map(WireKycResult::timestamps);
        [&self.created_at, &self.update_time, &self.expired_at]
            .into_iter()
            .flatten()
            .chain(in_kyc_result)
            .filter_map(timestamp)
            .max()
    }

    /// `userid` when the application set one, else `submission_id`. An id that cannot be a
    /// subject ref makes the body malformed; a blank `userid` means none was set.
    fn subject(&self) -> Result<Option<WebhookSubject>, IngressError> {
        let userid = self.userid.as_deref().filter(|id| !id.trim().is_empty());
        let (id, ref_kind, field) = match (userid, self.submission_id.as_deref()) {
            (Some(userid), _) => (userid, RefKind::User, "userid"),
            (None, Some(submission_id)) => (submission_id, RefKind::Submission, "submission_id"),
            (None, None) => return Ok(None),
        };
        let subject_ref = SubjectRef::parse(id)
            .map_err(|error| IngressError::Malformed(Malformed::InvalidRef { field, error }))?;
        Ok(Some(WebhookSubject {
            subject_ref,
            ref_kind,
        }))
    }
}

/// Parse a plain (decrypted) body. Nothing in it is trusted: ARGOS signs nothing, so a
/// webhook only triggers a check.
pub fn read(plain: &[u8], received_at: Timestamp) -> Result<WebhookEvent, IngressError> {
    let wire: WireWebhook = parse_json(plain)?;
    let trigger = wire
        .webhook_trigger
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .ok_or(IngressError::Malformed(Malformed::MissingField(
            "webhook_trigger",
        )))?;
    let kind = event_kind(Some(trigger));
    let subject = wire.subject()?;
    if subject.is_none() && SUBMISSION_TRIGGERS.contains(&kind.as_str()) {
        return Err(IngressError::Malformed(Malformed::NoSubject {
            first: "userid",
            second: "submission_id",
        }));
    }
    let announces = match kind.as_str() {
        "created" | "retry" => Announcement::Status(KycStatus::Incomplete),
        "submit" => Announcement::Status(KycStatus::Pending),
        // The trigger names the event; the legacy guide's samples (fixtures `legacy_*`) carry
        // a contradictory `kyc_result.status`, and a claim here is only counted, never applied.
        "approved" => Announcement::Status(KycStatus::Approved),
        "rejected" => Announcement::Status(KycStatus::Rejected),
        // An admin can flip a decided submission from the dashboard.
        "updated" => wire
            .updated_result()
            .map_or(Announcement::AnyChange, Announcement::Status),
        "delete" => Announcement::AnyChange,
        // injection (data added to a submission), aml, aml_monitor, token_expired and
        // unknown triggers say nothing about the KYC decision.
        _ => Announcement::Nothing,
    };
    Ok(WebhookEvent {
        subject,
        about_aml: AML_TRIGGERS.contains(&kind.as_str()),
        event_id: None,
        kind,
        // A time after arrival cannot be true; capping it keeps a skewed clock from
        // outranking the polls that follow.
        provider_at: wire.provider_at().map(|at| at.min(received_at)),
        announces,
        // Never: nothing proves an ARGOS body authentic, so a forged "approved" must only
        // trigger a fetch.
        trusted: None,
    })
}
