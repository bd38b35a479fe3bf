//! Sumsub protocol tests: the review mapping, webhook digests and request signatures
//! (vectors computed with `openssl dgst`, never with the code under test), webhook parsing,
//! and checks of the applicant API.

use super::*;
use crate::observation::{Exchange, Source, Window, CLOCK_TOLERANCE};
use crate::providers::{StatusRequest, Unauthenticated, WebhookSubject};
use crate::subject::SubjectRef;
use crate::time::{from_millis, millis};
use crate::transition::Announcement;

const WEBHOOK_SECRET: &str = "sumsub_webhook_secret_1f0c";
const SECRET_KEY: &str = "sumsub_secret_key_9b2e";
const SANDBOX_TOKEN: &str = "sbx:uY0CgwELmgUAEyl4hNWxLngb.0WSeQeiYny4WEqmAALEAiK2qTC96fBad";
const PRODUCTION_TOKEN: &str = "prd:Zx1pDqL0vKcE3n7bGm2tYhWs.Ra8uVf4KjN6oPq9LbXz2CwEyHt5MdSgA";

/// An `applicantReviewed` body as Sumsub documents it (sandbox).
const REVIEWED: &str = r#"{"applicantId":"5cb56e8e0a975a35f333cb83","inspectionId":"5cb56e8e0a975a35f333cb84","correlationId":"req-a260b669-4f14-4bb5-a4c5-ac0218acb9a4","externalUserId":"user-0001","levelName":"basic-kyc-level","type":"applicantReviewed","sandboxMode":true,"reviewResult":{"reviewAnswer":"GREEN"},"reviewStatus":"completed","createdAtMs":"2026-11-20 10:15:30.250","applicantType":"individual"}"#;

// B='<REVIEWED above>'
// printf '%s' "$B" | openssl dgst -sha256 -hmac 'sumsub_webhook_secret_1f0c'
const REVIEWED_SHA256: &str = "dce13c8488b0657a27c982a904d7d18f255c117fbcd612afc70213b92ff442fa";
// printf '%s' "$B" | openssl dgst -sha512 -hmac 'sumsub_webhook_secret_1f0c'
const REVIEWED_SHA512: &str = "89b8204c61c6cf8cda22a2c19af31727205bde50f08b5cda7464c0a2a946323b88bd36bde034086e7a16e215fe1dbd765bbb2f5218b4e01c54ea0c295c0802d3";
// printf '%s' "$B" | openssl dgst -sha1 -hmac 'sumsub_webhook_secret_1f0c'
const REVIEWED_SHA1: &str = "4059bb89ac1ec10540469388d24e94733ca2fa5b";

fn secret(value: &str) -> Secret {
    Secret::new(value).unwrap()
}

fn sumsub_with(token: &str) -> Sumsub {
    Sumsub::new(
        secret(token),
        secret(SECRET_KEY),
        secret(WEBHOOK_SECRET),
        "https://api.sumsub.com".into(),
    )
}

fn sumsub() -> Sumsub {
    sumsub_with(SANDBOX_TOKEN)
}

/// 2026-12-01T00:00:00Z, after every body's createdAtMs.
fn received() -> Timestamp {
    from_millis(1_796_083_200_000).unwrap()
}

fn review<'a>(status: &'a str, answer: Option<&'a str>, reject: Option<&'a str>) -> Review<'a> {
    Review {
        status,
        answer,
        reject_type: reject,
    }
}

/// `reviewStatus`, `reviewAnswer`, `reviewRejectType`, and the status they map to.
type MappingRow = (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<KycStatus>,
);

#[test]
fn the_review_mapping_of_product_md() {
    use KycStatus::*;
    let table: [MappingRow; 16] = [
        ("init", None, None, Some(NotStarted)),
        ("pending", None, None, Some(Pending)),
        ("queued", None, None, Some(Pending)),
        ("prechecked", None, None, Some(Pending)),
        ("onHold", None, None, Some(Pending)),
        ("awaitingService", None, None, Some(Pending)),
        ("completed", Some("GREEN"), None, Some(Approved)),
        (
            "completed",
            Some("RED"),
            Some("RETRY"),
            Some(ResubmissionRequired),
        ),
        ("completed", Some("RED"), Some("FINAL"), Some(Rejected)),
        ("completed", Some("RED"), None, Some(Rejected)),
        // reviewAnswer counts only when completed: an earlier answer left on a review that
        // went back on hold or pending is not the status.
        ("onHold", Some("GREEN"), None, Some(Pending)),
        ("pending", Some("RED"), Some("FINAL"), Some(Pending)),
        ("init", Some("GREEN"), None, Some(NotStarted)),
        // Never guessed.
        ("completed", None, None, None),
        ("completed", Some("YELLOW"), None, None),
        ("approved", Some("GREEN"), None, None),
    ];
    for (status, answer, reject, want) in table {
        assert_eq!(
            review(status, answer, reject).status(),
            want,
            "{status} {answer:?} {reject:?}"
        );
    }
}

#[test]
fn provider_words_are_bounded_and_the_answer_only_when_completed() {
    let red = review("completed", Some("RED"), Some("RETRY"));
    assert_eq!(red.provider_status().as_deref(), Some("completed"));
    assert_eq!(red.sub_status().as_deref(), Some("RED_RETRY"));
    assert_eq!(
        review("completed", Some("GREEN"), None)
            .sub_status()
            .as_deref(),
        Some("GREEN")
    );
    assert_eq!(
        review("completed", Some("RED"), Some("jane@example.com")).sub_status(),
        Some("RED".into())
    );
    assert_eq!(review("onHold", Some("GREEN"), None).sub_status(), None);
    assert_eq!(
        review("Jane Doe <jane@example.com>", None, None).provider_status(),
        None
    );
}

#[test]
fn sumsub_times_read_with_and_without_an_offset() {
    let at = |iso: &str| crate::time::parse_rfc3339(iso);
    assert_eq!(
        parse_time("2026-11-20 10:15:30.250"),
        at("2026-11-20T10:15:30.250Z")
    );
    assert_eq!(
        parse_time("2026-11-20 10:15:30"),
        at("2026-11-20T10:15:30Z")
    );
    assert_eq!(
        parse_time("2026-11-20 10:15:30+0000"),
        at("2026-11-20T10:15:30Z")
    );
    assert_eq!(
        parse_time("2026-11-20 12:15:30+0200"),
        at("2026-11-20T10:15:30Z")
    );
    for bad in [
        "",
        "yesterday",
        "2026-11-20T10:15:30Z",
        "2026-13-01 00:00:00",
        "12026-11-20 10:15:30",
    ] {
        assert_eq!(parse_time(bad), None, "{bad}");
    }
}

// ---- webhook digests ----

#[test]
fn openssl_digest_vectors_verify_with_their_algorithm() {
    let body = REVIEWED.as_bytes();
    let key = secret(WEBHOOK_SECRET);
    for (digest, alg) in [
        (REVIEWED_SHA256, None),
        (REVIEWED_SHA256, Some("HMAC_SHA256_HEX")),
        (REVIEWED_SHA512, Some("HMAC_SHA512_HEX")),
        (REVIEWED_SHA1, Some("HMAC_SHA1_HEX")),
        (REVIEWED_SHA256, Some(" ")),
    ] {
        assert_eq!(
            verify_digest(&key, body, Some(digest), alg),
            Ok(()),
            "{alg:?}"
        );
        let upper = digest.to_uppercase();
        assert_eq!(verify_digest(&key, body, Some(&upper), alg), Ok(()));
        let padded = format!(" {digest}\t");
        assert_eq!(verify_digest(&key, body, Some(&padded), alg), Ok(()));
    }
}

#[test]
fn a_digest_under_another_algorithm_or_key_or_body_fails() {
    let body = REVIEWED.as_bytes();
    let key = secret(WEBHOOK_SECRET);
    let invalid = Err(IngressError::Unauthenticated(Unauthenticated::Invalid(
        "X-Payload-Digest",
    )));
    // The right digest named as another algorithm.
    assert_eq!(
        verify_digest(&key, body, Some(REVIEWED_SHA512), None),
        invalid
    );
    assert_eq!(
        verify_digest(&key, body, Some(REVIEWED_SHA256), Some("HMAC_SHA512_HEX")),
        invalid
    );
    assert_eq!(
        verify_digest(&key, body, Some(REVIEWED_SHA256), Some("HMAC_SHA1_HEX")),
        invalid
    );
    let other = secret("another_webhook_secret");
    assert_eq!(
        verify_digest(&other, body, Some(REVIEWED_SHA256), None),
        invalid
    );
    let tampered = REVIEWED.replace("GREEN", "RED").into_bytes();
    assert_eq!(
        verify_digest(&key, &tampered, Some(REVIEWED_SHA256), None),
        invalid
    );
    // The app token's secret key is not the webhook's secret.
    let api = secret(SECRET_KEY);
    assert_eq!(
        verify_digest(&api, body, Some(REVIEWED_SHA256), None),
        invalid
    );
}

#[test]
fn missing_truncated_repeated_or_unknown_digests_fail() {
    let body = REVIEWED.as_bytes();
    let key = secret(WEBHOOK_SECRET);
    let missing = Err(IngressError::Unauthenticated(Unauthenticated::Missing(
        "X-Payload-Digest",
    )));
    assert_eq!(verify_digest(&key, body, None, None), missing);
    assert_eq!(verify_digest(&key, body, Some(" "), None), missing);
    let d = REVIEWED_SHA256;
    for bad in [
        &d[..63],
        &d[..2],
        "zz",
        "sha256=abc",
        &format!("{d}00"),
        &format!("{d}, {d}"),
        &format!("{d} {d}"),
    ] {
        assert_eq!(
            verify_digest(&key, body, Some(bad), None),
            Err(IngressError::Unauthenticated(Unauthenticated::Invalid(
                "X-Payload-Digest"
            ))),
            "{bad}"
        );
    }
    let unknown = Err(IngressError::Unauthenticated(
        Unauthenticated::UnknownAlgorithm("X-Payload-Digest-Alg"),
    ));
    for alg in [
        "HMAC_MD5_HEX",
        "SHA256",
        "HMAC_SHA256_BASE64",
        "HMAC_SHA256_HEX, HMAC_SHA1_HEX",
    ] {
        assert_eq!(
            verify_digest(&key, body, Some(d), Some(alg)),
            unknown,
            "{alg}"
        );
    }
}

#[test]
fn authenticate_reads_both_headers() {
    let body = REVIEWED.as_bytes();
    let headers = |name: &str| match name {
        "x-payload-digest" => Some(REVIEWED_SHA512.to_owned()),
        "x-payload-digest-alg" => Some("HMAC_SHA512_HEX".to_owned()),
        _ => None,
    };
    let webhook = InboundWebhook {
        path_token: None,
        client_ip: None,
        header: &headers,
        body,
    };
    assert_eq!(sumsub().authenticate(&webhook), Ok(()));
    let none = |_: &str| None;
    let unsigned = InboundWebhook {
        header: &none,
        ..webhook
    };
    assert!(sumsub().authenticate(&unsigned).is_err());
}

// ---- request signatures ----

#[test]
fn openssl_request_signature_vectors() {
    let key = secret(SECRET_KEY);
    // printf '%s' '1607551635GET/resources/applicants/-;externalUserId=user%3A42/one' \
    //   | openssl dgst -sha256 -hmac 'sumsub_secret_key_9b2e'
    assert_eq!(
        request_signature(
            &key,
            1_607_551_635,
            "GET",
            "/resources/applicants/-;externalUserId=user%3A42/one",
            b""
        ),
        "aeb7ceee7d58f200024ea0c6ba0150997c9c0f81a68179475849097bc68d07ad"
    );
    // printf '%s' '1607551635POST/resources/accessTokens?userId=user-0001&levelName=basic-kyc-level&ttlInSecs=600{"a":1}' \
    //   | openssl dgst -sha256 -hmac 'sumsub_secret_key_9b2e'
    assert_eq!(
        request_signature(
            &key,
            1_607_551_635,
            "POST",
            "/resources/accessTokens?userId=user-0001&levelName=basic-kyc-level&ttlInSecs=600",
            br#"{"a":1}"#
        ),
        "4f59ec9108e5a7af4500fbfe893b681060790807e627fb6bf25c6b82dc32f96a"
    );
}

fn target(id: &str) -> CheckTarget {
    CheckTarget {
        subject_ref: SubjectRef::parse(id).unwrap(),
        ref_kind: RefKind::User,
        aml: false,
    }
}

fn header<'a>(request: &'a StatusRequest, name: &str) -> &'a str {
    request
        .headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .unwrap()
}

#[test]
fn a_check_is_one_signed_get_of_the_applicant_by_external_user_id() {
    let sumsub = sumsub();
    let mut check = sumsub.check(target("user:42"));
    // 2020-12-09T22:07:15Z = 1607551635 s.
    let now = from_millis(1_607_551_635_999).unwrap();
    let request = check.next_request(now).unwrap();
    assert_eq!(
        request.url,
        "https://api.sumsub.com/resources/applicants/-;externalUserId=user%3A42/one"
    );
    let names: Vec<&str> = request.headers.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        ["x-app-token", "x-app-access-ts", "x-app-access-sig"]
    );
    assert_eq!(header(&request, "x-app-token"), SANDBOX_TOKEN);
    assert_eq!(header(&request, "x-app-access-ts"), "1607551635");
    // The openssl vector above: the path signed is the path sent.
    assert_eq!(
        header(&request, "x-app-access-sig"),
        "aeb7ceee7d58f200024ea0c6ba0150997c9c0f81a68179475849097bc68d07ad"
    );
    assert!(!format!("{request:?}").contains(SANDBOX_TOKEN));
    let answered = Exchange {
        sent_at: now,
        received_at: now,
    };
    check
        .read(
            br#"{"externalUserId":"user:42","review":{"reviewStatus":"init"}}"#,
            answered,
        )
        .unwrap();
    assert_eq!(check.next_request(now), None, "one request");
}

#[test]
fn refs_are_percent_encoded_and_a_base_path_is_signed_too() {
    let sumsub = Sumsub::new(
        secret(SANDBOX_TOKEN),
        secret(SECRET_KEY),
        secret(WEBHOOK_SECRET),
        "http://127.0.0.1:8790/sumsub/".into(),
    );
    let mut check = sumsub.check(target("a+b@c.d~e_f-g"));
    let now = from_millis(1_607_551_635_000).unwrap();
    let request = check.next_request(now).unwrap();
    let path = "/sumsub/resources/applicants/-;externalUserId=a%2Bb%40c.d~e_f-g/one";
    assert_eq!(request.url, format!("http://127.0.0.1:8790{path}"));
    assert_eq!(
        header(&request, "x-app-access-sig"),
        request_signature(&secret(SECRET_KEY), 1_607_551_635, "GET", path, b"")
    );
}

// ---- webhooks ----

fn user(id: &str) -> Option<WebhookSubject> {
    Some(WebhookSubject {
        subject_ref: SubjectRef::parse(id).unwrap(),
        ref_kind: RefKind::User,
    })
}

fn body(fields: &str) -> Vec<u8> {
    format!(
        r#"{{"externalUserId":"user-0001","correlationId":"req-1","sandboxMode":true,{fields}}}"#
    )
    .into_bytes()
}

#[test]
fn a_reviewed_webhook_names_its_user_event_and_time_and_is_only_a_trigger() {
    let event = sumsub()
        .parse_webhook(REVIEWED.as_bytes(), received())
        .unwrap();
    assert_eq!(event.subject, user("user-0001"));
    assert_eq!(event.kind, "applicantReviewed");
    assert_eq!(event.announces, Announcement::Status(KycStatus::Approved));
    assert_eq!(event.trusted, None, "the API decides");
    assert!(!event.about_aml);
    assert_eq!(
        event.event_id.as_deref(),
        Some("applicantReviewed:req-a260b669-4f14-4bb5-a4c5-ac0218acb9a4")
    );
    assert_eq!(
        event.provider_at,
        crate::time::parse_rfc3339("2026-11-20T10:15:30.250Z")
    );
    // A time after arrival is capped to it.
    let early = from_millis(1_790_000_000_000).unwrap();
    let event = sumsub().parse_webhook(REVIEWED.as_bytes(), early).unwrap();
    assert_eq!(event.provider_at, Some(early));
}

#[test]
fn every_applicant_event_announces_what_product_md_says() {
    use KycStatus::*;
    let cases: [(&str, Announcement); 15] = [
        (
            r#""type":"applicantCreated","reviewStatus":"init""#,
            Announcement::Status(NotStarted),
        ),
        (
            r#""type":"applicantPending","reviewStatus":"pending""#,
            Announcement::Status(Pending),
        ),
        (
            r#""type":"applicantPrechecked""#,
            Announcement::Status(Pending),
        ),
        (
            r#""type":"applicantOnHold","reviewStatus":"onHold""#,
            Announcement::Status(Pending),
        ),
        (
            r#""type":"applicantAwaitingService""#,
            Announcement::Status(Pending),
        ),
        (
            r#""type":"applicantReset","reviewStatus":"init""#,
            Announcement::Status(NotStarted),
        ),
        (
            r#""type":"applicantReviewed","reviewStatus":"completed","reviewResult":{"reviewAnswer":"RED","reviewRejectType":"RETRY"}"#,
            Announcement::Status(ResubmissionRequired),
        ),
        (
            r#""type":"applicantReviewed","reviewStatus":"completed","reviewResult":{"reviewAnswer":"RED","reviewRejectType":"FINAL"}"#,
            Announcement::Status(Rejected),
        ),
        // The review fields in an odd shape: a trigger all the same.
        (
            r#""type":"applicantReviewed","reviewStatus":7,"reviewResult":{"reviewAnswer":[]}"#,
            Announcement::AnyChange,
        ),
        (
            r#""type":"applicantReviewed","reviewStatus":"completed","reviewResult":"GREEN""#,
            Announcement::AnyChange,
        ),
        (
            r#""type":"applicantWorkflowCompleted","reviewStatus":"completed","reviewResult":{"reviewAnswer":"GREEN"}"#,
            Announcement::Status(Approved),
        ),
        (r#""type":"applicantLevelChanged""#, Announcement::AnyChange),
        (r#""type":"applicantDeleted""#, Announcement::AnyChange),
        (r#""type":"applicantActivated""#, Announcement::Nothing),
        (r#""type":"applicantDeactivated""#, Announcement::Nothing),
    ];
    for (fields, announces) in cases {
        let event = sumsub().parse_webhook(&body(fields), received()).unwrap();
        assert_eq!(event.announces, announces, "{fields}");
        assert_eq!(event.subject, user("user-0001"), "{fields}");
        assert_eq!(event.trusted, None);
    }
}

#[test]
fn unknown_types_and_personal_info_changes_are_acknowledged_and_ignored() {
    for (fields, kind) in [
        (
            r#""type":"applicantPersonalInfoChanged""#,
            "applicantPersonalInfoChanged",
        ),
        (
            r#""type":"applicantKytTxnApproved""#,
            "applicantKytTxnApproved",
        ),
        (
            r#""type":"videoIdentStatusChanged""#,
            "videoIdentStatusChanged",
        ),
        (r#""type":"applicant/reviewed <b>""#, "unknown"),
    ] {
        let event = sumsub().parse_webhook(&body(fields), received()).unwrap();
        assert_eq!((event.subject, event.kind.as_str()), (None, kind));
        assert_eq!(event.announces, Announcement::Nothing);
    }
    // An applicant event without externalUserId cannot be tracked: acknowledged.
    let anonymous =
        br#"{"type":"applicantReviewed","correlationId":"c","reviewStatus":"completed"}"#;
    let event = sumsub().parse_webhook(anonymous, received()).unwrap();
    assert_eq!(event.subject, None);
}

#[test]
fn a_body_from_the_other_environment_is_ignored_and_counted_apart() {
    let production = br#"{"type":"applicantReviewed","externalUserId":"user-0001","correlationId":"c1","sandboxMode":false,"reviewStatus":"completed","reviewResult":{"reviewAnswer":"GREEN"}}"#;
    let sandbox = REVIEWED.as_bytes();
    for (provider, body, ignored) in [
        (sumsub_with(SANDBOX_TOKEN), &production[..], true),
        (sumsub_with(SANDBOX_TOKEN), sandbox, false),
        (sumsub_with(PRODUCTION_TOKEN), sandbox, true),
        (sumsub_with(PRODUCTION_TOKEN), &production[..], false),
        // A token without a known prefix cannot judge.
        (sumsub_with("legacy-token-without-prefix"), sandbox, false),
    ] {
        let event = provider.parse_webhook(body, received()).unwrap();
        assert_eq!(event.kind == "sandbox_mismatch", ignored);
        assert_eq!(event.subject.is_none(), ignored);
        assert!(event.event_id.is_some(), "deliveries of it still dedup");
    }
    let test_send = body(r#""type":"applicantReviewed","testMode":true"#);
    let event = sumsub().parse_webhook(&test_send, received()).unwrap();
    assert_eq!((event.subject, event.kind.as_str()), (None, "test_webhook"));
}

#[test]
fn deliveries_of_one_event_share_a_dedup_key_whatever_their_bytes() {
    let first = sumsub()
        .parse_webhook(REVIEWED.as_bytes(), received())
        .unwrap();
    let resent = REVIEWED.replace(
        r#""applicantType":"individual""#,
        r#""applicantType":"individual","x":1"#,
    );
    let second = sumsub()
        .parse_webhook(resent.as_bytes(), received())
        .unwrap();
    assert_eq!(
        first.dedup_key(REVIEWED.as_bytes()),
        second.dedup_key(resent.as_bytes())
    );
    // Another type with the same correlationId is another event.
    let other = REVIEWED.replace("applicantReviewed", "applicantPending");
    let third = sumsub()
        .parse_webhook(other.as_bytes(), received())
        .unwrap();
    assert_ne!(first.dedup_key(b""), third.dedup_key(b""));
}

#[test]
fn bodies_that_are_not_sumsub_events_are_refused_without_quoting_them() {
    let cases: [&[u8]; 8] = [
        b"not json",
        b"[]",
        b"\"applicantReviewed\"",
        br#"{"event_type":"customer.kycs.updated","entity_id":"c1"}"#,
        br#"{"type":"","externalUserId":"u"}"#,
        br#"{"type":42,"externalUserId":"u"}"#,
        br#"{"type":"applicantReviewed","externalUserId":"jane doe@example.com"}"#,
        b"{\"type\":\"applicantReviewed\",\"name\":\"Jos\xe9\"}",
    ];
    for body in cases {
        match sumsub().parse_webhook(body, received()) {
            Err(IngressError::Malformed(why)) => {
                assert!(!why.to_string().contains("jane"), "{why}")
            }
            other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
        }
    }
}

// ---- applicant answers ----

fn exchange(sent_at: Timestamp, received_at: Timestamp) -> Exchange {
    Exchange {
        sent_at,
        received_at,
    }
}

/// An applicant as `GET …/one` returns it, personal data included.
fn applicant(review: &str) -> String {
    format!(
        r#"{{"id":"5cb56e8e0a975a35f333cb83","createdAt":"2026-11-20 09:00:00","externalUserId":"user-0001",
        "info":{{"firstName":"PLANTED_FIRST_Mariana","lastName":"PLANTED_LAST_Okonkwo","dob":"1987-04-23",
        "idDocs":[{{"idDocType":"PASSPORT","number":"PLANTED_DOC_X9981237"}}]}},
        "fixedInfo":{{"firstName":"PLANTED_FIXED_Mariana","addresses":[{{"street":"PLANTED_STREET 1"}}]}},
        "email":"planted.mariana@example.com","review":{review}}}"#
    )
}

fn observe(body: &str) -> Result<Observation, AnswerError> {
    let sumsub = sumsub();
    let mut check = sumsub.check(target("user-0001"));
    let sent_at = received() - millis(2_000);
    check.next_request(sent_at);
    check.read(body.as_bytes(), exchange(sent_at, received()))?;
    check.conclude()
}

use crate::observation::Observation;

#[test]
fn an_answer_is_mapped_and_keeps_no_personal_data() {
    let observation = observe(&applicant(
        r#"{"reviewStatus":"completed","reviewResult":{"reviewAnswer":"RED","reviewRejectType":"RETRY","rejectLabels":["DOCUMENT_PAGE_MISSING"],"moderationComment":"PLANTED_COMMENT Mariana"},"reviewDate":"2026-11-30 23:59:50+0000","createDate":"2026-11-30 23:00:00+0000"}"#,
    ))
    .unwrap();
    assert_eq!(observation.status, KycStatus::ResubmissionRequired);
    assert_eq!(observation.provider_status.as_deref(), Some("completed"));
    assert_eq!(observation.sub_status.as_deref(), Some("RED_RETRY"));
    assert_eq!(observation.source, Source::Poll);
    assert_eq!(observation.aml, None);
    let decided = crate::time::parse_rfc3339("2026-11-30T23:59:50Z").unwrap();
    assert_eq!(observation.status_at, Some(decided));
    // The decision date narrows the window: Sumsub read its state after recording it.
    assert_eq!(
        observation.window,
        Window {
            from: (decided - CLOCK_TOLERANCE).max(received() - millis(2_000)),
            to: received(),
            provider_at: None,
        }
    );
    let kept = format!("{observation:?}");
    for planted in [
        "PLANTED",
        "Mariana",
        "1987-04-23",
        "X9981237",
        "planted.mariana",
    ] {
        assert!(!kept.contains(planted), "{planted} in {kept}");
    }
}

#[test]
fn an_undecided_review_is_read_within_its_request_window() {
    let observation = observe(&applicant(
        r#"{"reviewStatus":"onHold","reviewResult":{"reviewAnswer":"GREEN"},"reviewDate":"2026-11-30 23:59:59+0000"}"#,
    ))
    .unwrap();
    assert_eq!(observation.status, KycStatus::Pending);
    assert_eq!(observation.sub_status, None);
    assert_eq!(observation.status_at, None);
    assert_eq!(
        observation.window,
        Window::of(exchange(received() - millis(2_000), received()))
    );
    let reset = observe(&applicant(r#"{"reviewStatus":"init"}"#)).unwrap();
    assert_eq!(reset.status, KycStatus::NotStarted);
    assert!(
        !reset.no_record,
        "a reset applicant is a record, and moves the status"
    );
}

#[test]
fn answers_about_someone_else_unmappable_or_unreadable_are_errors() {
    let other =
        applicant(r#"{"reviewStatus":"completed","reviewResult":{"reviewAnswer":"GREEN"}}"#)
            .replace(
                r#""externalUserId":"user-0001""#,
                r#""externalUserId":"user-0002""#,
            );
    assert_eq!(observe(&other), Err(AnswerError::WrongSubject));
    for body in [
        "<html>".to_owned(),
        r#"{"description":"Invalid signature"}"#.to_owned(),
        applicant(r#"{"reviewStatus":"completed"}"#),
        applicant(r#"{"reviewStatus":"Mariana"}"#),
        applicant(r#"{}"#),
    ] {
        match observe(&body) {
            Err(AnswerError::Malformed(why)) => {
                assert!(
                    !why.contains("Mariana") && !why.contains("PLANTED"),
                    "{why}"
                )
            }
            other => panic!("{body}: {other:?}"),
        }
    }
    let sumsub = sumsub();
    assert!(
        sumsub.check(target("u")).conclude().is_err(),
        "nothing read"
    );
}

#[test]
fn backfill_says_sumsub_cannot_list_and_points_at_import() {
    let walk = ListWalk {
        since: None,
        until: "2026-12-01",
        cursor: None,
    };
    let why = sumsub().list_request(&walk).unwrap_err();
    assert!(why.contains("import"), "{why}");
    assert!(sumsub().read_list(b"{}").is_err());
}

#[test]
fn configuration_needs_all_three_secrets() {
    use crate::config::Config;
    use crate::subject::Provider;
    let configured = |pairs: &[(&str, &str)]| {
        let lookup = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        };
        Config::from_lookup(&lookup)
            .unwrap()
            .protocol(Provider::named("sumsub"))
            .is_some()
    };
    let all = [
        ("SUMSUB_APP_TOKEN", SANDBOX_TOKEN),
        ("SUMSUB_SECRET_KEY", SECRET_KEY),
        ("SUMSUB_WEBHOOK_SECRET", WEBHOOK_SECRET),
    ];
    assert!(configured(&all));
    for missing in 0..all.len() {
        let mut some = all.to_vec();
        some.remove(missing);
        assert!(!configured(&some), "without {}", all[missing].0);
    }
    assert_eq!(REGISTRATION.max_checks_per_run, Some(250));
}
