//! The provider layer. Each provider is one module implementing [`ProviderProtocol`]:
//! how its webhooks are authenticated and parsed, and how its API is asked for a subject's
//! authoritative state. Sans-IO: the adapter performs the requests these describe.
//!
//! [`REGISTRY`] lists them. Nothing outside a provider's module names it: routes, config,
//! stats, imports and the dashboard iterate over the registry.

pub mod align;
pub mod argos;
pub mod persona;
pub mod sumsub;

use crate::config::{ConfigError, Vars};
#[cfg(doc)]
use crate::observation::Window;
use crate::observation::{Exchange, Observation};
use crate::subject::{RefKind, SubjectRef};
use crate::time::Timestamp;
use crate::transition::Announcement;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::fmt;

/// Every provider kyc-edge speaks to. Adding one is its module plus its line here.
pub static REGISTRY: [Registration; 4] = [
    align::REGISTRATION,
    argos::REGISTRATION,
    sumsub::REGISTRATION,
    persona::REGISTRATION,
];

/// What the rest of kyc-edge needs to know about a provider before it is configured.
pub struct Registration {
    /// Its name in routes, the API, stats, tallies and logs.
    pub name: &'static str,
    /// Its webhook route carries a secret path segment, `/webhooks/{name}/{token}`, because
    /// the provider signs nothing (ARGOS); otherwise the route is `/webhooks/{name}`.
    pub webhook_token_in_path: bool,
    /// How a subject may be named (imports' `ref_kind`); the first is the default.
    pub ref_kinds: &'static [RefKind],
    /// The most checks one cron run may queue for this provider, whatever the budget: its
    /// API's rate limit over a cron period, less room for webhook-triggered checks. `None`:
    /// no limit kyc-edge could reach.
    pub max_checks_per_run: Option<u32>,
    /// The secrets that enable it: all set, it is configured; any unset, it is disabled and
    /// every route about it names the missing ones (`provider_not_configured`).
    pub secrets: &'static [&'static str],
    /// Builds the provider from the worker's variables: `Ok(None)` when one of its `secrets`
    /// is not set (disabled, never half-configured), an error naming a malformed variable.
    pub configure: Configure,
}

/// How a registered provider is built from configuration (see [`Registration::configure`]).
pub type Configure = fn(&Vars<'_>) -> Result<Option<Box<dyn ProviderProtocol>>, ConfigError>;

/// A webhook as it arrived, before anything was parsed.
pub struct InboundWebhook<'a> {
    /// The `{token}` path segment, for providers that authenticate by URL.
    pub path_token: Option<&'a str>,
    /// `CF-Connecting-IP`.
    pub client_ip: Option<&'a str>,
    /// Case-insensitive header lookup.
    pub header: &'a dyn Fn(&str) -> Option<String>,
    /// The exact bytes received.
    pub body: &'a [u8],
}

/// Why a webhook was refused. Nothing is written for any of these. The class fixes the
/// answer's status; its reason names only fields and headers, never a value the body carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngressError {
    /// 401: missing or invalid signature or token.
    Unauthenticated(Unauthenticated),
    /// 403: the sender's address is not allowed.
    Forbidden(Forbidden),
    /// 400: authenticated (as far as the provider allows) but not a payload we understand.
    Malformed(Malformed),
}

/// Why a webhook's credential (a signature, digest or token, named by its header) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthenticated {
    Missing(&'static str),
    /// Not in the credential's documented form.
    Unreadable(&'static str),
    /// Well formed, but it does not verify.
    Invalid(&'static str),
    /// It verifies, but its time is outside the accepted window.
    Stale(&'static str),
    /// The header naming the signing algorithm names one kyc-edge does not know.
    UnknownAlgorithm(&'static str),
    /// A dated signature cannot be judged without the time the webhook arrived.
    NeedsArrivalTime(&'static str),
}

/// Why the sender's address was refused (`CF-Connecting-IP` against the allowed list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    UnreadableAddress,
    AddressNotAllowed,
}

/// Why an authenticated body is not a payload kyc-edge understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    NotUtf8,
    /// Arrays and objects nest deeper than [`MAX_JSON_DEPTH`].
    TooDeep,
    /// Not the JSON shape the provider documents, at this position.
    NotJson {
        line: usize,
        column: usize,
    },
    MissingField(&'static str),
    /// The field is there, but not the kind of value documented (`{field} is not {kind}`).
    WrongField {
        field: &'static str,
        kind: &'static str,
    },
    /// The field naming the subject is not a usable subject ref.
    InvalidRef {
        field: &'static str,
        error: crate::subject::IdError,
    },
    /// Two fields that name the same thing disagree.
    Mismatch {
        field: &'static str,
        other: &'static str,
    },
    /// The event is about a subject, yet neither field that could name it is there.
    NoSubject {
        first: &'static str,
        second: &'static str,
    },
    /// A body that should be an encrypted envelope whose `data` is not a string.
    NotAnEnvelope,
    /// An encrypted envelope whose ciphertext is not whole blocks of the cipher.
    PartialBlocks,
    /// An encrypted envelope that does not decrypt with the configured key.
    Undecryptable,
}

impl fmt::Display for IngressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IngressError::Unauthenticated(why) => why.fmt(f),
            IngressError::Forbidden(why) => why.fmt(f),
            IngressError::Malformed(why) => why.fmt(f),
        }
    }
}

impl fmt::Display for Unauthenticated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unauthenticated::Missing(name) => write!(f, "missing {name}"),
            Unauthenticated::Unreadable(name) => write!(f, "malformed {name}"),
            Unauthenticated::Invalid(name) => write!(f, "invalid {name}"),
            Unauthenticated::Stale(name) => {
                write!(f, "{name} timestamp is outside the accepted window")
            }
            Unauthenticated::UnknownAlgorithm(name) => write!(f, "unknown {name}"),
            Unauthenticated::NeedsArrivalTime(name) => {
                write!(f, "{name} needs the time of arrival")
            }
        }
    }
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Forbidden::UnreadableAddress => "client address is missing or not an IP address",
            Forbidden::AddressNotAllowed => "client address is not allowed",
        })
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::NotUtf8 => f.write_str("body is not UTF-8"),
            Malformed::TooDeep => write!(f, "body nests deeper than {MAX_JSON_DEPTH} levels"),
            Malformed::NotJson { line, column } => write!(
                f,
                "body is not the expected JSON (line {line}, column {column})"
            ),
            Malformed::MissingField(field) => write!(f, "{field} is missing"),
            Malformed::WrongField { field, kind } => write!(f, "{field} is not {kind}"),
            Malformed::InvalidRef { field, error } => write!(f, "{field} {error}"),
            Malformed::Mismatch { field, other } => write!(f, "{field} differs from {other}"),
            Malformed::NoSubject { first, second } => {
                write!(f, "neither {first} nor {second} is present")
            }
            Malformed::NotAnEnvelope => {
                f.write_str("encrypted envelope expected: data is not a string")
            }
            Malformed::PartialBlocks => f.write_str("envelope data is not whole AES blocks"),
            Malformed::Undecryptable => {
                f.write_str("envelope does not decrypt (wrong key or corrupt ciphertext)")
            }
        }
    }
}

impl From<Unauthenticated> for IngressError {
    fn from(why: Unauthenticated) -> Self {
        IngressError::Unauthenticated(why)
    }
}

impl From<Forbidden> for IngressError {
    fn from(why: Forbidden) -> Self {
        IngressError::Forbidden(why)
    }
}

impl From<Malformed> for IngressError {
    fn from(why: Malformed) -> Self {
        IngressError::Malformed(why)
    }
}

/// Who a webhook is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSubject {
    pub subject_ref: SubjectRef,
    pub ref_kind: RefKind,
}

/// A parsed webhook: ids, the event kind, timestamps and claims. Never PII.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// `None` for events that are not about a KYC subject (Align transfers).
    pub subject: Option<WebhookSubject>,
    /// The provider's event type or trigger, as a bounded word (`unknown` when not one).
    pub kind: String,
    /// The provider's timestamp of the event, when it gives one.
    pub provider_at: Option<Timestamp>,
    pub announces: Announcement,
    /// A reading the webhook proves by itself (authenticated body with a timestamp). It may
    /// be applied without asking the provider; everything else is only a trigger.
    pub trusted: Option<Observation>,
    /// The event is about AML screening: the check that follows asks for AML results too.
    pub about_aml: bool,
    /// The provider's own id of this event, when it sends one (Persona `evt_…`, Sumsub
    /// `correlationId`): deliveries of one event share it even if their bytes differ. Without
    /// one, the body's SHA-256 identifies it.
    pub event_id: Option<String>,
}

impl WebhookEvent {
    /// What identifies this event among the provider's deliveries (the dedup key).
    pub fn dedup_key(&self, body: &[u8]) -> String {
        match &self.event_id {
            Some(id) => format!("id:{}", dedup_key(id.as_bytes())),
            None => dedup_key(body),
        }
    }
}

/// An API request to learn a subject's authoritative state (always a GET). `Debug` hides
/// header values: they carry API keys.
#[derive(Clone, PartialEq, Eq)]
pub struct StatusRequest {
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
}

impl fmt::Debug for StatusRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| *name).collect();
        f.debug_struct("StatusRequest")
            .field("url", &self.url)
            .field("headers", &names)
            .finish()
    }
}

/// Why a 2xx API answer could not be turned into an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerError {
    Malformed(String),
    /// The answer is about someone else: never applied.
    WrongSubject,
    /// The answer is too large to read whole within the configured bound.
    Incomplete(String),
}

impl fmt::Display for AnswerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnswerError::Malformed(why) => write!(f, "malformed provider answer: {why}"),
            AnswerError::WrongSubject => f.write_str("provider answered about another subject"),
            AnswerError::Incomplete(why) => write!(f, "incomplete provider answer: {why}"),
        }
    }
}

/// What a check should learn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckTarget {
    pub subject_ref: SubjectRef,
    pub ref_kind: RefKind,
    /// Ask for AML results too (after an AML trigger, and when re-checking approved
    /// subjects: screening runs after approval and can change at any time).
    pub aml: bool,
}

/// One check of a subject against the provider's API, as a sans-IO conversation: the
/// adapter sends each request the check asks for and hands back the 2xx body with when it
/// was sent and received, until the check has what it needs.
pub trait StatusCheck {
    /// The next request to send, to be sent at `now` (a provider that signs its requests
    /// signs the time); `None` once the check can conclude.
    fn next_request(&mut self, now: Timestamp) -> Option<StatusRequest>;

    /// Read the 2xx answer to the request last returned.
    fn read(&mut self, body: &[u8], exchange: Exchange) -> Result<(), AnswerError>;

    /// The observation. Each part (status, AML) carries the window of the requests that
    /// produced it: from the first of them sent to the last answered ([`Window::spanning`]),
    /// never a time read by another request.
    fn conclude(self: Box<Self>) -> Result<Observation, AnswerError>;
}

pub trait ProviderProtocol: fmt::Debug {
    /// Fail closed: anything not proven authentic is an error.
    fn authenticate(&self, webhook: &InboundWebhook<'_>) -> Result<(), IngressError>;

    /// Webhooks about subjects that were never registered (`PUT`, import, backfill) are
    /// acknowledged and ignored instead of tracked (ARGOS's `ARGOS_REQUIRE_REGISTERED`).
    fn requires_registered(&self) -> bool {
        false
    }

    /// [`ProviderProtocol::authenticate`] knowing when the webhook arrived, for providers
    /// whose signatures are dated (a bound on replay). The route calls this one.
    fn authenticate_at(
        &self,
        webhook: &InboundWebhook<'_>,
        _received_at: Timestamp,
    ) -> Result<(), IngressError> {
        self.authenticate(webhook)
    }

    /// Parse an authenticated body. `received_at` bounds provider timestamps: a claim dated
    /// in the future must not outrank the polls that follow it.
    fn parse_webhook(
        &self,
        body: &[u8],
        received_at: Timestamp,
    ) -> Result<WebhookEvent, IngressError>;

    /// Start a check of one subject.
    fn check(&self, target: CheckTarget) -> Box<dyn StatusCheck + '_>;

    /// Backfill: the request for one page of the provider's list of subjects. `Err` when the
    /// walk asks for something the provider cannot list (a date range Align has no filter for,
    /// a cursor this version did not write).
    fn list_request(&self, walk: &ListWalk<'_>) -> Result<StatusRequest, String>;

    /// Backfill: the subjects one page names (ids only: nothing else is kept) and where the
    /// next page starts.
    fn read_list(&self, body: &[u8]) -> Result<ListPage, AnswerError>;
}

/// Where a backfill's walk of a provider's list stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListWalk<'a> {
    /// First and last day (`YYYY-MM-DD`, UTC) of the range; `None`: from the start.
    pub since: Option<&'a str>,
    pub until: &'a str,
    /// The provider's continuation from the previous page; `None`: the first page.
    pub cursor: Option<&'a str>,
}

/// One page of a provider's list of subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub subjects: Vec<(SubjectRef, RefKind)>,
    /// Items that named no subject id kyc-edge can hold.
    pub skipped: usize,
    /// Where the next page starts (stored as it is); `None`: this was the last page.
    pub next: Option<String>,
}

/// An optional allow-list of sender addresses (empty: any). The address is
/// `CF-Connecting-IP`, compared in canonical form so `::ffff:52.78.194.237` matches
/// `52.78.194.237`.
pub(crate) fn check_client_ip(
    allowed: &[std::net::IpAddr],
    client_ip: Option<&str>,
) -> Result<(), IngressError> {
    if allowed.is_empty() {
        return Ok(());
    }
    let client = client_ip
        .and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .ok_or(IngressError::Forbidden(Forbidden::UnreadableAddress))?;
    if allowed
        .iter()
        .any(|ip| ip.to_canonical() == client.to_canonical())
    {
        Ok(())
    } else {
        Err(IngressError::Forbidden(Forbidden::AddressNotAllowed))
    }
}

/// A provider event kind as a bounded word: event names are not free text.
pub(crate) fn event_kind(value: Option<&str>) -> String {
    value
        .and_then(crate::status::provider_value)
        .unwrap_or_else(|| "unknown".to_owned())
}

/// How deep arrays and objects may nest in a webhook body: serde_json's own limit for the
/// values it builds (128), applied to the whole text, since it skips ignored fields unchecked.
pub(crate) const MAX_JSON_DEPTH: usize = 128;

/// A webhook body as JSON. RFC 8259 text is UTF-8 and serde_json skips ignored strings and
/// values without checking their bytes or depth, so both are checked over the whole body
/// first: what is refused does not depend on which fields a provider's parser reads.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, IngressError> {
    if std::str::from_utf8(body).is_err() {
        return Err(Malformed::NotUtf8.into());
    }
    if nests_deeper_than(body, MAX_JSON_DEPTH) {
        return Err(Malformed::TooDeep.into());
    }
    serde_json::from_slice(body).map_err(|e| {
        IngressError::Malformed(Malformed::NotJson {
            line: e.line(),
            column: e.column(),
        })
    })
}

/// Whether `[` and `{` outside strings nest deeper than `max` (`text` need not be valid JSON).
fn nests_deeper_than(text: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in text {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// serde's messages can quote input (PII): say only where the problem is.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    format!(
        "body is not the expected JSON (line {}, column {})",
        e.line(),
        e.column()
    )
}

/// `base` + `path`, tolerating a trailing slash on the configured base.
pub(crate) fn join_url(base: &str, path: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path)
}

/// Query values keep only RFC 3986's unreserved characters as they are.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `name=value&…` with every value percent-encoded.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, QUERY_VALUE)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Hex SHA-256 of `bytes`: the dedup key of a webhook without an event id (two deliveries of
/// one event carry the same bytes), and of an event id (stored hashed, so any id fits).
pub fn dedup_key(body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_key_is_the_sha256_of_the_body() {
        // printf '%s' 'hello' | openssl dgst -sha256
        assert_eq!(
            dedup_key(b"hello"),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[derive(serde::Deserialize, Debug)]
    struct Id {
        id: String,
    }

    fn nested(depth: usize) -> String {
        format!(
            r#"{{"id":"x","ignored":{}1{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    }

    #[test]
    fn webhook_json_is_utf8_throughout_even_where_ignored() {
        let fine = parse_json::<Id>(r#"{"id":"x","ignored":"caf\u00e9 café"}"#.as_bytes());
        assert_eq!(fine.unwrap().id, "x");
        for bytes in [&b"\xff\xfe"[..], b"\xc0\xaf", b"\xed\xa0\x80", b"\xe9"] {
            let body = [br#"{"id":"x","ignored":""#.as_slice(), bytes, br#""}"#].concat();
            assert_eq!(
                parse_json::<Id>(&body).unwrap_err(),
                IngressError::Malformed(Malformed::NotUtf8),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn webhook_json_nests_at_most_max_depth_even_where_ignored() {
        // The outer object is one level.
        let deepest = parse_json::<Id>(nested(MAX_JSON_DEPTH - 1).as_bytes());
        assert_eq!(deepest.unwrap().id, "x");
        let too_deep = IngressError::Malformed(Malformed::TooDeep);
        for depth in [MAX_JSON_DEPTH, 10_000] {
            assert_eq!(
                parse_json::<Id>(nested(depth).as_bytes()).unwrap_err(),
                too_deep
            );
        }
        let objects = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
        assert_eq!(parse_json::<Id>(objects.as_bytes()).unwrap_err(), too_deep);
    }

    #[test]
    fn brackets_in_strings_do_not_nest() {
        let deep_text = format!(
            r#"{{"id":"x","s":"{}\"{}","t":"\\"}}"#,
            "[{".repeat(200),
            "[".repeat(200)
        );
        assert_eq!(parse_json::<Id>(deep_text.as_bytes()).unwrap().id, "x");
        assert!(!nests_deeper_than(b"]]]]}}}[", 1));
        assert!(nests_deeper_than(b"[[", 1));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            query(&[("userid", "a+b@c:d~e_f.g-h"), ("request_type", "kyc")]),
            "userid=a%2Bb%40c%3Ad~e_f.g-h&request_type=kyc"
        );
        assert_eq!(
            query(&[("d", "2026-10-05-08 02&x=1")]),
            "d=2026-10-05-08%2002%26x%3D1"
        );
    }

    #[test]
    fn status_requests_never_print_header_values() {
        let request = StatusRequest {
            url: "https://example.test/x".into(),
            headers: vec![("x-api-key", "sk_live_secret".into())],
        };
        let shown = format!("{request:?}");
        assert!(
            shown.contains("x-api-key") && !shown.contains("sk_live_secret"),
            "{shown}"
        );
    }
}
