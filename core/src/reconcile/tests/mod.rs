//! The reconcile loop on SQLite with the real migrations, against a model of the network
//! and the platform (see `world.rs`): the schedules that broke it as named regression tests,
//! then every interleaving of small worlds and seeded random schedules of larger ones, each
//! checked against the provider's truth.

mod races;
mod world;

use crate::db::sqlite;
use crate::status::KycStatus::{self, *};
use chrono::TimeDelta;
use rusqlite::Connection;
use world::{Change, Kind, Setup, State, World};

fn state(status: KycStatus) -> State {
    State { status, aml: None }
}

fn change(status: KycStatus, delivered: bool) -> Change {
    Change {
        status,
        aml: None,
        delivered,
    }
}

/// Drains what is left and checks the final invariants.
fn finish(db: &Connection, world: &mut World) {
    world.drain(db);
    world.check_final(db);
}

#[test]
fn crossed_reads_of_two_checks_in_flight_are_rechecked_not_ordered_by_send_time() {
    // The black-box case: two refreshes of one Align customer in flight while the
    // provider flips from rejected to approved. Job 0 is sent first but read after the flip;
    // job 1 is sent later but read before it. Ordering by send time kept "rejected" (for a
    // week: a decided status); their windows overlap, so a fresh check decides.
    let setup = Setup {
        initial: state(Rejected),
        changes: vec![change(Approved, false)],
        jobs: 2,
        ..Setup::default()
    };
    let db = sqlite::database();
    let mut world = World::new(&db, &setup);
    // actors: 0 provider, 1 and 2 jobs.
    world.advance(&db, 1, "sends a request");
    world.advance(&db, 2, "sends a request");
    world.advance(&db, 2, "provider reads");
    world.advance(&db, 0, "provider ->");
    world.advance(&db, 1, "provider reads");
    world.advance(&db, 2, "finished");
    assert_eq!(world.stored(&db).status, Rejected);
    world.advance(&db, 1, "finished");
    let steps = world.steps.join("\n");
    assert!(steps.contains("1: finished Some(\"contested\")"), "{steps}");
    assert!(steps.contains("queues a re-check"), "{steps}");
    finish(&db, &mut world);
    assert_eq!(
        world.stored(&db).status,
        Approved,
        "{}",
        world.steps.join("\n")
    );
}

#[test]
fn a_slow_stale_answer_never_outranks_a_newer_one() {
    // Job 0 is read before the flip and answered last, after job 1 (sent after the flip)
    // wrote approved: the windows do not overlap, and the old answer is dropped.
    let setup = Setup {
        initial: state(Rejected),
        changes: vec![change(Approved, false)],
        jobs: 2,
        ..Setup::default()
    };
    let db = sqlite::database();
    let mut world = World::new(&db, &setup);
    world.advance(&db, 1, "provider reads");
    world.advance(&db, 0, "provider ->");
    world.advance(&db, 2, "finished");
    world.advance(&db, 1, "finished");
    finish(&db, &mut world);
    assert_eq!(world.stored(&db).status, Approved);
}

#[test]
fn a_provider_clock_behind_ours_cannot_let_an_older_poll_outrank_a_newer_body() {
    // The flip is dated 30 s behind our clock. A poll read before the flip but sent after the
    // body's date: ordered by stamps, the poll (later stamp) beat the body and the app was
    // told approved → pending → approved. The body's window covers the tolerated skew, so
    // the two are re-checked instead.
    let setup = Setup {
        initial: state(Pending),
        changes: vec![change(Approved, true)],
        jobs: 1,
        trusted: true,
        skew: -30,
        ..Setup::default()
    };
    let db = sqlite::database();
    let mut world = World::new(&db, &setup);
    // actors: 0 provider, 1 job; the webhook is 2 and its job 3.
    world.advance(&db, 1, "sends a request");
    world.advance(&db, 1, "provider reads");
    world.advance(&db, 0, "provider ->");
    world.advance(&db, 2, "webhook");
    world.advance(&db, 3, "finished");
    assert_eq!(world.stored(&db).status, Approved);
    world.advance(&db, 1, "finished");
    assert_eq!(
        world.stored(&db).status,
        Approved,
        "{}",
        world.steps.join("\n")
    );
    finish(&db, &mut world);
    assert_eq!(world.stored(&db).status, Approved);
}

#[test]
fn an_argos_check_stamps_aml_with_the_aml_listing_and_the_status_with_the_kyc_listing() {
    // A check of an approved ARGOS user reads its KYC page, then its AML page, seconds apart.
    // Each part is stamped by its own request: the status by the KYC page (read early), AML
    // by the AML page (read later), never both by one.
    let setup = Setup {
        kind: Kind::Argos,
        initial: State {
            status: Approved,
            aml: Some("Red Flag"),
        },
        changes: vec![Change {
            status: Rejected,
            aml: Some("Cleared"),
            delivered: true,
        }],
        jobs: 2,
        ..Setup::default()
    };
    let db = sqlite::database();
    let mut world = World::new(&db, &setup);
    // actors: 0 provider, 1 and 2 jobs. Job 1 learns approved (no AML asked yet).
    world.advance(&db, 1, "finished");
    // Job 2 asks both: KYC at one moment, AML a few steps later.
    world.advance(&db, 2, "answer arrives");
    world.advance(&db, 2, "answer arrives");
    world.advance(&db, 2, "finished");
    let stored = world.stored(&db);
    assert_eq!(stored.aml_status.as_deref(), Some("Red Flag"));
    let status_until = stored.observed_until.unwrap();
    let aml_from = stored.aml_observed_at.unwrap();
    assert!(
        aml_from >= status_until && aml_from > stored.observed_at,
        "AML's window starts at {aml_from}, when the status's (from {}) has ended ({status_until})",
        stored.observed_at
    );
    finish(&db, &mut world);
    let stored = world.stored(&db);
    assert_eq!(
        (stored.status, stored.aml_status.as_deref()),
        (Rejected, Some("Cleared")),
        "the AML webhook's check read the AML listing again"
    );
}

#[test]
fn a_refused_kv_put_is_repaired_within_seconds_not_at_the_ttl() {
    let setup = Setup {
        initial: state(Pending),
        changes: vec![change(Approved, true)],
        kv_refusals: 2,
        projected: true,
        ..Setup::default()
    };
    let db = sqlite::database();
    let mut world = World::new(&db, &setup);
    finish(&db, &mut world);
    let steps = world.steps.join("\n");
    assert!(steps.contains("KV put refused"), "{steps}");
    assert!(steps.contains("queues a KV repair"), "{steps}");
    assert_eq!(
        world.kv_version(),
        Some(world.stored(&db).version),
        "{steps}"
    );
}

#[test]
fn an_invocation_that_dies_between_its_d1_write_and_kv_is_repaired_by_its_redelivery() {
    let setup = Setup {
        initial: state(Pending),
        jobs: 1,
        death: true,
        projected: true,
        ..Setup::default()
    };
    let db = sqlite::database();
    let mut world = World::new(&db, &setup);
    finish(&db, &mut world);
    let steps = world.steps.join("\n");
    assert!(steps.contains("the invocation dies"), "{steps}");
    assert_eq!(world.stored(&db).status, Pending);
    assert_eq!(
        world.kv_version(),
        Some(world.stored(&db).version),
        "{steps}"
    );
}

/// Every interleaving of the actors' steps, depth first, rolling the database back to each
/// branch point (savepoints), so every prefix is executed once. Time passes by itself when
/// only delayed messages are left.
fn explore_all(setup: &Setup) -> u64 {
    let db = sqlite::database();
    db.execute_batch("BEGIN").unwrap();
    let world = World::new(&db, setup);
    let mut schedules = 0;
    fn explore(db: &Connection, world: &World, schedules: &mut u64) {
        let runnable = world.runnable();
        if runnable.is_empty() {
            let mut waited = world.clone();
            if waited.sleep() {
                return explore(db, &waited, schedules);
            }
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
fn every_interleaving_of_two_checks_and_a_flip_whose_webhook_is_lost() {
    let setup = Setup {
        initial: state(Rejected),
        changes: vec![change(Approved, false)],
        jobs: 2,
        ..Setup::default()
    };
    let schedules = explore_all(&setup);
    eprintln!("explorer: two checks, a flip, its webhook lost: {schedules} schedules");
    assert!(schedules > 10_000, "{schedules}");
}

/// Puts too quick to be read after: a put that lands after a newer version's is found only
/// by the newer writer's look at KV once the window has passed (`projection`).
#[test]
fn every_interleaving_of_a_check_a_trusted_flip_and_puts_never_read_after() {
    let setup = Setup {
        initial: state(Rejected),
        changes: vec![change(Approved, true)],
        trusted: true,
        jobs: 1,
        projected: true,
        quiet_put: TimeDelta::days(1),
        ..Setup::default()
    };
    let schedules = explore_all(&setup);
    eprintln!("explorer: a check, a trusted flip, puts never read after: {schedules} schedules");
    assert!(schedules > 200, "{schedules}");
}

#[test]
fn every_interleaving_of_a_check_and_the_trusted_body_of_a_flip_from_a_skewed_clock() {
    let setup = Setup {
        initial: state(Pending),
        changes: vec![change(Approved, true)],
        jobs: 1,
        trusted: true,
        skew: -20,
        ..Setup::default()
    };
    let schedules = explore_all(&setup);
    eprintln!("explorer: a check and a trusted body 20 s behind: {schedules} schedules");
    // 764 since the webhook's job starts from the row its batch wrote (one call fewer to
    // interleave).
    assert!(schedules > 700, "{schedules}");
}

#[test]
fn every_interleaving_of_an_argos_check_and_an_aml_flip() {
    let setup = Setup {
        kind: Kind::Argos,
        initial: State {
            status: Approved,
            aml: Some("Red Flag"),
        },
        changes: vec![Change {
            status: Approved,
            aml: Some("Cleared"),
            delivered: true,
        }],
        jobs: 1,
        ..Setup::default()
    };
    let schedules = explore_all(&setup);
    eprintln!("explorer: an ARGOS check (KYC then AML) and an AML flip: {schedules} schedules");
    assert!(schedules > 1_000, "{schedules}");
}

#[test]
fn every_interleaving_of_a_check_a_trusted_flip_and_a_refused_kv_write() {
    let setup = Setup {
        initial: state(Pending),
        changes: vec![change(Approved, true)],
        trusted: true,
        jobs: 1,
        kv_refusals: 1,
        projected: true,
        ..Setup::default()
    };
    let schedules = explore_all(&setup);
    eprintln!(
        "explorer: a check, a flip with its trusted body, a refused KV write: {schedules} schedules"
    );
    assert!(schedules > 1_000, "{schedules}");
}

#[test]
fn every_interleaving_of_an_invocation_dying_after_its_write_and_a_trusted_flip() {
    let setup = Setup {
        initial: state(Pending),
        changes: vec![change(Approved, true)],
        trusted: true,
        jobs: 1,
        death: true,
        projected: true,
        ..Setup::default()
    };
    let schedules = explore_all(&setup);
    eprintln!(
        "explorer: an invocation dying after its D1 write, a flip and its webhook: {schedules} schedules"
    );
    assert!(schedules > 100, "{schedules}");
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

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn ten_thousand_seeded_schedules_of_jobs_webhooks_bodies_crons_kv_refusals_and_deaths() {
    let seed = std::env::var("EXPLORER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_204_u64);
    let runs: u64 = std::env::var("EXPLORER_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let db = sqlite::database();
    let amls = [None, Some("Red Flag"), Some("Cleared")];
    let mut rng = Rng(seed);
    for run in 0..runs {
        let kind = if rng.below(2) == 0 {
            Kind::Align
        } else {
            Kind::Argos
        };
        // What each provider can say (ARGOS knows no resubmission; Align no incomplete).
        let statuses = match kind {
            Kind::Align => [Pending, Approved, Rejected, ResubmissionRequired, Approved],
            Kind::Argos => [Pending, Approved, Rejected, Incomplete, Approved],
        };
        let changes: Vec<Change> = (0..1 + rng.below(3))
            .map(|_| Change {
                status: statuses[rng.below(statuses.len() as u64) as usize],
                aml: match kind {
                    Kind::Argos => amls[rng.below(3) as usize],
                    Kind::Align => None,
                },
                delivered: rng.below(3) != 0,
            })
            .collect();
        let setup = Setup {
            kind,
            initial: State {
                status: statuses[rng.below(3) as usize],
                aml: None,
            },
            changes,
            jobs: 1 + rng.below(2) as usize,
            crons: rng.below(2) as usize,
            refreshes: rng.below(2) as usize,
            trusted: kind == Kind::Align && rng.below(2) == 0,
            skew: rng.below(81) as i64 - 40,
            kv_refusals: rng.below(3) as u32,
            death: rng.below(4) == 0,
            projected: rng.below(2) == 0,
            quiet_put: TimeDelta::seconds([1, 2, 3, 86_400][rng.below(4) as usize]),
        };
        db.execute_batch("BEGIN").unwrap();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut world = World::new(&db, &setup);
            loop {
                let runnable = world.runnable();
                if runnable.is_empty() {
                    if world.sleep() {
                        continue;
                    }
                    break;
                }
                let actor = runnable[rng.below(runnable.len() as u64) as usize];
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
        let mut row: SubjectRow = crate::db::row(&results[4][0]).unwrap();
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
                provider_health: None,
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

    /// The plan of a check sent at `at(5)` and answered at `at(6)` after the subject was
    /// loaded with `load_for_check` from `db` at `seen_at`, and whether it writes the
    /// provider's health.
    fn writes_health(db: &rusqlite::Connection, stored: &SubjectRow, seen_at: Timestamp) -> bool {
        let loaded = sqlite::run(
            db,
            &crate::db::subjects::load_for_check(stored.provider, &stored.subject_ref),
        );
        let provider_health = loaded[0]["provider_ok_since"]
            .as_i64()
            .and_then(from_millis)
            .map(|ok_since| crate::reconcile::HealthSeen { ok_since, seen_at });
        let schedule = ScheduleConfig::default();
        let plan = plan(
            stored,
            &read(KycStatus::Approved, None, None),
            Context {
                now: at(6),
                schedule: &schedule,
                provider_health,
            },
        );
        let writes = plan
            .statements
            .iter()
            .any(|s| s.sql.contains("INSERT INTO provider_health"));
        sqlite::batch(db, &plan.statements);
        writes
    }

    #[test]
    fn a_healthy_providers_success_is_written_once_a_minute_and_a_failure_is_always_reset() {
        let db = sqlite::database();
        let r = SubjectRef::parse("u1").unwrap();
        sqlite::batch(
            &db,
            &register(Provider::named("argos"), &r, RefKind::User, None, at(0)),
        );
        let row = |db: &rusqlite::Connection| -> SubjectRow {
            let rows = sqlite::run(db, &crate::db::subjects::load(Provider::named("argos"), &r));
            crate::db::row(&rows[0]).unwrap()
        };
        let health = |db: &rusqlite::Connection| {
            sqlite::run(
                db,
                &crate::statement!(
                    "SELECT consecutive_failures AS n, last_success_at AS at FROM provider_health"
                ),
            )
        };
        // Never recorded: the success is.
        assert!(writes_health(&db, &row(&db), at(4)));
        assert_eq!(
            health(&db)[0]["at"].as_i64(),
            Some(at(6).timestamp_millis())
        );
        // Recorded a moment ago and healthy: the next check writes nothing about it...
        assert!(!writes_health(&db, &row(&db), at(4)));
        // ...unless that look was taken over 2 s before its request was sent (a webhook's row
        // carried through a slow queue): a failure recorded meanwhile would stay unreset.
        assert!(writes_health(&db, &row(&db), at(2)));
        // A failure since: the next success resets it, whenever the last success was.
        sqlite::run(
            &db,
            &crate::statement!(
                "UPDATE provider_health SET consecutive_failures = 3, last_failure_at = ?1",
                at(4)
            ),
        );
        assert!(writes_health(&db, &row(&db), at(4)));
        assert_eq!(health(&db)[0]["n"].as_i64(), Some(0));
        // Healthy but last heard of over a minute ago: recorded again.
        sqlite::run(
            &db,
            &crate::statement!(
                "UPDATE provider_health SET last_success_at = ?1",
                at(6) - chrono::TimeDelta::seconds(61)
            ),
        );
        assert!(writes_health(&db, &row(&db), at(4)));
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
                provider_health: None,
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
