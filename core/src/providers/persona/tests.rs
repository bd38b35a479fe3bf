//! Persona protocol tests: the status mapping, webhook bodies (planted PII never quoted or
//! kept), the route's authentication, and checks read page by page with the newest decided
//! inquiry standing for the user. Signature vectors are in `signature.rs`.

use super::*;
use crate::observation::{Exchange, Observation, Source, Window, CLOCK_TOLERANCE};
use crate::providers::WebhookSubject;
use crate::subject::SubjectRef;
use crate::time::{from_millis, millis, parse_rfc3339};
use crate::transition::Announcement;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const KEY: &str = "persona_sandbox_key_9f1e";
const SECRET: &str = "wbhsec_unit_5c1a";
/// Values planted in bodies and answers: none may come out.
const PII: [&str; 6] = [
    "Zelda",
    "Quixote",
    "1961-02-03",
    "742 Evergreen",
    "zelda.quixote@example.com",
    "+15550100",
];

/// 2026-11-01T00:00:00Z.
fn received() -> Timestamp {
    from_millis(1_793_491_200_000).unwrap()
}

fn at(iso: &str) -> Timestamp {
    parse_rfc3339(iso).unwrap()
}

fn persona() -> Persona {
    Persona::new(
        Secret::new(KEY).unwrap(),
        Secret::new(SECRET).unwrap(),
        "https://api.withpersona.com".into(),
    )
}

fn persona_with(require_decision: bool, max_pages: u32) -> Persona {
    Persona {
        require_decision,
        max_pages,
        ..persona()
    }
}

// --- mapping ---

#[test]
fn the_mapping_table_of_product_md() {
    use KycStatus::*;
    let table = [
        ("created", NotStarted, NotStarted),
        ("pending", Incomplete, Incomplete),
        ("expired", Incomplete, Incomplete),
        ("needs_review", Pending, Pending),
        ("completed", Approved, Pending),
        ("approved", Approved, Approved),
        ("declined", Rejected, Rejected),
        ("failed", Rejected, Rejected),
    ];
    for (word, plain, requiring) in table {
        assert_eq!(map_status(word, false), Some(plain), "{word}");
        assert_eq!(
            map_status(word, true),
            Some(requiring),
            "{word} (require decision)"
        );
    }
    for word in [
        "",
        "Approved",
        "approve",
        "redacted",
        "zelda.quixote@example.com",
    ] {
        assert_eq!(map_status(word, false), None, "{word}");
    }
    let decided: Vec<&str> = table
        .iter()
        .map(|(w, ..)| *w)
        .filter(|w| is_decided(w))
        .collect();
    assert_eq!(
        decided,
        [
            "needs_review",
            "completed",
            "approved",
            "declined",
            "failed"
        ]
    );
}

#[test]
fn the_configuration_enables_persona_with_both_secrets() {
    use crate::config::Config;
    use crate::subject::Provider;
    let configured = |extra: &[(&'static str, &'static str)], secrets: bool| {
        let extra = extra.to_vec();
        Config::from_lookup(&move |key: &str| match key {
            "PERSONA_API_KEY" if secrets => Some(KEY.to_owned()),
            "PERSONA_WEBHOOK_SECRET" if secrets => Some(SECRET.to_owned()),
            _ => extra
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned()),
        })
        .map(|c| {
            c.protocol(Provider::named("persona"))
                .map(|p| format!("{p:?}"))
        })
    };
    for (value, expected) in [(None, false), (Some("false"), false), (Some("true"), true)] {
        let extra: Vec<_> = value
            .map(|v| ("PERSONA_REQUIRE_DECISION", v))
            .into_iter()
            .collect();
        let shown = configured(&extra, true).unwrap().unwrap();
        assert!(
            shown.contains(&format!("require_decision: {expected}")),
            "{shown}"
        );
        assert!(!shown.contains(KEY) && !shown.contains(SECRET), "{shown}");
    }
    assert_eq!(
        configured(&[], false).unwrap(),
        None,
        "disabled without its secrets"
    );
    for bad in [
        ("PERSONA_REQUIRE_DECISION", "yes"),
        ("PERSONA_VERSION", "2023-01-05\r\nx: y"),
        ("PERSONA_MAX_PAGES", "0"),
        ("PERSONA_SIGNATURE_MAX_AGE_SECONDS", "-1"),
        ("PERSONA_ALLOWED_IPS", "not-an-ip"),
    ] {
        assert!(configured(&[bad], true).is_err(), "{bad:?}");
    }
    let shown = configured(
        &[
            ("PERSONA_VERSION", "2023-01-05"),
            ("PERSONA_SIGNATURE_MAX_AGE_SECONDS", "600"),
        ],
        true,
    )
    .unwrap()
    .unwrap();
    assert!(
        shown.contains("2023-01-05") && shown.contains("max_age: TimeDelta { secs: 600"),
        "{shown}"
    );
}

// --- webhooks ---

/// A Persona event as documented: the inquiry, with personal attributes, in its payload.
fn event_body(name: &str, reference_id: Option<&str>, status: &str) -> String {
    let reference = reference_id.map_or("null".to_owned(), |r| format!("\"{r}\""));
    format!(
        r#"{{"data":{{"type":"event","id":"evt_unit_0001","attributes":{{
            "name":"{name}","created-at":"2026-10-31T23:59:00.000Z",
            "payload":{{"data":{{"type":"inquiry","id":"inq_unit_0001","attributes":{{
                "status":"{status}","reference-id":{reference},
                "name-first":"Zelda","name-last":"Quixote","birthdate":"1961-02-03",
                "address-street-1":"742 Evergreen Terrace","email-address":"zelda.quixote@example.com",
                "phone-number":"+15550100","created-at":"2026-10-31T23:00:00.000Z"}},
                "relationships":{{"account":{{"data":{{"type":"account","id":"act_1"}}}}}}}},
              "included":[{{"type":"verification/government-id","attributes":{{"name-first":"Zelda"}}}}]}}}}}}}}"#
    )
}

fn user(id: &str) -> Option<WebhookSubject> {
    Some(WebhookSubject {
        subject_ref: SubjectRef::parse(id).unwrap(),
        ref_kind: RefKind::User,
    })
}

fn parse(body: &str, require_decision: bool) -> Result<WebhookEvent, IngressError> {
    persona_with(require_decision, DEFAULT_MAX_PAGES).parse_webhook(body.as_bytes(), received())
}

#[test]
fn inquiry_events_name_the_reference_id_and_are_only_triggers() {
    use KycStatus::*;
    let cases = [
        (
            "inquiry.created",
            "created",
            Announcement::Status(NotStarted),
        ),
        (
            "inquiry.started",
            "pending",
            Announcement::Status(Incomplete),
        ),
        (
            "inquiry.expired",
            "expired",
            Announcement::Status(Incomplete),
        ),
        (
            "inquiry.completed",
            "completed",
            Announcement::Status(Approved),
        ),
        ("inquiry.failed", "failed", Announcement::Status(Rejected)),
        (
            "inquiry.marked-for-review",
            "needs_review",
            Announcement::Status(Pending),
        ),
        (
            "inquiry.approved",
            "approved",
            Announcement::Status(Approved),
        ),
        (
            "inquiry.declined",
            "declined",
            Announcement::Status(Rejected),
        ),
        (
            "inquiry.transitioned",
            "needs_review",
            Announcement::Status(Pending),
        ),
        ("inquiry.transitioned", "someday", Announcement::AnyChange),
        ("inquiry.redacted", "approved", Announcement::Nothing),
    ];
    for (name, status, announces) in cases {
        let event = parse(&event_body(name, Some("user-7"), status), false).unwrap();
        assert_eq!(event.kind, name);
        assert_eq!(event.subject, user("user-7"), "{name}");
        assert_eq!(event.announces, announces, "{name} {status}");
        assert_eq!(
            event.trusted, None,
            "{name}: one inquiry is not the user's status"
        );
        assert_eq!(event.event_id.as_deref(), Some("evt_unit_0001"));
        assert_eq!(event.provider_at, Some(at("2026-10-31T23:59:00Z")));
        assert!(!event.about_aml);
        let shown = format!("{event:?}");
        for pii in PII {
            assert!(!shown.contains(pii), "{pii} in {shown}");
        }
    }
    let completed = parse(
        &event_body("inquiry.completed", Some("u"), "completed"),
        true,
    )
    .unwrap();
    assert_eq!(completed.announces, Announcement::Status(Pending));
}

#[test]
fn unknown_event_names_are_acknowledged_and_ignored() {
    for (name, kind) in [
        ("inquiry.someday-new", "inquiry.someday-new"),
        ("account.created", "account.created"),
        ("case.status-updated", "case.status-updated"),
        // `/` is not in a bounded word: recorded as `unknown`, still acknowledged.
        ("report/watchlist.matched", "unknown"),
    ] {
        let event = parse(&event_body(name, Some("user-7"), "approved"), false).unwrap();
        assert_eq!(event.kind, kind);
        assert_eq!(
            (event.subject, event.announces),
            (None, Announcement::Nothing)
        );
    }
    // Not a bounded word: recorded as `unknown`.
    let event = parse(
        &event_body("zelda quixote@example.com", Some("u"), "approved"),
        false,
    )
    .unwrap();
    assert_eq!(event.kind, "unknown");
    // A known name about something other than an inquiry.
    let body = r#"{"data":{"type":"event","id":"evt_2","attributes":{"name":"inquiry.approved",
        "payload":{"data":{"type":"account","attributes":{"reference-id":"u"}}}}}}"#;
    assert_eq!(parse(body, false).unwrap().subject, None);
    let body =
        r#"{"data":{"type":"event","attributes":{"name":"inquiry.approved","payload":[1,2]}}}"#;
    let event = parse(body, false).unwrap();
    assert_eq!((event.subject, event.event_id), (None, None));
}

#[test]
fn an_inquiry_without_reference_id_is_recorded_and_attached_to_nobody() {
    for body in [
        event_body("inquiry.approved", None, "approved"),
        event_body("inquiry.approved", Some("  "), "approved"),
        event_body("inquiry.approved", Some("user-7"), "approved")
            .replace(r#""reference-id":"user-7","#, ""),
    ] {
        let event = parse(&body, false).unwrap();
        assert_eq!(event.subject, None);
        assert_eq!(event.kind, "inquiry.approved");
        assert_eq!(
            event.event_id.as_deref(),
            Some("evt_unit_0001"),
            "still deduplicated"
        );
    }
}

#[test]
fn malformed_bodies_are_refused_without_quoting_them() {
    let cases = [
        "zelda.quixote@example.com".to_owned(),
        r#"{"data":null}"#.to_owned(),
        r#"{"data":{"type":"inquiry","attributes":{"name":"inquiry.approved"}}}"#.to_owned(),
        r#"{"data":{"type":"event"}}"#.to_owned(),
        r#"{"data":{"type":"event","attributes":{"name":""}}}"#.to_owned(),
        r#"{"data":{"type":"event","attributes":{"name":7}}}"#.to_owned(),
        event_body(
            "inquiry.approved",
            Some("zelda quixote@example.com"),
            "approved",
        ),
        event_body("inquiry.approved", Some("a/b"), "approved"),
        event_body("inquiry.approved", Some("u"), "approved").replace(
            r#""reference-id":"u""#,
            r#""reference-id":{"email":"zelda.quixote@example.com"}"#,
        ),
    ];
    for body in cases {
        match parse(&body, false) {
            Err(IngressError::Malformed(why)) => {
                for pii in PII {
                    assert!(!why.to_string().contains(pii), "{why}");
                }
            }
            other => panic!("{body}: {other:?}"),
        }
    }
    let deep = format!(
        r#"{{"data":{{"type":"event","attributes":{{"name":"inquiry.approved","x":{}{}}}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    assert!(matches!(
        parse(&deep, false),
        Err(IngressError::Malformed(_))
    ));
}

#[test]
fn a_future_created_at_is_capped_at_arrival() {
    let body = event_body("inquiry.approved", Some("u"), "approved")
        .replace("2026-10-31T23:59:00.000Z", "2030-01-01T00:00:00Z");
    assert_eq!(parse(&body, false).unwrap().provider_at, Some(received()));
}

// --- authentication, as the route calls it ---

fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn authenticate(
    persona: &Persona,
    header: Option<String>,
    ip: Option<&str>,
    body: &[u8],
) -> Result<(), IngressError> {
    let lookup = move |name: &str| (name == SIGNATURE_HEADER).then(|| header.clone()).flatten();
    let webhook = InboundWebhook {
        path_token: None,
        client_ip: ip,
        header: &lookup,
        body,
    };
    persona.authenticate_at(&webhook, received())
}

#[test]
fn the_route_verifies_the_dated_signature_then_the_address() {
    let body = event_body("inquiry.approved", Some("u"), "approved").into_bytes();
    let t = received().timestamp();
    let good = format!("t={t},v1={}", sign(SECRET, t, &body));
    assert_eq!(
        authenticate(&persona(), Some(good.clone()), None, &body),
        Ok(())
    );
    let unauthenticated = |why| Err(IngressError::Unauthenticated(why));
    assert_eq!(
        authenticate(&persona(), None, None, &body),
        unauthenticated(Unauthenticated::Missing("Persona-Signature"))
    );
    assert_eq!(
        authenticate(&persona(), Some("v1=abc".into()), None, &body),
        unauthenticated(Unauthenticated::Unreadable("Persona-Signature"))
    );
    let wrong = format!("t={t},v1={}", sign("wbhsec_other", t, &body));
    assert_eq!(
        authenticate(&persona(), Some(wrong), None, &body),
        unauthenticated(Unauthenticated::Invalid("Persona-Signature"))
    );
    let old = t - DEFAULT_SIGNATURE_MAX_AGE.num_seconds() - 1;
    let stale = format!("t={old},v1={}", sign(SECRET, old, &body));
    assert_eq!(
        authenticate(&persona(), Some(stale), None, &body),
        unauthenticated(Unauthenticated::Stale("Persona-Signature"))
    );
    // Without the time of arrival nothing is accepted.
    let lookup = |_: &str| Some(good.clone());
    let webhook = InboundWebhook {
        path_token: None,
        client_ip: None,
        header: &lookup,
        body: &body,
    };
    assert!(persona().authenticate(&webhook).is_err());

    let listed = Persona {
        allowed_ips: vec!["35.232.44.140".parse().unwrap()],
        ..persona()
    };
    assert_eq!(
        authenticate(
            &listed,
            Some(good.clone()),
            Some("::ffff:35.232.44.140"),
            &body
        ),
        Ok(())
    );
    for ip in [None, Some("10.0.0.1"), Some("nope")] {
        assert!(
            matches!(
                authenticate(&listed, Some(good.clone()), ip, &body),
                Err(IngressError::Forbidden(_))
            ),
            "{ip:?}"
        );
    }
}

// --- checks ---

fn target(id: &str) -> CheckTarget {
    CheckTarget {
        subject_ref: SubjectRef::parse(id).unwrap(),
        ref_kind: RefKind::User,
        aml: false,
    }
}

/// One inquiry of a page, personal attributes included.
fn inquiry(reference_id: &str, status: &str, created_at: &str) -> String {
    format!(
        r#"{{"type":"inquiry","id":"inq_{created_at}","attributes":{{"status":"{status}",
        "reference-id":"{reference_id}","created-at":"{created_at}","completed-at":null,
        "decisioned-at":null,"name-first":"Zelda","name-last":"Quixote","birthdate":"1961-02-03",
        "address-street-1":"742 Evergreen Terrace","email-address":"zelda.quixote@example.com",
        "fields":{{"phone-number":{{"type":"string","value":"+15550100"}}}}}}}}"#
    )
}

fn page(items: &[String], next: Option<&str>) -> Vec<u8> {
    let next = next.map_or("null".to_owned(), |n| {
        format!(r#""/api/v1/inquiries?filter%5Breference-id%5D=u&page%5Bafter%5D={n}""#)
    });
    format!(
        r#"{{"data":[{}],"links":{{"prev":null,"next":{next}}}}}"#,
        items.join(",")
    )
    .into_bytes()
}

fn exchange(sent: i64, answered: i64) -> Exchange {
    Exchange {
        sent_at: received() + millis(sent),
        received_at: received() + millis(answered),
    }
}

/// Runs a check against `pages`, answered in turn; returns the URLs asked and the outcome.
fn run(
    persona: &Persona,
    id: &str,
    pages: &[Vec<u8>],
) -> (Vec<String>, Result<Observation, AnswerError>) {
    let mut check = persona.check(target(id));
    let mut urls = vec![];
    let mut answers = pages.iter();
    let mut n = 0;
    while let Some(request) = check.next_request(received()) {
        assert_eq!(
            request.headers[0],
            ("authorization", format!("Bearer {KEY}"))
        );
        urls.push(request.url);
        let Some(body) = answers.next() else {
            panic!("asked for more pages than given");
        };
        if let Err(e) = check.read(body, exchange(n * 100, n * 100 + 50)) {
            return (urls, Err(e));
        }
        n += 1;
    }
    (urls, check.conclude())
}

#[test]
fn a_check_asks_for_the_users_inquiries_with_the_bearer_key() {
    let versioned = Persona {
        version: Some("2023-01-05".into()),
        ..persona()
    };
    let mut check = versioned.check(target("user+7@x"));
    let request = check.next_request(received()).unwrap();
    assert_eq!(
        request.url,
        "https://api.withpersona.com/api/v1/inquiries?filter[reference-id]=user%2B7%40x"
    );
    assert_eq!(
        request.headers,
        vec![
            ("authorization", format!("Bearer {KEY}")),
            ("persona-version", "2023-01-05".to_owned())
        ]
    );
    assert!(!format!("{request:?}").contains(KEY));
}

/// Inquiries as (status, created-at), the status that stands, and its word.
type Case<'a> = (&'a [(&'a str, &'a str)], KycStatus, &'a str);

#[test]
fn the_newest_decided_inquiry_stands_for_the_user() {
    let u = "u";
    let cases: [Case<'_>; 6] = [
        // Newest first, as Persona lists them.
        (
            &[
                ("pending", "2026-10-30T00:00:00Z"),
                ("approved", "2026-10-01T00:00:00Z"),
            ],
            KycStatus::Approved,
            "approved",
        ),
        (
            &[
                ("created", "2026-10-30T00:00:00Z"),
                ("declined", "2026-10-20T00:00:00Z"),
                ("approved", "2026-10-01T00:00:00Z"),
            ],
            KycStatus::Rejected,
            "declined",
        ),
        (
            &[
                ("expired", "2026-10-30T00:00:00Z"),
                ("pending", "2026-10-01T00:00:00Z"),
            ],
            KycStatus::Incomplete,
            "expired",
        ),
        (
            &[
                ("needs_review", "2026-10-30T00:00:00Z"),
                ("approved", "2026-10-01T00:00:00Z"),
            ],
            KycStatus::Pending,
            "needs_review",
        ),
        (
            &[("created", "2026-10-30T00:00:00Z")],
            KycStatus::NotStarted,
            "created",
        ),
        // Out of order: created-at decides, not the position.
        (
            &[
                ("failed", "2026-09-01T00:00:00Z"),
                ("completed", "2026-10-01T00:00:00Z"),
            ],
            KycStatus::Approved,
            "completed",
        ),
    ];
    for (inquiries, status, word) in cases {
        let items: Vec<String> = inquiries.iter().map(|(s, c)| inquiry(u, s, c)).collect();
        let (urls, outcome) = run(&persona(), u, &[page(&items, None)]);
        assert_eq!(urls.len(), 1);
        let observation = outcome.unwrap();
        assert_eq!(
            (observation.status, observation.provider_status.as_deref()),
            (status, Some(word)),
            "{inquiries:?}"
        );
        assert_eq!(observation.source, Source::Poll);
        assert!(!observation.no_record);
        let shown = format!("{observation:?}");
        for pii in PII {
            assert!(!shown.contains(pii), "{pii}");
        }
    }
    // completed with PERSONA_REQUIRE_DECISION: pending until approved or declined.
    let items = [inquiry(u, "completed", "2026-10-30T00:00:00Z")];
    let (_, outcome) = run(&persona_with(true, 10), u, &[page(&items, None)]);
    assert_eq!(outcome.unwrap().status, KycStatus::Pending);
}

#[test]
fn no_inquiries_is_not_started_without_a_record() {
    let (_, outcome) = run(&persona(), "u", &[page(&[], None)]);
    let observation = outcome.unwrap();
    assert_eq!(
        (observation.status, observation.no_record),
        (KycStatus::NotStarted, true)
    );
    assert_eq!(observation.window, Window::of(exchange(0, 50)));
}

#[test]
fn pages_are_followed_by_page_after_and_the_window_spans_them() {
    let u = "u";
    // 12 undecided inquiries on two pages, then the decided one on the third.
    let first: Vec<String> = (0..10)
        .map(|i| inquiry(u, "pending", &format!("2026-10-2{}T00:00:00Z", 9 - i % 10)))
        .collect();
    let second: Vec<String> = (0..2)
        .map(|_| inquiry(u, "expired", "2026-10-10T00:00:00Z"))
        .collect();
    let third = vec![inquiry(u, "declined", "2026-10-01T00:00:00Z")];
    let pages = [
        page(&first, Some("inq_p1")),
        page(&second, Some("inq_p2")),
        page(&third, None),
    ];
    let (urls, outcome) = run(&persona(), u, &pages);
    assert_eq!(
        urls,
        [
            "https://api.withpersona.com/api/v1/inquiries?filter[reference-id]=u",
            "https://api.withpersona.com/api/v1/inquiries?filter[reference-id]=u&page[after]=inq_p1",
            "https://api.withpersona.com/api/v1/inquiries?filter[reference-id]=u&page[after]=inq_p2",
        ]
    );
    let observation = outcome.unwrap();
    assert_eq!(
        observation.status,
        KycStatus::Rejected,
        "the decided one on page 3"
    );
    // From the first request sent to the last answer (the inquiries' times are older).
    assert_eq!(
        observation.window,
        Window::spanning([exchange(0, 50), exchange(200, 250)]).unwrap()
    );
}

#[test]
fn a_walk_past_the_page_bound_is_incomplete_never_a_guess() {
    let u = "u";
    let pages: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            page(
                &[inquiry(u, "approved", "2026-10-01T00:00:00Z")],
                Some(&format!("inq_{i}")),
            )
        })
        .collect();
    let (urls, outcome) = run(&persona_with(false, 3), u, &pages);
    assert_eq!(urls.len(), 3, "no request past the bound");
    assert!(
        matches!(outcome, Err(AnswerError::Incomplete(_))),
        "{outcome:?}"
    );
    // Within the bound it concludes.
    let (_, outcome) = run(
        &persona_with(false, 4),
        u,
        &[
            pages[0].clone(),
            pages[1].clone(),
            pages[2].clone(),
            page(&[], Some("inq_x")),
        ],
    );
    assert_eq!(
        outcome.unwrap().status,
        KycStatus::Approved,
        "an empty page ends the walk"
    );
}

#[test]
fn the_next_link_is_never_followed_as_it_is() {
    let u = "u";
    let items = [inquiry(u, "pending", "2026-10-01T00:00:00Z")];
    let evil = format!(
        r#"{{"data":[{}],"links":{{"next":"https://evil.example/steal?page%5Bafter%5D=inq_2"}}}}"#,
        items[0]
    );
    let (urls, outcome) = run(&persona(), u, &[evil.into_bytes(), page(&items, None)]);
    assert!(
        urls.iter()
            .all(|url| url.starts_with("https://api.withpersona.com/")),
        "{urls:?}"
    );
    assert!(urls[1].ends_with("page[after]=inq_2"));
    assert!(outcome.is_ok());
    for next in [
        r#""/api/v1/inquiries?page%5Bsize%5D=10""#,
        r#""?page[after]=a%2Fb""#,
        "7",
    ] {
        let body = format!(r#"{{"data":[{}],"links":{{"next":{next}}}}}"#, items[0]);
        let (_, outcome) = run(&persona(), u, &[body.into_bytes()]);
        assert!(matches!(outcome, Err(AnswerError::Malformed(_))), "{next}");
    }
}

#[test]
fn answers_about_someone_else_or_unreadable_are_errors() {
    let theirs = [inquiry("someone-else", "approved", "2026-10-01T00:00:00Z")];
    let (_, outcome) = run(&persona(), "u", &[page(&theirs, None)]);
    assert_eq!(outcome.unwrap_err(), AnswerError::WrongSubject);
    let mixed = [
        inquiry("u", "pending", "2026-10-02T00:00:00Z"),
        theirs[0].clone(),
    ];
    let (_, outcome) = run(&persona(), "u", &[page(&mixed, None)]);
    assert_eq!(outcome.unwrap_err(), AnswerError::WrongSubject);
    // An inquiry without reference-id is never taken for the user's.
    let nobody =
        [inquiry("u", "approved", "2026-10-01T00:00:00Z").replace(r#""reference-id":"u","#, "")];
    let (_, outcome) = run(&persona(), "u", &[page(&nobody, None)]);
    assert_eq!(outcome.unwrap_err(), AnswerError::WrongSubject);
    for body in [
        &b"<html>zelda.quixote@example.com</html>"[..],
        br#"{"errors":[{"title":"x"}]}"#,
        br#"{"data":[{"type":"account"}]}"#,
    ] {
        let (_, outcome) = run(&persona(), "u", &[body.to_vec()]);
        match outcome {
            Err(AnswerError::Malformed(why)) => assert!(!why.contains("zelda"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
    let persona = persona();
    let check = persona.check(target("u"));
    assert!(check.conclude().is_err(), "no answer read, no observation");
}

#[test]
fn status_at_is_the_inquirys_own_time_and_times_narrow_the_window() {
    let item = inquiry("u", "approved", "2026-10-01T00:00:00Z").replace(
        r#""decisioned-at":null"#,
        r#""decisioned-at":"2026-10-31T23:59:30Z""#,
    );
    let (_, outcome) = run(&persona(), "u", &[page(&[item], None)]);
    let observation = outcome.unwrap();
    assert_eq!(observation.status_at, Some(at("2026-10-31T23:59:30Z")));
    let decided = at("2026-10-31T23:59:30Z");
    assert_eq!(
        observation.window,
        Window::of(exchange(0, 50)).not_before_provider_time(decided)
    );
    assert!(observation.window.from >= decided - CLOCK_TOLERANCE);
}

// --- backfill ---

#[test]
fn the_inquiry_list_names_users_and_keeps_nothing_else() {
    let walk = |since, cursor| ListWalk {
        since,
        until: "2026-11-29",
        cursor,
    };
    let p = persona();
    assert_eq!(
        p.list_request(&walk(None, None)).unwrap().url,
        "https://api.withpersona.com/api/v1/inquiries"
    );
    assert_eq!(
        p.list_request(&walk(None, Some("inq_abc"))).unwrap().url,
        "https://api.withpersona.com/api/v1/inquiries?page[after]=inq_abc"
    );
    assert!(p.list_request(&walk(Some("2026-01-01"), None)).is_err());
    assert!(p.list_request(&walk(None, Some("a&b=c"))).is_err());
    let items = [
        inquiry("u-1", "approved", "2026-10-03T00:00:00Z"),
        inquiry("u-2", "pending", "2026-10-02T00:00:00Z"),
        inquiry("u-1", "declined", "2026-10-01T00:00:00Z"),
        inquiry("x", "created", "2026-10-01T00:00:00Z")
            .replace(r#""reference-id":"x""#, r#""reference-id":null"#),
        inquiry(
            "zelda quixote@example.com",
            "created",
            "2026-10-01T00:00:00Z",
        ),
    ];
    let listed = p.read_list(&page(&items, Some("inq_last"))).unwrap();
    let ids: Vec<&str> = listed.subjects.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["u-1", "u-2"]);
    assert_eq!(
        (listed.skipped, listed.next.as_deref()),
        (2, Some("inq_last"))
    );
    assert_eq!(p.read_list(&page(&[], Some("inq_x"))).unwrap().next, None);
    assert!(matches!(p.read_list(b"{}"), Err(AnswerError::Malformed(_))));
}
