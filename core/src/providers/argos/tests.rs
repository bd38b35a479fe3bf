//! ARGOS protocol tests: webhook authentication and parsing (fixtures from the docs and
//! seeds), the encrypted envelope (OpenSSL vectors, in `envelope.rs`), and checks against the
//! submissions API page by page.

use super::envelope::tests::VECTORS as ENCRYPTED;
use super::*;
use crate::observation::{AmlReading, Exchange, Observation, Source, Window, CLOCK_TOLERANCE};
use crate::providers::{AnswerError, Forbidden, StatusRequest, WebhookSubject};
use crate::status::Aml;
use crate::subject::{RefKind, SubjectRef};
use crate::time::{from_millis, millis};
use crate::transition::Announcement;

pub(crate) const KEY: &str = include_str!("../../../tests/fixtures/argos/key.txt");
const TOKEN: &str = "whk_3f9b7a1c5e2d40868e1d";

/// 2026-11-01T00:00:00Z (`date -u -d ... +%s%3N`), after every fixture's times.
fn received() -> Timestamp {
    from_millis(1_793_491_200_000).unwrap()
}

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/argos/", $name)).as_slice()
    };
}

fn argos_with(encryption: Encryption, allowed_ips: &[&str], max_pages: u32) -> Argos {
    Argos::new(
        Secret::new(KEY).unwrap(),
        Secret::new(TOKEN).unwrap(),
        "https://rest-api.argosidentity.com/".into(),
        allowed_ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        encryption,
        max_pages,
    )
}

fn argos() -> Argos {
    argos_with(Encryption::Off, &[], DEFAULT_MAX_PAGES)
}

fn encrypted() -> Argos {
    argos_with(Encryption::Aes256Ecb, &[], DEFAULT_MAX_PAGES)
}

fn at(iso: &str) -> Timestamp {
    parse_rfc3339(iso).unwrap()
}

pub(crate) fn envelope(data: &str) -> Vec<u8> {
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
        Err(IngressError::Malformed(why)) => why.to_string(),
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
    let bad = Err(IngressError::Unauthenticated(Unauthenticated::Invalid(
        "webhook token",
    )));
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
    let argos = argos_with(
        Encryption::Off,
        &["52.78.194.237", "2001:db8::7"],
        DEFAULT_MAX_PAGES,
    );
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
    let not_allowed = Err(IngressError::Forbidden(Forbidden::AddressNotAllowed));
    for other in ["52.78.194.238", "2001:db8::8", "127.0.0.1"] {
        assert_eq!(
            argos.authenticate(&inbound(Some(TOKEN), Some(other))),
            not_allowed
        );
    }
    let unknown = Err(IngressError::Forbidden(Forbidden::UnreadableAddress));
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
fn the_address_is_checked_before_the_token() {
    let argos = argos_with(Encryption::Off, &["52.78.194.237"], DEFAULT_MAX_PAGES);
    let bad = Err(IngressError::Unauthenticated(Unauthenticated::Invalid(
        "webhook token",
    )));
    assert_eq!(
        argos.authenticate(&inbound(Some("nope"), Some("52.78.194.237"))),
        bad
    );
    // A disallowed address learns nothing about the token: right or wrong, the same answer.
    let forbidden = Err(IngressError::Forbidden(Forbidden::AddressNotAllowed));
    for token in [Some("nope"), Some(TOKEN), None] {
        assert_eq!(
            argos.authenticate(&inbound(token, Some("10.0.0.1"))),
            forbidden,
            "{token:?}"
        );
    }
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
    type Case<'a> = (
        &'a [u8],
        &'a str,
        Option<&'a str>,
        Announcement,
        Option<&'a str>,
    );
    let cases: [Case; 15] = [
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
            Some("2026-10-05T08:12:44.120Z"),
        ),
        (
            fixture!("approved.json"),
            "approved",
            Some("user_8f3a21"),
            Status(Approved),
            Some("2026-10-05T08:20:03.512Z"),
        ),
        (
            fixture!("rejected.json"),
            "rejected",
            Some("user_8f3a21"),
            Status(Rejected),
            Some("2026-10-06T09:00:00Z"),
        ),
        (
            fixture!("updated.json"),
            "updated",
            Some("user_8f3a21"),
            Status(Rejected),
            Some("2026-10-07T11:30:00Z"),
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
            Some("2026-10-05T08:20:03.600Z"),
        ),
        (
            fixture!("legacy_submit.json"),
            "submit",
            Some("user_legacy_7"),
            Status(Pending),
            Some("2023-07-06T02:01:03.494Z"),
        ),
        (
            fixture!("legacy_approved.json"),
            "approved",
            Some("user_legacy_7"),
            Status(Approved),
            Some("2023-07-06T00:45:05.738Z"),
        ),
        (
            fixture!("legacy_updated.json"),
            "updated",
            Some("user_legacy_7"),
            Status(Approved),
            Some("2023-07-11T09:13:24.751Z"),
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
        let event = argos().parse_webhook(body, received()).unwrap();
        let want = WebhookEvent {
            subject: userid.and_then(user),
            kind: kind.to_owned(),
            provider_at: provider_at.map(at),
            announces,
            trusted: None,
            about_aml: kind == "aml" || kind == "aml_monitor",
            event_id: None,
        };
        assert_eq!(event, want, "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn a_forged_approved_webhook_is_never_trusted() {
    let forged = br#"{"webhook_trigger":"approved","userid":"victim_1","kyc_result":{"status":"approved","updated_at":"2026-10-01T00:00:00Z"}}"#;
    let event = argos().parse_webhook(forged, received()).unwrap();
    assert_eq!(event.announces, Announcement::Status(KycStatus::Approved));
    assert_eq!(event.trusted, None);
    // Decrypting proves only that the sender has the key; ECB gives no integrity.
    let sealed = envelope(ENCRYPTED[0].0);
    assert_eq!(
        encrypted()
            .parse_webhook(&sealed, received())
            .unwrap()
            .trusted,
        None
    );
}

#[test]
fn encrypted_webhooks_parse_like_plain_ones() {
    for (b64, plaintext) in ENCRYPTED {
        let sealed = encrypted()
            .parse_webhook(&envelope(b64), received())
            .unwrap();
        assert_eq!(
            sealed,
            argos().parse_webhook(plaintext, received()).unwrap()
        );
    }
}

#[test]
fn the_envelope_is_refused_when_encryption_is_off() {
    let sealed = envelope(ENCRYPTED[0].0);
    assert_eq!(
        malformed_message(argos().parse_webhook(&sealed, received())),
        "webhook_trigger is missing"
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
        (
            br#"{"webhook_trigger":"updated","userid":"u1","data":"x","kyc_result":7}"#,
            AnyChange,
        ),
        (
            br#"{"webhook_trigger":"updated","submission_id":"s1"}"#,
            AnyChange,
        ),
    ];
    for (body, want) in cases {
        let event = argos().parse_webhook(body, received()).unwrap();
        assert_eq!(event.announces, want, "{}", String::from_utf8_lossy(body));
    }
}

#[test]
fn unknown_triggers_are_recorded_and_acknowledged() {
    let event = argos()
        .parse_webhook(
            br#"{"webhook_trigger":"kyc_reminder","userid":"u1"}"#,
            received(),
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
            received(),
        )
        .unwrap();
    assert_eq!((event.kind.as_str(), event.subject), ("unknown", None));
}

#[test]
fn userid_is_the_subject_and_submission_id_the_fallback() {
    let both = br#"{"webhook_trigger":"submit","userid":"app-user.42","submission_id":"s1"}"#;
    assert_eq!(
        argos().parse_webhook(both, received()).unwrap().subject,
        user("app-user.42")
    );
    for only_submission in [
        br#"{"webhook_trigger":"submit","submission_id":"kSm3Xq9TzW1a"}"#.as_slice(),
        br#"{"webhook_trigger":"submit","userid":"","submission_id":"kSm3Xq9TzW1a"}"#,
        br#"{"webhook_trigger":"submit","userid":null,"submission_id":"kSm3Xq9TzW1a"}"#,
    ] {
        let subject = argos()
            .parse_webhook(only_submission, received())
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
fn bytes_and_depth_are_checked_where_no_field_is_read() {
    let deep = format!(
        r#"{{"webhook_trigger":"submit","userid":"u1","extra":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert_eq!(
        malformed_message(argos().parse_webhook(deep.as_bytes(), received())),
        "body nests deeper than 128 levels"
    );
    let latin1 = b"{\"webhook_trigger\":\"submit\",\"userid\":\"u1\",\"name\":\"Jos\xe9\"}";
    assert_eq!(
        malformed_message(argos().parse_webhook(latin1, received())),
        "body is not UTF-8"
    );
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
        let why = malformed_message(argos().parse_webhook(body, received()));
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
        assert_eq!(
            argos().parse_webhook(body, received()).unwrap().provider_at,
            None
        );
    }
    let api_format =
        br#"{"webhook_trigger":"submit","userid":"u1","created_at":"2026-10-05-08-12-44-120"}"#;
    assert_eq!(
        argos()
            .parse_webhook(api_format, received())
            .unwrap()
            .provider_at,
        Some(at("2026-10-05T08:12:44.120Z"))
    );
}

// --- checks against GET /v3/submission ---

fn target(id: &str, kind: RefKind, aml: bool) -> CheckTarget {
    CheckTarget {
        subject_ref: SubjectRef::parse(id).unwrap(),
        ref_kind: kind,
        aml,
    }
}

/// When the `i`-th request of a check run from `sent_at` is sent and answered: a second
/// apart, each answered half a second later.
fn exchange(sent_at: Timestamp, i: usize) -> Exchange {
    let sent_at = sent_at + millis(1_000 * i as i64);
    Exchange {
        sent_at,
        received_at: sent_at + millis(500),
    }
}

/// Drives a check, answering its requests with `pages` in order (see [`exchange`] for when).
/// Returns the requests it made and its conclusion.
fn run(
    argos: &Argos,
    target: CheckTarget,
    pages: &[&[u8]],
    sent_at: Timestamp,
) -> (Vec<StatusRequest>, Result<Observation, AnswerError>) {
    let mut check = argos.check(target);
    let mut requests = vec![];
    let mut pages = pages.iter();
    while let Some(request) = check.next_request(received()) {
        let page = pages
            .next()
            .expect("the check asked for more pages than given");
        if let Err(error) = check.read(page, exchange(sent_at, requests.len())) {
            requests.push(request);
            return (requests, Err(error));
        }
        requests.push(request);
    }
    assert!(
        pages.next().is_none(),
        "the check stopped before every page"
    );
    (requests, check.conclude())
}

fn observe(body: &[u8], id: &str, kind: RefKind) -> Result<Observation, AnswerError> {
    run(&argos(), target(id, kind, false), &[body], received()).1
}

#[test]
fn requests_filter_by_userid_or_submission_id() {
    let (requests, _) = run(
        &argos(),
        target("user_8f3a21", RefKind::User, false),
        &[br#"{"Items":[]}"#],
        received(),
    );
    assert_eq!(
        requests[0].url,
        "https://rest-api.argosidentity.com/v3/submission?userid=user_8f3a21&request_type=kyc"
    );
    assert_eq!(requests[0].headers, vec![("x-api-key", KEY.to_owned())]);
    let (requests, _) = run(
        &argos(),
        target("a+b@c:d~e", RefKind::Submission, false),
        &[br#"{"Items":[]}"#],
        received(),
    );
    assert_eq!(
        requests[0].url,
        "https://rest-api.argosidentity.com/v3/submission?submission_id=a%2Bb%40c%3Ad~e&request_type=kyc"
    );
}

#[test]
fn the_documented_answer_maps_with_its_api_timestamps() {
    let sent_at = received() - millis(2_000);
    let (_, observation) = run(
        &argos(),
        target("user_8f3a21", RefKind::User, false),
        &[fixture!("api_rejected.json")],
        sent_at,
    );
    let observation = observation.unwrap();
    assert_eq!(
        observation,
        Observation {
            status: KycStatus::Rejected,
            provider_status: Some("rejected".into()),
            sub_status: None,
            aml: None,
            // kyc_result_at "2026-10-06-09-00-00-000"
            status_at: Some(at("2026-10-06T09:00:00.000Z")),
            // Every time in the answer precedes the request: read between its sending and
            // its answer.
            window: Window::of(exchange(sent_at, 0)),
            source: Source::Poll,
            no_record: false,
        }
    );
    let by_submission = run(
        &argos(),
        target("pR8vN2cYb6Hd", RefKind::Submission, false),
        &[fixture!("api_rejected.json")],
        sent_at,
    )
    .1
    .unwrap();
    assert_eq!(by_submission, observation);
}

#[test]
fn a_decision_made_while_a_slow_request_was_in_flight_narrows_its_window() {
    // Sent at 08:55, ARGOS decided at 09:00:00 (its clock) and answered at 09:00:30: it read
    // its state after the decision, give or take the tolerated clock skew.
    let argos = argos();
    let mut check = argos.check(target("user_8f3a21", RefKind::User, false));
    check.next_request(received());
    let slow = Exchange {
        sent_at: at("2026-10-06T08:55:00Z"),
        received_at: at("2026-10-06T09:00:30Z"),
    };
    check.read(fixture!("api_rejected.json"), slow).unwrap();
    assert_eq!(check.next_request(received()), None);
    assert_eq!(
        check.conclude().unwrap().window,
        Window {
            from: at("2026-10-06T09:00:00Z") - CLOCK_TOLERANCE,
            to: slow.received_at,
            provider_at: None,
        }
    );
}

#[test]
fn a_newer_rejected_attempt_does_not_unapprove_the_user() {
    let observation = observe(
        fixture!("api_approved_then_rejected.json"),
        "user_8f3a21",
        RefKind::User,
    )
    .unwrap();
    assert_eq!(observation.status, KycStatus::Approved);
    assert_eq!(observation.provider_status.as_deref(), Some("approved"));
    assert_eq!(observation.status_at, Some(at("2026-10-05T08:20:03.512Z")));
    assert_eq!(
        observation.aml,
        Some(AmlReading {
            aml: Aml {
                status: "Not Screened".into(),
                risk_level: Some("Not Screened".into())
            },
            // Carried by the KYC answer: read by its request.
            window: observation.window,
        })
    );
}

#[test]
fn an_approval_flipped_by_an_admin_leaves_the_latest_submission() {
    let observation = observe(
        fixture!("api_approved_flipped.json"),
        "user_8f3a21",
        RefKind::User,
    )
    .unwrap();
    assert_eq!(observation.status, KycStatus::Rejected);
    // The most recent submission (created 2026-10-06) stands for the user now.
    assert_eq!(observation.status_at, Some(at("2026-10-06T09:00:00Z")));
    assert_eq!(observation.aml, None);
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
        let observation = observe(body.as_bytes(), "u1", RefKind::User).unwrap();
        assert_eq!(
            (observation.status, observation.provider_status.as_deref()),
            (want, word),
            "{fields}"
        );
    }
    let pending = br#"{"Items":[{"pending_at":"2026-10-05-08-12-44-120","created_at":"2026-10-05-08-02-11-004"}]}"#;
    let observation = observe(pending, "u1", RefKind::User).unwrap();
    assert_eq!(observation.status_at, Some(at("2026-10-05T08:12:44.120Z")));
}

#[test]
fn no_submissions_is_no_record_but_no_list_is_malformed() {
    let observation = observe(br#"{"Items":[],"Count":0}"#, "u1", RefKind::User).unwrap();
    assert_eq!(
        (
            observation.status,
            observation.provider_status,
            observation.aml,
            observation.no_record
        ),
        (KycStatus::NotStarted, None, None, true)
    );
    for body in [
        br#"{}"#.as_slice(),
        br#"{"Items":null}"#,
        br#"{"message":"Forbidden"}"#,
    ] {
        assert_eq!(
            observe(body, "u1", RefKind::User),
            Err(AnswerError::Malformed("Items is missing".into()))
        );
    }
}

#[test]
fn answers_about_someone_else_are_never_applied() {
    let theirs = br#"{"Items":[{"userid":"u2","kyc":{"result":"approved"}}]}"#;
    assert_eq!(
        observe(theirs, "u1", RefKind::User),
        Err(AnswerError::WrongSubject)
    );
    assert_eq!(
        observe(
            fixture!("api_rejected.json"),
            "kSm3Xq9TzW1a",
            RefKind::Submission
        ),
        Err(AnswerError::WrongSubject)
    );
    // Someone else's approval among ours is ignored; an item without a userid is ours.
    let mixed = br#"{"Items":[
        {"userid":"u2","kyc":{"result":"approved"}},
        {"kyc":{"result":"rejected"}}]}"#;
    assert_eq!(
        observe(mixed, "u1", RefKind::User).unwrap().status,
        KycStatus::Rejected
    );
}

#[test]
fn unreadable_timestamps_are_absent_not_errors() {
    let body = br#"{"Items":[
        {"userid":"u1","kyc":{"result":"rejected"},"created_at":"yesterday","kyc_result_at":12},
        {"userid":"u1","kyc":{"result":"approved"},"updated_at":"2026-10-05T08:20:03Z"}]}"#;
    let observation = observe(body, "u1", RefKind::User).unwrap();
    assert_eq!(observation.status, KycStatus::Approved);
    assert_eq!(observation.status_at, Some(at("2026-10-05T08:20:03Z")));
    let none = br#"{"Items":[{"userid":"u1","kyc":{"result":"rejected"},"created_at":"x"}]}"#;
    assert_eq!(observe(none, "u1", RefKind::User).unwrap().status_at, None);
}

#[test]
fn the_most_recent_submission_decides_when_none_is_approved() {
    let body = br#"{"Items":[
        {"userid":"u1","kyc":{"result":"rejected"},"created_at":"2026-10-01-00-00-00-000"},
        {"userid":"u1","pending_at":"2026-10-03-00-00-00-000","created_at":"2026-10-02-00-00-00-000"},
        {"userid":"u1","created_at":"2026-09-01-00-00-00-000"}]}"#;
    assert_eq!(
        observe(body, "u1", RefKind::User).unwrap().status,
        KycStatus::Pending
    );
}

#[test]
fn api_json_errors_do_not_quote_the_answer() {
    for body in [
        br#"{"Items":[{"userid":5,"email":"jane@example.com"}]}"#.as_slice(),
        b"<html>jane@example.com</html>",
    ] {
        match observe(body, "u1", RefKind::User) {
            Err(AnswerError::Malformed(why)) => assert!(!why.contains("jane"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}

/// A page of `n` rejected submissions of u1, with a next-page key unless it is the last.
fn page(first: usize, n: usize, next: bool, approved_at: Option<usize>) -> Vec<u8> {
    let items: Vec<String> = (first..first + n)
        .map(|i| {
            let result = if Some(i) == approved_at { "approved" } else { "rejected" };
            format!(
                r#"{{"userid":"u1","submission_id":"s{i}","created_at":"2026-09-{:02}-00-00-00-000","kyc_result_at":"2026-09-{:02}-01-00-00-000","kyc":{{"result":"{result}"}}}}"#,
                28 - (i % 27),
                28 - (i % 27)
            )
        })
        .collect();
    let key = if next {
        format!(
            r#","nextpageKey":{{"id":"s{}","created_at":"2026-09-01 00:00:00"}}"#,
            first + n - 1
        )
    } else {
        String::new()
    };
    format!(r#"{{"Items":[{}]{key}}}"#, items.join(",")).into_bytes()
}

#[test]
fn an_approved_submission_beyond_the_first_page_is_found() {
    let first = page(0, 50, true, None);
    let second = page(50, 3, false, Some(51));
    let (requests, observation) = run(
        &argos(),
        target("u1", RefKind::User, false),
        &[&first, &second],
        received(),
    );
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].url,
        "https://rest-api.argosidentity.com/v3/submission?userid=u1&request_type=kyc&nextpage_id=s49&nextpage_date=2026-09-01%2000%3A00%3A00"
    );
    assert_eq!(observation.unwrap().status, KycStatus::Approved);
}

#[test]
fn more_pages_than_the_bound_without_an_approval_is_incomplete() {
    let argos = argos_with(Encryption::Off, &[], 2);
    let pages = [page(0, 2, true, None), page(2, 2, true, None)];
    let (requests, observation) = run(
        &argos,
        target("u1", RefKind::User, false),
        &[&pages[0], &pages[1]],
        received(),
    );
    assert_eq!(requests.len(), 2, "never more than ARGOS_MAX_PAGES");
    assert!(
        matches!(observation, Err(AnswerError::Incomplete(_))),
        "{observation:?}"
    );
    // An approval among the pages read stands whatever the rest holds.
    let pages = [page(0, 2, true, Some(1)), page(2, 2, true, None)];
    let (_, observation) = run(
        &argos,
        target("u1", RefKind::User, false),
        &[&pages[0], &pages[1]],
        received(),
    );
    assert_eq!(observation.unwrap().status, KycStatus::Approved);
}

#[test]
fn an_empty_page_ends_the_listing_whatever_its_key_says() {
    let body = br#"{"Items":[],"nextpageKey":{"id":"x","created_at":"y"}}"#;
    let (requests, observation) = run(
        &argos(),
        target("u1", RefKind::User, false),
        &[body],
        received(),
    );
    assert_eq!(requests.len(), 1);
    assert!(observation.unwrap().no_record);
}

#[test]
fn aml_comes_from_the_aml_listing_of_the_chosen_submission() {
    let kyc = fixture!("api_approved_flipped.json");
    let kyc_approved = br#"{"Items":[
        {"userid":"user_8f3a21","submission_id":"kSm3Xq9TzW1a","kyc":{"result":"approved"},"kyc_result_at":"2026-10-05-08-20-03-512"},
        {"userid":"user_8f3a21","submission_id":"pR8vN2cYb6Hd","kyc":{"result":"rejected"},"kyc_result_at":"2026-10-06-09-00-00-000"}]}"#;
    let aml = br#"{"Items":[
        {"submission_id":"pR8vN2cYb6Hd","aml_result":{"currentstatus":"Cleared","risk_level_summary":"LOW"}},
        {"submission_id":"kSm3Xq9TzW1a","aml_result":{"currentstatus":"Red Flag","risk_level_summary":"HIGH"}}]}"#;
    let (requests, observation) = run(
        &argos(),
        target("user_8f3a21", RefKind::User, true),
        &[kyc_approved, aml],
        received(),
    );
    assert_eq!(requests.len(), 2);
    assert!(requests[1]
        .url
        .ends_with("userid=user_8f3a21&request_type=aml"));
    let observation = observation.unwrap();
    assert_eq!(observation.status, KycStatus::Approved);
    // Each part is stamped by the requests that read it: the status by the KYC page, the
    // AML result by the AML page, a second later.
    assert_eq!(observation.window, Window::of(exchange(received(), 0)));
    assert_eq!(
        observation.aml,
        Some(AmlReading {
            aml: Aml {
                status: "Red Flag".into(),
                risk_level: Some("HIGH".into())
            },
            window: Window::of(exchange(received(), 1)),
        })
    );
    // Without an AML entry for the chosen submission, the reading says nothing about AML.
    let (_, observation) = run(
        &argos(),
        target("user_8f3a21", RefKind::User, true),
        &[kyc, br#"{"Items":[]}"#],
        received(),
    );
    assert_eq!(observation.unwrap().aml, None);
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
    let event = argos().parse_webhook(webhook, received()).unwrap();
    let sealed = encrypted()
        .parse_webhook(&envelope(ENCRYPTED[0].0), received())
        .unwrap();
    let observation = observe(answer, "user_8f3a21", RefKind::User).unwrap();
    let shown = format!("{event:?}\n{sealed:?}\n{observation:?}");
    for value in &pii {
        assert!(
            !shown.contains(value.as_str()),
            "{value:?} leaked into {shown}"
        );
    }
}

mod listing {
    use super::argos;
    use crate::providers::{AnswerError, ListWalk, ProviderProtocol};
    use crate::subject::{RefKind, SubjectRef};

    fn walk<'a>(since: Option<&'a str>, cursor: Option<&'a str>) -> ListWalk<'a> {
        ListWalk {
            since,
            until: "2026-11-29",
            cursor,
        }
    }

    #[test]
    fn a_page_names_users_or_else_submissions_and_keeps_nothing_else() {
        let body = br#"{"Items":[
            {"userid":"user_1","submission_id":"s1","email":"ada@example.com","data":{"full_name":"Ada L"}},
            {"submission_id":"s2","kyc":{"result":"approved"}},
            {"userid":"has space","submission_id":"s3"},
            {"email":"nobody@example.com"},
            {"userid":12345}
          ],"nextpageKey":{"id":"s3","created_at":"2026-10-01-09-00-00-000"}}"#;
        let page = argos().read_list(body).unwrap();
        let r = |id: &str| SubjectRef::parse(id).unwrap();
        assert_eq!(
            page.subjects,
            [
                (r("user_1"), RefKind::User),
                (r("s2"), RefKind::Submission),
                (r("s3"), RefKind::Submission),
                (r("12345"), RefKind::User),
            ]
        );
        assert_eq!(page.skipped, 1);
        let next = page.next.unwrap();
        assert!(!next.contains("ada") && !next.contains("Ada"), "{next}");
        // The cursor goes back as nextpage_id / nextpage_date, with the range.
        let request = argos()
            .list_request(&walk(Some("2026-01-01"), Some(&next)))
            .unwrap();
        assert_eq!(
            request.url,
            "https://rest-api.argosidentity.com/v3/submission?request_type=kyc&start_date=2026-01-01\
             &end_date=2026-11-29&nextpage_id=s3&nextpage_date=2026-10-01-09-00-00-000"
        );
    }

    #[test]
    fn the_first_page_and_the_last() {
        let first = argos().list_request(&walk(None, None)).unwrap();
        assert_eq!(
            first.url,
            "https://rest-api.argosidentity.com/v3/submission?request_type=kyc&end_date=2026-11-29"
        );
        let last = argos().read_list(br#"{"Items":[{"userid":"u"}]}"#).unwrap();
        assert_eq!(last.next, None);
        let empty = argos()
            .read_list(br#"{"Items":[],"nextpageKey":{"id":"x"}}"#)
            .unwrap();
        assert_eq!(
            (empty.subjects.len(), empty.next),
            (0, None),
            "an empty page ends it"
        );
    }

    #[test]
    fn answers_that_are_not_pages_are_errors() {
        for body in [&br#"{"message":"Forbidden"}"#[..], b"not json"] {
            assert!(
                matches!(argos().read_list(body), Err(AnswerError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(argos().list_request(&walk(None, Some("garbage"))).is_err());
    }
}
