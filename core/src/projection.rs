//! The KV projection of subjects, for fast reads at the edge: what a reader sees, written
//! only with a row D1 returned, and only when that changed. KV is never read to decide
//! anything.
//!
//! KV has no compare-and-set, and it accepts one write a second per key: two projections can
//! land out of order, and a put or a delete can fail. A put that lands after a newer version's
//! is caught by one of two checks (docs/ordering.md, "KV"):
//! - a put that took longer than [`Timing::quiet_put`] from its row's write reads the
//!   subject's version in D1 afterwards, and deletes the key if a newer one was written
//!   meanwhile (readers then fall back to D1, and the newer writer's own put restores it);
//! - a write that makes a new version of a row written less than [`Timing::overtake_window`]
//!   ago (whose put may not have landed yet) queues a `project` job that runs once every such
//!   put has landed, and puts D1's row again (or, if the queue refuses the job, the check is
//!   retried).
//!
//! A put that lands after a newer writer's has to have been under way when that writer
//! wrote, so one of the two sees it: either it was slow (and reads the version itself), or
//! the newer write came within the window. The common case, a put soon after its write with
//! no other write near it, costs no D1 call after the put. When any KV
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

/// Calls one projection makes at most: the put, the version read, a delete, and the
/// `project` job queued after it (a repair, or the check after overtaking a recent write).
pub const CALLS: u32 = 4;

/// How long a repair waits: KV accepts one write a second per key, so a put that failed
/// because another had just landed succeeds after this.
pub const REPAIR_DELAY_SECONDS: u32 = 2;

/// A put that completes within this of its row's write reads no version afterwards. KV puts
/// take tens of milliseconds as a rule; a slower one pays the version read.
pub const QUIET_PUT: TimeDelta = TimeDelta::seconds(1);

/// How far the clocks of two invocations (each writing its own `updated_at`) may disagree,
/// both errors together. Cloudflare's machines keep time by NTP, to milliseconds; this is
/// generous so that the argument above does not rest on it.
pub const CLOCK_MARGIN: TimeDelta = TimeDelta::seconds(2);

/// What a projection needs from the configuration, and the timing that makes a version read
/// after a put unnecessary (see the module's comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long KV keeps an entry.
    pub ttl: TimeDelta,
    /// A put completed within this of its row's write needs no version read afterwards.
    pub quiet_put: TimeDelta,
}

impl Timing {
    pub fn new(ttl: TimeDelta) -> Self {
        Self {
            ttl,
            quiet_put: QUIET_PUT,
        }
    }

    /// A write made within this of the previous version's write may have overtaken that
    /// version's put, still under way.
    pub fn overtake_window(&self) -> TimeDelta {
        self.quiet_put + CLOCK_MARGIN
    }

    /// Whether a write at `now` that makes a new version of `stored` may land its put before
    /// `stored`'s own (which then leaves KV behind): `stored` is a projected version (the
    /// first version of a row is never skipped: see [`Projection`]) written within
    /// [`Self::overtake_window`]. Then a `project` job must look at KV once
    /// [`Self::settle_seconds`] have passed.
    pub fn may_overtake(&self, stored: &SubjectRow, now: Timestamp) -> bool {
        stored.version > FIRST_VERSION && now - stored.updated_at < self.overtake_window()
    }

    /// Seconds after which every put a write within the window may have overtaken has
    /// landed (or been read after), and a failed put can be made again.
    pub fn settle_seconds(&self) -> u32 {
        let window = u32::try_from(self.overtake_window().num_seconds()).unwrap_or(u32::MAX);
        window.max(REPAIR_DELAY_SECONDS)
    }

    /// No version read after a put of `row` completed at `now`: a later version's writer
    /// wrote within the window and checks KV after it (see [`Self::may_overtake`]). A row's
    /// first version is also what the ingress writes when it creates a subject, which no
    /// projection follows, so a writer replacing it does not look: its put reads instead.
    fn put_is_quiet(&self, row: &SubjectRow, now: Timestamp) -> bool {
        row.version > FIRST_VERSION && now - row.updated_at <= self.quiet_put
    }
}

/// A subject's version when it is created (migrations/0001_init.sql).
const FIRST_VERSION: i64 = 1;

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

/// Projecting one row: put, perhaps check, perhaps delete.
pub struct Projection {
    row: SubjectRow,
    timing: Timing,
    state: State,
}

impl Projection {
    pub fn new(row: SubjectRow, timing: Timing) -> Self {
        Self {
            row,
            timing,
            state: State::Start,
        }
    }

    /// Put `row` only if KV holds an older version of it (or cannot tell).
    pub fn if_behind(row: SubjectRow, timing: Timing) -> Self {
        Self {
            row,
            timing,
            state: State::StartIfBehind,
        }
    }

    /// The next KV call, given the answer to the last one (`Input::Begin` first) at `now`.
    pub fn resume(&mut self, input: Input, now: Timestamp) -> ProjectionStep {
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
                        self.resume(Input::Begin, now)
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
                    ttl_seconds: u64::try_from(self.timing.ttl.num_seconds().max(MIN_TTL_SECONDS))
                        .unwrap_or(u64::MAX),
                }
            }
            (State::Putting, Input::Done) if self.timing.put_is_quiet(&self.row, now) => {
                ProjectionStep::Over(Outcome::Written)
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

/// A `project` job: put D1's row of one subject into KV again, after a failed projection or a
/// write that may have overtaken a recent version's put. It puts without reading KV first: a
/// KV read can be served from a location's cache, up to a minute old, and would call a key
/// that a late put has just set back "current". D1's row is older than
/// [`Timing::quiet_put`] by the time the job runs, so the put reads the version after it.
pub struct ProjectRun {
    provider: Provider,
    subject_ref: SubjectRef,
    timing: Timing,
    projection: Option<Projection>,
    report: Report,
    started: bool,
}

impl ProjectRun {
    pub fn new(provider: Provider, subject_ref: SubjectRef, timing: Timing) -> Self {
        Self {
            provider,
            subject_ref,
            timing,
            projection: None,
            report: Report::default(),
            started: false,
        }
    }

    pub fn resume(&mut self, input: Input, now: Timestamp) -> Step {
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
                    let mut projection = Projection::new(found, self.timing);
                    let step = projection.resume(Input::Begin, now);
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
        let step = projection.resume(input, now);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{sqlite, subjects::register};
    use crate::subject::RefKind;
    use crate::time::from_millis;

    fn at_ms(ms: i64) -> Timestamp {
        from_millis(1_800_000_000_000 + ms).unwrap()
    }

    /// A subject as registration writes it, then `version` written at `written_ms`.
    fn row(version: i64, written_ms: i64) -> SubjectRow {
        let db = sqlite::database();
        let subject_ref = SubjectRef::parse("u1").unwrap();
        let results = sqlite::batch(
            &db,
            &register(
                Provider::named("align"),
                &subject_ref,
                RefKind::User,
                None,
                at_ms(0),
            ),
        );
        let mut row: SubjectRow = crate::db::row(&results[4][0]).unwrap();
        assert_eq!(row.version, FIRST_VERSION, "a new subject's version");
        row.version = version;
        row.updated_at = at_ms(written_ms);
        row
    }

    /// The step after a put of `row` answered at `answered_ms`.
    fn after_put(row: SubjectRow, answered_ms: i64) -> ProjectionStep {
        let mut projection = Projection::new(row, Timing::new(TimeDelta::hours(1)));
        let put = projection.resume(Input::Begin, at_ms(answered_ms));
        assert!(matches!(put, ProjectionStep::Put { .. }), "{put:?}");
        projection.resume(Input::Done, at_ms(answered_ms))
    }

    #[test]
    fn a_put_within_the_quiet_second_of_its_write_reads_no_version_and_a_slower_one_does() {
        assert_eq!(
            after_put(row(3, 10_000), 11_000),
            ProjectionStep::Over(Outcome::Written)
        );
        assert!(matches!(
            after_put(row(3, 10_000), 11_001),
            ProjectionStep::Verify(_)
        ));
    }

    #[test]
    fn the_first_version_always_reads_after_its_put() {
        // A write replacing the first version does not look at KV (the ingress writes that
        // version without projecting it), so its put is the one that must look.
        let first = row(FIRST_VERSION, 10_000);
        assert!(matches!(
            after_put(first.clone(), 10_000),
            ProjectionStep::Verify(_)
        ));
        let timing = Timing::new(TimeDelta::hours(1));
        assert!(!timing.may_overtake(&first, at_ms(10_000)));
    }

    /// A `project` job runs after a write that may have overtaken a quick put. A KV read
    /// then could be answered from a location's cache (the newer version) after the late put
    /// has set the key back: the job puts D1's row without reading KV, and reads D1's version
    /// after the put (the row is older than the quiet second by then).
    #[test]
    fn a_project_job_puts_d1s_row_without_reading_kv_and_reads_the_version_after() {
        let db = sqlite::database();
        let align = Provider::named("align");
        let subject_ref = SubjectRef::parse("u1").unwrap();
        sqlite::batch(
            &db,
            &register(align, &subject_ref, RefKind::User, None, at_ms(0)),
        );
        let mut run = ProjectRun::new(align, subject_ref, Timing::new(TimeDelta::hours(1)));
        let Step::Read(load) = run.resume(Input::Begin, at_ms(3_000)) else {
            panic!("the job loads D1's row first");
        };
        let loaded = sqlite::run(&db, &load);
        let put = run.resume(Input::Rows(vec![loaded]), at_ms(3_000));
        assert!(
            matches!(put, Step::Kv(ProjectionStep::Put { .. })),
            "puts without a KV read: {put:?}"
        );
        let verify = run.resume(Input::Done, at_ms(3_000));
        assert!(
            matches!(verify, Step::Kv(ProjectionStep::Verify(_))),
            "{verify:?}"
        );
    }

    #[test]
    fn a_write_within_the_window_of_the_previous_version_may_overtake_its_put() {
        let timing = Timing::new(TimeDelta::hours(1));
        let previous = row(3, 10_000);
        // A put that reads nothing after completed within a second of its write; a newer
        // version's write that lands its put first came before that, so within the window
        // (with the clock margin) of the previous write.
        assert!(timing.may_overtake(&previous, at_ms(10_000 + 2_999)));
        assert!(!timing.may_overtake(&previous, at_ms(10_000 + 3_000)));
        // Every such put has landed once the window has passed, from the newer write on.
        assert_eq!(timing.settle_seconds(), 3);
    }
}
