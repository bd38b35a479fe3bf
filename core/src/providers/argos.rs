//! ARGOS Identity ID Check: `webhook_trigger` webhooks and `GET /v3/submission`.
//! Protocol facts: shared/reference/providers.md §2.
//!
//! ARGOS signs nothing. A webhook is accepted on a secret URL token and, when configured, the
//! sender's address; its body (even a decrypted one: ECB has no integrity) is never trusted.
//! Every webhook is only a trigger, and the API answer decides the status.

use super::{
    event_kind, join_url, json_error, query_value, ApiError, InboundWebhook, IngressError,
    ProviderProtocol, StatusRequest, WebhookEvent, WebhookSubject,
};
use crate::headers;
use crate::observation::{Observation, Source};
use crate::secret::Secret;
use crate::status::{provider_value, Aml, KycStatus};
use crate::subject::{RefKind, SubjectRef};
use crate::timefmt::{parse_argos, parse_rfc3339};
use crate::transition::Announcement;
use aes::cipher::{BlockDecrypt, KeyInit};
use aes::{Aes256, Block};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::net::IpAddr;

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

const AES_BLOCK: usize = 16;

/// How webhook bodies arrive (`ARGOS_ENCRYPTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// Plain JSON.
    Off,
    /// `{"data": "<base64>"}`: AES-256-ECB with key = SHA-256(API key), PKCS#7 padding.
    Aes256Ecb,
}

#[derive(Debug, Clone)]
pub struct Argos {
    api_key: Secret,
    webhook_token: Secret,
    api_base: String,
    /// Empty = any address (the URL token still applies).
    allowed_ips: Vec<IpAddr>,
    encryption: Encryption,
}

impl Argos {
    pub fn new(
        api_key: Secret,
        webhook_token: Secret,
        api_base: String,
        allowed_ips: Vec<IpAddr>,
        encryption: Encryption,
    ) -> Self {
        Self {
            api_key,
            webhook_token,
            api_base,
            allowed_ips,
            encryption,
        }
    }
}

fn malformed(why: &str) -> IngressError {
    IngressError::Malformed(why.to_owned())
}

/// The encrypted envelope. `data` is read as any value so a plain body (whose `data` may be
/// an object, as in `updated`) is refused with a clear message rather than a type error.
#[derive(Deserialize)]
struct WireEnvelope {
    data: Option<Value>,
}

/// Open `{"data": "<base64>"}`: base64 (standard alphabet, padded; surrounding whitespace such
/// as a trailing newline is tolerated, whitespace inside is not), AES-256-ECB block by block
/// with key = SHA-256(API key as UTF-8), then strict PKCS#7. Messages never quote the body.
fn decrypt_envelope(api_key: &Secret, body: &[u8]) -> Result<Vec<u8>, IngressError> {
    let envelope: WireEnvelope =
        serde_json::from_slice(body).map_err(|e| IngressError::Malformed(json_error(&e)))?;
    let data = envelope
        .data
        .as_ref()
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("encrypted envelope expected: data is not a string"))?;
    let mut bytes = BASE64
        .decode(data.trim_matches(|c: char| c.is_ascii_whitespace()))
        .map_err(|_| malformed("envelope data is not base64"))?;
    if bytes.is_empty() || bytes.len() % AES_BLOCK != 0 {
        return Err(malformed("envelope data is not whole AES blocks"));
    }
    // Derived per call rather than stored, so the key never sits in `Argos` (which is `Debug`).
    let key = Sha256::digest(api_key.expose().as_bytes());
    let cipher = Aes256::new(&key);
    for block in bytes.chunks_exact_mut(AES_BLOCK) {
        cipher.decrypt_block(Block::from_mut_slice(block));
    }
    strip_pkcs7(bytes)
}

/// Remove PKCS#7 padding: the last byte n is 1..=16 and the last n bytes all equal n. A wrong
/// key almost always fails here. (No padding oracle worth hiding: ECB blocks decrypt alone,
/// so a sender cannot steer a block's plaintext bytes, and it must hold the URL token first.)
fn strip_pkcs7(mut bytes: Vec<u8>) -> Result<Vec<u8>, IngressError> {
    let bad = || malformed("envelope does not decrypt (wrong key or corrupt ciphertext)");
    let pad = usize::from(*bytes.last().ok_or_else(bad)?);
    let keep = bytes.len().checked_sub(pad).ok_or_else(bad)?;
    if !(1..=AES_BLOCK).contains(&pad) || bytes[keep..].iter().any(|&b| usize::from(b) != pad) {
        return Err(bad());
    }
    bytes.truncate(keep);
    Ok(bytes)
}

/// Only the fields we use. Names, e-mail, birth dates, document numbers and addresses in the
/// payload are never deserialized.
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
    /// The legacy guide's spelling of `updated_at` (seed 004).
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
    fn provider_at(&self) -> Option<i64> {
        let in_kyc_result = self.kyc_result.iter().flat_map(WireKycResult::timestamps);
        [&self.created_at, &self.update_time, &self.expired_at]
            .into_iter()
            .flatten()
            .chain(in_kyc_result)
            .filter_map(timestamp)
            .max()
    }
}

/// Webhooks carry ISO-8601, the API `YYYY-MM-DD-HH-MM-SS-ZZZ`; the two cannot be confused,
/// so either is read wherever it appears. Anything else is absent.
fn timestamp(value: &Value) -> Option<i64> {
    let text = value.as_str()?;
    parse_rfc3339(text).or_else(|| parse_argos(text))
}

/// ARGOS result words (`kyc_result.status`, `data.kyc_result`, `kyc.result`). The docs
/// misspell "imcomplete" once (§2.6), so that spelling means the same.
fn map_result(word: &str) -> Option<KycStatus> {
    match word.trim() {
        "approved" => Some(KycStatus::Approved),
        "rejected" => Some(KycStatus::Rejected),
        "pending" => Some(KycStatus::Pending),
        "incomplete" | "imcomplete" => Some(KycStatus::Incomplete),
        _ => None,
    }
}

/// `userid` when the application set one, else `submission_id`. An id that cannot be a
/// subject ref makes the body malformed; a blank `userid` means none was set.
fn webhook_subject(wire: &WireWebhook) -> Result<Option<WebhookSubject>, IngressError> {
    let userid = wire.userid.as_deref().filter(|id| !id.trim().is_empty());
    let (id, ref_kind, field) = match (userid, wire.submission_id.as_deref()) {
        (Some(userid), _) => (userid, RefKind::User, "userid"),
        (None, Some(submission_id)) => (submission_id, RefKind::Submission, "submission_id"),
        (None, None) => return Ok(None),
    };
    let subject_ref =
        SubjectRef::parse(id).map_err(|e| IngressError::Malformed(format!("{field} {e}")))?;
    Ok(Some(WebhookSubject {
        subject_ref,
        ref_kind,
    }))
}

/// The `Items` of a `GET /v3/submission` answer. Only ids, times and results are
/// deserialized: `data` (names, birth date, documents) and `email` never are.
#[derive(Deserialize)]
struct WireSubmissions {
    #[serde(rename = "Items")]
    items: Option<Vec<WireSubmission>>,
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

fn read_time(value: &Option<Value>) -> Option<i64> {
    value.as_ref().and_then(timestamp)
}

impl WireSubmission {
    fn result(&self) -> Option<&str> {
        self.kyc
            .as_ref()?
            .result
            .as_deref()
            .filter(|r| !r.trim().is_empty())
    }

    /// ARGOS does not document `kyc.result` for undecided submissions (§2.8): without one,
    /// `pending_at` says the submission reached review, else it was never submitted.
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

    fn decided_at(&self) -> Option<i64> {
        read_time(&self.kyc_result_at)
            .or_else(|| read_time(&self.updated_at))
            .or_else(|| read_time(&self.created_at))
    }

    fn started_at(&self) -> Option<i64> {
        read_time(&self.created_at).or_else(|| read_time(&self.updated_at))
    }

    /// When this submission's status took effect, as far as ARGOS says.
    fn status_at(&self, status: KycStatus) -> Option<i64> {
        let own = if status == KycStatus::Pending {
            &self.pending_at
        } else {
            &self.kyc_result_at
        };
        read_time(own)
            .or_else(|| read_time(&self.updated_at))
            .or_else(|| read_time(&self.created_at))
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
}

/// The submission that stands for the user (ARGOS FAQ, PRODUCT.md): the most recently
/// approved one if any, because a newer attempt can be rejected (or an incomplete one expire
/// to rejected) while the user stays verified; else the most recent one. Ties go to the
/// later item; a submission without readable times sorts oldest.
fn representative(submissions: &[WireSubmission]) -> Option<&WireSubmission> {
    submissions
        .iter()
        .filter(|s| s.status() == KycStatus::Approved)
        .max_by_key(|s| s.decided_at())
        .or_else(|| submissions.iter().max_by_key(|s| s.started_at()))
}

impl ProviderProtocol for Argos {
    /// The URL token first (constant time), then the sender's address when a list is set.
    fn authenticate(&self, webhook: &InboundWebhook<'_>) -> Result<(), IngressError> {
        if !self.webhook_token.matches(webhook.path_token.unwrap_or("")) {
            return Err(IngressError::Unauthenticated("invalid webhook token"));
        }
        if self.allowed_ips.is_empty() {
            return Ok(());
        }
        let client = webhook
            .client_ip
            .and_then(|ip| ip.trim().parse::<IpAddr>().ok())
            .ok_or(IngressError::Forbidden(
                "client address is missing or not an IP address",
            ))?;
        // Canonical forms, so `::ffff:52.78.194.237` matches `52.78.194.237`.
        let allowed = self
            .allowed_ips
            .iter()
            .any(|ip| ip.to_canonical() == client.to_canonical());
        if allowed {
            Ok(())
        } else {
            Err(IngressError::Forbidden("client address is not allowed"))
        }
    }

    fn parse_webhook(&self, body: &[u8], received_at: i64) -> Result<WebhookEvent, IngressError> {
        let decrypted;
        let plain = match self.encryption {
            Encryption::Off => body,
            Encryption::Aes256Ecb => {
                decrypted = decrypt_envelope(&self.api_key, body)?;
                decrypted.as_slice()
            }
        };
        let wire: WireWebhook =
            serde_json::from_slice(plain).map_err(|e| IngressError::Malformed(json_error(&e)))?;
        let trigger = wire
            .webhook_trigger
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| malformed("webhook_trigger is missing"))?;
        let kind = event_kind(Some(trigger));
        let subject = webhook_subject(&wire)?;
        if subject.is_none() && SUBMISSION_TRIGGERS.contains(&kind.as_str()) {
            return Err(malformed("neither userid nor submission_id is present"));
        }
        let announces = match kind.as_str() {
            "created" | "retry" => Announcement::Status(KycStatus::Incomplete),
            "submit" => Announcement::Status(KycStatus::Pending),
            // The trigger names the event; seed 004's samples carry a contradictory
            // `kyc_result.status`, and a claim here is only counted, never applied.
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
            kind,
            // A time after arrival cannot be true; capping it keeps a skewed clock from
            // outranking the polls that follow.
            provider_at: wire.provider_at().map(|at| at.min(received_at)),
            announces,
            // Never: nothing proves an ARGOS body authentic, so a forged "approved" must
            // only trigger a fetch.
            trusted: None,
        })
    }

    fn status_request(&self, subject_ref: &SubjectRef, ref_kind: RefKind) -> StatusRequest {
        let field = match ref_kind {
            RefKind::User => "userid",
            RefKind::Submission => "submission_id",
        };
        // request_type=kyc: KYC fields only, the least PII ARGOS offers (§2.8).
        let path = format!(
            "/v3/submission?{field}={}&request_type=kyc",
            query_value(subject_ref.as_str())
        );
        StatusRequest {
            url: join_url(&self.api_base, &path),
            headers: vec![(headers::ARGOS_API_KEY, self.api_key.expose().to_owned())],
        }
    }

    fn parse_status(
        &self,
        body: &[u8],
        subject_ref: &SubjectRef,
        ref_kind: RefKind,
        fetched_at: i64,
    ) -> Result<Observation, ApiError> {
        let wire: WireSubmissions =
            serde_json::from_slice(body).map_err(|e| ApiError::Malformed(json_error(&e)))?;
        // Without `Items` the answer is not a submission list: reading it as "no submissions"
        // would turn an approved user into not_started on a provider hiccup.
        let items = wire
            .items
            .ok_or_else(|| ApiError::Malformed("Items is missing".into()))?;
        let listed = items.len();
        let ours: Vec<WireSubmission> = items
            .into_iter()
            .filter(|s| s.is_about(subject_ref, ref_kind))
            .collect();
        if listed > 0 && ours.is_empty() {
            return Err(ApiError::WrongSubject);
        }
        let Some(chosen) = representative(&ours) else {
            return Ok(Observation {
                status: KycStatus::NotStarted,
                provider_status: None,
                sub_status: None,
                aml: None,
                status_at: None,
                observed_at: fetched_at,
                source: Source::Poll,
            });
        };
        let status = chosen.status();
        Ok(Observation {
            status,
            provider_status: chosen.result().and_then(provider_value),
            sub_status: None,
            aml: chosen.aml(),
            status_at: chosen.status_at(status).map(|at| at.min(fetched_at)),
            observed_at: fetched_at,
            source: Source::Poll,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = include_str!("../../tests/fixtures/argos/key.txt");
    const TOKEN: &str = "whk_3f9b7a1c5e2d40868e1d";
    /// 2026-11-01T00:00:00Z (`date -u -d ... +%s%3N`), after every fixture's times.
    const RECEIVED: i64 = 1_793_491_200_000;
    const BAD_PADDING: &str = "envelope does not decrypt (wrong key or corrupt ciphertext)";

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("../../tests/fixtures/argos/", $name)).as_slice()
        };
    }

    fn argos_with(encryption: Encryption, allowed_ips: &[&str]) -> Argos {
        Argos::new(
            Secret::new(KEY).unwrap(),
            Secret::new(TOKEN).unwrap(),
            "https://rest-api.argosidentity.com/".into(),
            allowed_ips.iter().map(|ip| ip.parse().unwrap()).collect(),
            encryption,
        )
    }

    fn argos() -> Argos {
        argos_with(Encryption::Off, &[])
    }

    fn encrypted() -> Argos {
        argos_with(Encryption::Aes256Ecb, &[])
    }

    fn at(iso: &str) -> i64 {
        parse_rfc3339(iso).unwrap()
    }

    fn envelope(data: &str) -> Vec<u8> {
        format!(r#"{{"data":"{data}"}}"#).into_bytes()
    }

    fn user(id: &str) -> Option<WebhookSubject> {
        Some(WebhookSubject {
            subject_ref: SubjectRef::parse(id).unwrap(),
            ref_kind: RefKind::User,
        })
    }

    fn malformed_message(result: Result<WebhookEvent, IngressError>) -> String {
        match result {
            Err(IngressError::Malformed(why)) => why,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    // --- authenticate ---

    fn inbound<'a>(token: Option<&'a str>, ip: Option<&'a str>) -> InboundWebhook<'a> {
        InboundWebhook {
            path_token: token,
            client_ip: ip,
            header: &|_| None,
            body: b"{}",
        }
    }

    #[test]
    fn the_url_token_must_match_exactly() {
        let bad = Err(IngressError::Unauthenticated("invalid webhook token"));
        assert_eq!(argos().authenticate(&inbound(Some(TOKEN), None)), Ok(()));
        let longer = format!("{TOKEN}x");
        for wrong in [
            None,
            Some(""),
            Some(&TOKEN[..TOKEN.len() - 1]),
            Some(longer.as_str()),
            Some("whk_000000000000000000000"),
        ] {
            assert_eq!(
                argos().authenticate(&inbound(wrong, None)),
                bad,
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn the_allow_list_checks_the_client_address() {
        let argos = argos_with(Encryption::Off, &["52.78.194.237", "2001:db8::7"]);
        for ok in [
            "52.78.194.237",
            "2001:db8::7",
            "2001:DB8:0:0:0:0:0:7",
            "::ffff:52.78.194.237",
        ] {
            assert_eq!(
                argos.authenticate(&inbound(Some(TOKEN), Some(ok))),
                Ok(()),
                "{ok}"
            );
        }
        let not_allowed = Err(IngressError::Forbidden("client address is not allowed"));
        for other in ["52.78.194.238", "2001:db8::8", "127.0.0.1"] {
            assert_eq!(
                argos.authenticate(&inbound(Some(TOKEN), Some(other))),
                not_allowed
            );
        }
        let unknown = Err(IngressError::Forbidden(
            "client address is missing or not an IP address",
        ));
        for missing in [
            None,
            Some(""),
            Some("argos.example"),
            Some("52.78.194.237:443"),
        ] {
            assert_eq!(
                argos.authenticate(&inbound(Some(TOKEN), missing)),
                unknown,
                "{missing:?}"
            );
        }
    }

    #[test]
    fn the_token_is_checked_before_the_address() {
        let argos = argos_with(Encryption::Off, &["52.78.194.237"]);
        let bad = Err(IngressError::Unauthenticated("invalid webhook token"));
        assert_eq!(
            argos.authenticate(&inbound(Some("nope"), Some("52.78.194.237"))),
            bad
        );
        assert_eq!(
            argos.authenticate(&inbound(Some("nope"), Some("10.0.0.1"))),
            bad
        );
    }

    #[test]
    fn without_an_allow_list_any_address_passes_the_token_check() {
        for ip in [None, Some("10.0.0.1"), Some("garbage")] {
            assert_eq!(argos().authenticate(&inbound(Some(TOKEN), ip)), Ok(()));
        }
    }

    #[test]
    fn debug_never_shows_the_key_or_token() {
        let shown = format!("{:?}", argos());
        assert!(!shown.contains(KEY) && !shown.contains(TOKEN), "{shown}");
    }

    // --- parse_webhook ---

    #[test]
    fn every_trigger_sample_parses_and_maps() {
        use Announcement::{AnyChange, Nothing, Status};
        use KycStatus::*;
        let cases = [
            (
                fixture!("created.json"),
                "created",
                Some("user_8f3a21"),
                Status(Incomplete),
                None,
            ),
            (
                fixture!("retry.json"),
                "retry",
                Some("user_8f3a21"),
                Status(Incomplete),
                None,
            ),
            (
                fixture!("submit.json"),
                "submit",
                Some("user_8f3a21"),
                Status(Pending),
                Some(at("2026-10-05T08:12:44.120Z")),
            ),
            (
                fixture!("approved.json"),
                "approved",
                Some("user_8f3a21"),
                Status(Approved),
                Some(at("2026-10-05T08:20:03.512Z")),
            ),
            (
                fixture!("rejected.json"),
                "rejected",
                Some("user_8f3a21"),
                Status(Rejected),
                Some(at("2026-10-06T09:00:00Z")),
            ),
            (
                fixture!("updated.json"),
                "updated",
                Some("user_8f3a21"),
                Status(Rejected),
                Some(at("2026-10-07T11:30:00Z")),
            ),
            (
                fixture!("delete.json"),
                "delete",
                Some("user_8f3a21"),
                AnyChange,
                None,
            ),
            (
                fixture!("injection.json"),
                "injection",
                Some("user_8f3a21"),
                Nothing,
                None,
            ),
            (
                fixture!("aml.json"),
                "aml",
                Some("user_8f3a21"),
                Nothing,
                None,
            ),
            (
                fixture!("aml_monitor.json"),
                "aml_monitor",
                Some("user_8f3a21"),
                Nothing,
                None,
            ),
            (
                fixture!("token_expired.json"),
                "token_expired",
                None,
                Nothing,
                Some(at("2026-10-05T08:20:03.600Z")),
            ),
            (
                fixture!("legacy_submit.json"),
                "submit",
                Some("user_legacy_7"),
                Status(Pending),
                Some(at("2023-07-06T02:01:03.494Z")),
            ),
            (
                fixture!("legacy_approved.json"),
                "approved",
                Some("user_legacy_7"),
                Status(Approved),
                Some(at("2023-07-06T00:45:05.738Z")),
            ),
            (
                fixture!("legacy_updated.json"),
                "updated",
                Some("user_legacy_7"),
                Status(Approved),
                Some(at("2023-07-11T09:13:24.751Z")),
            ),
            (
                fixture!("legacy_aml.json"),
                "aml",
                Some("user_legacy_7"),
                Nothing,
                None,
            ),
        ];
        for (body, kind, userid, announces, provider_at) in cases {
            let event = argos().parse_webhook(body, RECEIVED).unwrap();
            let want = WebhookEvent {
                subject: userid.and_then(user),
                kind: kind.to_owned(),
                provider_at,
                announces,
                trusted: None,
            };
            assert_eq!(event, want, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn a_forged_approved_webhook_is_never_trusted() {
        let forged = br#"{"webhook_trigger":"approved","userid":"victim_1","kyc_result":{"status":"approved","updated_at":"2026-10-01T00:00:00Z"}}"#;
        let event = argos().parse_webhook(forged, RECEIVED).unwrap();
        assert_eq!(event.announces, Announcement::Status(KycStatus::Approved));
        assert_eq!(event.trusted, None);
        // Decrypting proves only that the sender has the key; ECB gives no integrity.
        let sealed = envelope(include_str!("../../tests/fixtures/argos/approved.enc.b64"));
        assert_eq!(
            encrypted()
                .parse_webhook(&sealed, RECEIVED)
                .unwrap()
                .trusted,
            None
        );
    }

    #[test]
    fn updated_reads_the_result_in_either_shape() {
        use Announcement::{AnyChange, Status};
        let cases: [(&[u8], Announcement); 7] = [
            (
                br#"{"webhook_trigger":"updated","userid":"u1","data":{"update":["kycStatus"],"kyc_result":"approved"}}"#,
                Status(KycStatus::Approved),
            ),
            (
                br#"{"webhook_trigger":"updated","userid":"u1","kyc_result":{"status":"rejected"}}"#,
                Status(KycStatus::Rejected),
            ),
            (
                br#"{"webhook_trigger":"updated","userid":"u1","kyc_result":"approved"}"#,
                Status(KycStatus::Approved),
            ),
            (
                br#"{"webhook_trigger":"updated","userid":"u1","data":{"update":["fullName"]}}"#,
                AnyChange,
            ),
            (
                br#"{"webhook_trigger":"updated","userid":"u1","data":{"kyc_result":"string"}}"#,
                AnyChange,
            ),
            (br#"{"webhook_trigger":"updated","userid":"u1","data":"x","kyc_result":7}"#, AnyChange),
            (br#"{"webhook_trigger":"updated","submission_id":"s1"}"#, AnyChange),
        ];
        for (body, want) in cases {
            let event = argos().parse_webhook(body, RECEIVED).unwrap();
            assert_eq!(event.announces, want, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn unknown_triggers_are_recorded_and_acknowledged() {
        let event = argos()
            .parse_webhook(
                br#"{"webhook_trigger":"kyc_reminder","userid":"u1"}"#,
                RECEIVED,
            )
            .unwrap();
        assert_eq!(
            (event.kind.as_str(), event.subject),
            ("kyc_reminder", user("u1"))
        );
        assert_eq!(event.announces, Announcement::Nothing);
        let event = argos()
            .parse_webhook(
                br#"{"webhook_trigger":"new thing: jane@example.com"}"#,
                RECEIVED,
            )
            .unwrap();
        assert_eq!((event.kind.as_str(), event.subject), ("unknown", None));
    }

    #[test]
    fn userid_is_the_subject_and_submission_id_the_fallback() {
        let both = br#"{"webhook_trigger":"submit","userid":"app-user.42","submission_id":"s1"}"#;
        assert_eq!(
            argos().parse_webhook(both, RECEIVED).unwrap().subject,
            user("app-user.42")
        );
        for only_submission in [
            br#"{"webhook_trigger":"submit","submission_id":"kSm3Xq9TzW1a"}"#.as_slice(),
            br#"{"webhook_trigger":"submit","userid":"","submission_id":"kSm3Xq9TzW1a"}"#,
            br#"{"webhook_trigger":"submit","userid":null,"submission_id":"kSm3Xq9TzW1a"}"#,
        ] {
            let subject = argos()
                .parse_webhook(only_submission, RECEIVED)
                .unwrap()
                .subject;
            assert_eq!(
                subject,
                Some(WebhookSubject {
                    subject_ref: SubjectRef::parse("kSm3Xq9TzW1a").unwrap(),
                    ref_kind: RefKind::Submission,
                })
            );
        }
    }

    #[test]
    fn malformed_bodies_are_refused_without_quoting_them() {
        let cases: [(&[u8], &str); 8] = [
            (
                b"jane@example.com",
                "body is not the expected JSON (line 1, column 1)",
            ),
            (
                br#"{"userid":"u1","email":"jane@example.com"}"#,
                "webhook_trigger is missing",
            ),
            (
                br#"{"webhook_trigger":" ","userid":"u1"}"#,
                "webhook_trigger is missing",
            ),
            (
                br#"{"webhook_trigger":"approved","email":"jane@example.com"}"#,
                "neither userid nor submission_id is present",
            ),
            (
                br#"{"webhook_trigger":"approved","userid":"jane doe@example.com"}"#,
                "userid may contain only letters, digits and - _ . : @ + ~",
            ),
            (
                br#"{"webhook_trigger":"approved","submission_id":"jane/../x"}"#,
                "submission_id may contain only letters, digits and - _ . : @ + ~",
            ),
            (
                br#"{"webhook_trigger":"approved","userid":{"name":"jane"}}"#,
                "body is not the expected JSON",
            ),
            (
                br#"{"webhook_trigger":7,"userid":"u1"}"#,
                "body is not the expected JSON",
            ),
        ];
        for (body, want) in cases {
            let why = malformed_message(argos().parse_webhook(body, RECEIVED));
            // JSON errors also name a line and column.
            assert!(
                why.starts_with(want),
                "{why:?} for {}",
                String::from_utf8_lossy(body)
            );
            assert!(!why.contains("jane"), "{why}");
        }
    }

    #[test]
    fn provider_time_is_capped_at_arrival_and_unreadable_times_are_absent() {
        let early = at("2026-10-05T08:15:00Z");
        let event = argos()
            .parse_webhook(fixture!("approved.json"), early)
            .unwrap();
        assert_eq!(event.provider_at, Some(early));
        for body in [
            br#"{"webhook_trigger":"submit","userid":"u1","created_at":"yesterday"}"#.as_slice(),
            br#"{"webhook_trigger":"submit","userid":"u1","created_at":1696493564120}"#,
            br#"{"webhook_trigger":"submit","userid":"u1","kyc_result":{"created_at":"2026-10-05T08:12:44"}}"#,
        ] {
            assert_eq!(argos().parse_webhook(body, RECEIVED).unwrap().provider_at, None);
        }
        let api_format =
            br#"{"webhook_trigger":"submit","userid":"u1","created_at":"2026-10-05-08-12-44-120"}"#;
        assert_eq!(
            argos()
                .parse_webhook(api_format, RECEIVED)
                .unwrap()
                .provider_at,
            Some(at("2026-10-05T08:12:44.120Z"))
        );
    }

    // --- AES-256-ECB envelope ---

    macro_rules! vector {
        ($name:literal) => {
            (
                include_str!(concat!("../../tests/fixtures/argos/", $name, ".enc.b64")),
                include_bytes!(concat!("../../tests/fixtures/argos/", $name, ".json")).as_slice(),
            )
        };
    }

    const VECTORS: [(&str, &[u8]); 4] = [
        vector!("approved"),
        vector!("updated"),
        vector!("created"),
        vector!("token_expired"),
    ];

    fn key() -> Secret {
        Secret::new(KEY).unwrap()
    }

    #[test]
    fn openssl_vectors_decrypt_to_the_plaintext_bytes() {
        for (b64, plaintext) in VECTORS {
            assert_eq!(decrypt_envelope(&key(), &envelope(b64)).unwrap(), plaintext);
        }
        // 160 bytes of plaintext: openssl added a whole block of padding.
        assert_eq!(BASE64.decode(VECTORS[3].0).unwrap().len(), 176);
    }

    #[test]
    fn encrypted_webhooks_parse_like_plain_ones() {
        for (b64, plaintext) in VECTORS {
            let sealed = encrypted().parse_webhook(&envelope(b64), RECEIVED).unwrap();
            assert_eq!(sealed, argos().parse_webhook(plaintext, RECEIVED).unwrap());
        }
    }

    #[test]
    fn surrounding_whitespace_in_the_base64_is_tolerated() {
        let (b64, plaintext) = VECTORS[0];
        let body = format!("{{ \"data\": \"{b64}\\n\" }}\n");
        assert_eq!(
            decrypt_envelope(&key(), body.as_bytes()).unwrap(),
            plaintext
        );
    }

    #[test]
    fn bad_ciphertexts_are_malformed() {
        let (b64, _) = VECTORS[0];
        assert!(
            b64.contains('+') || b64.contains('/'),
            "the vector exercises the alphabet"
        );
        let url_safe = b64.replace('+', "-").replace('/', "_");
        let (padded, _) = VECTORS[3];
        assert!(padded.ends_with('='));
        let broken_line = format!("{}\\n{}", &b64[..64], &b64[64..]);
        let not_base64 = "envelope data is not base64";
        let not_blocks = "envelope data is not whole AES blocks";
        let cases: [(String, &str); 10] = [
            ("***".into(), not_base64),
            (url_safe, not_base64),
            (padded.trim_end_matches('=').into(), not_base64),
            (broken_line, not_base64),
            (String::new(), not_blocks),
            (BASE64.encode([7u8; 15]), not_blocks),
            (BASE64.encode([7u8; 33]), not_blocks),
            (
                include_str!("../../tests/fixtures/argos/bad_padding_zero.enc.b64").into(),
                BAD_PADDING,
            ),
            (
                include_str!("../../tests/fixtures/argos/bad_padding_mixed.enc.b64").into(),
                BAD_PADDING,
            ),
            (
                include_str!("../../tests/fixtures/argos/bad_padding_too_long.enc.b64").into(),
                BAD_PADDING,
            ),
        ];
        for (data, want) in cases {
            let why = malformed_message(encrypted().parse_webhook(&envelope(&data), RECEIVED));
            assert_eq!(why, want, "{data:?}");
        }
    }

    #[test]
    fn a_wrong_key_does_not_decrypt() {
        let other = Argos::new(
            Secret::new("argos_test_other_key").unwrap(),
            Secret::new(TOKEN).unwrap(),
            "https://rest-api.argosidentity.com".into(),
            vec![],
            Encryption::Aes256Ecb,
        );
        for (b64, _) in VECTORS {
            let why = malformed_message(other.parse_webhook(&envelope(b64), RECEIVED));
            assert!(
                !why.contains("Ji Sung") && !why.contains(&b64[..16]),
                "{why}"
            );
        }
    }

    #[test]
    fn the_envelope_is_required_when_encryption_is_on_and_refused_when_off() {
        let cases: [(&[u8], &str); 4] = [
            (
                fixture!("approved.json"),
                "encrypted envelope expected: data is not a string",
            ),
            (
                fixture!("updated.json"),
                "encrypted envelope expected: data is not a string",
            ),
            (
                br#"{"data":{"kyc_result":"approved"}}"#,
                "encrypted envelope expected: data is not a string",
            ),
            (
                b"ji.sung.park@example.com",
                "body is not the expected JSON (line 1, column 1)",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                malformed_message(encrypted().parse_webhook(body, RECEIVED)),
                want
            );
        }
        let sealed = envelope(VECTORS[0].0);
        assert_eq!(
            malformed_message(argos().parse_webhook(&sealed, RECEIVED)),
            "webhook_trigger is missing"
        );
    }

    // --- status_request / parse_status ---

    #[test]
    fn status_requests_filter_by_userid_or_submission_id() {
        let req = argos().status_request(&SubjectRef::parse("user_8f3a21").unwrap(), RefKind::User);
        assert_eq!(
            req.url,
            "https://rest-api.argosidentity.com/v3/submission?userid=user_8f3a21&request_type=kyc"
        );
        assert_eq!(req.headers, vec![("x-api-key", KEY.to_owned())]);
        let odd = SubjectRef::parse("a+b@c:d~e").unwrap();
        let req = argos().status_request(&odd, RefKind::Submission);
        assert_eq!(
            req.url,
            "https://rest-api.argosidentity.com/v3/submission?submission_id=a%2Bb%40c%3Ad~e&request_type=kyc"
        );
    }

    fn status(body: &[u8], id: &str, kind: RefKind) -> Result<Observation, ApiError> {
        argos().parse_status(body, &SubjectRef::parse(id).unwrap(), kind, RECEIVED)
    }

    #[test]
    fn the_documented_answer_maps_with_its_api_timestamps() {
        let obs = status(fixture!("api_rejected.json"), "user_8f3a21", RefKind::User).unwrap();
        assert_eq!(
            obs,
            Observation {
                status: KycStatus::Rejected,
                provider_status: Some("rejected".into()),
                sub_status: None,
                aml: None,
                // kyc_result_at "2026-10-06-09-00-00-000"
                status_at: Some(at("2026-10-06T09:00:00.000Z")),
                observed_at: RECEIVED,
                source: Source::Poll,
            }
        );
        let by_submission = status(
            fixture!("api_rejected.json"),
            "pR8vN2cYb6Hd",
            RefKind::Submission,
        )
        .unwrap();
        assert_eq!(by_submission, obs);
    }

    #[test]
    fn a_newer_rejected_attempt_does_not_unapprove_the_user() {
        let obs = status(
            fixture!("api_approved_then_rejected.json"),
            "user_8f3a21",
            RefKind::User,
        )
        .unwrap();
        assert_eq!(obs.status, KycStatus::Approved);
        assert_eq!(obs.provider_status.as_deref(), Some("approved"));
        assert_eq!(obs.status_at, Some(at("2026-10-05T08:20:03.512Z")));
        assert_eq!(
            obs.aml,
            Some(Aml {
                status: "Not Screened".into(),
                risk_level: Some("Not Screened".into())
            })
        );
    }

    #[test]
    fn an_approval_flipped_by_an_admin_leaves_the_latest_submission() {
        let obs = status(
            fixture!("api_approved_flipped.json"),
            "user_8f3a21",
            RefKind::User,
        )
        .unwrap();
        assert_eq!(obs.status, KycStatus::Rejected);
        // The most recent submission (created 2026-10-06) stands for the user now.
        assert_eq!(obs.status_at, Some(at("2026-10-06T09:00:00Z")));
        assert_eq!(obs.aml, None);
    }

    #[test]
    fn result_words_and_undecided_submissions() {
        use KycStatus::*;
        let cases: [(&str, KycStatus, Option<&str>); 9] = [
            (r#""kyc":{"result":"approved"}"#, Approved, Some("approved")),
            (r#""kyc":{"result":"rejected"}"#, Rejected, Some("rejected")),
            (r#""kyc":{"result":"pending"}"#, Pending, Some("pending")),
            (
                r#""kyc":{"result":"incomplete"}"#,
                Incomplete,
                Some("incomplete"),
            ),
            (r#""kyc":{"result":"on_hold"}"#, Unknown, Some("on_hold")),
            (r#""kyc":{"result":"see jane@example.com"}"#, Unknown, None),
            (
                r#""kyc":{},"pending_at":"2026-10-05-08-12-44-120""#,
                Pending,
                None,
            ),
            (r#""kyc":null,"pending_at":"garbled""#, Pending, None),
            (r#""kyc":{"result":""}"#, Incomplete, None),
        ];
        for (fields, want, word) in cases {
            let body = format!(r#"{{"Items":[{{"userid":"u1",{fields}}}]}}"#);
            let obs = status(body.as_bytes(), "u1", RefKind::User).unwrap();
            assert_eq!(
                (obs.status, obs.provider_status.as_deref()),
                (want, word),
                "{fields}"
            );
        }
        let pending = br#"{"Items":[{"pending_at":"2026-10-05-08-12-44-120","created_at":"2026-10-05-08-02-11-004"}]}"#;
        let obs = status(pending, "u1", RefKind::User).unwrap();
        assert_eq!(obs.status_at, Some(at("2026-10-05T08:12:44.120Z")));
    }

    #[test]
    fn no_submissions_is_not_started_but_no_list_is_malformed() {
        let obs = status(br#"{"Items":[],"Count":0}"#, "u1", RefKind::User).unwrap();
        assert_eq!(
            (obs.status, obs.provider_status, obs.aml),
            (KycStatus::NotStarted, None, None)
        );
        for body in [
            br#"{}"#.as_slice(),
            br#"{"Items":null}"#,
            br#"{"message":"Forbidden"}"#,
        ] {
            assert_eq!(
                status(body, "u1", RefKind::User),
                Err(ApiError::Malformed("Items is missing".into()))
            );
        }
    }

    #[test]
    fn answers_about_someone_else_are_never_applied() {
        let theirs = br#"{"Items":[{"userid":"u2","kyc":{"result":"approved"}}]}"#;
        assert_eq!(
            status(theirs, "u1", RefKind::User),
            Err(ApiError::WrongSubject)
        );
        let other_submission = fixture!("api_rejected.json");
        assert_eq!(
            status(other_submission, "kSm3Xq9TzW1a", RefKind::Submission),
            Err(ApiError::WrongSubject)
        );
        // Someone else's approval among ours is ignored; an item without a userid is ours.
        let mixed = br#"{"Items":[
            {"userid":"u2","kyc":{"result":"approved"}},
            {"kyc":{"result":"rejected"}}]}"#;
        assert_eq!(
            status(mixed, "u1", RefKind::User).unwrap().status,
            KycStatus::Rejected
        );
    }

    #[test]
    fn unreadable_timestamps_are_absent_not_errors() {
        let body = br#"{"Items":[
            {"userid":"u1","kyc":{"result":"rejected"},"created_at":"yesterday","kyc_result_at":12},
            {"userid":"u1","kyc":{"result":"approved"},"updated_at":"2026-10-05T08:20:03Z"}]}"#;
        let obs = status(body, "u1", RefKind::User).unwrap();
        assert_eq!(obs.status, KycStatus::Approved);
        assert_eq!(obs.status_at, Some(at("2026-10-05T08:20:03Z")));
        let none = br#"{"Items":[{"userid":"u1","kyc":{"result":"rejected"},"created_at":"x"}]}"#;
        assert_eq!(status(none, "u1", RefKind::User).unwrap().status_at, None);
    }

    #[test]
    fn the_most_recent_submission_decides_when_none_is_approved() {
        let body = br#"{"Items":[
            {"userid":"u1","kyc":{"result":"rejected"},"created_at":"2026-10-01-00-00-00-000"},
            {"userid":"u1","pending_at":"2026-10-03-00-00-00-000","created_at":"2026-10-02-00-00-00-000"},
            {"userid":"u1","created_at":"2026-09-01-00-00-00-000"}]}"#;
        assert_eq!(
            status(body, "u1", RefKind::User).unwrap().status,
            KycStatus::Pending
        );
    }

    #[test]
    fn api_json_errors_do_not_quote_the_answer() {
        for body in [
            br#"{"Items":[{"userid":5,"email":"jane@example.com"}]}"#.as_slice(),
            b"<html>jane@example.com</html>",
        ] {
            match status(body, "u1", RefKind::User) {
                Err(ApiError::Malformed(why)) => assert!(!why.contains("jane"), "{why}"),
                other => panic!("{other:?}"),
            }
        }
    }

    // --- privacy ---

    /// Every string under a PII-named key, at any depth.
    fn pii_values(body: &[u8]) -> Vec<String> {
        const PII_KEYS: [&str; 14] = [
            "email",
            "fullName",
            "full_name",
            "first_name",
            "last_name",
            "date_of_birth",
            "ipAddress",
            "identityNumber",
            "documentNumber",
            "issueDate",
            "expireDate",
            "answer",
            "inputValue",
            "address",
        ];
        fn walk(value: &Value, found: &mut Vec<String>) {
            match value {
                Value::Object(map) => {
                    for (k, v) in map {
                        match v.as_str() {
                            Some(s) if PII_KEYS.contains(&k.as_str()) => found.push(s.to_owned()),
                            _ => walk(v, found),
                        }
                    }
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
                _ => {}
            }
        }
        let mut found = vec![];
        walk(&serde_json::from_slice(body).unwrap(), &mut found);
        found
    }

    #[test]
    fn parsed_events_and_observations_carry_no_pii() {
        let webhook = fixture!("approved.json");
        let answer = fixture!("api_approved_then_rejected.json");
        let pii: Vec<String> = pii_values(webhook)
            .into_iter()
            .chain(pii_values(answer))
            .collect();
        assert!(
            pii.len() >= 12,
            "the fixtures carry PII to look for: {}",
            pii.len()
        );
        let event = argos().parse_webhook(webhook, RECEIVED).unwrap();
        let sealed = encrypted()
            .parse_webhook(&envelope(VECTORS[0].0), RECEIVED)
            .unwrap();
        let obs = status(answer, "user_8f3a21", RefKind::User).unwrap();
        let shown = format!("{event:?}\n{sealed:?}\n{obs:?}");
        for value in &pii {
            assert!(
                !shown.contains(value.as_str()),
                "{value:?} leaked into {shown}"
            );
        }
    }
}
