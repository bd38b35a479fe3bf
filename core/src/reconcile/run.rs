//! One reconcile job, as a sans-IO state machine: the loop the worker runs (src/reconcile.rs
//! only performs the steps) and the explorer interleaves with other actors
//! (reconcile/tests). It loads the subject; learns its state from a trusted webhook body
//! or from the provider's API, one request at a time; plans the write and runs it, re-reading
//! and planning again when its compare-and-set loses; queues the change's notification and,
//! after a contested reading, a fresh check; and projects the written row to KV, repairing
//! the projection through a `project` job whenever a KV call fails.
//!
//! Each [`Step`] is one call the adapter makes; it answers with an [`Input`] and the time.

use super::{plan, Context, Effect, HealthSeen, Outcome, Plan, Reading, Written};
use crate::db::subjects::{self, SubjectRow};
use crate::db::{row, Rows, Statement};
use crate::jobs::{Job, ReconcileJob};
use crate::observation::{Exchange, Order};
use crate::outbound::{CheckFailure, OutboundError};
use crate::projection::{self, Projection, ProjectionStep};
use crate::providers::{AnswerError, CheckTarget, ProviderProtocol, StatusCheck, StatusRequest};
use crate::schedule::ScheduleConfig;
use crate::status::KycStatus;
use crate::time::{from_millis, Timestamp};

/// Writers that raced us get this many re-reads before the job is retried by the queue.
pub const MAX_CONFLICTS: u32 = 5;

/// Calls a check sets aside before its write (topping up what the consumer reserved when it
/// admitted the job): the write, the notification queued and the projection (put, perhaps a
/// version read and a delete, a `project` job queued), so that once the write is made KV
/// cannot be left behind for want of calls. A re-check after a contested reading is queued if
/// calls remain; if not, the subject is due in D1 from then and the cron takes it. Should the
/// re-check leave the `project` job without a call, a repair is left to the next check of the
/// subject (`recent_change`), and one after overtaking a recent write retries the check.
pub const CALLS_AFTER_WRITE: u32 = 2 + projection::CALLS;

/// What a run needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    pub schedule: &'a ScheduleConfig,
    /// Notifications are delivered (queue each one); otherwise only recorded.
    pub notify: bool,
    pub kv: projection::Timing,
}

/// The call the run asks the adapter to make next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Set aside this many calls from the invocation's budget (answer [`Input::Granted`] or
    /// [`Input::Refused`]).
    Reserve(u32),
    /// Run one statement (answer [`Input::Rows`] with one set of rows).
    Read(Statement),
    /// Send one provider request (answer [`Input::Answered`] or [`Input::FetchFailed`]).
    Fetch(StatusRequest),
    /// Run statements as one batch (answer [`Input::Rows`], one set per statement).
    Write(Vec<Statement>),
    /// Queue jobs to run after `delay_seconds` (answer [`Input::Done`]).
    Enqueue { jobs: Vec<Job>, delay_seconds: u32 },
    /// A KV call of the projection.
    Kv(ProjectionStep),
    /// The run is over.
    Finished(Box<Report>),
}

/// What the adapter answers a step with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The first call of a run.
    Begin,
    Granted,
    /// The invocation's calls are spent: nothing more may be called now.
    Refused,
    Rows(Vec<Rows>),
    /// A provider request's 2xx body.
    Answered(Vec<u8>),
    FetchFailed(OutboundError),
    /// A queue or KV call succeeded.
    Done,
    /// What a KV read found.
    Value(Option<String>),
    /// A D1, queue or KV call failed.
    Failed(String),
}

/// How a run ended, for its log line and the consumer's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    pub outcome: Option<&'static str>,
    pub effect: Option<Effect>,
    /// The row as written (or as loaded when nothing was written).
    pub row: Option<Box<SubjectRow>>,
    pub drift: bool,
    pub notification: Option<i64>,
    pub conflicts: u32,
    pub kv: Option<&'static str>,
    /// The write may have overtaken the previous version's put: a `project` job looks at KV
    /// once it has landed.
    pub kv_settle: bool,
    pub kv_error: Option<String>,
    pub queue_error: Option<String>,
    /// Nothing was written and the job must run again: `Some(delay in seconds)`.
    pub retry: Option<RetryReason>,
}

/// Why the job runs again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryReason {
    /// The invocation's calls ran out before the write: a fresh invocation finishes it.
    OverBudget,
    /// D1 failed, or writers kept winning the compare-and-set.
    Error(String),
}

enum State<'p> {
    Start,
    Loading,
    Checking(Checking<'p>),
    Reserving {
        stored: SubjectRow,
        outcome: Outcome,
    },
    Writing(Box<Writing>),
    Reloading {
        outcome: Outcome,
    },
    Notifying {
        recheck: Option<Job>,
        delay_seconds: u32,
        projection: Option<Projection>,
    },
    Rechecking {
        projection: Option<Projection>,
    },
    Projecting(Projection),
    /// After a failed projection: a `project` job repairs KV.
    Repairing,
    Over,
}

/// A check whose request is under way: `sent_at` the latest request's, `first_sent_at` the
/// first's (a reading is as old as its first request).
struct Checking<'p> {
    stored: SubjectRow,
    check: Box<dyn StatusCheck + 'p>,
    sent_at: Timestamp,
    first_sent_at: Timestamp,
}

/// A plan whose batch is under way.
struct Writing {
    stored: SubjectRow,
    outcome: Outcome,
    plan: Plan,
}

/// One reconcile job's run.
pub struct Run<'p> {
    job: ReconcileJob,
    protocol: &'p dyn ProviderProtocol,
    settings: Settings<'p>,
    state: State<'p>,
    report: Report,
    /// What the latest look said of the provider's health (see [`Context`]).
    provider_health: Option<HealthSeen>,
    /// The job started from the row its webhook's batch wrote, not from a load.
    carried: bool,
    /// The write made a new version soon after the previous one: look at KV once that
    /// version's put has surely landed (see `projection`).
    settle: bool,
}

impl<'p> Run<'p> {
    pub fn new(
        job: ReconcileJob,
        protocol: &'p dyn ProviderProtocol,
        settings: Settings<'p>,
    ) -> Self {
        Self {
            job,
            protocol,
            settings,
            state: State::Start,
            report: Report::default(),
            provider_health: None,
            carried: false,
            settle: false,
        }
    }

    /// The next call, given the answer to the last one (`Input::Begin` first) at `now`.
    pub fn resume(&mut self, input: Input, now: Timestamp) -> Step {
        let state = std::mem::replace(&mut self.state, State::Over);
        match (state, input) {
            (State::Start, _) => {
                self.state = State::Loading;
                // A webhook's job carries the row its batch wrote: start from it, no load
                // (unless it names another subject, which no producer sends).
                let carried = self.job.subject.take().filter(|row| {
                    row.get("provider").and_then(serde_json::Value::as_str)
                        == Some(self.job.provider.as_str())
                        && row.get("ref").and_then(serde_json::Value::as_str)
                            == Some(self.job.subject_ref.as_str())
                });
                if let Some(row) = carried {
                    self.carried = true;
                    return self.resume(Input::Rows(vec![vec![row]]), now);
                }
                self.load()
            }
            (State::Loading, Input::Rows(rows)) => match self.loaded(&rows, now) {
                Ok(Some(stored)) => self.learn(stored, now),
                Ok(None) => self.finish("not tracked"),
                // A carried row this version cannot read (queued by another): load it.
                Err(_) if std::mem::take(&mut self.carried) => {
                    self.state = State::Loading;
                    self.load()
                }
                Err(error) => self.fail(error),
            },
            (State::Reloading { outcome }, Input::Rows(rows)) => match self.loaded(&rows, now) {
                Ok(Some(stored)) => self.reserve(stored, outcome),
                Ok(None) => self.finish("not tracked"),
                Err(error) => self.fail(error),
            },
            (State::Checking(checking), input) => self.answered(checking, input, now),
            (State::Reserving { stored, outcome }, Input::Granted) => {
                let plan = plan(
                    &stored,
                    &outcome,
                    Context {
                        now,
                        schedule: self.settings.schedule,
                        provider_health: self.provider_health,
                    },
                );
                let statements = plan.statements.clone();
                self.state = State::Writing(Box::new(Writing {
                    stored,
                    outcome,
                    plan,
                }));
                Step::Write(statements)
            }
            (State::Reserving { .. }, Input::Refused) => self.defer(),
            (State::Writing(writing), Input::Rows(results)) => {
                let Writing {
                    stored,
                    outcome,
                    plan,
                } = *writing;
                self.written(stored, outcome, plan, &results, now)
            }
            (
                State::Notifying {
                    recheck,
                    delay_seconds,
                    projection,
                },
                input,
            ) => {
                if let Input::Failed(error) = input {
                    // The outbox row is committed with the change: the cron sends it.
                    self.report.queue_error = Some(error);
                }
                self.after_notifying(recheck, delay_seconds, projection, now)
            }
            (State::Rechecking { projection }, input) => {
                if let Input::Failed(error) = input {
                    // The subject is due in D1 from `recheck_at`: the cron takes it.
                    self.report.queue_error = Some(error);
                }
                self.project(projection, now)
            }
            (State::Projecting(mut projection), input) => match projection.resume(input, now) {
                ProjectionStep::Over(outcome) => self.projected(outcome),
                step => {
                    self.state = State::Projecting(projection);
                    Step::Kv(step)
                }
            },
            // Without its `project` job, a put this write overtook could land late and leave
            // KV behind until the entry expires: the check is retried instead, and the retry
            // (the queue's delay is longer than the window) finds the subject changed recently
            // and puts D1's row if KV is behind (`recent_change`).
            (State::Repairing, Input::Failed(error)) if self.settle => {
                self.fail(format!("project job after overtaking not queued: {error}"))
            }
            (State::Repairing, Input::Refused) if self.settle => self.fail(
                "project job after overtaking not queued: the invocation's calls are spent".into(),
            ),
            (State::Repairing, input) => {
                if let Input::Failed(error) = input {
                    self.report.queue_error = Some(error);
                }
                Step::Finished(Box::new(std::mem::take(&mut self.report)))
            }
            (State::Over, _) => Step::Finished(Box::new(std::mem::take(&mut self.report))),
            (_, Input::Failed(error)) => self.fail(error),
            (_, other) => self.unexpected(&other),
        }
    }

    /// Read the subject, with the provider's health beside it.
    fn load(&self) -> Step {
        Step::Read(subjects::load_for_check(
            self.job.provider,
            &self.job.subject_ref,
        ))
    }

    /// The subject [`subjects::load_for_check`] read (or the webhook's batch wrote), and the
    /// provider's health beside it: seen `now` for a load, when the batch asked for the check
    /// (`requested_at`) for a carried row.
    fn loaded(&mut self, rows: &[Rows], now: Timestamp) -> Result<Option<SubjectRow>, String> {
        let found = rows.first().and_then(|rows| rows.first());
        let time = |name: &str| {
            found
                .and_then(|found| found.get(name))
                .and_then(serde_json::Value::as_i64)
                .and_then(from_millis)
        };
        let seen_at = if self.carried {
            time("requested_at")
        } else {
            Some(now)
        };
        self.provider_health = time("provider_ok_since")
            .zip(seen_at)
            .map(|(ok_since, seen_at)| HealthSeen { ok_since, seen_at });
        found
            .map(|found| row::<SubjectRow>(found).map_err(|e| format!("unreadable subject: {e}")))
            .transpose()
    }

    /// A trusted body that is certainly newer than the record is applied as it is; anything
    /// else asks the provider.
    fn learn(&mut self, stored: SubjectRow, now: Timestamp) -> Step {
        let trusted = self
            .job
            .trusted
            .as_ref()
            .filter(|trusted| trusted.window.order(stored.recorded().window) == Order::After);
        if let Some(trusted) = trusted {
            let outcome = Outcome::Read(Reading {
                observation: trusted.clone(),
                polled_at: None,
            });
            return self.reserve(stored, outcome);
        }
        let target = CheckTarget {
            subject_ref: self.job.subject_ref.clone(),
            ref_kind: stored.ref_kind,
            // AML screening runs after approval and can change any time.
            aml: self.job.aml || stored.status == KycStatus::Approved,
        };
        let mut check = self.protocol.check(target);
        let Some(request) = check.next_request(now) else {
            // A check that asks nothing cannot conclude anything new.
            return self.finish("nothing to ask");
        };
        self.state = State::Checking(Checking {
            stored,
            check,
            sent_at: now,
            first_sent_at: now,
        });
        Step::Fetch(request)
    }

    /// A provider's answer (or why there is none): read it, ask the next request, or conclude.
    fn answered(&mut self, checking: Checking<'p>, input: Input, now: Timestamp) -> Step {
        let Checking {
            stored,
            mut check,
            sent_at,
            first_sent_at,
        } = checking;
        let exchange = Exchange {
            sent_at,
            received_at: now,
        };
        let failed = |failure| Outcome::Failed {
            failure,
            sent_at: first_sent_at,
        };
        let read = match input {
            Input::Answered(body) => check.read(&body, exchange),
            // Too large to read within the bound: an answer that cannot be read whole.
            Input::FetchFailed(OutboundError::TooLarge { limit }) => {
                let incomplete =
                    AnswerError::Incomplete(format!("answer larger than {limit} bytes"));
                return self.reserve(stored, failed(CheckFailure::Answer(incomplete)));
            }
            Input::FetchFailed(error) => {
                return self.reserve(stored, failed(CheckFailure::Outbound(error)))
            }
            Input::Refused => return self.defer(),
            other => return self.unexpected(&other),
        };
        if let Err(error) = read {
            return self.reserve(stored, failed(CheckFailure::Answer(error)));
        }
        match check.next_request(now) {
            Some(request) => {
                self.state = State::Checking(Checking {
                    stored,
                    check,
                    sent_at: now,
                    first_sent_at,
                });
                Step::Fetch(request)
            }
            None => {
                let outcome = match check.conclude() {
                    Ok(observation) => Outcome::Read(Reading {
                        observation,
                        polled_at: Some(first_sent_at),
                    }),
                    Err(error) => failed(CheckFailure::Answer(error)),
                };
                self.reserve(stored, outcome)
            }
        }
    }

    fn reserve(&mut self, stored: SubjectRow, outcome: Outcome) -> Step {
        self.state = State::Reserving { stored, outcome };
        Step::Reserve(CALLS_AFTER_WRITE)
    }

    fn written(
        &mut self,
        stored: SubjectRow,
        outcome: Outcome,
        plan: Plan,
        results: &[Rows],
        now: Timestamp,
    ) -> Step {
        let written = match plan.written(results) {
            Ok(written) => written,
            Err(error) => return self.fail(format!("unreadable write: {error}")),
        };
        self.report.effect = Some(plan.effect.clone());
        match written {
            Written::Nothing => {
                self.report.outcome = Some("stale");
                let projection = recent_change(&stored, self.settings.kv, now);
                self.report.row = Some(Box::new(stored));
                self.project(projection, now)
            }
            Written::Lost => {
                self.report.conflicts += 1;
                if self.report.conflicts > MAX_CONFLICTS {
                    return self.fail(format!(
                        "lost the compare-and-set {MAX_CONFLICTS} times in a row"
                    ));
                }
                // A trusted body judged newer than the row the webhook's batch wrote, which
                // someone has rewritten since: judge it again from the row as it is now, as if
                // the job had loaded it (not newer than that: ask the provider).
                let judged_on_carried_row = std::mem::take(&mut self.carried)
                    && matches!(
                        &outcome,
                        Outcome::Read(Reading {
                            polled_at: None,
                            ..
                        })
                    );
                self.state = if judged_on_carried_row {
                    State::Loading
                } else {
                    State::Reloading { outcome }
                };
                self.load()
            }
            Written::Won {
                row,
                drift,
                notification,
            } => {
                self.report.outcome = Some(match plan.effect {
                    Effect::Stale => "stale",
                    Effect::Confirmed => "confirmed",
                    Effect::Changed(_) => "changed",
                    Effect::Contested => "contested",
                    Effect::Failed { .. } => "check failed",
                });
                self.report.drift = drift;
                self.report.notification = notification;
                let projection = if plan.project {
                    self.settle = self.settings.kv.may_overtake(&stored, now);
                    Some(Projection::new((*row).clone(), self.settings.kv))
                } else {
                    recent_change(&row, self.settings.kv, now)
                };
                self.report.row = Some(row);
                let recheck = plan.recheck_at.map(|at| {
                    // The contested part may be AML: the fresh check reads it too.
                    let job = Job::Reconcile(ReconcileJob {
                        trusted: None,
                        aml: true,
                        subject: None,
                        ..self.job.clone()
                    });
                    (job, delay_seconds(at, now))
                });
                let (recheck, delay_seconds) = match recheck {
                    Some((job, delay)) => (Some(job), delay),
                    None => (None, 0),
                };
                match notification.filter(|_| self.settings.notify) {
                    Some(seq) => {
                        self.state = State::Notifying {
                            recheck,
                            delay_seconds,
                            projection,
                        };
                        Step::Enqueue {
                            jobs: vec![Job::Notify { seq }],
                            delay_seconds: 0,
                        }
                    }
                    None => self.after_notifying(recheck, delay_seconds, projection, now),
                }
            }
        }
    }

    fn after_notifying(
        &mut self,
        recheck: Option<Job>,
        delay_seconds: u32,
        projection: Option<Projection>,
        now: Timestamp,
    ) -> Step {
        match recheck {
            Some(job) => {
                self.state = State::Rechecking { projection };
                Step::Enqueue {
                    jobs: vec![job],
                    delay_seconds,
                }
            }
            None => self.project(projection, now),
        }
    }

    fn project(&mut self, projection: Option<Projection>, now: Timestamp) -> Step {
        match projection {
            Some(mut projection) => match projection.resume(Input::Begin, now) {
                ProjectionStep::Over(outcome) => self.projected(outcome),
                step => {
                    self.state = State::Projecting(projection);
                    Step::Kv(step)
                }
            },
            None => Step::Finished(Box::new(std::mem::take(&mut self.report))),
        }
    }

    fn projected(&mut self, outcome: projection::Outcome) -> Step {
        let delay_seconds = match outcome {
            projection::Outcome::Written => {
                self.report.kv = Some("written");
                None
            }
            projection::Outcome::Current => {
                self.report.kv = Some("current");
                None
            }
            projection::Outcome::Superseded => {
                self.report.kv = Some("superseded");
                None
            }
            // D1 holds the change; KV may hold an older state or nothing. A `project` job
            // puts D1's row again once KV accepts writes to the key (one a second).
            projection::Outcome::Failed(error) => {
                self.report.kv_error = Some(error);
                Some(projection::REPAIR_DELAY_SECONDS)
            }
        };
        // A write that may have overtaken the previous version's put looks at KV once that
        // put has landed, in the same job as a repair.
        self.report.kv_settle = self.settle;
        let delay_seconds = if self.settle {
            Some(self.settings.kv.settle_seconds())
        } else {
            delay_seconds
        };
        match delay_seconds {
            Some(delay_seconds) => {
                self.state = State::Repairing;
                Step::Enqueue {
                    jobs: vec![Job::Project {
                        provider: self.job.provider,
                        subject_ref: self.job.subject_ref.clone(),
                    }],
                    delay_seconds,
                }
            }
            None => Step::Finished(Box::new(std::mem::take(&mut self.report))),
        }
    }

    fn finish(&mut self, outcome: &'static str) -> Step {
        self.report.outcome = Some(outcome);
        Step::Finished(Box::new(std::mem::take(&mut self.report)))
    }

    fn defer(&mut self) -> Step {
        self.report.outcome = Some("deferred: batch budget spent");
        self.report.retry = Some(RetryReason::OverBudget);
        Step::Finished(Box::new(std::mem::take(&mut self.report)))
    }

    fn fail(&mut self, error: String) -> Step {
        self.report.retry = Some(RetryReason::Error(error));
        Step::Finished(Box::new(std::mem::take(&mut self.report)))
    }

    fn unexpected(&mut self, input: &Input) -> Step {
        self.fail(format!("unexpected answer to the last call: {input:?}"))
    }
}

/// A check that projects nothing, of a subject that changed recently, makes sure KV is not
/// behind: the change's own projection may have died with its invocation.
fn recent_change(
    row: &SubjectRow,
    timing: projection::Timing,
    now: Timestamp,
) -> Option<Projection> {
    (row.updated_at > now - projection::RECENT_CHANGE)
        .then(|| Projection::if_behind(row.clone(), timing))
}

/// Whole seconds from `now` until `at`, at least one.
fn delay_seconds(at: Timestamp, now: Timestamp) -> u32 {
    let millis = (at - now).num_milliseconds().max(0);
    u32::try_from((millis + 999) / 1000)
        .unwrap_or(u32::MAX)
        .max(1)
}
