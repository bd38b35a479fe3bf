//! Align (AlignLabs): `x-hmac-signature` webhooks and `GET /v0/customers/{id}`.
//! Protocol facts, the status mapping, and what is assumed rather than confirmed:
//! docs/providers/align.md.

mod signature;
mod wire;

pub use signature::verify as verify_signature;
pub use wire::{map_status, KycReading};

use super::{
    event_kind, join_url, json_error, parse_json, AnswerError, CheckTarget, InboundWebhook,
    IngressError, ListPage, ListWalk, Malformed, ProviderProtocol, Registration, StatusCheck,
    StatusRequest, WebhookEvent, WebhookSubject,
};
use crate::config::{ConfigError, Vars};
use crate::observation::{Exchange, Observation, Source, Window};
use crate::secret::Secret;
use crate::subject::{RefKind, SubjectRef};
use crate::time::{parse_rfc3339, Timestamp};
use crate::transition::Announcement;
use serde_json::Value;
use wire::{read_kycs, WireCustomer, WireEvent};

pub const KYCS_UPDATED: &str = "customer.kycs.updated";
pub const DEFAULT_API_BASE: &str = "https://api.alignlabs.dev";
/// The webhook signature: hex HMAC-SHA256 of the raw body keyed with the API key.
pub const SIGNATURE_HEADER: &str = "x-hmac-signature";
/// REST authentication: the raw API key, no scheme (docs/providers/align.md).
const AUTHORIZATION_HEADER: &str = "authorization";

pub const REGISTRATION: Registration = Registration {
    name: "align",
    webhook_token_in_path: false,
    ref_kinds: &[RefKind::User],
    max_checks_per_run: None,
    secrets: &["ALIGN_API_KEY"],
    configure,
};

/// `ALIGN_API_KEY` enables Align (it signs webhooks too); `ALIGN_API_BASE` points elsewhere.
fn configure(vars: &Vars<'_>) -> Result<Option<Box<dyn ProviderProtocol>>, ConfigError> {
    let Some(api_key) = vars.secret("ALIGN_API_KEY") else {
        return Ok(None);
    };
    let api_base = vars.endpoint("ALIGN_API_BASE", DEFAULT_API_BASE)?;
    Ok(Some(Box::new(Align::new(api_key, api_base))))
}

#[derive(Debug, Clone)]
pub struct Align {
    api_key: Secret,
    api_base: String,
}

impl Align {
    pub fn new(api_key: Secret, api_base: String) -> Self {
        Self { api_key, api_base }
    }
}

impl ProviderProtocol for Align {
    fn authenticate(&self, webhook: &InboundWebhook<'_>) -> Result<(), IngressError> {
        let signature = (webhook.header)(SIGNATURE_HEADER);
        verify_signature(&self.api_key, webhook.body, signature.as_deref())
    }

    fn parse_webhook(
        &self,
        body: &[u8],
        received_at: Timestamp,
    ) -> Result<WebhookEvent, IngressError> {
        let wire: WireEvent = parse_json(body)?;
        let event_type =
            wire.event_type
                .ok_or(IngressError::Malformed(Malformed::MissingField(
                    "event_type",
                )))?;
        let entity_id = wire
            .entity_id
            .ok_or(IngressError::Malformed(Malformed::MissingField(
                "entity_id",
            )))?;
        // On our clock a timestamp later than its arrival cannot be true, so the one recorded
        // is capped; the trusted body keeps Align's own, which orders it against Align's
        // other bodies (`Window::provider_dated`).
        let created_at = wire
            .created_at
            .as_ref()
            .and_then(Value::as_str)
            .and_then(parse_rfc3339);
        let provider_at = created_at.map(|at| at.min(received_at));
        let event = |subject, kind: String, announces, trusted| WebhookEvent {
            subject,
            kind,
            provider_at,
            announces,
            trusted,
            about_aml: false,
            event_id: None,
        };
        let about_customer =
            event_type == KYCS_UPDATED || wire.entity_type.as_deref() == Some("customer");
        if !about_customer {
            return Ok(event(
                None,
                event_kind(Some(&event_type)),
                Announcement::Nothing,
                None,
            ));
        }
        let subject_ref = SubjectRef::parse(&entity_id).map_err(|error| {
            IngressError::Malformed(Malformed::InvalidRef {
                field: "entity_id",
                error,
            })
        })?;
        let subject = Some(WebhookSubject {
            subject_ref,
            ref_kind: RefKind::User,
        });
        if event_type != KYCS_UPDATED {
            return Ok(event(
                subject,
                event_kind(Some(&event_type)),
                Announcement::Nothing,
                None,
            ));
        }
        let Some(customer) = wire.entity_object else {
            // Older payloads carry no entity_object: the fetch decides.
            return Ok(event(
                subject,
                KYCS_UPDATED.to_owned(),
                Announcement::AnyChange,
                None,
            ));
        };
        if customer.customer_id.is_some_and(|id| id != entity_id) {
            return Err(IngressError::Malformed(Malformed::Mismatch {
                field: "entity_object.customer_id",
                other: "entity_id",
            }));
        }
        let reading = read_kycs(customer.kycs.as_ref())?;
        let trusted = created_at.map(|at| Observation {
            status: reading.status,
            provider_status: reading.provider_status.clone(),
            sub_status: reading.sub_status.clone(),
            aml: None,
            status_at: Some(at.min(received_at)),
            window: Window::provider_dated(at, received_at),
            source: Source::Webhook,
            no_record: false,
        });
        Ok(event(
            subject,
            KYCS_UPDATED.to_owned(),
            Announcement::Status(reading.status),
            trusted,
        ))
    }

    fn check(&self, target: CheckTarget) -> Box<dyn StatusCheck + '_> {
        Box::new(CustomerCheck {
            align: self,
            subject_ref: target.subject_ref,
            sent: false,
            customer: None,
        })
    }

    /// `GET /v0/customers`: Align's one list, unpaginated and without a date filter.
    fn list_request(&self, walk: &ListWalk<'_>) -> Result<StatusRequest, String> {
        if walk.since.is_some() {
            return Err(
                "Align's customer list has no date filter: backfill Align without since".into(),
            );
        }
        if walk.cursor.is_some() {
            return Err("Align's customer list has one page".into());
        }
        Ok(StatusRequest {
            url: join_url(&self.api_base, "/v0/customers"),
            headers: vec![(AUTHORIZATION_HEADER, self.api_key.expose().to_owned())],
        })
    }

    /// Only `customer_id` is deserialized: the rest of each customer (names, e-mail, address)
    /// never is. A list longer than [`MAX_LISTED_CUSTOMERS`] is refused whole.
    fn read_list(&self, body: &[u8]) -> Result<ListPage, AnswerError> {
        let list: wire::WireCustomerList =
            serde_json::from_slice(body).map_err(|e| AnswerError::Malformed(json_error(&e)))?;
        let items = list
            .items
            .ok_or_else(|| AnswerError::Malformed("items is missing".into()))?;
        if items.len() > MAX_LISTED_CUSTOMERS {
            return Err(AnswerError::Incomplete(format!(
                "Align listed {} customers, more than the {MAX_LISTED_CUSTOMERS} one backfill \
                 registers: import them with scripts/import.mjs instead",
                items.len()
            )));
        }
        let mut subjects = Vec::with_capacity(items.len());
        let mut skipped = 0;
        for item in items {
            match item.customer_id.as_deref().map(SubjectRef::parse) {
                Some(Ok(id)) => subjects.push((id, RefKind::User)),
                _ => skipped += 1,
            }
        }
        Ok(ListPage {
            subjects,
            skipped,
            next: None,
        })
    }
}

/// Align's list is one unpaginated answer: a backfill reads it once, and refuses one longer
/// than this rather than hold it all in a worker's memory.
pub const MAX_LISTED_CUSTOMERS: usize = 50_000;

/// One `GET /v0/customers/{id}`. Align's answer carries no decision time, so the reading's
/// window is the request's: from when it was sent to when its answer arrived.
struct CustomerCheck<'a> {
    align: &'a Align,
    subject_ref: SubjectRef,
    sent: bool,
    customer: Option<(KycReading, Exchange)>,
}

impl StatusCheck for CustomerCheck<'_> {
    fn next_request(&mut self, _now: Timestamp) -> Option<StatusRequest> {
        if self.sent {
            return None;
        }
        self.sent = true;
        Some(StatusRequest {
            url: join_url(
                &self.align.api_base,
                &format!("/v0/customers/{}", self.subject_ref),
            ),
            headers: vec![(AUTHORIZATION_HEADER, self.align.api_key.expose().to_owned())],
        })
    }

    fn read(&mut self, body: &[u8], exchange: Exchange) -> Result<(), AnswerError> {
        let customer: WireCustomer =
            serde_json::from_slice(body).map_err(|e| AnswerError::Malformed(json_error(&e)))?;
        if customer
            .customer_id
            .is_some_and(|id| id != self.subject_ref.as_str())
        {
            return Err(AnswerError::WrongSubject);
        }
        let reading =
            read_kycs(customer.kycs.as_ref()).map_err(|e| AnswerError::Malformed(e.to_string()))?;
        self.customer = Some((reading, exchange));
        Ok(())
    }

    fn conclude(self: Box<Self>) -> Result<Observation, AnswerError> {
        let (reading, exchange) = self
            .customer
            .ok_or_else(|| AnswerError::Malformed("no answer was read".into()))?;
        Ok(Observation {
            status: reading.status,
            provider_status: reading.provider_status,
            sub_status: reading.sub_status,
            aml: None,
            status_at: None,
            window: Window::of(exchange),
            source: Source::Poll,
            no_record: false,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::status::KycStatus;
    use crate::time::{from_millis, millis};

    const KEY: &str = include_str!("../../../tests/fixtures/align/key.txt");

    /// 2026-11-17, after every fixture's created_at.
    fn now() -> Timestamp {
        from_millis(1_795_000_000_000).unwrap()
    }

    pub(crate) fn key() -> Secret {
        Secret::new(KEY).unwrap()
    }

    fn align() -> Align {
        Align::new(key(), "http://127.0.0.1:9/".into())
    }

    #[test]
    fn the_customer_list_names_customers_and_keeps_nothing_else() {
        let body = br#"{"items":[
            {"customer_id":"c-1","email":"ada@example.com","first_name":"Ada"},
            {"customer_id":"bad id"},
            {"email":"nobody@example.com"},
            {"customer_id":"c-2","kycs":{"status":"approved"}}]}"#;
        let page = align().read_list(body).unwrap();
        let ids: Vec<&str> = page.subjects.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["c-1", "c-2"]);
        assert_eq!((page.skipped, page.next), (2, None));
        let walk = |since| ListWalk {
            since,
            until: "2026-11-29",
            cursor: None,
        };
        assert_eq!(
            align().list_request(&walk(None)).unwrap().url,
            "http://127.0.0.1:9/v0/customers"
        );
        assert!(align().list_request(&walk(Some("2026-01-01"))).is_err());
        assert!(matches!(
            align().read_list(br#"{"message":"nope"}"#),
            Err(AnswerError::Malformed(_))
        ));
    }

    #[test]
    fn a_list_too_long_to_hold_is_refused_whole() {
        let items = vec![r#"{"customer_id":"c"}"#; MAX_LISTED_CUSTOMERS + 1].join(",");
        let body = format!(r#"{{"items":[{items}]}}"#);
        assert!(matches!(
            align().read_list(body.as_bytes()),
            Err(AnswerError::Incomplete(_))
        ));
    }

    macro_rules! vector {
        ($name:literal) => {
            (
                include_bytes!(concat!("../../../tests/fixtures/align/", $name, ".json"))
                    .as_slice(),
                include_str!(concat!("../../../tests/fixtures/align/", $name, ".sig")),
            )
        };
    }

    pub(crate) const VECTORS: [(&[u8], &str); 4] = [
        vector!("kycs_updated_object"),
        vector!("kycs_updated_array"),
        vector!("kycs_updated_bare"),
        vector!("onramp_status"),
    ];

    #[test]
    fn authenticate_reads_the_header() {
        let (body, sig) = VECTORS[0];
        let header = |name: &str| (name == "x-hmac-signature").then(|| sig.to_owned());
        let webhook = InboundWebhook {
            path_token: None,
            client_ip: None,
            header: &header,
            body,
        };
        assert_eq!(align().authenticate(&webhook), Ok(()));
        let none = |_: &str| None;
        let unsigned = InboundWebhook {
            header: &none,
            ..webhook
        };
        assert!(align().authenticate(&unsigned).is_err());
    }

    #[test]
    fn kycs_object_is_a_trusted_reading_at_created_at() {
        let event = align().parse_webhook(VECTORS[0].0, now()).unwrap();
        let created_at = parse_rfc3339("2026-11-20T10:15:30.250Z").unwrap();
        // now() is before created_at: the claim is capped to its arrival.
        assert_eq!(event.provider_at, Some(created_at.min(now())));
        let later = created_at + millis(1000);
        let event = align().parse_webhook(VECTORS[0].0, later).unwrap();
        assert_eq!(event.kind, KYCS_UPDATED);
        assert_eq!(
            event.subject.unwrap().subject_ref.as_str(),
            "123e4567-e89b-12d3-a456-426614174000"
        );
        assert_eq!(event.announces, Announcement::Status(KycStatus::Approved));
        assert!(!event.about_aml);
        let trusted = event.trusted.unwrap();
        assert_eq!(trusted.status, KycStatus::Approved);
        assert_eq!(
            trusted.sub_status.as_deref(),
            Some("kyc_form_submission_accepted")
        );
        assert_eq!(trusted.window, Window::provider_dated(created_at, later));
        assert_eq!(trusted.source, Source::Webhook);
    }

    #[test]
    fn kycs_array_reads_its_first_element() {
        let event = align()
            .parse_webhook(VECTORS[1].0, now() + millis(1_000_000_000))
            .unwrap();
        assert_eq!(
            event.announces,
            Announcement::Status(KycStatus::ResubmissionRequired)
        );
        let trusted = event.trusted.unwrap();
        assert_eq!(trusted.provider_status.as_deref(), Some("rejected"));
        let created_at = parse_rfc3339("2026-11-20T10:00:00Z").unwrap();
        assert_eq!(
            trusted.window,
            Window::provider_dated(created_at, now() + millis(1_000_000_000))
        );
    }

    #[test]
    fn without_entity_object_the_webhook_is_only_a_trigger() {
        let event = align().parse_webhook(VECTORS[2].0, now()).unwrap();
        assert!(event.subject.is_some());
        assert_eq!(event.announces, Announcement::AnyChange);
        assert_eq!(event.trusted, None);
    }

    #[test]
    fn other_event_types_are_recorded_not_applied() {
        let event = align().parse_webhook(VECTORS[3].0, now()).unwrap();
        assert_eq!(event.kind, "onramp_transfer.status.updated");
        assert_eq!(event.subject, None);
        assert_eq!(event.announces, Announcement::Nothing);
        assert_eq!(event.trusted, None);
        let unknown =
            br#"{"event_type":"customer.created","entity_id":"c1","entity_type":"customer"}"#;
        let event = align().parse_webhook(unknown, now()).unwrap();
        assert_eq!(event.subject.unwrap().subject_ref.as_str(), "c1");
        assert_eq!(event.trusted, None);
    }

    #[test]
    fn an_unparseable_created_at_is_not_trusted() {
        let body = br#"{"event_type":"customer.kycs.updated","entity_id":"c1","created_at":"yesterday","entity_object":{"kycs":{"status":"approved"}}}"#;
        let event = align().parse_webhook(body, now()).unwrap();
        assert_eq!(event.announces, Announcement::Status(KycStatus::Approved));
        assert_eq!(event.trusted, None);
    }

    #[test]
    fn malformed_bodies_are_refused_without_quoting_them() {
        let cases: [&[u8]; 6] = [
            b"not json",
            br#"{"entity_id":"c1"}"#,
            br#"{"event_type":"customer.kycs.updated"}"#,
            br#"{"event_type":"customer.kycs.updated","entity_id":"a/b"}"#,
            br#"{"event_type":"customer.kycs.updated","entity_id":"c1","entity_object":{"customer_id":"c2"}}"#,
            br#"{"event_type":"customer.kycs.updated","entity_id":"c1","entity_object":{"kycs":"jane@example.com"}}"#,
        ];
        for body in cases {
            match align().parse_webhook(body, now()) {
                Err(IngressError::Malformed(why)) => {
                    assert!(!why.to_string().contains("jane"), "{why}")
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }

    #[test]
    fn bytes_and_depth_are_checked_where_no_field_is_read() {
        let deep = format!(
            r#"{{"event_type":"customer.kycs.updated","entity_id":"c1","extra":{}{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let latin1 =
            b"{\"event_type\":\"customer.kycs.updated\",\"entity_id\":\"c1\",\"name\":\"Jos\xe9\"}";
        for (body, want) in [
            (deep.as_bytes(), "body nests deeper than 128 levels"),
            (latin1.as_slice(), "body is not UTF-8"),
        ] {
            assert_eq!(
                align().parse_webhook(body, now()).unwrap_err().to_string(),
                want
            );
        }
    }

    fn target(id: &str) -> CheckTarget {
        CheckTarget {
            subject_ref: SubjectRef::parse(id).unwrap(),
            ref_kind: RefKind::User,
            aml: false,
        }
    }

    #[test]
    fn a_check_is_one_request_with_the_raw_key() {
        let align = align();
        let mut check = align.check(target("c-1"));
        let request = check.next_request(now()).unwrap();
        assert_eq!(request.url, "http://127.0.0.1:9/v0/customers/c-1");
        assert_eq!(request.headers, vec![("authorization", KEY.to_owned())]);
        check
            .read(
                br#"{"customer_id":"c-1","kycs":null}"#,
                exchange(now(), now()),
            )
            .unwrap();
        assert_eq!(check.next_request(now()), None);
    }

    fn exchange(sent_at: Timestamp, received_at: Timestamp) -> Exchange {
        Exchange {
            sent_at,
            received_at,
        }
    }

    #[test]
    fn an_answer_is_read_between_its_request_and_its_arrival() {
        let align = align();
        let mut check = align.check(target("c-1"));
        check.next_request(now());
        let body = br#"{"customer_id":"c-1","email":"a@b.c","kycs":{"status":"pending","sub_status":"kyc_form_submission_started"}}"#;
        let sent_at = now() - millis(3_000);
        check.read(body, exchange(sent_at, now())).unwrap();
        let observation = check.conclude().unwrap();
        assert_eq!(
            (observation.status, observation.window, observation.source),
            (
                KycStatus::Pending,
                Window {
                    from: sent_at,
                    to: now(),
                    provider_at: None,
                },
                Source::Poll
            )
        );
    }

    #[test]
    fn answers_about_someone_else_or_unreadable_are_errors() {
        let align = align();
        let mut check = align.check(target("c-1"));
        check.next_request(now());
        let answered = exchange(now(), now());
        assert_eq!(
            check.read(br#"{"customer_id":"c-2","kycs":null}"#, answered),
            Err(AnswerError::WrongSubject)
        );
        assert!(check.read(b"<html>", answered).is_err());
        assert!(check.conclude().is_err(), "no answer read, no observation");
    }
}
