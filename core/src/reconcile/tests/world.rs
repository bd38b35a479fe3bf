//! A model of one subject under concurrent writers, running the real statements on SQLite:
//! reconcile jobs (load, ask the provider, write the plan, re-read and re-plan when the guard
//! lost, project to KV, verify the projection), the provider changing its truth and sending
//! webhooks, trusted webhook bodies, and refreshes. Each step is one actor's atomic action;
//! the explorer chooses their order. Oracles computed from the model, not from the database,
//! are checked after every step and at the end of every schedule.

use crate::db::events::record_webhook;
use crate::db::sqlite;
use crate::db::subjects::{register, request_check, SubjectRow};
use crate::db::tallies::Tally;
use crate::db::{row, Statement};
use crate::observation::{Observation, Source};
use crate::outbound::{CheckFailure, OutboundError};
use crate::providers::{WebhookEvent, WebhookSubject};
use crate::reconcile::{plan, Context, Effect, Outcome, Reading, Written};
use crate::schedule::ScheduleConfig;
use crate::status::KycStatus;
use crate::subject::{Provider, RefKind, SubjectRef};
use crate::time::{epoch, from_millis, Timestamp};
use crate::transition::Announcement;
use rusqlite::Connection;

fn provider() -> Provider {
    Provider::named("align")
}
const REF: &str = "subject-1";
/// A job that keeps losing its guard gives up after this many re-reads (and is retried by
/// the queue); no schedule of a handful of writers should get near it.
const MAX_CONFLICTS: u32 = 8;

pub fn at(tick: u32) -> Timestamp {
    from_millis(1_800_000_000_000 + i64::from(tick) * 1000).unwrap()
}

fn subject_ref() -> SubjectRef {
    SubjectRef::parse(REF).unwrap()
}

#[derive(Debug, Clone)]
pub enum CheckKind {
    /// Reads the provider's truth when its request is sent.
    Poll,
    /// The provider answers 503.
    FailingPoll,
    /// Applies an authenticated webhook body stamped with its provider time.
    Trusted(Observation),
}

#[derive(Debug, Clone)]
enum Phase {
    Start,
    Loaded(SubjectRow),
    Ready {
        stored: SubjectRow,
        outcome: Outcome,
    },
    Reload(Outcome),
    Project(SubjectRow),
    Verify(i64),
    Done,
}

#[derive(Debug, Clone)]
struct Check {
    kind: CheckKind,
    phase: Phase,
    conflicts: u32,
}

#[derive(Debug, Clone)]
enum Actor {
    Check(Box<Check>),
    /// Moves the provider's truth through `changes`, one per step; each change's webhook is
    /// delivered later by a `Webhook` actor unless dropped; with `trusted`, each change also
    /// starts a job applying its authenticated body.
    Provider {
        changes: Vec<(KycStatus, bool)>,
        next: usize,
        trusted: bool,
    },
    Webhook {
        announces: KycStatus,
        done: bool,
    },
    Refresh {
        done: bool,
    },
}

/// What a schedule is made of.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub polls: usize,
    pub failing_polls: usize,
    /// Truth changes: the status and whether its webhook is delivered.
    pub changes: Vec<(KycStatus, bool)>,
    /// Each change also sends an authenticated body that is applied directly.
    pub trusted: bool,
    pub refreshes: usize,
    /// The status the provider holds when the schedule starts.
    pub initial: Option<KycStatus>,
}

#[derive(Debug, Clone)]
pub struct World {
    tick: u32,
    truth: KycStatus,
    actors: Vec<Actor>,
    kv: Option<SubjectRow>,
    /// Every reading a job obtained: (stamp, status).
    readings: Vec<(Timestamp, KycStatus)>,
    /// Every delivered webhook: (arrival, announced status, body).
    deliveries: Vec<(Timestamp, KycStatus)>,
    /// Requests for a check that the database honoured: (time).
    requests: Vec<Timestamp>,
    /// The moment each winning write answered for (a poll's send time; a failure's send
    /// time; the epoch for a webhook body).
    answered: Vec<Timestamp>,
    /// The newest poll send time written by a winning success (the oracle's last_checked_at).
    last_checked: Option<Timestamp>,
    observed_at: Timestamp,
    drift_expected: u32,
    drift_written: u32,
    versions_written: Vec<i64>,
    /// Notifications the winning writes recorded.
    notified: usize,
    pub steps: Vec<String>,
}

fn word(status: KycStatus) -> &'static str {
    match status {
        KycStatus::ResubmissionRequired => "rejected",
        other => other.as_str(),
    }
}

impl World {
    pub fn new(db: &Connection, setup: &Setup) -> Self {
        let mut actors = vec![];
        for _ in 0..setup.polls {
            actors.push(Actor::Check(Box::new(Check {
                kind: CheckKind::Poll,
                phase: Phase::Start,
                conflicts: 0,
            })));
        }
        for _ in 0..setup.failing_polls {
            actors.push(Actor::Check(Box::new(Check {
                kind: CheckKind::FailingPoll,
                phase: Phase::Start,
                conflicts: 0,
            })));
        }
        if !setup.changes.is_empty() {
            actors.push(Actor::Provider {
                changes: setup.changes.clone(),
                next: 0,
                trusted: setup.trusted,
            });
        }
        for _ in 0..setup.refreshes {
            actors.push(Actor::Refresh { done: false });
        }
        sqlite::batch(
            db,
            &register(provider(), &subject_ref(), RefKind::User, None, at(0)),
        );
        World {
            tick: 0,
            truth: setup.initial.unwrap_or(KycStatus::Pending),
            actors,
            kv: None,
            readings: vec![],
            deliveries: vec![],
            requests: vec![at(0)],
            answered: vec![],
            last_checked: None,
            observed_at: epoch(),
            drift_expected: 0,
            drift_written: 0,
            versions_written: vec![],
            notified: 0,
            steps: vec![],
        }
    }

    /// Actors that can take a step now.
    pub fn runnable(&self) -> Vec<usize> {
        self.actors
            .iter()
            .enumerate()
            .filter(|(_, actor)| match actor {
                Actor::Check(check) => !matches!(check.phase, Phase::Done),
                Actor::Provider { changes, next, .. } => *next < changes.len(),
                Actor::Webhook { done, .. } | Actor::Refresh { done } => !done,
            })
            .map(|(i, _)| i)
            .collect()
    }

    fn load(db: &Connection) -> SubjectRow {
        let rows = sqlite::run(db, &crate::db::subjects::load(provider(), &subject_ref()));
        row(&rows[0]).unwrap()
    }

    fn observation(
        &self,
        status: KycStatus,
        observed_at: Timestamp,
        source: Source,
    ) -> Observation {
        Observation {
            status,
            provider_status: Some(word(status).to_owned()),
            sub_status: (status == KycStatus::ResubmissionRequired)
                .then(|| "kyc_form_resubmission_required".to_owned()),
            aml: None,
            status_at: None,
            window: crate::observation::Window::at(observed_at),
            source,
            no_record: false,
        }
    }

    /// One step of actor `index` at the next tick.
    pub fn step(&mut self, db: &Connection, index: usize) {
        self.tick += 1;
        let now = at(self.tick);
        let mut actor = self.actors[index].clone();
        match &mut actor {
            Actor::Check(check) => self.step_check(db, check, index, now),
            Actor::Provider {
                changes,
                next,
                trusted,
            } => {
                let (status, delivered) = changes[*next];
                *next += 1;
                self.truth = status;
                self.steps.push(format!("{index}: provider -> {status}"));
                if delivered {
                    self.actors.push(Actor::Webhook {
                        announces: status,
                        done: false,
                    });
                }
                if *trusted {
                    let observation = self.observation(status, now, Source::Webhook);
                    self.actors.push(Actor::Check(Box::new(Check {
                        kind: CheckKind::Trusted(observation),
                        phase: Phase::Start,
                        conflicts: 0,
                    })));
                }
            }
            Actor::Webhook { announces, done } => {
                *done = true;
                self.deliver(db, *announces, now, index);
            }
            Actor::Refresh { done } => {
                *done = true;
                let rows = sqlite::run(db, &request_check(provider(), &subject_ref(), now));
                assert_eq!(rows.len(), 1, "the subject is tracked");
                self.requests.push(now);
                self.steps.push(format!("{index}: refresh"));
            }
        }
        self.actors[index] = actor;
        let observed_at = Self::load(db).observed_at;
        assert!(
            observed_at >= self.observed_at,
            "observed_at went back from {} to {observed_at}\n{}",
            self.observed_at,
            self.steps.join("\n")
        );
        self.observed_at = observed_at;
    }

    fn deliver(&mut self, db: &Connection, announces: KycStatus, now: Timestamp, index: usize) {
        // Bodies carry only the status, so a repeated status repeats the body (ARGOS AML:
        // Red Flag → Cleared → Red Flag).
        let body = format!("{{\"status\":\"{announces}\"}}");
        let event = WebhookEvent {
            subject: Some(WebhookSubject {
                subject_ref: subject_ref(),
                ref_kind: RefKind::User,
            }),
            kind: "test".into(),
            provider_at: None,
            announces: Announcement::Status(announces),
            trusted: None,
            about_aml: false,
            event_id: None,
        };
        let receipt = format!("receipt-{}", self.tick);
        let record = record_webhook(
            provider(),
            &event,
            &crate::providers::dedup_key(body.as_bytes()),
            &receipt,
            now,
        );
        let (duplicate, _, made_due) = record.outcome(&sqlite::batch(db, &record.statements));
        // The oracle: a new body asks for a check; a repeat asks only if, since that body
        // last arrived, a successful check started or another event asked for a check (one
        // in flight may have been sent before the change the repeat announces).
        let previous_copy = self
            .deliveries
            .iter()
            .filter(|(_, a)| *a == announces)
            .map(|(t, _)| *t)
            .max();
        let expected = match previous_copy {
            None => true,
            Some(copy) => {
                self.last_checked.is_some_and(|checked| checked >= copy)
                    || self
                        .requests
                        .iter()
                        .max()
                        .is_some_and(|asked| *asked > copy)
            }
        };
        assert_eq!(
            made_due,
            expected,
            "webhook {announces} made due: {made_due}, expected {expected} (duplicate: {duplicate})\n{}",
            self.steps.join("\n")
        );
        if made_due {
            self.requests.push(now);
        }
        self.deliveries.push((now, announces));
        self.steps.push(format!(
            "{index}: webhook {announces}{}",
            if made_due { " (made due)" } else { "" }
        ));
    }

    fn step_check(&mut self, db: &Connection, check: &mut Check, index: usize, now: Timestamp) {
        let context = Context {
            now,
            schedule: &ScheduleConfig::default(),
        };
        let phase = std::mem::replace(&mut check.phase, Phase::Done);
        check.phase = match phase {
            Phase::Start => {
                self.steps.push(format!("{index}: load"));
                Phase::Loaded(Self::load(db))
            }
            Phase::Loaded(stored) => {
                let outcome = match &check.kind {
                    CheckKind::Poll => {
                        self.readings.push((now, self.truth));
                        self.steps
                            .push(format!("{index}: poll reads {}", self.truth));
                        Outcome::Read(Reading {
                            observation: self.observation(self.truth, now, Source::Poll),
                            polled_at: Some(now),
                        })
                    }
                    CheckKind::FailingPoll => {
                        self.steps.push(format!("{index}: poll fails"));
                        Outcome::Failed {
                            failure: CheckFailure::Outbound(OutboundError::Http {
                                status: 503,
                                retry_after: None,
                            }),
                            sent_at: now,
                        }
                    }
                    CheckKind::Trusted(observation) => {
                        self.readings
                            .push((observation.window.from, observation.status));
                        self.steps
                            .push(format!("{index}: body says {}", observation.status));
                        Outcome::Read(Reading {
                            observation: observation.clone(),
                            polled_at: None,
                        })
                    }
                };
                Phase::Ready { stored, outcome }
            }
            Phase::Reload(outcome) => {
                self.steps.push(format!("{index}: re-read"));
                Phase::Ready {
                    stored: Self::load(db),
                    outcome,
                }
            }
            Phase::Ready { stored, outcome } => {
                self.write(db, check, &stored, outcome, context, index)
            }
            Phase::Project(row) => {
                self.steps.push(format!("{index}: kv put v{}", row.version));
                let version = row.version;
                self.kv = Some(row);
                Phase::Verify(version)
            }
            Phase::Verify(version) => {
                let current = Self::load(db).version;
                if current > version {
                    self.kv = None;
                    self.steps
                        .push(format!("{index}: kv v{version} outdated, deleted"));
                } else {
                    self.steps.push(format!("{index}: kv v{version} verified"));
                }
                Phase::Done
            }
            Phase::Done => Phase::Done,
        };
    }

    fn write(
        &mut self,
        db: &Connection,
        check: &mut Check,
        stored: &SubjectRow,
        outcome: Outcome,
        context: Context<'_>,
        index: usize,
    ) -> Phase {
        let plan = plan(stored, &outcome, context);
        let results = sqlite::batch(db, &plan.statements);
        match plan.written(&results).unwrap() {
            Written::Nothing => {
                self.steps.push(format!("{index}: stale, nothing written"));
                Phase::Done
            }
            Written::Lost => {
                check.conflicts += 1;
                assert!(
                    check.conflicts <= MAX_CONFLICTS,
                    "a job lost its guard {MAX_CONFLICTS} times\n{}",
                    self.steps.join("\n")
                );
                self.steps.push(format!("{index}: guard lost"));
                Phase::Reload(outcome)
            }
            Written::Won {
                row,
                drift,
                notification,
            } => {
                let answered = match &outcome {
                    Outcome::Read(reading) => reading.polled_at.unwrap_or_else(epoch),
                    Outcome::Failed { sent_at, .. } => *sent_at,
                };
                self.answered.push(answered);
                if let Outcome::Read(Reading {
                    polled_at: Some(polled_at),
                    ..
                }) = &outcome
                {
                    self.last_checked =
                        Some(self.last_checked.map_or(*polled_at, |t| t.max(*polled_at)));
                }
                self.steps.push(format!(
                    "{index}: wrote {:?} -> {} v{}{}",
                    std::mem::discriminant(&plan.effect),
                    row.status,
                    row.version,
                    if drift { " (drift)" } else { "" }
                ));
                if let Effect::Changed(change) = &plan.effect {
                    assert!(row.version > stored.version);
                    self.versions_written.push(row.version);
                    // The outbox: one notification for a status change, none otherwise.
                    assert_eq!(notification.is_some(), change.status_changed);
                    self.notified += usize::from(notification.is_some());
                    // The drift oracle: a polled status change of a known subject that no
                    // delivered webhook since the previous check announced.
                    let since = stored.status_at.unwrap_or_else(epoch);
                    let announced = self
                        .deliveries
                        .iter()
                        .any(|(t, a)| *t >= since && *a == change.next.status);
                    let expected = change.may_be_drift(match &outcome {
                        Outcome::Read(r) => r.observation.source,
                        Outcome::Failed { .. } => unreachable!(),
                    }) && !announced;
                    assert_eq!(
                        drift,
                        expected,
                        "drift written {drift}, expected {expected}\n{}",
                        self.steps.join("\n")
                    );
                    self.drift_expected += u32::from(expected);
                    self.drift_written += u32::from(drift);
                }
                if plan.project {
                    Phase::Project(*row)
                } else {
                    Phase::Done
                }
            }
        }
    }

    /// The invariants every complete schedule must satisfy.
    pub fn check_final(&self, db: &Connection) {
        let stored = Self::load(db);
        let trace = || self.steps.join("\n");
        // The stored status is the newest provider state observed.
        if let Some((stamp, status)) = self.readings.iter().max_by_key(|(t, _)| *t) {
            assert_eq!(
                stored.status,
                *status,
                "not the newest reading\n{}",
                trace()
            );
            assert_eq!(stored.observed_at, *stamp, "{}", trace());
        } else {
            assert_eq!(stored.status, KycStatus::Unknown);
        }
        // A subject asked for a check is still due, or a check that began after the request
        // was written.
        for requested in &self.requests {
            let served = self.answered.iter().any(|t| t >= requested);
            assert!(
                stored.next_check_at <= *requested || served,
                "request at {requested} neither due (next {}) nor served\n{}",
                stored.next_check_at,
                trace()
            );
        }
        // KV holds the highest version written, or nothing (reads then go to D1).
        if let Some(kv) = &self.kv {
            let highest = self.versions_written.iter().max().copied();
            assert_eq!(Some(kv.version), highest, "{}", trace());
            assert_eq!(kv.version, stored.version, "{}", trace());
            assert_eq!(kv.status, stored.status, "{}", trace());
        }
        // Drift counted exactly when a change had no webhook since the previous check.
        assert_eq!(self.drift_written, self.drift_expected);
        let drift_rows = sqlite::run(
            db,
            &Statement::new(
                "SELECT COUNT(*) AS n FROM events WHERE type = 'change' AND drift > 0",
                vec![],
            ),
        );
        assert_eq!(
            drift_rows[0]["n"].as_i64(),
            Some(i64::from(self.drift_expected))
        );
        // Status counts moved with every change: one subject, counted once, where it is.
        let tallies = sqlite::run(
            db,
            &Statement::new(
                "SELECT name, value FROM tallies WHERE name LIKE 'status.%'",
                vec![],
            ),
        );
        for tally in &tallies {
            let name = tally["name"].as_str().unwrap();
            let expected = i64::from(name == Tally::Status(provider(), stored.status).name());
            assert_eq!(
                tally["value"].as_i64(),
                Some(expected),
                "{name}\n{}",
                trace()
            );
        }
        // A notification exists exactly for each status change written, in version order.
        let notifications = sqlite::run(
            db,
            &Statement::new("SELECT payload FROM notifications ORDER BY seq", vec![]),
        );
        assert_eq!(notifications.len(), self.notified, "{}", trace());
        let versions: Vec<i64> = notifications
            .iter()
            .map(|n| {
                let payload: serde_json::Value =
                    serde_json::from_str(n["payload"].as_str().unwrap()).unwrap();
                payload["data"]["version"].as_i64().unwrap()
            })
            .collect();
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "notifications out of version order: {versions:?}\n{}",
            trace()
        );
        assert!(versions.iter().all(|v| self.versions_written.contains(v)));
        // A change's history row exists exactly for each version written.
        let changes = sqlite::run(
            db,
            &Statement::new(
                "SELECT COUNT(*) AS n FROM events WHERE type = 'change'",
                vec![],
            ),
        );
        assert_eq!(
            changes[0]["n"].as_i64(),
            Some(self.versions_written.len() as i64)
        );
    }
}
