//! Reconcile plans on SQLite with the real migrations: the scenarios of issue 7 as explicit
//! schedules, then every interleaving of small worlds and seeded random schedules of larger
//! ones, each checked against the model's oracles (see `world.rs`).

mod races;
mod world;

use crate::db::sqlite;
use crate::status::KycStatus::{self, *};
use rusqlite::Connection;
use world::{Setup, World};

/// Runs `schedule` (actor indexes in order; actors spawned by the provider get the next
/// indexes) and checks the final invariants. Returns the world for further asserts.
fn replay(setup: &Setup, schedule: &[usize]) -> (Connection, World) {
    let db = sqlite::database();
    let mut world = World::new(&db, setup);
    for &actor in schedule {
        assert!(
            world.runnable().contains(&actor),
            "actor {actor} cannot step now\n{}",
            world.steps.join("\n")
        );
        world.step(&db, actor);
    }
    assert!(world.runnable().is_empty(), "schedule left work undone");
    world.check_final(&db);
    (db, world)
}

fn subject(db: &Connection) -> crate::db::subjects::SubjectRow {
    let rows = sqlite::run(
        db,
        &crate::db::subjects::load(
            crate::subject::Provider::named("align"),
            &crate::subject::SubjectRef::parse("subject-1").unwrap(),
        ),
    );
    crate::db::row(&rows[0]).unwrap()
}

#[test]
fn scenario_1_a_slow_stale_answer_never_outranks_a_newer_one() {
    // Job 0 sends its poll (provider says rejected), the provider flips to approved, job 1
    // polls and writes approved; job 0's slow answer arrives last and must lose.
    let setup = Setup {
        polls: 2,
        changes: vec![(Approved, false)],
        initial: Some(Rejected),
        ..Setup::default()
    };
    // actors: 0, 1 polls; 2 provider.
    let (db, world) = replay(&setup, &[0, 0, 2, 1, 1, 1, 1, 1, 0, 0, 0]);
    let stored = subject(&db);
    assert_eq!(stored.status, Approved, "{}", world.steps.join("\n"));
    assert!(!world
        .steps
        .iter()
        .any(|s| s.contains("(drift)") && s.contains("rejected")));
}

#[test]
fn scenario_2_a_stale_apply_never_lands_after_a_newer_confirm() {
    // Job 2 records pending. Jobs 0 and 1 both read that row. The provider flips to approved
    // (job 0 reads it) and back to pending (job 1 reads it, later, and confirms: observed_at
    // moves, the version does not). Job 0's older approved must not land: its guard loses,
    // it re-reads and finds its reading stale.
    let setup = Setup {
        polls: 3,
        changes: vec![(Approved, false), (Pending, false)],
        initial: Some(Pending),
        ..Setup::default()
    };
    // actors: 0, 1, 2 polls; 3 provider.
    let (db, world) = replay(&setup, &[2, 2, 2, 2, 2, 0, 1, 3, 0, 3, 1, 1, 0, 0, 0]);
    let steps = world.steps.join("\n");
    assert_eq!(subject(&db).status, Pending, "{steps}");
    assert!(steps.contains("0: guard lost"), "{steps}");
    assert!(steps.contains("0: stale, nothing written"), "{steps}");
}

#[test]
fn scenario_3_kv_never_keeps_an_older_version() {
    // Two changes written in order; their KV puts land in the opposite order. The older put
    // is found outdated by its verification and removed: readers fall back to D1.
    let setup = Setup {
        polls: 2,
        changes: vec![(Approved, true)],
        initial: Some(Pending),
        ..Setup::default()
    };
    // 0 learns pending (v2) but its put waits; provider flips; 1 learns approved (v3) and
    // puts; then 0 puts v2 and verifies.
    let (_, world) = replay(&setup, &[0, 0, 0, 2, 3, 1, 1, 1, 1, 1, 0, 0]);
    let steps = world.steps.join("\n");
    assert!(steps.contains("kv v2 outdated, deleted"), "{steps}");
}

#[test]
fn scenario_4_a_webhook_recorded_while_the_poll_is_in_flight_is_not_drift() {
    let setup = Setup {
        polls: 2,
        changes: vec![(Approved, true)],
        initial: Some(Pending),
        ..Setup::default()
    };
    // 0 learns pending. Provider flips; 1 loads and polls approved; the webhook arrives
    // while 1 is in flight; 1 writes: announced, not drift.
    let (_, world) = replay(&setup, &[0, 0, 0, 0, 0, 2, 1, 1, 3, 1, 1, 1]);
    let steps = world.steps.join("\n");
    assert!(steps.contains("1: wrote"), "{steps}");
    assert!(!steps.contains("(drift)"), "{steps}");
    // Without the webhook, the same change is drift.
    let dropped = Setup {
        changes: vec![(Approved, false)],
        ..setup
    };
    let (_, world) = replay(&dropped, &[0, 0, 0, 0, 0, 2, 1, 1, 1, 1, 1]);
    assert!(world.steps.iter().any(|s| s.contains("(drift)")));
}

#[test]
fn scenario_5_a_repeated_body_after_a_check_asks_for_another() {
    // Red Flag → Cleared → Red Flag: the third body repeats the first byte for byte.
    let setup = Setup {
        polls: 2,
        changes: vec![(Rejected, true), (Approved, true), (Rejected, true)],
        initial: Some(Pending),
        ..Setup::default()
    };
    // actors: 0,1 polls; 2 provider; webhooks spawn as 3, 4, 5.
    // rejected + webhook 3; poll 0 checks; approved + webhook 4; poll 1 checks; rejected
    // again + webhook 5 (identical to 3's body): must make the subject due.
    let (_, world) = replay(&setup, &[2, 3, 0, 0, 0, 0, 0, 2, 4, 1, 1, 1, 1, 1, 2, 5]);
    let steps = world.steps.join("\n");
    assert!(steps.ends_with("5: webhook rejected (made due)"), "{steps}");
}

#[test]
fn scenario_5_a_retry_storm_before_any_check_writes_once() {
    let setup = Setup {
        polls: 1,
        changes: vec![(Rejected, true), (Approved, false), (Rejected, true)],
        initial: Some(Pending),
        ..Setup::default()
    };
    // The same body twice with no check between: the second costs no subject write.
    let (_, world) = replay(&setup, &[1, 2, 1, 1, 3, 0, 0, 0, 0, 0]);
    let steps = world.steps.join("\n");
    assert!(steps.contains("3: webhook rejected\n"), "{steps}");
}

#[test]
fn scenario_6_a_request_during_a_check_keeps_the_subject_due() {
    let setup = Setup {
        polls: 1,
        refreshes: 1,
        initial: Some(Pending),
        ..Setup::default()
    };
    // 0 sends its poll; a refresh arrives; 0 writes: the subject must stay due.
    let (db, world) = replay(&setup, &[0, 0, 1, 0, 0, 0]);
    let stored = subject(&db);
    assert!(
        stored.next_check_at <= world::at(3),
        "next check {} after the refresh\n{}",
        stored.next_check_at,
        world.steps.join("\n")
    );
}

/// Every interleaving of the actors' steps, depth first, rolling the database back to each
/// branch point (savepoints), so every prefix is executed once.
fn explore_all(setup: &Setup) -> u64 {
    let db = sqlite::database();
    db.execute_batch("BEGIN").unwrap();
    let world = World::new(&db, setup);
    let mut schedules = 0;
    fn explore(db: &Connection, world: &World, schedules: &mut u64) {
        let runnable = world.runnable();
        if runnable.is_empty() {
            world.check_final(db);
            *schedules += 1;
            return;
        }
        for actor in runnable {
            db.execute_batch("SAVEPOINT branch").unwrap();
            let mut next = world.clone();
            next.step(db, actor);
            explore(db, &next, schedules);
            db.execute_batch("ROLLBACK TO branch; RELEASE branch")
                .unwrap();
        }
    }
    explore(&db, &world, &mut schedules);
    schedules
}

#[test]
fn every_interleaving_of_two_polls_a_flip_and_its_webhook() {
    let setup = Setup {
        polls: 2,
        changes: vec![(Approved, true)],
        initial: Some(Pending),
        ..Setup::default()
    };
    let schedules = explore_all(&setup);
    eprintln!("explorer: two polls, a flip and its webhook: {schedules} schedules");
    assert!(schedules > 10_000, "{schedules}");
}

#[test]
fn every_interleaving_of_a_poll_a_failing_poll_a_flip_a_dropped_webhook_and_a_refresh() {
    let setup = Setup {
        polls: 1,
        failing_polls: 1,
        changes: vec![(Approved, false)],
        refreshes: 1,
        initial: Some(Pending),
        ..Setup::default()
    };
    let schedules = explore_all(&setup);
    eprintln!("explorer: poll, failing poll, dropped flip, refresh: {schedules} schedules");
    assert!(schedules > 1_000, "{schedules}");
}

#[test]
fn every_interleaving_of_a_poll_and_the_trusted_body_of_a_flip() {
    let setup = Setup {
        polls: 1,
        changes: vec![(Approved, true)],
        trusted: true,
        initial: Some(Pending),
        ..Setup::default()
    };
    let schedules = explore_all(&setup);
    eprintln!("explorer: poll and the trusted body of a flip: {schedules} schedules");
    assert!(schedules > 1_000, "{schedules}");
}

/// splitmix64: seeded, so a failing schedule can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[test]
fn ten_thousand_seeded_schedules_of_three_jobs_webhooks_refreshes_and_bodies() {
    let seed = std::env::var("EXPLORER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_129_u64);
    let runs: u64 = std::env::var("EXPLORER_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let db = sqlite::database();
    let statuses = [Pending, Approved, Rejected, ResubmissionRequired, Approved];
    let mut rng = Rng(seed);
    for run in 0..runs {
        let changes: Vec<(KycStatus, bool)> = (0..1 + rng.next() % 3)
            .map(|_| {
                (
                    statuses[(rng.next() % statuses.len() as u64) as usize],
                    !rng.next().is_multiple_of(3),
                )
            })
            .collect();
        let setup = Setup {
            polls: 2 + (rng.next() % 2) as usize,
            failing_polls: (rng.next() % 2) as usize,
            changes,
            trusted: rng.next().is_multiple_of(2),
            refreshes: (rng.next() % 2) as usize,
            initial: Some(statuses[(rng.next() % 3) as usize]),
        };
        db.execute_batch("BEGIN").unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut world = World::new(&db, &setup);
            loop {
                let runnable = world.runnable();
                if runnable.is_empty() {
                    break;
                }
                let actor = runnable[(rng.next() % runnable.len() as u64) as usize];
                world.step(&db, actor);
            }
            world.check_final(&db);
        }));
        if outcome.is_err() {
            panic!("schedule {run} of seed {seed} failed: {setup:?}");
        }
        db.execute_batch("ROLLBACK").unwrap();
    }
    eprintln!("explorer: {runs} random schedules from seed {seed}");
}

mod outbox {
    //! The outbox row is part of the plan for every kind of change a reader is told, and only
    //! then.
    use crate::db::sqlite;
    use crate::db::subjects::{register, SubjectRow};
    use crate::observation::{Observation, Source};
    use crate::outbound::{CheckFailure, OutboundError};
    use crate::reconcile::{plan, Context, Outcome, Reading};
    use crate::schedule::ScheduleConfig;
    use crate::status::{Aml, KycStatus};
    use crate::subject::{Provider, RefKind, SubjectRef};
    use crate::time::{from_millis, Timestamp};

    fn at(s: i64) -> Timestamp {
        from_millis(1_800_000_000_000 + s * 1000).unwrap()
    }

    fn stored(status: KycStatus, aml: Option<&str>) -> SubjectRow {
        let db = sqlite::database();
        let r = SubjectRef::parse("u1").unwrap();
        let results = sqlite::batch(
            &db,
            &register(Provider::named("argos"), &r, RefKind::User, None, at(0)),
        );
        let mut row: SubjectRow = crate::db::row(&results[3][0]).unwrap();
        row.status = status;
        row.provider_status = Some(status.as_str().into());
        row.aml_status = aml.map(str::to_owned);
        row.observed_at = at(1);
        row
    }

    fn read(status: KycStatus, aml: Option<&str>, sub_status: Option<&str>) -> Outcome {
        Outcome::Read(Reading {
            observation: Observation {
                status,
                provider_status: Some(status.as_str().into()),
                sub_status: sub_status.map(str::to_owned),
                aml: aml.map(|a| crate::observation::AmlReading {
                    aml: Aml {
                        status: a.into(),
                        risk_level: None,
                    },
                    window: crate::observation::Window::at(at(5)),
                }),
                status_at: None,
                window: crate::observation::Window::at(at(5)),
                source: Source::Poll,
                no_record: false,
            },
            polled_at: Some(at(5)),
        })
    }

    /// The `type` of each notification a plan would record.
    fn told(stored: &SubjectRow, outcome: &Outcome) -> Vec<String> {
        let schedule = ScheduleConfig::default();
        let plan = plan(
            stored,
            outcome,
            Context {
                now: at(6),
                schedule: &schedule,
            },
        );
        plan.notification
            .iter()
            .map(|&i| {
                let payload = match &plan.statements[i].params[3] {
                    crate::db::SqlValue::Text(t) => t.clone(),
                    other => panic!("{other:?}"),
                };
                let payload: serde_json::Value = serde_json::from_str(&payload).unwrap();
                payload["type"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn every_kind_of_change_carries_its_notification_and_nothing_else_does() {
        use KycStatus::*;
        let pending = stored(Pending, None);
        assert_eq!(
            told(&pending, &read(Approved, None, None)),
            ["kyc.status.changed"]
        );
        assert_eq!(
            told(&pending, &read(Pending, Some("Red Flag"), None)),
            ["kyc.aml.updated"]
        );
        // One change, one version, one notification: the status change carries the AML.
        assert_eq!(
            told(&pending, &read(Approved, Some("Cleared"), None)),
            ["kyc.status.changed"]
        );
        // A change of the provider's words only: history, no notification.
        assert!(told(
            &pending,
            &read(Pending, None, Some("kyc_form_submission_accepted"))
        )
        .is_empty());
        // A confirmation, a stale reading and a failure tell nothing.
        assert!(told(&pending, &read(Pending, None, None)).is_empty());
        let newer = SubjectRow {
            observed_at: at(9),
            ..pending.clone()
        };
        assert!(told(&newer, &read(Approved, None, None)).is_empty());
        let failed = Outcome::Failed {
            failure: CheckFailure::Outbound(OutboundError::Timeout),
            sent_at: at(5),
        };
        assert!(told(&pending, &failed).is_empty());
    }

    #[test]
    fn a_notification_carries_ids_and_statuses_only() {
        let pending = SubjectRow {
            external_id: Some("user-42".into()),
            ..stored(KycStatus::Pending, None)
        };
        let schedule = ScheduleConfig::default();
        let plan = plan(
            &pending,
            &read(KycStatus::Approved, None, None),
            Context {
                now: at(6),
                schedule: &schedule,
            },
        );
        let crate::db::SqlValue::Text(payload) =
            &plan.statements[plan.notification.unwrap()].params[3]
        else {
            panic!("no payload");
        };
        let payload: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!(
            payload,
            serde_json::json!({
                "type": "kyc.status.changed",
                "timestamp": "2027-01-15T08:00:06.000Z",
                "data": {
                    "provider": "argos", "ref": "u1", "external_id": "user-42",
                    "status": "approved", "previous_status": "pending",
                    "provider_status": "approved", "sub_status": null,
                    "aml": null, "previous_aml": null,
                    "source": "poll", "status_at": "2027-01-15T08:00:05.000Z", "version": 2
                }
            })
        );
    }
}
