//! A model of one subject in a network that is as unkind as the real one, running the
//! production code: every reconcile job is the real sans-IO [`Run`] with the real provider
//! protocols (Align: one request; ARGOS: a KYC listing then an AML listing), every statement
//! runs on SQLite with the real migrations, and KV is a map that can refuse writes.
//!
//! What the network does is split into steps the explorer orders freely: a request is *sent*
//! (the provider has not read anything yet), *served* (the provider reads its state now) and
//! *answered* (the job reads the answer now), so answers arrive in any order, and a
//! check's requests are served at different moments. The provider changes its truth and
//! sends webhooks (delivered late, or never); trusted bodies carry the provider's own time;
//! KV refuses writes (429); an invocation dies right after its D1 write and the queue runs
//! its job again; the cron leases due subjects; contested readings and KV repairs queue
//! jobs that run after their delay.
//!
//! The oracles compare with the provider's truth, which the model knows and the code does
//! not: the instant at which the provider read the state the record holds never goes back,
//! the record holds what the provider held at that instant, once everything is done the
//! record holds the state of the newest reading any job completed (and KV never holds an
//! older version than D1), and no drift is counted when no webhook was lost.

use crate::db::events::{record_webhook, WebhookOutcome};
use crate::db::sqlite;
use crate::db::subjects::{claim_due, register, request_check, SubjectRow};
use crate::db::tallies::{counts, fold, ALL, SINCE_FOLD};
use crate::db::{row, Statement};
use crate::jobs::{Job, ReconcileJob};
use crate::observation::{Observation, Source, Window};
use crate::projection::{ProjectRun, ProjectionStep, Timing, QUIET_PUT};
use crate::providers::align::Align;
use crate::providers::argos::{Argos, Encryption};
use crate::providers::{ProviderProtocol, WebhookEvent, WebhookSubject};
use crate::reconcile::run::{Input, Report, Run, Settings, Step};
use crate::reconcile::DRIFT_GRACE;
use crate::schedule::ScheduleConfig;
use crate::secret::Secret;
use crate::status::KycStatus;
use crate::subject::{Provider, RefKind, SubjectRef};
use crate::time::{from_millis, Timestamp};
use crate::transition::Announcement;
use chrono::TimeDelta;
use rusqlite::Connection;
use std::collections::BTreeMap;
use std::sync::OnceLock;

const REF: &str = "subject-1";
/// The queue gives up on a job after this many runs (wrangler.toml `max_retries` + 1).
const MAX_RUNS: u32 = 6;

/// One tick is a second of model time.
pub fn at(tick: u32) -> Timestamp {
    from_millis(1_800_000_000_000 + i64::from(tick) * 1000).unwrap()
}

fn subject_ref() -> SubjectRef {
    SubjectRef::parse(REF).unwrap()
}

/// Which provider the subject belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One request per check; webhook bodies can be trusted.
    Align,
    /// A KYC listing then, for approved subjects and AML triggers, an AML listing.
    Argos,
}

impl Kind {
    fn provider(self) -> Provider {
        Provider::named(match self {
            Kind::Align => "align",
            Kind::Argos => "argos",
        })
    }

    fn protocol(self) -> &'static dyn ProviderProtocol {
        static ALIGN: OnceLock<Align> = OnceLock::new();
        static ARGOS: OnceLock<Argos> = OnceLock::new();
        let key = || Secret::new("model-key").unwrap();
        match self {
            Kind::Align => ALIGN.get_or_init(|| Align::new(key(), "https://provider.test".into())),
            Kind::Argos => ARGOS.get_or_init(|| {
                Argos::new(
                    key(),
                    key(),
                    "https://provider.test".into(),
                    vec![],
                    Encryption::Off,
                    2,
                )
            }),
        }
    }
}

/// What the provider holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub status: KycStatus,
    /// ARGOS AML screening (`None`: not screened).
    pub aml: Option<&'static str>,
}

/// One change of the provider's truth.
#[derive(Debug, Clone, Copy)]
pub struct Change {
    pub status: KycStatus,
    pub aml: Option<&'static str>,
    /// Its webhook is delivered (at a moment the explorer picks) or lost.
    pub delivered: bool,
}

/// What a schedule is made of.
#[derive(Debug, Clone)]
pub struct Setup {
    pub kind: Kind,
    /// The state the provider holds when the schedule starts.
    pub initial: State,
    pub changes: Vec<Change>,
    /// Reconcile jobs queued at the start (a refresh, a cron lease...).
    pub jobs: usize,
    pub crons: usize,
    pub refreshes: usize,
    /// Align bodies are authenticated and timestamped: the job of a delivered webhook applies
    /// it without asking (when it is newer).
    pub trusted: bool,
    /// How far ahead of ours the provider's clock runs (seconds; negative: behind).
    pub skew: i64,
    /// The first this many KV writes (puts, deletes) are refused (429).
    pub kv_refusals: u32,
    /// The first job's first run dies right after its first D1 write.
    pub death: bool,
    /// KV holds the registration's projection at the start (as `PUT /v1/subjects` writes it),
    /// so a projection left undone leaves KV behind rather than empty.
    pub projected: bool,
    /// A put completed within this of its row's write reads no version after it. The model's
    /// steps are a second apart and a put comes two steps after its plan at the soonest, so
    /// with the production value (1 s) every put reads after; with a day none does, and a put
    /// that lands late is found only by the overtaking writer's look at KV; in between, it
    /// depends on the interleaving.
    pub quiet_put: TimeDelta,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            kind: Kind::Align,
            initial: State {
                status: KycStatus::Pending,
                aml: None,
            },
            changes: vec![],
            jobs: 0,
            crons: 0,
            refreshes: 0,
            trusted: false,
            skew: 0,
            kv_refusals: 0,
            death: false,
            projected: false,
            quiet_put: QUIET_PUT,
        }
    }
}

/// A request in flight.
#[derive(Debug, Clone)]
enum Flight {
    /// Sent; the provider has not read anything yet.
    Sent { url: String },
    /// Read by the provider at `tick`: the answer and what it says.
    Served { body: Vec<u8>, read: (u32, State) },
}

/// A job's answers so far, so that a clone can rebuild its run by replaying them (runs hold
/// the provider's check, which does not clone).
#[derive(Debug, Clone)]
struct JobActor {
    job: Job,
    /// The answers fed to the run, with their times.
    inputs: Vec<(Input, Timestamp)>,
    /// What the run asked for last, not yet done.
    step: Option<Step>,
    flight: Option<Flight>,
    /// What each answered request read: (provider read tick, the state).
    reads: Vec<(u32, State)>,
    /// Not runnable before this tick (a delayed message).
    wake: u32,
    /// This run dies after its first D1 write.
    dies: bool,
    /// Runs of this job so far (the queue redelivers it).
    runs: u32,
    /// For a trusted body: when the provider dated it, and what it says.
    trusted: Option<(u32, State)>,
    done: bool,
}

#[derive(Debug, Clone)]
enum Actor {
    Job(Box<JobActor>),
    Provider { next: usize },
    Webhook { change: usize, done: bool },
    Refresh { done: bool },
    Cron { done: bool },
}

/// The record's hidden truth: the tick at which the provider read the state the record holds
/// (its status part and its AML part).
#[derive(Debug, Clone, Copy, Default)]
struct Truth {
    status_tick: Option<u32>,
    aml_tick: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct World {
    setup: Setup,
    tick: u32,
    /// The provider's truth: (tick it took effect, state).
    history: Vec<(u32, State)>,
    actors: Vec<Actor>,
    kv: BTreeMap<String, String>,
    kv_refused: u32,
    truth: Truth,
    /// The newest provider read any job completed with: (tick, state) per part.
    newest_status: Option<(u32, KycStatus)>,
    newest_aml: Option<(u32, Option<&'static str>)>,
    /// Webhooks lost so far.
    lost: usize,
    versions: Vec<i64>,
    /// Changes a reader is told of (status or AML), each owed one notification.
    notifiable: usize,
    pub steps: Vec<String>,
}

fn run_of(actor: &JobActor, setup: &Setup) -> Box<dyn Machine> {
    let kv = Timing {
        ttl: TimeDelta::hours(1),
        quiet_put: setup.quiet_put,
    };
    match &actor.job {
        Job::Reconcile(job) => Box::new(Run::new(
            job.clone(),
            setup.kind.protocol(),
            Settings {
                schedule: schedule(),
                notify: true,
                kv,
            },
        )),
        Job::Project {
            provider,
            subject_ref,
        } => Box::new(ProjectRun::new(*provider, subject_ref.clone(), kv)),
        Job::Notify { .. } | Job::Alert { .. } => {
            unreachable!("notifications and alerts are counted, not run")
        }
    }
}

fn schedule() -> &'static ScheduleConfig {
    static SCHEDULE: OnceLock<ScheduleConfig> = OnceLock::new();
    SCHEDULE.get_or_init(ScheduleConfig::default)
}

trait Machine {
    fn resume(&mut self, input: Input, now: Timestamp) -> Step;
}

impl Machine for Run<'static> {
    fn resume(&mut self, input: Input, now: Timestamp) -> Step {
        Run::resume(self, input, now)
    }
}

impl Machine for ProjectRun {
    fn resume(&mut self, input: Input, now: Timestamp) -> Step {
        ProjectRun::resume(self, input, now)
    }
}

fn word(state: State, kind: Kind) -> (&'static str, Option<&'static str>) {
    match (state.status, kind) {
        (KycStatus::ResubmissionRequired, _) => {
            ("rejected", Some("kyc_form_resubmission_required"))
        }
        (status, _) => (status.as_str(), None),
    }
}

impl World {
    pub fn new(db: &Connection, setup: &Setup) -> Self {
        let provider = setup.kind.provider();
        sqlite::batch(
            db,
            &register(provider, &subject_ref(), RefKind::User, None, at(0)),
        );
        let mut world = World {
            setup: setup.clone(),
            tick: 0,
            history: vec![(0, setup.initial)],
            actors: vec![],
            kv: BTreeMap::new(),
            kv_refused: 0,
            truth: Truth::default(),
            newest_status: None,
            newest_aml: None,
            lost: 0,
            versions: vec![],
            notifiable: 0,
            steps: vec![],
        };
        if setup.projected {
            world.put_kv(db);
        }
        if !setup.changes.is_empty() {
            world.actors.push(Actor::Provider { next: 0 });
        }
        for i in 0..setup.jobs {
            world.spawn(reconcile(setup.kind, None, None), 0, setup.death && i == 0);
        }
        for _ in 0..setup.refreshes {
            world.actors.push(Actor::Refresh { done: false });
        }
        for _ in 0..setup.crons {
            world.actors.push(Actor::Cron { done: false });
        }
        world
    }

    fn spawn(&mut self, job: Job, wake: u32, dies: bool) {
        self.actors.push(Actor::Job(Box::new(JobActor {
            job,
            inputs: vec![],
            step: None,
            flight: None,
            reads: vec![],
            wake,
            dies,
            runs: 0,
            trusted: None,
            done: false,
        })));
    }

    fn truth_at(&self, tick: u32) -> State {
        self.history
            .iter()
            .rev()
            .find(|(t, _)| *t <= tick)
            .map_or(self.setup.initial, |(_, s)| *s)
    }

    fn load(db: &Connection, provider: Provider) -> SubjectRow {
        let rows = sqlite::run(db, &crate::db::subjects::load(provider, &subject_ref()));
        row(&rows[0]).unwrap()
    }

    /// Actors that can take a step now.
    pub fn runnable(&self) -> Vec<usize> {
        self.actors
            .iter()
            .enumerate()
            .filter(|(_, actor)| match actor {
                Actor::Job(job) => !job.done && job.wake <= self.tick,
                Actor::Provider { next } => *next < self.setup.changes.len(),
                Actor::Webhook { done, .. } | Actor::Refresh { done } | Actor::Cron { done } => {
                    !done
                }
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Steps actor `index` until it logs a step containing `what`.
    pub fn advance(&mut self, db: &Connection, index: usize, what: &str) {
        for _ in 0..50 {
            assert!(
                self.runnable().contains(&index),
                "actor {index} cannot step now (waiting for {what:?})\n{}",
                self.steps.join("\n")
            );
            let logged = self.steps.len();
            self.step(db, index);
            let prefix = format!("{index}: ");
            if self.steps[logged..]
                .iter()
                .any(|s| s.starts_with(&prefix) && s.contains(what))
            {
                return;
            }
        }
        panic!(
            "actor {index} never logged {what:?}\n{}",
            self.steps.join("\n")
        );
    }

    /// Runs every actor to the end, in index order, letting time pass for delayed ones.
    pub fn drain(&mut self, db: &Connection) {
        loop {
            match self.runnable().first() {
                Some(&index) => self.step(db, index),
                None if self.sleep() => {}
                None => return,
            }
        }
    }

    /// Projects the subject as registered (what `PUT /v1/subjects` writes to KV).
    pub fn put_kv(&mut self, db: &Connection) {
        let stored = self.stored(db);
        self.kv.insert(
            crate::projection::key(stored.provider, &stored.subject_ref),
            serde_json::to_string(&stored.status_view()).unwrap(),
        );
    }

    /// The subject as D1 holds it.
    pub fn stored(&self, db: &Connection) -> SubjectRow {
        Self::load(db, self.setup.kind.provider())
    }

    /// The KV entry's version, if KV holds one.
    pub fn kv_version(&self) -> Option<i64> {
        self.kv.values().next().map(|held| {
            serde_json::from_str::<serde_json::Value>(held).unwrap()["version"]
                .as_i64()
                .unwrap()
        })
    }

    /// Nothing can run now but delayed messages: let time pass until the first is due.
    pub fn sleep(&mut self) -> bool {
        let wake = self
            .actors
            .iter()
            .filter_map(|actor| match actor {
                Actor::Job(job) if !job.done => Some(job.wake),
                _ => None,
            })
            .min();
        match wake {
            Some(wake) if wake > self.tick => {
                self.tick = wake;
                true
            }
            _ => false,
        }
    }

    /// One step of actor `index` at the next tick.
    pub fn step(&mut self, db: &Connection, index: usize) {
        self.tick += 1;
        let now = at(self.tick);
        let mut actor = self.actors[index].clone();
        match &mut actor {
            Actor::Job(job) => self.step_job(db, job, index, now),
            Actor::Provider { next } => {
                let change = self.setup.changes[*next];
                self.history.push((
                    self.tick,
                    State {
                        status: change.status,
                        aml: change.aml,
                    },
                ));
                self.steps.push(format!(
                    "{index}: provider -> {} {:?}{}",
                    change.status,
                    change.aml,
                    if change.delivered {
                        ""
                    } else {
                        " (webhook lost)"
                    }
                ));
                if change.delivered {
                    self.actors.push(Actor::Webhook {
                        change: *next,
                        done: false,
                    });
                } else {
                    self.lost += 1;
                }
                *next += 1;
            }
            Actor::Webhook { change, done } => {
                *done = true;
                self.deliver(db, *change, index);
            }
            Actor::Refresh { done } => {
                *done = true;
                let provider = self.setup.kind.provider();
                sqlite::run(db, &request_check(provider, &subject_ref(), now));
                self.steps.push(format!("{index}: refresh"));
                self.spawn(reconcile(self.setup.kind, None, None), 0, false);
            }
            Actor::Cron { done } => {
                *done = true;
                let provider = self.setup.kind.provider();
                let leased = sqlite::run(db, &claim_due(provider, now, now + schedule().lease, 10));
                self.steps
                    .push(format!("{index}: cron leases {}", leased.len()));
                if !leased.is_empty() {
                    self.spawn(reconcile(self.setup.kind, None, None), 0, false);
                }
            }
        }
        self.actors[index] = actor;
    }

    fn deliver(&mut self, db: &Connection, change: usize, index: usize) {
        let now = at(self.tick);
        let (changed_at, state) = {
            // The change's own tick: the (change + 1)-th entry of the history.
            let (tick, state) = self.history[change + 1];
            (tick, state)
        };
        let provider = self.setup.kind.provider();
        let about_aml = self.setup.kind == Kind::Argos && state.aml.is_some();
        let event = WebhookEvent {
            subject: Some(WebhookSubject {
                subject_ref: subject_ref(),
                ref_kind: RefKind::User,
            }),
            kind: "model".into(),
            provider_at: None,
            announces: Announcement::Status(state.status),
            trusted: None,
            about_aml,
            event_id: None,
        };
        // ARGOS bodies carry only the state, so a repeated state repeats the body (AML: Red
        // Flag → Cleared → Red Flag); Align's carry their `created_at` too.
        let body = match self.setup.kind {
            Kind::Argos => format!(
                "{{\"status\":\"{}\",\"aml\":{:?}}}",
                state.status, state.aml
            ),
            Kind::Align => format!("{{\"status\":\"{}\",\"at\":{changed_at}}}", state.status),
        };
        let record = record_webhook(
            provider,
            &event,
            &crate::providers::dedup_key(body.as_bytes()),
            &format!("receipt-{}", self.tick),
            now,
        );
        let WebhookOutcome {
            duplicate,
            created,
            made_due,
            subject,
        } = record.outcome(&sqlite::batch(db, &record.statements));
        self.steps.push(format!(
            "{index}: webhook {}{}{}",
            state.status,
            if duplicate { " (repeat)" } else { "" },
            if created || made_due {
                " (made due)"
            } else {
                ""
            }
        ));
        if created || made_due {
            let trusted = (self.setup.trusted && self.setup.kind == Kind::Align).then(|| {
                let provider_at = at(changed_at) + TimeDelta::seconds(self.setup.skew);
                Observation {
                    status: state.status,
                    provider_status: Some(word(state, Kind::Align).0.to_owned()),
                    sub_status: word(state, Kind::Align).1.map(str::to_owned),
                    aml: None,
                    status_at: Some(provider_at.min(now)),
                    window: Window::provider_dated(provider_at, now),
                    source: Source::Webhook,
                    no_record: false,
                }
            });
            let job = reconcile(self.setup.kind, trusted, subject);
            let dated = (changed_at, state);
            self.spawn(job, 0, false);
            if let Some(Actor::Job(job)) = self.actors.last_mut() {
                job.trusted = self.setup.trusted.then_some(dated);
                if let Job::Reconcile(reconcile) = &mut job.job {
                    reconcile.aml = about_aml;
                }
            }
        }
    }

    fn step_job(&mut self, db: &Connection, job: &mut JobActor, index: usize, now: Timestamp) {
        // The request in flight moves one hop per step: sent → served → answered.
        match job.flight.take() {
            Some(Flight::Sent { url }) => {
                let body = self.serve(&url);
                self.steps
                    .push(format!("{index}: provider reads {:?}", body.1));
                job.flight = Some(Flight::Served {
                    body: body.0,
                    read: (self.tick, body.1),
                });
                return;
            }
            Some(Flight::Served { body, read }) => {
                self.steps.push(format!("{index}: answer arrives"));
                job.reads.push(read);
                self.feed(job, index, Input::Answered(body), now);
                return;
            }
            None => {}
        }
        if job.step.is_none() {
            // A run starts and loads the subject in one step: nothing shared happens between.
            job.runs += 1;
            job.inputs.clear();
            job.reads.clear();
            self.steps.push(format!("{index}: run {}", job.runs));
            self.feed(job, index, Input::Begin, now);
        }
        if let Some(step) = job.step.take() {
            let input = self.perform(db, job, index, step);
            self.feed(job, index, input, now);
        }
    }

    /// Hands `input` to the job's run and performs what it asks next, until it asks for
    /// something the network decides (a request, a D1 or KV call, which the explorer orders).
    fn feed(&mut self, job: &mut JobActor, index: usize, input: Input, now: Timestamp) {
        let mut run = run_of(job, &self.setup);
        // Replay: the run is deterministic in its inputs.
        for (input, at) in &job.inputs {
            run.resume(input.clone(), *at);
        }
        job.inputs.push((input.clone(), now));
        let mut step = run.resume(input, now);
        loop {
            match step {
                Step::Reserve(_) => {
                    job.inputs.push((Input::Granted, now));
                    step = run.resume(Input::Granted, now);
                }
                Step::Enqueue {
                    jobs,
                    delay_seconds,
                } => {
                    for queued in jobs {
                        match queued {
                            // Sent from the outbox row, counted below.
                            Job::Notify { .. } => {}
                            other => {
                                self.steps.push(format!(
                                    "{index}: queues {} in {delay_seconds} s",
                                    match other {
                                        Job::Project { .. } => "a KV repair",
                                        _ => "a re-check",
                                    }
                                ));
                                self.spawn(other, self.tick + delay_seconds, false)
                            }
                        }
                    }
                    job.inputs.push((Input::Done, now));
                    step = run.resume(Input::Done, now);
                }
                Step::Finished(report) => {
                    self.finished(job, index, &report);
                    return;
                }
                Step::Fetch(request) => {
                    self.steps.push(format!("{index}: sends a request"));
                    job.flight = Some(Flight::Sent { url: request.url });
                    return;
                }
                other => {
                    job.step = Some(other);
                    return;
                }
            }
        }
    }

    /// Performs a D1 or KV call the run asked for: its answer.
    fn perform(&mut self, db: &Connection, job: &mut JobActor, index: usize, step: Step) -> Input {
        match step {
            Step::Read(statement) => Input::Rows(vec![sqlite::run(db, &statement)]),
            Step::Write(statements) => {
                let before = Self::load(db, self.setup.kind.provider());
                let results = sqlite::batch(db, &statements);
                self.check_write(db, job, index, &before);
                if job.dies && job.runs == 1 {
                    // The invocation dies after its D1 write; the queue runs the job again.
                    self.steps.push(format!("{index}: the invocation dies"));
                    job.dies = false;
                    job.step = None;
                    job.flight = None;
                    return Input::Failed("died".into());
                }
                Input::Rows(results)
            }
            Step::Kv(ProjectionStep::Verify(statement)) => {
                Input::Rows(vec![sqlite::run(db, &statement)])
            }
            Step::Kv(ProjectionStep::Get { key }) => Input::Value(self.kv.get(&key).cloned()),
            Step::Kv(ProjectionStep::Put { key, value, .. }) => {
                if self.kv_refused < self.setup.kv_refusals {
                    self.kv_refused += 1;
                    self.steps.push(format!("{index}: KV put refused (429)"));
                    return Input::Failed("429".into());
                }
                let version = serde_json::from_str::<serde_json::Value>(&value).unwrap()["version"]
                    .as_i64()
                    .unwrap();
                self.steps.push(format!("{index}: KV put v{version}"));
                self.kv.insert(key, value);
                Input::Done
            }
            Step::Kv(ProjectionStep::Delete { key }) => {
                if self.kv_refused < self.setup.kv_refusals {
                    self.kv_refused += 1;
                    self.steps.push(format!("{index}: KV delete refused (429)"));
                    return Input::Failed("429".into());
                }
                self.steps.push(format!("{index}: KV delete"));
                self.kv.remove(&key);
                Input::Done
            }
            other => panic!("{index}: not a call the world performs: {other:?}"),
        }
    }

    /// The truth oracle, at each D1 write: the instant at which the provider read what the
    /// record holds never goes back, and the record holds what the provider held then.
    fn check_write(&mut self, db: &Connection, job: &JobActor, index: usize, before: &SubjectRow) {
        let after = Self::load(db, self.setup.kind.provider());
        let trace = || self.steps.join("\n");
        if after.revision == before.revision {
            return;
        }
        // What this job read, per part: the status from its first request (or its trusted
        // body), AML from the AML listing.
        let status_read = job
            .trusted
            .filter(|_| job.reads.is_empty())
            .or(job.reads.first().copied());
        let aml_read = match self.setup.kind {
            Kind::Argos => job.reads.get(1).copied(),
            Kind::Align => None,
        };
        if let Some((tick, state)) = status_read {
            if after.status != before.status {
                assert_eq!(
                    after.status,
                    state.status,
                    "{index}: the record holds what the provider held when it read\n{}",
                    trace()
                );
                assert!(
                    self.truth.status_tick.is_none_or(|t| tick >= t),
                    "{index}: the record moved to a reading the provider made at {tick}, older \
                     than the one it held ({:?})\n{}",
                    self.truth.status_tick,
                    trace()
                );
                self.truth.status_tick = Some(tick);
            } else if state.status == after.status {
                // Confirmed: the state held at both instants.
                self.truth.status_tick = Some(self.truth.status_tick.map_or(tick, |t| t.max(tick)));
            }
        }
        // An AML result from the KYC answer is read with the status; ARGOS lists it apart.
        if let Some((tick, state)) = aml_read.filter(|_| after.aml_observed_at.is_some()) {
            if after.aml_status != before.aml_status {
                assert_eq!(after.aml_status.as_deref(), state.aml, "{}", trace());
                assert!(
                    self.truth.aml_tick.is_none_or(|t| tick >= t),
                    "{index}: AML moved to a reading made at {tick}, older than {:?}\n{}",
                    self.truth.aml_tick,
                    trace()
                );
                self.truth.aml_tick = Some(tick);
            } else if state.aml.is_some() && state.aml == after.aml_status.as_deref() {
                self.truth.aml_tick = Some(self.truth.aml_tick.map_or(tick, |t| t.max(tick)));
            }
        }
        if after.version > before.version {
            self.versions.push(after.version);
            if after.status != before.status || after.aml_status != before.aml_status {
                self.notifiable += 1;
            }
        }
    }

    fn finished(&mut self, job: &mut JobActor, index: usize, report: &Report) {
        self.steps.push(format!(
            "{index}: finished {:?}{}",
            report.outcome,
            report
                .retry
                .as_ref()
                .map_or(String::new(), |r| format!(" (retry: {r:?})"))
        ));
        // What the provider said, per part, counts toward the newest reading completed.
        let trace = || self.steps.join("\n");
        if report.retry.is_none() {
            let status_read = job
                .trusted
                .filter(|_| job.reads.is_empty())
                .or(job.reads.first().copied());
            if let Some((tick, state)) = status_read {
                if self.newest_status.is_none_or(|(t, _)| tick > t) {
                    self.newest_status = Some((tick, state.status));
                }
            }
            if let (Kind::Argos, Some((tick, state))) = (self.setup.kind, job.reads.get(1)) {
                if self.newest_aml.is_none_or(|(t, _)| *tick > t) {
                    self.newest_aml = Some((*tick, state.aml));
                }
            }
        }
        if report.retry.is_some() && job.runs < MAX_RUNS {
            // The queue delivers it again.
            job.step = None;
            job.flight = None;
            job.wake = self.tick + 1;
            return;
        }
        assert!(
            report.retry.is_none(),
            "{index}: the queue gave up on a job\n{}",
            trace()
        );
        job.done = true;
    }

    /// The provider serves a request: it reads its state now.
    fn serve(&self, url: &str) -> (Vec<u8>, State) {
        let state = self.truth_at(self.tick);
        let (result, sub_status) = word(state, self.setup.kind);
        let body = match self.setup.kind {
            Kind::Align => serde_json::json!({
                "customer_id": REF,
                "kycs": {"status": result, "sub_status": sub_status},
            }),
            Kind::Argos if url.contains("request_type=aml") => serde_json::json!({
                "Items": state.aml.map(|aml| serde_json::json!({
                    "userid": REF, "submission_id": "s1",
                    "aml_result": {"currentstatus": aml},
                })).into_iter().collect::<Vec<_>>(),
            }),
            Kind::Argos => serde_json::json!({
                "Items": [{
                    "userid": REF, "submission_id": "s1",
                    "created_at": "2020-01-01-00-00-00-000",
                    "kyc": {"result": result},
                }],
            }),
        };
        (serde_json::to_vec(&body).unwrap(), state)
    }

    /// The invariants every complete schedule must satisfy.
    pub fn check_final(&self, db: &Connection) {
        let provider = self.setup.kind.provider();
        let stored = Self::load(db, provider);
        let trace = || self.steps.join("\n");
        // Once everything is done, the record holds the newest reading any job completed.
        if let Some((tick, status)) = self.newest_status {
            assert_eq!(
                stored.status,
                status,
                "not the newest reading (made at {tick})\n{}",
                trace()
            );
            assert_eq!(self.truth.status_tick, Some(tick), "{}", trace());
        } else {
            assert_eq!(stored.status, KycStatus::Unknown, "{}", trace());
        }
        if let Some((tick, aml)) = self.newest_aml {
            if aml.is_some() {
                assert_eq!(
                    stored.aml_status.as_deref(),
                    aml,
                    "AML read at {tick}\n{}",
                    trace()
                );
            }
        }
        // KV is never behind D1 once quiet: it holds D1's version, or nothing.
        if let Some(held) = self.kv.values().next() {
            let held: serde_json::Value = serde_json::from_str(held).unwrap();
            assert_eq!(
                held["version"].as_i64(),
                Some(stored.version),
                "KV holds another version than D1\n{}",
                trace()
            );
            assert_eq!(held["status"].as_str(), Some(stored.status.as_str()));
        }
        // One notification per change a reader was told of, in version order (the cron sends
        // the rows whose jobs died).
        let sent = sqlite::run(
            db,
            &Statement::new("SELECT payload FROM notifications ORDER BY seq", vec![]),
        );
        assert_eq!(sent.len(), self.notifiable, "{}", trace());
        let versions: Vec<i64> = sent
            .iter()
            .map(|n| {
                let payload: serde_json::Value =
                    serde_json::from_str(n["payload"].as_str().unwrap()).unwrap();
                payload["data"]["version"].as_i64().unwrap()
            })
            .collect();
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "notifications not in version order: {versions:?}\n{}",
            trace()
        );
        assert!(versions.iter().all(|v| self.versions.contains(v)));
        // Status counts match the row: one subject, counted once, where it is; as stats see
        // them between cron runs (tallies plus the changes since the fold) and, below, as the
        // tallies alone once the cron folded them.
        let status_counts = |since_fold: &[crate::db::Row]| {
            let all = sqlite::run(db, &Statement::new(ALL, vec![]));
            counts(&all, since_fold)
                .statuses
                .get(&provider)
                .cloned()
                .unwrap_or_default()
        };
        let check_counts = |found: BTreeMap<KycStatus, i64>, when: &str| {
            for status in KycStatus::ALL {
                let expected = i64::from(status == stored.status);
                assert_eq!(
                    found.get(&status).copied().unwrap_or(0),
                    expected,
                    "{} {when}\n{}",
                    status.as_str(),
                    trace()
                );
            }
        };
        let since_fold = sqlite::run(db, &Statement::new(SINCE_FOLD, vec![]));
        check_counts(status_counts(&since_fold), "before the fold");
        // No drift is counted when no webhook was lost, once late webhooks had their time.
        sqlite::batch(db, &fold(at(self.tick) + DRIFT_GRACE, DRIFT_GRACE));
        check_counts(status_counts(&[]), "after the fold");
        let drift = sqlite::run(
            db,
            &Statement::new(
                "SELECT COALESCE(SUM(value), 0) AS n FROM tallies WHERE name LIKE 'drift.%'",
                vec![],
            ),
        )[0]["n"]
            .as_i64()
            .unwrap();
        // (Identical ARGOS bodies for two changes, delivered out of order, are one event to
        // anyone: that case is left out.)
        let states: Vec<State> = self.history.iter().skip(1).map(|(_, s)| *s).collect();
        let repeated = (1..states.len()).any(|i| states[..i].contains(&states[i]));
        if self.lost == 0 && (self.setup.kind == Kind::Align || !repeated) {
            let events = sqlite::run(
                db,
                &Statement::new(
                    "SELECT type, announces, at, last_at, from_status, to_status, drift, source \
                     FROM events ORDER BY id",
                    vec![],
                ),
            );
            assert_eq!(
                drift,
                0,
                "drift counted, yet no webhook was lost\n{}\n{events:?}",
                trace()
            );
        }
    }
}

/// A check of the subject; a webhook's starts from the row its batch wrote (`subject`), as in
/// production, so that row may be stale by the time the job runs.
fn reconcile(kind: Kind, trusted: Option<Observation>, subject: Option<crate::db::Row>) -> Job {
    Job::Reconcile(ReconcileJob {
        provider: kind.provider(),
        subject_ref: subject_ref(),
        ref_kind: RefKind::User,
        trusted,
        aml: false,
        subject,
    })
}
