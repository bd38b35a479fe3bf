//! Interleavings an adversarial review found (each broke an invariant before its fix), replayed
//! with the real statements on SQLite, the way the adapter runs them.

use crate::db::backfills::{self, advance, Backfill, State};
use crate::db::events::record_webhook;
use crate::db::sqlite::{batch, database, run};
use crate::db::subjects::{load, register, SubjectRow};
use crate::db::{row, Statement};
use crate::observation::{Observation, Source};
use crate::outbound::{CheckFailure, OutboundError};
use crate::providers::{WebhookEvent, WebhookSubject};
use crate::reconcile::{plan, Context, Outcome, Reading, Written};
use crate::schedule::ScheduleConfig;
use crate::status::{Aml, KycStatus};
use crate::subject::{Provider, RefKind, SubjectRef};
use crate::time::{from_millis, Timestamp};
use crate::transition::Announcement;
use rusqlite::Connection;

fn at(s: i64) -> Timestamp {
    from_millis(1_800_000_000_000 + s * 1000).unwrap()
}
fn r(id: &str) -> SubjectRef {
    SubjectRef::parse(id).unwrap()
}
fn subject(db: &Connection, p: Provider, id: &str) -> SubjectRow {
    row(&run(db, &load(p, &r(id)))[0]).unwrap()
}

/// src/reconcile.rs's write loop: plan, batch, on Lost re-read and plan again.
fn write(
    db: &Connection,
    p: Provider,
    id: &str,
    stored: SubjectRow,
    outcome: &Outcome,
    now: Timestamp,
) -> Written {
    let schedule = ScheduleConfig::default();
    let mut stored = stored;
    for _ in 0..6 {
        let plan = plan(
            &stored,
            outcome,
            Context {
                now,
                schedule: &schedule,
                provider_health: None,
            },
        );
        let written = plan.written(&batch(db, &plan.statements)).unwrap();
        if written != Written::Lost {
            return written;
        }
        stored = subject(db, p, id);
    }
    panic!("contended");
}

fn reading(status: KycStatus, aml: Option<&str>, sent: Timestamp) -> Outcome {
    Outcome::Read(Reading {
        observation: Observation {
            status,
            provider_status: Some(status.as_str().into()),
            sub_status: None,
            aml: aml.map(|a| crate::observation::AmlReading {
                aml: Aml {
                    status: a.into(),
                    risk_level: None,
                },
                window: crate::observation::Window::at(sent),
            }),
            status_at: None,
            window: crate::observation::Window::at(sent),
            source: Source::Poll,
            no_record: false,
        },
        polled_at: Some(sent),
    })
}

/// A failure whose request was sent before a newer successful check lost its race; planned
/// again, it must not overwrite that check's schedule (a 404 pushed a pending subject to the
/// 7-day cadence) nor count against the provider once per lost round.
#[test]
fn a_stale_failure_never_overwrites_a_newer_success() {
    let db = database();
    let p = Provider::named("align");
    for (id, status) in [("c1", 404), ("c2", 503)] {
        batch(&db, &register(p, &r(id), RefKind::User, None, at(0)));
        // Job A sends its poll at t=1; job B polls at t=2 (pending) and writes first.
        let a_stored = subject(&db, p, id);
        let b_stored = subject(&db, p, id);
        let Written::Won { row: b, .. } = write(
            &db,
            p,
            id,
            b_stored,
            &reading(KycStatus::Pending, None, at(2)),
            at(3),
        ) else {
            panic!("B writes")
        };
        // A's answer, a failure, arrives at t=4.
        let failure = Outcome::Failed {
            failure: CheckFailure::Outbound(OutboundError::Http {
                status,
                retry_after: None,
            }),
            sent_at: at(1),
        };
        assert_eq!(
            write(&db, p, id, a_stored, &failure, at(4)),
            Written::Nothing,
            "HTTP {status}"
        );
        let after = subject(&db, p, id);
        assert_eq!((after.status, after.last_error), (KycStatus::Pending, None));
        assert_eq!(after.next_check_at, b.next_check_at, "B's schedule stands");
    }
    let failures = run(
        &db,
        &Statement::new(
            "SELECT consecutive_failures AS n FROM provider_health",
            vec![],
        ),
    );
    assert!(
        failures.iter().all(|f| f["n"].as_i64() == Some(0)),
        "{failures:?}"
    );
}

/// A failure that loses its race to something other than a newer check (a trusted body) is
/// planned again and written: the provider's failure is counted once.
#[test]
fn a_failure_planned_twice_counts_once() {
    let db = database();
    let p = Provider::named("align");
    batch(&db, &register(p, &r("c3"), RefKind::User, None, at(0)));
    let a_stored = subject(&db, p, "c3");
    let trusted = Outcome::Read(Reading {
        observation: Observation {
            status: KycStatus::Pending,
            provider_status: Some("pending".into()),
            sub_status: None,
            aml: None,
            status_at: None,
            window: crate::observation::Window::at(at(2)),
            source: Source::Webhook,
            no_record: false,
        },
        polled_at: None,
    });
    write(&db, p, "c3", subject(&db, p, "c3"), &trusted, at(2));
    let failure = Outcome::Failed {
        failure: CheckFailure::Outbound(OutboundError::Http {
            status: 503,
            retry_after: None,
        }),
        sent_at: at(1),
    };
    assert!(matches!(
        write(&db, p, "c3", a_stored, &failure, at(4)),
        Written::Won { .. }
    ));
    let n = run(
        &db,
        &Statement::new(
            "SELECT consecutive_failures AS n FROM provider_health",
            vec![],
        ),
    )[0]["n"]
        .as_i64();
    assert_eq!(n, Some(1));
}

fn aml_webhook() -> WebhookEvent {
    WebhookEvent {
        subject: Some(WebhookSubject {
            subject_ref: r("u1"),
            ref_kind: RefKind::User,
        }),
        kind: "aml".into(),
        provider_at: None,
        announces: Announcement::Nothing,
        trusted: None,
        about_aml: true,
        event_id: None,
    }
}

fn deliver(db: &Connection, body: &str, now: Timestamp) -> (bool, bool, bool) {
    let record = record_webhook(
        Provider::named("argos"),
        &aml_webhook(),
        &crate::providers::dedup_key(body.as_bytes()),
        &format!("r-{}", now.timestamp_millis()),
        now,
    );
    let outcome = record.outcome(&batch(db, &record.statements));
    (outcome.duplicate, outcome.created, outcome.made_due)
}

/// A byte-identical resend announcing a new event (Red Flag → Cleared → Red Flag) while the
/// checks asked for by the events before it are still in flight: those checks were sent
/// before the change it announces, so it must keep the subject due.
#[test]
fn an_identical_resend_during_an_in_flight_check_keeps_the_subject_due() {
    let db = database();
    let p = Provider::named("argos");
    assert_eq!(deliver(&db, "red flag", at(0)), (false, true, false));
    assert_eq!(deliver(&db, "cleared", at(10)), (false, false, true));
    let j1 = subject(&db, p, "u1");
    let j2 = subject(&db, p, "u1");
    // Both jobs poll at t=20/21 (Cleared); the provider flips at t=25 and resends the first
    // body at t=30, while both are in flight.
    let (duplicate, _, made_due) = deliver(&db, "red flag", at(30));
    assert!(duplicate && made_due, "recorded as a repeat, and due again");
    write(
        &db,
        p,
        "u1",
        j1,
        &reading(KycStatus::Approved, Some("Cleared"), at(20)),
        at(35),
    );
    write(
        &db,
        p,
        "u1",
        j2,
        &reading(KycStatus::Approved, Some("Cleared"), at(21)),
        at(36),
    );
    let after = subject(&db, p, "u1");
    assert_eq!(after.requested_at, Some(at(30)));
    assert!(
        after.next_check_at <= at(36),
        "still due for the Red Flag: {:?}",
        after.next_check_at
    );
    // A retry storm of that body, with nothing asked in between, writes no request again.
    assert!(!deliver(&db, "red flag", at(40)).2);
}

/// Two cron runs read walk #1 at its first page; one ends it, the operator starts walk #2
/// (no cursor either); the other run's page of walk #1 must not advance walk #2.
#[test]
fn a_stale_backfill_run_never_advances_a_restarted_walk() {
    let db = database();
    let p = Provider::named("argos");
    run(
        &db,
        &backfills::start(p, Some("2026-06-01"), "2026-11-29", at(0)),
    );
    let current = |db: &Connection| -> Backfill { row(&run(db, &backfills::load(p))[0]).unwrap() };
    let a = current(&db);
    let b = current(&db);
    assert_eq!(
        batch(&db, &[advance(&b, None, 3, false, at(5))])[0].len(),
        1
    );
    assert_eq!(
        run(
            &db,
            &backfills::start(p, Some("2025-01-01"), "2026-11-29", at(6))
        )
        .len(),
        1
    );
    assert!(
        batch(&db, &[advance(&a, None, 3, false, at(7))])[0].is_empty(),
        "A moves nothing"
    );
    run(&db, &backfills::failed(&a, "HTTP 503", true, at(8)));
    let walk = current(&db);
    assert_eq!(
        (walk.state, walk.since.as_deref(), walk.pages_read),
        (State::Running, Some("2025-01-01"), 0)
    );
}

fn failure(status: u16, retry_after: Option<i64>, sent: Timestamp) -> Outcome {
    Outcome::Failed {
        failure: CheckFailure::Outbound(OutboundError::Http {
            status,
            retry_after: retry_after.map(chrono::TimeDelta::seconds),
        }),
        sent_at: sent,
    }
}

fn paused_until(db: &Connection) -> Option<i64> {
    run(
        db,
        &Statement::new("SELECT paused_until FROM provider_health", vec![]),
    )
    .first()
    .and_then(|h| h["paused_until"].as_i64())
}

/// A check sent before another got a 429 answers after it: its success says nothing about
/// whether the provider still wants us to wait, so the pause stands. A success sent after the
/// 429 ends it.
#[test]
fn a_success_sent_before_a_429_does_not_end_its_pause() {
    let db = database();
    let p = Provider::named("align");
    for id in ["c1", "c2"] {
        batch(&db, &register(p, &r(id), RefKind::User, None, at(0)));
    }
    // c1's check is sent at 10; c2's at 11 gets a 429 (recorded at 12), then c1's answer.
    write(
        &db,
        p,
        "c2",
        subject(&db, p, "c2"),
        &failure(429, Some(600), at(11)),
        at(12),
    );
    assert!(paused_until(&db).is_some(), "paused");
    write(
        &db,
        p,
        "c1",
        subject(&db, p, "c1"),
        &reading(KycStatus::Pending, None, at(10)),
        at(13),
    );
    assert!(
        paused_until(&db).is_some(),
        "a success sent before the 429 kept it paused"
    );
    write(
        &db,
        p,
        "c1",
        subject(&db, p, "c1"),
        &reading(KycStatus::Pending, None, at(20)),
        at(21),
    );
    assert_eq!(
        paused_until(&db),
        None,
        "a success sent after it ends the pause"
    );
}

/// A webhook announced the change, then a check sent after it still read the old status (the
/// provider's API lagged its webhook), then a later check found the change: the webhook came
/// after the old status took effect, so the change was announced, not missed.
#[test]
fn a_webhook_before_a_lagging_check_still_announces_its_change() {
    let db = database();
    let p = Provider::named("argos");
    batch(&db, &register(p, &r("u1"), RefKind::User, None, at(0)));
    write(
        &db,
        p,
        "u1",
        subject(&db, p, "u1"),
        &reading(KycStatus::Pending, None, at(1)),
        at(2),
    );
    let approved = WebhookEvent {
        announces: Announcement::Status(KycStatus::Approved),
        about_aml: false,
        ..aml_webhook()
    };
    let record = record_webhook(p, &approved, "approved body", "r-10", at(10));
    batch(&db, &record.statements);
    // The lagging check, sent at 11, reads pending still.
    write(
        &db,
        p,
        "u1",
        subject(&db, p, "u1"),
        &reading(KycStatus::Pending, None, at(11)),
        at(12),
    );
    let Written::Won { drift, .. } = write(
        &db,
        p,
        "u1",
        subject(&db, p, "u1"),
        &reading(KycStatus::Approved, None, at(20)),
        at(21),
    ) else {
        panic!("the change is written");
    };
    assert!(!drift, "announced by the webhook at 10");
}

/// The world of the convergence test: the provider went pending → rejected → pending within
/// seconds, and both webhooks of those changes were lost. The webhook of the first pending,
/// seconds before, announced an earlier episode: it must not hide the lost one's drift.
#[test]
fn a_webhook_of_an_earlier_episode_does_not_announce_a_return_to_its_status() {
    let db = database();
    let p = Provider::named("align");
    batch(&db, &register(p, &r("u1"), RefKind::User, None, at(0)));
    let pending = WebhookEvent {
        announces: Announcement::Status(KycStatus::Pending),
        about_aml: false,
        ..aml_webhook()
    };
    let record = record_webhook(p, &pending, "pending body", "r-7", at(7));
    batch(&db, &record.statements);
    let mut drifts = vec![];
    for (status, sent) in [
        (KycStatus::Pending, 8),
        (KycStatus::Rejected, 20),
        (KycStatus::Pending, 32),
    ] {
        let Written::Won { drift, .. } = write(
            &db,
            p,
            "u1",
            subject(&db, p, "u1"),
            &reading(status, None, at(sent)),
            at(sent + 1),
        ) else {
            panic!("the change to {status:?} is written");
        };
        drifts.push(drift);
    }
    assert_eq!(
        drifts,
        [false, true, true],
        "announced; lost; lost (the pending webhook at 7 was about the first pending)"
    );
}

/// A provider's retry of a dated "something changed" body, seconds after the change it was
/// about was found, is that change's webhook again: it announces nothing later.
#[test]
fn a_repeated_dated_webhook_does_not_announce_a_later_change() {
    let db = database();
    let p = Provider::named("align");
    batch(&db, &register(p, &r("u1"), RefKind::User, None, at(0)));
    let changed = WebhookEvent {
        announces: Announcement::AnyChange,
        about_aml: false,
        provider_at: Some(at(6)),
        ..aml_webhook()
    };
    let mut drifts = vec![];
    for (arrived, status, sent) in [(7, KycStatus::Pending, 8), (16, KycStatus::Approved, 29)] {
        let receipt = format!("r-{arrived}");
        let record = record_webhook(p, &changed, "changed body", &receipt, at(arrived));
        batch(&db, &record.statements);
        let Written::Won { drift, .. } = write(
            &db,
            p,
            "u1",
            subject(&db, p, "u1"),
            &reading(status, None, at(sent)),
            at(sent + 1),
        ) else {
            panic!("the change to {status:?} is written");
        };
        drifts.push(drift);
    }
    assert_eq!(
        drifts,
        [false, true],
        "announced at 7; the repeat at 16 was the same event"
    );
}

/// A dropped body delivered for the first time long after it was dated (a provider's late
/// retry) is about the change it was dated with, not about the next one.
#[test]
fn a_late_first_delivery_of_an_old_dated_body_announces_no_later_change() {
    let db = database();
    let p = Provider::named("align");
    batch(&db, &register(p, &r("u1"), RefKind::User, None, at(0)));
    let old = WebhookEvent {
        announces: Announcement::AnyChange,
        about_aml: false,
        provider_at: Some(at(10)),
        ..aml_webhook()
    };
    let mut drifts = vec![];
    for (arrived, status, sent) in [
        (None, KycStatus::Pending, 100),
        (Some(150), KycStatus::Approved, 200),
    ] {
        if let Some(arrived) = arrived {
            let record = record_webhook(p, &old, "old body", "r-150", at(arrived));
            batch(&db, &record.statements);
        }
        let Written::Won { drift, .. } = write(
            &db,
            p,
            "u1",
            subject(&db, p, "u1"),
            &reading(status, None, at(sent)),
            at(sent + 1),
        ) else {
            panic!("the change to {status:?} is written");
        };
        drifts.push(drift);
    }
    assert_eq!(
        drifts,
        [false, true],
        "the first status learned; the body dated 10 arrived at 150, after pending took \
         effect at 100, yet was about 10"
    );
}

/// A check a webhook asked for that fails for the subject (the provider does not know it yet)
/// is retried on the short back-off; the same failure of a routine check waits the slow cadence.
#[test]
fn a_failed_check_someone_asked_for_is_retried_soon() {
    let db = database();
    let p = Provider::named("align");
    batch(&db, &register(p, &r("asked"), RefKind::User, None, at(0)));
    write(
        &db,
        p,
        "asked",
        subject(&db, p, "asked"),
        &failure(404, None, at(1)),
        at(2),
    );
    let asked = subject(&db, p, "asked");
    assert!(
        asked.next_check_at <= at(2) + chrono::TimeDelta::minutes(2),
        "retried within minutes: {}",
        asked.next_check_at
    );
    // Once a check succeeded, nobody is waiting: a 404 then waits the slow cadence.
    batch(&db, &register(p, &r("routine"), RefKind::User, None, at(0)));
    write(
        &db,
        p,
        "routine",
        subject(&db, p, "routine"),
        &reading(KycStatus::Pending, None, at(1)),
        at(2),
    );
    write(
        &db,
        p,
        "routine",
        subject(&db, p, "routine"),
        &failure(404, None, at(3)),
        at(4),
    );
    let routine = subject(&db, p, "routine");
    assert!(
        routine.next_check_at >= at(4) + chrono::TimeDelta::days(6),
        "weekly: {}",
        routine.next_check_at
    );
}

/// A webhook's job starts from the row its batch wrote. If a check rewrites the subject before
/// the job runs, the job's trusted body may look newer than that row yet be older than the
/// record: after the lost compare-and-set it is judged again from the record as it is, and,
/// being no newer, the job asks the provider (as it would have had it loaded the row itself)
/// rather than settling for the stale body.
#[test]
fn a_trusted_body_judged_on_a_rewritten_carried_row_is_judged_again_and_the_provider_asked() {
    use crate::jobs::ReconcileJob;
    use crate::providers::align::Align;
    use crate::reconcile::run::{Input, Step};
    let db = database();
    let align = Provider::named("align");
    let body_at = at(10);
    let event = WebhookEvent {
        subject: Some(WebhookSubject {
            subject_ref: r("c1"),
            ref_kind: RefKind::User,
        }),
        kind: "kycs.updated".into(),
        provider_at: Some(body_at),
        announces: Announcement::Nothing,
        trusted: None,
        about_aml: false,
        event_id: None,
    };
    let record = record_webhook(align, &event, "k1", "r1", at(11));
    let carried = record
        .outcome(&batch(&db, &record.statements))
        .subject
        .expect("the batch returns the subject it created");
    // A check sent after the body was dated rewrites the subject before the job runs.
    let stored = subject(&db, align, "c1");
    assert!(matches!(
        write(
            &db,
            align,
            "c1",
            stored,
            &reading(KycStatus::Rejected, None, at(12)),
            at(13)
        ),
        Written::Won { .. }
    ));
    let trusted = Observation {
        status: KycStatus::Approved,
        provider_status: Some("approved".into()),
        sub_status: None,
        aml: None,
        status_at: Some(body_at),
        window: crate::observation::Window::provider_dated(body_at, at(11)),
        source: Source::Webhook,
        no_record: false,
    };
    let protocol = Align::new(
        crate::secret::Secret::new("k").unwrap(),
        "https://provider.test".into(),
    );
    let schedule = ScheduleConfig::default();
    let job = ReconcileJob {
        provider: align,
        subject_ref: r("c1"),
        ref_kind: RefKind::User,
        trusted: Some(trusted),
        aml: false,
        subject: Some(carried),
    };
    let mut run_ = job_run(job, &protocol, &schedule);
    let mut input = Input::Begin;
    let mut reads = 0;
    let asked = loop {
        input = match run_.resume(input, at(14)) {
            Step::Reserve(_) => Input::Granted,
            Step::Read(statement) => {
                reads += 1;
                Input::Rows(vec![run(&db, &statement)])
            }
            Step::Write(statements) => Input::Rows(batch(&db, &statements)),
            Step::Fetch(_) => break true,
            _ => break false,
        };
    };
    assert_eq!(reads, 1, "one load: after the lost compare-and-set");
    assert!(
        asked,
        "the body is older than the record: the provider is asked"
    );
    assert_eq!(subject(&db, align, "c1").status, KycStatus::Rejected);
}

/// A carried row the job cannot use (queued by another version, or naming another subject)
/// is not retried to the dead-letter queue nor applied to the wrong subject: the job loads.
#[test]
fn a_carried_row_that_does_not_read_or_names_another_subject_is_loaded_instead() {
    use crate::jobs::ReconcileJob;
    use crate::providers::align::Align;
    use crate::reconcile::run::{Input, Step};
    let db = database();
    let align = Provider::named("align");
    batch(&db, &register(align, &r("c1"), RefKind::User, None, at(0)));
    batch(&db, &register(align, &r("c2"), RefKind::User, None, at(0)));
    let other = run(&db, &load(align, &r("c2")))[0].clone();
    let mut unreadable = crate::db::Row::new();
    unreadable.insert("provider".into(), "align".into());
    unreadable.insert("ref".into(), "c1".into());
    unreadable.insert("status".into(), "a status from the future".into());
    let protocol = Align::new(
        crate::secret::Secret::new("k").unwrap(),
        "https://provider.test".into(),
    );
    let schedule = ScheduleConfig::default();
    for carried in [unreadable, other] {
        let job = ReconcileJob {
            provider: align,
            subject_ref: r("c1"),
            ref_kind: RefKind::User,
            trusted: None,
            aml: false,
            subject: Some(carried),
        };
        let mut started = job_run(job, &protocol, &schedule);
        let mut input = Input::Begin;
        let mut loads = 0;
        let fetched = loop {
            input = match started.resume(input, at(1)) {
                Step::Read(statement) => {
                    loads += 1;
                    Input::Rows(vec![run(&db, &statement)])
                }
                Step::Fetch(request) => break request.url,
                other => panic!("{other:?}"),
            };
        };
        assert_eq!(loads, 1);
        assert!(fetched.contains("c1"), "{fetched}");
    }
}

/// A reconcile job's run as the consumer starts it (notifications on, an hour's KV TTL).
fn job_run<'p>(
    job: crate::jobs::ReconcileJob,
    protocol: &'p dyn crate::providers::ProviderProtocol,
    schedule: &'p ScheduleConfig,
) -> crate::reconcile::run::Run<'p> {
    crate::reconcile::run::Run::new(
        job,
        protocol,
        crate::reconcile::run::Settings {
            schedule,
            notify: true,
            kv: crate::projection::Timing::new(chrono::TimeDelta::hours(1)),
        },
    )
}

/// A write that comes within the window of the previous version's write may have overtaken
/// that version's put, which read nothing after it (it was quick): the `project` job queued
/// after the write is what looks at KV once that put has landed. If the queue refuses it, the
/// check is retried (and its retry puts D1's row if KV is behind), not acknowledged.
#[test]
fn a_write_that_may_have_overtaken_a_put_is_retried_when_its_project_job_is_not_queued() {
    use crate::jobs::{Job, ReconcileJob};
    use crate::projection::ProjectionStep;
    use crate::providers::align::Align;
    use crate::reconcile::run::{Input, Step};
    let db = database();
    let align = Provider::named("align");
    let protocol = Align::new(
        crate::secret::Secret::new("k").unwrap(),
        "https://provider.test".into(),
    );
    let schedule = ScheduleConfig::default();
    for (id, refusal) in [
        ("c1", Input::Failed("queue down".into())),
        ("c2", Input::Refused),
    ] {
        batch(&db, &register(align, &r(id), RefKind::User, None, at(0)));
        // The previous version, written 2 s before the job's write.
        write(
            &db,
            align,
            id,
            subject(&db, align, id),
            &reading(KycStatus::Pending, None, at(9)),
            at(10),
        );
        let job = ReconcileJob {
            provider: align,
            subject_ref: r(id),
            ref_kind: RefKind::User,
            trusted: None,
            aml: false,
            subject: None,
        };
        let mut run_ = job_run(job, &protocol, &schedule);
        let mut input = Input::Begin;
        let mut settle = None;
        let report = loop {
            input = match run_.resume(input, at(12)) {
                Step::Reserve(_) => Input::Granted,
                Step::Read(statement) => Input::Rows(vec![run(&db, &statement)]),
                Step::Write(statements) => Input::Rows(batch(&db, &statements)),
                Step::Fetch(_) => Input::Answered(
                    serde_json::json!({"customer_id": id, "kycs": {"status": "rejected"}})
                        .to_string()
                        .into_bytes(),
                ),
                Step::Kv(ProjectionStep::Put { .. }) => Input::Done,
                Step::Enqueue {
                    jobs,
                    delay_seconds,
                } if matches!(jobs.as_slice(), [Job::Project { .. }]) => {
                    settle = Some(delay_seconds);
                    refusal.clone()
                }
                Step::Enqueue { .. } => Input::Done,
                Step::Finished(report) => break report,
                other => panic!("unexpected step {other:?}"),
            };
        };
        assert_eq!(subject(&db, align, id).status, KycStatus::Rejected);
        assert_eq!(report.kv, Some("written"), "a quick put: {report:?}");
        assert_eq!(settle, Some(3), "a project job once every put has landed");
        assert!(
            report.retry.is_some(),
            "{refusal:?}: the check is retried: {report:?}"
        );
    }
}
