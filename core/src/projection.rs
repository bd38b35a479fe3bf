//! The KV projection of subjects, for fast reads at the edge: what a reader sees, written
//! only with a row D1 returned, and only when that changed. KV is never read to decide
//! anything.
//!
//! KV has no compare-and-set, and it accepts one write a second per key: two projections can
//! land out of order, and a put or a delete can fail. So after each put the projection reads
//! the subject's version in D1, and deletes the key if a newer one was written meanwhile
//! (readers then fall back to D1, and the newer writer's own put restores it). When any KV
//! call fails, the caller queues a `project` job ([`ProjectRun`]) that puts D1's row again a
//! moment later: KV is repaired within seconds, not at the entry's expiry. And a check that
//! writes nothing for KV, of a subject that changed recently, first reads KV and puts D1's row
//! if KV is behind: that repairs a projection whose invocation died between the D1 write and
//! the put (the queue runs the job again), or whose repair job could not be queued.

use crate::db::subjects::{self, SubjectRow};
use crate::db::{row, Rows, Statement};
use crate::reconcile::run::{Input, Report, RetryReason, Step};
use crate::statement;
use crate::subject::{Provider, SubjectRef};
use crate::time::{TimeDelta, Timestamp};
use serde::Deserialize;

/// Calls one projection makes at most: the put, the version read, a delete.
pub const CALLS: u32 = 3;

/// How long a repair waits: KV accepts one write a second per key, so a put that failed
/// because another had just landed succeeds after this.
pub const REPAIR_DELAY_SECONDS: u32 = 2;

/// KV's shortest expiration.
pub const MIN_TTL_SECONDS: i64 = 60;

/// How long after a change a check that writes nothing still makes sure KV has it (one KV
/// read): the time within which a job whose invocation died is run again, or the next
/// checks after a change come.
pub const RECENT_CHANGE: TimeDelta = TimeDelta::minutes(15);

/// The KV key of a subject.
pub fn key(provider: Provider, subject_ref: &SubjectRef) -> String {
    format!("subject/{provider}/{subject_ref}")
}

/// A KV call of a projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectionStep {
    /// Read what KV holds (answer `Input::Value`).
    Get {
        key: String,
    },
    Put {
        key: String,
        value: String,
        ttl_seconds: u64,
    },
    /// Read the version D1 holds now (a D1 statement).
    Verify(Statement),
    Delete {
        key: String,
    },
    Over(Outcome),
}

/// What became of a projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Written,
    /// KV already held this version (or a newer one): nothing written.
    Current,
    /// A newer version was written meanwhile: the key was removed.
    Superseded,
    /// A KV call (or the version read) failed: KV may hold an older state, or nothing.
    Failed(String),
}

enum State {
    Start,
    /// Only put if KV is behind.
    StartIfBehind,
    Reading,
    Putting,
    Verifying,
    Deleting(Outcome),
    Over,
}

/// Projecting one row: put, check, perhaps delete.
pub struct Projection {
    row: SubjectRow,
    state: State,
}

impl Projection {
    pub fn new(row: SubjectRow) -> Self {
        Self {
            row,
            state: State::Start,
        }
    }

    /// Put `row` only if KV holds an older version of it (or cannot tell).
    pub fn if_behind(row: SubjectRow) -> Self {
        Self {
            row,
            state: State::StartIfBehind,
        }
    }

    pub fn resume(&mut self, input: Input, ttl: TimeDelta) -> ProjectionStep {
        let key = key(self.row.provider, &self.row.subject_ref);
        let state = std::mem::replace(&mut self.state, State::Over);
        match (state, input) {
            (State::StartIfBehind, _) => {
                self.state = State::Reading;
                ProjectionStep::Get { key }
            }
            (State::Reading, Input::Value(held)) => {
                #[derive(Deserialize)]
                struct Held {
                    version: i64,
                }
                let held = held.and_then(|text| serde_json::from_str::<Held>(&text).ok());
                // Nothing held is not behind: readers fall back to D1.
                match held {
                    None => ProjectionStep::Over(Outcome::Current),
                    Some(held) if held.version >= self.row.version => {
                        ProjectionStep::Over(Outcome::Current)
                    }
                    Some(_) => {
                        self.state = State::Start;
                        self.resume(Input::Begin, ttl)
                    }
                }
            }
            (State::Reading, input) => {
                ProjectionStep::Over(Outcome::Failed(failure(input, "read")))
            }
            (State::Start, _) => {
                // Plain data with derived impls: serializing cannot fail.
                let value = serde_json::to_string(&self.row.status_view()).unwrap_or_default();
                self.state = State::Putting;
                ProjectionStep::Put {
                    key,
                    value,
                    ttl_seconds: u64::try_from(ttl.num_seconds().max(MIN_TTL_SECONDS))
                        .unwrap_or(u64::MAX),
                }
            }
            (State::Putting, Input::Done) => {
                self.state = State::Verifying;
                ProjectionStep::Verify(statement!(
                    "SELECT version FROM subjects WHERE provider = ?1 AND ref = ?2",
                    self.row.provider.as_str(),
                    self.row.subject_ref.as_str()
                ))
            }
            (State::Putting, input) => {
                // Whatever KV holds now is older than D1: remove it rather than serve it.
                self.state = State::Deleting(Outcome::Failed(failure(input, "put")));
                ProjectionStep::Delete { key }
            }
            (State::Verifying, Input::Rows(rows)) => {
                #[derive(Deserialize)]
                struct Version {
                    version: i64,
                }
                let current = rows
                    .first()
                    .and_then(|rows: &Rows| rows.first())
                    .and_then(|found| row::<Version>(found).ok());
                if current.is_some_and(|c| c.version > self.row.version) {
                    self.state = State::Deleting(Outcome::Superseded);
                    return ProjectionStep::Delete { key };
                }
                ProjectionStep::Over(Outcome::Written)
            }
            (State::Verifying, input) => {
                ProjectionStep::Over(Outcome::Failed(failure(input, "version read")))
            }
            (State::Deleting(outcome), Input::Done) => ProjectionStep::Over(outcome),
            (State::Deleting(outcome), input) => {
                let error = failure(input, "delete");
                ProjectionStep::Over(Outcome::Failed(match outcome {
                    Outcome::Failed(first) => format!("{first}; {error}"),
                    _ => error,
                }))
            }
            (State::Over, _) => ProjectionStep::Over(Outcome::Failed("already over".into())),
        }
    }
}

fn failure(input: Input, call: &str) -> String {
    match input {
        Input::Failed(error) => format!("KV {call} failed: {error}"),
        Input::Refused => format!("KV {call} not made: the invocation's calls are spent"),
        other => format!("KV {call}: unexpected answer {other:?}"),
    }
}

/// A `project` job: put D1's row of one subject into KV again (after a failed projection).
pub struct ProjectRun {
    provider: Provider,
    subject_ref: SubjectRef,
    ttl: TimeDelta,
    projection: Option<Projection>,
    report: Report,
    started: bool,
}

impl ProjectRun {
    pub fn new(provider: Provider, subject_ref: SubjectRef, ttl: TimeDelta) -> Self {
        Self {
            provider,
            subject_ref,
            ttl,
            projection: None,
            report: Report::default(),
            started: false,
        }
    }

    pub fn resume(&mut self, input: Input, _now: Timestamp) -> Step {
        if !self.started {
            self.started = true;
            return Step::Read(subjects::load(self.provider, &self.subject_ref));
        }
        let Some(projection) = &mut self.projection else {
            let loaded = match input {
                Input::Rows(rows) => rows
                    .first()
                    .and_then(|rows| rows.first())
                    .map(row::<SubjectRow>)
                    .transpose(),
                Input::Failed(error) => {
                    self.report.retry = Some(RetryReason::Error(error));
                    return Step::Finished(Box::new(std::mem::take(&mut self.report)));
                }
                other => {
                    self.report.retry = Some(RetryReason::Error(format!("unexpected {other:?}")));
                    return Step::Finished(Box::new(std::mem::take(&mut self.report)));
                }
            };
            return match loaded {
                Ok(Some(found)) => {
                    self.report.row = Some(Box::new(found.clone()));
                    let mut projection = Projection::if_behind(found);
                    let step = projection.resume(Input::Begin, self.ttl);
                    self.projection = Some(projection);
                    self.kv(step)
                }
                Ok(None) => {
                    self.report.outcome = Some("not tracked");
                    Step::Finished(Box::new(std::mem::take(&mut self.report)))
                }
                Err(error) => {
                    self.report.retry =
                        Some(RetryReason::Error(format!("unreadable subject: {error}")));
                    Step::Finished(Box::new(std::mem::take(&mut self.report)))
                }
            };
        };
        let step = projection.resume(input, self.ttl);
        self.kv(step)
    }

    fn kv(&mut self, step: ProjectionStep) -> Step {
        match step {
            ProjectionStep::Over(Outcome::Written) => {
                self.report.outcome = Some("projected");
                self.report.kv = Some("written");
            }
            ProjectionStep::Over(Outcome::Current) => {
                self.report.outcome = Some("projected");
                self.report.kv = Some("current");
            }
            ProjectionStep::Over(Outcome::Superseded) => {
                self.report.outcome = Some("projected");
                self.report.kv = Some("superseded");
            }
            ProjectionStep::Over(Outcome::Failed(error)) => {
                // The queue retries the job (with its delay) until KV accepts it.
                self.report.kv_error = Some(error.clone());
                self.report.retry = Some(RetryReason::Error(error));
            }
            step => return Step::Kv(step),
        }
        Step::Finished(Box::new(std::mem::take(&mut self.report)))
    }
}
