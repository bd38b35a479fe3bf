//! The reconcile decision: from a subject as stored and what one check learned, a *plan*:
//! the guarded statements to run as one D1 batch, the history row, the counts, the schedule
//! and whether to project to KV. Pure: the adapter executes plans and reports whether the
//! guard held; a writer whose guard lost re-reads the subject and plans again. The loop that
//! does so, with the provider conversation and the KV projection, is [`run`]: one sans-IO
//! state machine the worker and the explorer both execute.
//!
//! Every write a check makes to a subject is a compare-and-set on the state it was decided
//! from: its `revision` (moved by every such write) and its `version` (moved by every change
//! a reader sees, external ids included). The statements after the guard form a chain: each
//! runs only if the one before it changed exactly one row (`changes() = 1`), so a lost guard
//! writes nothing at all. Drift is suspected inside the batch, against the webhooks recorded
//! by then, and settled by the cron once late webhooks have had time to arrive.

pub mod run;

use crate::db::notifications::insert_if_previous_changed;
use crate::db::subjects::{SubjectRow, COLUMNS};
use crate::db::{row, Rows, SqlValue, Statement};
use crate::notify::{payload, Kind};
use crate::observation::{Observation, Source};
use crate::outbound::{CheckFailure, FailureScope};
use crate::schedule::{after_check, after_failure, jitter, Found, NextCheck, ScheduleConfig};
use crate::statement;
use crate::status::KycStatus;
use crate::subject::Provider;
use crate::time::{epoch, Timestamp};
use crate::transition::{decide, Change, Decided, Recorded, ANY_CHANGE};
use chrono::TimeDelta;

/// What one check learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A reading: from the provider's API, or from a trusted webhook body.
    Read(Reading),
    /// The provider gave nothing usable. A failure never changes a status.
    Failed {
        failure: CheckFailure,
        /// When the check's first request was sent.
        sent_at: Timestamp,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub observation: Observation,
    /// When the check's first request was sent; `None` for a trusted webhook body. Only a
    /// poll answers a request for a check: requests made after it was sent (and every request,
    /// for a webhook body) are still owed once the reading is written, so the subject stays
    /// due and a poll confirms what the body claimed.
    pub polled_at: Option<Timestamp>,
}

/// Everything a plan needs besides the subject and the outcome.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub now: Timestamp,
    pub schedule: &'a ScheduleConfig,
    /// What the subject's load (or the webhook batch that carried its row) saw of the
    /// provider's health, if it was healthy.
    pub provider_health: Option<HealthSeen>,
}

/// A healthy provider as a look at `provider_health` saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSeen {
    /// When the provider last answered a check successfully.
    pub ok_since: Timestamp,
    /// When it was looked at.
    pub seen_at: Timestamp,
}

/// What a plan does when its guard holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The reading is older than the record: nothing to write.
    Stale,
    /// Same state, newer reading: when it was read and the schedule move.
    Confirmed,
    /// The state changes (version + 1, history row, counts, KV projection).
    Changed(Change),
    /// The reading differs from the record and may have been read before or after it:
    /// nothing is applied, and the subject is due once a fresh poll can decide.
    Contested,
    /// The check failed: the failure count, its class and the schedule move.
    Failed { class: String, scope: FailureScope },
}

/// A plan: statements to run as one D1 batch, and how to read its results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub statements: Vec<Statement>,
    /// Index of the guarded subject write. Its `RETURNING` row is the subject as written;
    /// no row means the guard lost and nothing was written. `None` when nothing is written.
    pub guard: Option<usize>,
    /// Index of the change's history row (`RETURNING drift`), when there is one.
    pub history: Option<usize>,
    /// Index of the change's notification (`RETURNING seq`): its outbox row.
    pub notification: Option<usize>,
    pub effect: Effect,
    /// Write the returned row to KV: what a reader sees changed.
    pub project: bool,
    /// A reading was contested: a fresh poll sent from this instant on decides it.
    pub recheck_at: Option<Timestamp>,
}

/// What a plan's batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The plan writes nothing (a stale reading).
    Nothing,
    /// The guard lost: someone wrote the subject since it was read; nothing was written.
    Lost,
    /// The subject as written, whether the change is suspected drift, and the notification
    /// it recorded (its `seq`).
    Won {
        row: Box<SubjectRow>,
        drift: bool,
        notification: Option<i64>,
    },
}

impl Plan {
    /// Nothing to write about the subject: only `statements` (the provider's health) run.
    fn stale(statements: Vec<Statement>) -> Self {
        Plan {
            statements,
            guard: None,
            history: None,
            notification: None,
            effect: Effect::Stale,
            project: false,
            recheck_at: None,
        }
    }

    /// Read the batch's results (one [`Rows`] per statement, in order).
    pub fn written(&self, results: &[Rows]) -> Result<Written, serde_json::Error> {
        let Some(guard) = self.guard else {
            return Ok(Written::Nothing);
        };
        let Some(returned) = results.get(guard).and_then(|rows| rows.first()) else {
            return Ok(Written::Lost);
        };
        let drift = self
            .history
            .and_then(|h| results.get(h))
            .and_then(|rows| rows.first())
            .and_then(|r| r.get("drift"))
            .and_then(serde_json::Value::as_i64)
            .is_some_and(|drift| drift != NO_DRIFT);
        let notification = self
            .notification
            .and_then(|i| results.get(i))
            .and_then(|rows| crate::db::notifications::seqs(rows).into_iter().next());
        Ok(Written::Won {
            row: Box::new(row(returned)?),
            drift,
            notification,
        })
    }
}

/// `events.drift` of a change: none; suspected (no webhook announced it when it was written:
/// settled by the cron after [`DRIFT_GRACE`]); drift (none arrived by then either).
pub const NO_DRIFT: i64 = 0;
pub const DRIFT: i64 = 1;
pub const SUSPECTED_DRIFT: i64 = 2;

/// How late a webhook may arrive after the poll that found its change and still count as
/// announcing it (a provider's first retry, a slow queue): a change is drift only if no
/// webhook announced it by then.
pub const DRIFT_GRACE: TimeDelta = TimeDelta::minutes(10);

/// When a retired subject is due: never, in practice (the largest time D1 and chrono share).
pub fn never() -> Timestamp {
    crate::time::from_millis(253_402_300_799_000).unwrap_or_else(epoch)
}

/// A check that someone asked for (a webhook, a refresh, a registration) and that failed for
/// the subject is retried at the failure back-off this many times before the slow cadence:
/// the provider may not know the subject yet.
pub const SHORT_RETRIES: u32 = 6;

/// Plan the write for one check of `stored`.
pub fn plan(stored: &SubjectRow, outcome: &Outcome, context: Context<'_>) -> Plan {
    match outcome {
        Outcome::Read(reading) => plan_reading(stored, reading, context),
        Outcome::Failed { failure, sent_at } => plan_failure(stored, failure, *sent_at, context),
    }
}

/// The compare-and-set: `?1` provider, `?2` ref, `?3` revision and `?4` version as read.
const GUARD: &str = "provider = ?1 AND ref = ?2 AND revision = ?3 AND version = ?4";

/// The schedule after a successful check: `?5` when the poll was sent (the epoch for a
/// webhook body), `?6` the planned next check, `?7` its step, `?8` retire now (1) or not. A
/// check requested after the poll was sent is still owed, so then the subject stays at least
/// as due as it is (and is not retired).
const SCHEDULE: &str = "revision = revision + 1, \
     next_check_at = CASE WHEN requested_at > ?5 THEN MIN(next_check_at, ?6) ELSE ?6 END, \
     check_step = CASE WHEN requested_at > ?5 THEN 0 ELSE ?7 END, \
     retired_at = CASE WHEN ?8 AND NOT COALESCE(requested_at, 0) > ?5 THEN ?9 ELSE NULL END";

fn plan_reading(stored: &SubjectRow, reading: &Reading, context: Context<'_>) -> Plan {
    let observation = &reading.observation;
    // A healthy provider's success is recorded once a minute at most: skipped outright when a
    // look at its health shortly before this request was sent saw a recent one, and otherwise
    // written, guarded in SQL against a concurrent failure. A failure recorded between that
    // look and this request (at most HEALTH_LOOK_AGE) is reset by the next success that
    // looks after it.
    let seen_healthy = |sent_at: Timestamp| {
        context.provider_health.is_some_and(|seen| {
            seen.ok_since >= context.now - HEALTH_REFRESH
                && sent_at - seen.seen_at <= HEALTH_LOOK_AGE
        })
    };
    let mut statements: Vec<Statement> = reading
        .polled_at
        .filter(|sent_at| !seen_healthy(*sent_at))
        .map(|sent_at| provider_succeeded(stored.provider, sent_at, context.now))
        .into_iter()
        .collect();
    let decision = decide(&stored.recorded(), observation);
    // A contested reading is decided by a poll sent once both windows have closed.
    let recheck_at = decision.contested.then(|| {
        let record = stored.recorded();
        observation
            .window
            .to
            .max(record.window.to)
            .max(record.aml_window.to)
            .max(context.now)
            + TimeDelta::milliseconds(1)
    });
    let (effect, status, found) = match &decision.outcome {
        Decided::Stale if recheck_at.is_none() => {
            // Someone recorded a newer reading, and scheduled after it: leave it all be.
            return Plan::stale(statements);
        }
        Decided::Stale => (Effect::Contested, stored.status, Found::Nothing),
        Decided::Confirmed(_) => (Effect::Confirmed, stored.status, Found::Nothing),
        Decided::Apply(change) => {
            let reversal =
                change.status_changed && stored.previous_status == Some(change.next.status);
            let found = if reversal {
                Found::Reversal
            } else {
                Found::Change
            };
            (Effect::Changed(change.clone()), change.next.status, found)
        }
    };
    let next_state = match &decision.outcome {
        Decided::Stale => stored.recorded(),
        Decided::Confirmed(next) => next.clone(),
        Decided::Apply(change) => change.next.clone(),
    };
    let bookkeeping = Bookkeeping::after(stored, reading, status, found, recheck_at, context);
    statements.push(reading_update(
        stored,
        &bookkeeping,
        &next_state,
        &effect,
        observation.source,
    ));
    let mut plan = Plan {
        guard: Some(statements.len() - 1),
        statements,
        history: None,
        notification: None,
        effect,
        project: false,
        recheck_at,
    };
    if let Effect::Changed(change) = &plan.effect {
        let change = change.clone();
        plan_change(&mut plan, stored, &change, observation.source, context.now);
    }
    plan
}

/// What a successful reading writes on the subject whatever it decided: when it was checked,
/// when to check next, the unfound streak that retires junk refs.
struct Bookkeeping {
    polled_at: Timestamp,
    last_checked_at: Option<Timestamp>,
    next: NextCheck,
    retire: bool,
    unfound: u32,
    now: Timestamp,
}

impl Bookkeeping {
    fn after(
        stored: &SubjectRow,
        reading: &Reading,
        status: KycStatus,
        found: Found,
        recheck_at: Option<Timestamp>,
        context: Context<'_>,
    ) -> Self {
        let last_checked_at = match (stored.last_checked_at, reading.polled_at) {
            (Some(stored), Some(polled)) => Some(stored.max(polled)),
            (stored, polled) => stored.or(polled),
        };
        // Checks that found no record in a row; enough of them retire the subject.
        let unfound = if reading.observation.no_record {
            stored.unfound.saturating_add(1)
        } else {
            0
        };
        let retire = unfound >= context.schedule.retire_after_unfound;
        let planned = after_check(
            context.schedule,
            status,
            found,
            stored.check_step,
            context.now,
            &stored.key(),
        );
        let next = match (recheck_at, retire) {
            (Some(at), _) => NextCheck { at, step: 0 },
            (None, true) => NextCheck {
                at: never(),
                step: planned.step,
            },
            (None, false) => planned,
        };
        Self {
            polled_at: reading.polled_at.unwrap_or_else(epoch),
            last_checked_at,
            next,
            retire,
            unfound,
            now: context.now,
        }
    }
}

/// The compare-and-set write of a reading: its bookkeeping and windows, and with a change the
/// new state, one version further.
fn reading_update(
    stored: &SubjectRow,
    bookkeeping: &Bookkeeping,
    next_state: &Recorded,
    effect: &Effect,
    source: Source,
) -> Statement {
    let mut params: Vec<SqlValue> = vec![
        stored.provider.as_str().into(),
        stored.subject_ref.as_str().into(),
        stored.revision.into(),
        stored.version.into(),
        bookkeeping.polled_at.into(),
        bookkeeping.next.at.into(),
        bookkeeping.next.step.into(),
        bookkeeping.retire.into(),
        bookkeeping.now.into(),
        bookkeeping.last_checked_at.into(),
        bookkeeping.unfound.into(),
        next_state.window.from.into(),
        next_state.window.to.into(),
        next_state.window.provider_at.into(),
        aml_window_value(next_state, |w| w.from),
        aml_window_value(next_state, |w| w.to),
    ];
    let mut set = format!(
        "{SCHEDULE}, last_checked_at = ?10, unfound = ?11, failures = 0, last_error = NULL, \
         observed_at = ?12, observed_until = ?13, observed_provider_at = ?14, \
         aml_observed_at = ?15, aml_observed_until = ?16"
    );
    if let Effect::Changed(change) = effect {
        let state = &change.next;
        let aml = state.aml.as_ref();
        set.push_str(
            ", status = ?17, provider_status = ?18, sub_status = ?19, aml_status = ?20, \
             aml_risk_level = ?21, status_at = ?22, source = ?23, updated_at = ?9, \
             previous_status = CASE WHEN status <> ?17 THEN status ELSE previous_status END, \
             version = version + 1",
        );
        params.extend([
            state.status.as_str().into(),
            state.provider_status.as_deref().into(),
            state.sub_status.as_deref().into(),
            aml.map(|a| a.status.as_str()).into(),
            aml.and_then(|a| a.risk_level.as_deref()).into(),
            state.status_at.into(),
            source.as_str().into(),
        ]);
    }
    Statement::new(
        format!("UPDATE subjects SET {set} WHERE {GUARD} RETURNING {COLUMNS}"),
        params,
    )
}

/// A change's statements after its write: the history row and the outbox row chained to it.
/// The history row is also what moves the status counts (folded by the cron: see
/// `db::tallies`), so a change writes no tally.
fn plan_change(
    plan: &mut Plan,
    stored: &SubjectRow,
    change: &Change,
    source: Source,
    now: Timestamp,
) {
    plan.project = true;
    plan.history = Some(plan.statements.len());
    plan.statements
        .push(history_row(stored, change, source, now));
    // The outbox: one notification per change a reader was told of, chained to the history
    // row, so it exists exactly when the change does. A status change carries the AML too
    // (`aml`, `previous_aml`): one change, one version, one notification.
    let kind = if change.status_changed {
        Some(Kind::StatusChanged)
    } else if change.aml_changed {
        Some(Kind::AmlUpdated)
    } else {
        None
    };
    if let Some(kind) = kind {
        plan.notification = Some(plan.statements.len());
        plan.statements.push(insert_if_previous_changed(
            stored.provider,
            &stored.subject_ref,
            kind,
            payload(kind, stored, change, source, now),
            now,
        ));
    }
}

/// The AML window's bound as stored: none while nothing about AML was ever read.
fn aml_window_value(
    state: &crate::transition::Recorded,
    bound: impl Fn(crate::observation::Window) -> Timestamp,
) -> SqlValue {
    state
        .aml
        .as_ref()
        .map_or(SqlValue::Null, |_| bound(state.aml_window).into())
}

/// When a recorded webhook last announced something: its first arrival, or its latest repeat
/// when the body is undated. A dated body repeated is the same event, about the same change
/// (a provider's retry, a replay); an undated one may be a new event in the same bytes.
pub(crate) const ANNOUNCED_AT: &str =
    "CASE WHEN w.provider_at IS NULL THEN COALESCE(w.last_at, w.at) ELSE w.at END";

/// The history row of a change, chained to the guard. Drift is suspected here, when the
/// change is written: a status change found by polling is suspected drift unless a webhook
/// announcing its status (or any change) arrived since the status it replaces took effect
/// (less the tolerated skew for one naming the status, when that time is the provider's),
/// including webhooks that arrived while this check was in flight. Webhooks before that, and
/// bodies the provider dated before that (less the skew), were about an earlier episode
/// (docs/ordering.md, "Drift"). The cron settles suspicions after [`DRIFT_GRACE`] (a webhook
/// slower than the poll still counts).
fn history_row(stored: &SubjectRow, change: &Change, source: Source, now: Timestamp) -> Statement {
    let fields = match (change.status_changed, change.aml_changed) {
        (true, true) => "status,aml",
        (true, false) => "status",
        (false, true) => "aml",
        (false, false) => "detail",
    };
    let status_since = stored.status_at.unwrap_or_else(epoch);
    // A status a poll found took effect no earlier than that poll was sent, on our clock, and a
    // webhook about any later change arrives after it. A status an authenticated body dated
    // is on the provider's clock, which may run ahead of ours: a later change's webhook may
    // arrive up to the tolerated skew before that time.
    let named_since = if stored.source == Some(Source::Webhook) {
        status_since - crate::observation::CLOCK_TOLERANCE
    } else {
        status_since
    };
    let announced = crate::db::events::webhook_exists(
        "w.provider = ?1 AND w.ref = ?2",
        &format!(
            "(w.provider_at IS NULL OR w.provider_at >= ?14) \
             AND ((w.announces = ?7 AND {ANNOUNCED_AT} >= ?9) \
               OR (w.announces = ?10 AND {ANNOUNCED_AT} >= ?13))"
        ),
    );
    statement!(
        format!("INSERT INTO events (provider, ref, type, kind, at, source, from_status, to_status, moves, drift) \
         SELECT ?1, ?2, 'change', ?3, ?4, ?5, ?6, ?7, ?15, \
           CASE WHEN ?8 AND NOT {announced} THEN ?11 ELSE ?12 END \
         WHERE changes() = 1 RETURNING drift"),
        stored.provider.as_str(),
        stored.subject_ref.as_str(),
        fields,
        now,
        source.as_str(),
        change.previous.as_str(),
        change.next.status.as_str(),
        change.may_be_drift(source),
        named_since,
        ANY_CHANGE,
        SUSPECTED_DRIFT,
        NO_DRIFT,
        // "Something changed" names no status: only one that arrived after the status on
        // record took effect can be about this change. With the skew margin, the webhook of
        // the previous change, seconds earlier, would pass for this one's.
        status_since,
        // A dated body is about a change the provider made when it dated it: a change after
        // the status on record took effect is dated no earlier than that, less the skew. An
        // older body arriving now (a late first delivery) is about an earlier episode.
        status_since - crate::observation::CLOCK_TOLERANCE,
        // The fold moves the status counts of this change (see `db::tallies`).
        change.status_changed
    )
}

fn plan_failure(
    stored: &SubjectRow,
    failure: &CheckFailure,
    sent_at: Timestamp,
    context: Context<'_>,
) -> Plan {
    // A check sent no earlier than this one has answered since: this failure is old news and
    // must not overwrite that answer's schedule (a 404 would push a pending subject a week
    // out) nor count against the provider.
    if stored
        .last_checked_at
        .is_some_and(|checked| checked >= sent_at)
    {
        return Plan::stale(vec![]);
    }
    let scope = failure.scope();
    let class = failure.to_string();
    let failures = stored.failures.saturating_add(1);
    let seed = stored.key();
    let unfound = if failure.is_unfound() {
        stored.unfound.saturating_add(1)
    } else {
        stored.unfound
    };
    let retire = unfound >= context.schedule.retire_after_unfound;
    let (health, next_at) = match scope {
        FailureScope::Provider {
            retry_after,
            rate_limited,
        } => {
            let next_at =
                after_failure(context.schedule, failures, retry_after, context.now, &seed);
            // A rate limit pauses every check of the provider until then, not only this one.
            let paused_until = rate_limited.then_some(next_at);
            let health = provider_failed(stored.provider, &class, paused_until, context.now);
            (Some(health), next_at)
        }
        // Someone is waiting for this check (a webhook said the subject changed, an operator
        // asked): the provider may not have the subject yet, so try again soon, a few times.
        FailureScope::Subject if stored.check_requested() && failures <= SHORT_RETRIES => (
            None,
            after_failure(context.schedule, failures, None, context.now, &seed),
        ),
        // The provider is healthy and would say the same again soon: ask at the slow cadence.
        FailureScope::Subject => (
            None,
            context.now + jitter(context.schedule.terminal_recheck(), &seed, 0),
        ),
    };
    let next_at = if retire { never() } else { next_at };
    let mut statements = vec![statement!(
        format!(
            "UPDATE subjects SET {SCHEDULE}, failures = ?10, last_error = ?11, unfound = ?12 \
             WHERE {GUARD} RETURNING {COLUMNS}"
        ),
        stored.provider.as_str(),
        stored.subject_ref.as_str(),
        stored.revision,
        stored.version,
        sent_at,
        next_at,
        stored.check_step,
        retire,
        context.now,
        failures,
        class.as_str(),
        unfound
    )];
    // Chained to the guard: a failure that loses its race and is planned again counts once.
    statements.extend(health);
    Plan {
        guard: Some(0),
        statements,
        history: None,
        notification: None,
        effect: Effect::Failed { class, scope },
        project: false,
        recheck_at: None,
    }
}

/// How often a healthy provider's row is touched at most: a success is recorded only when
/// it ends a failure streak or a pause, or once a minute, not on every check.
const HEALTH_REFRESH: TimeDelta = TimeDelta::minutes(1);

/// How long before a check's request a look at the provider's health may have been taken for
/// the check to skip recording its success: a load's look is a D1 round trip old, a webhook
/// batch's as old as the queue's delay (up to `max_batch_timeout`, a second).
const HEALTH_LOOK_AGE: TimeDelta = TimeDelta::seconds(2);

/// A success ends a failure streak and a rate-limit pause only if its request was sent after
/// the last failure was recorded: an answer to a request sent before a 429 says nothing about
/// whether the provider wants us to wait.
fn provider_succeeded(provider: Provider, sent_at: Timestamp, now: Timestamp) -> Statement {
    statement!(
        "INSERT INTO provider_health (provider, consecutive_failures, last_success_at) \
         VALUES (?1, 0, ?2) ON CONFLICT (provider) DO UPDATE SET consecutive_failures = 0, \
           paused_until = NULL, last_success_at = excluded.last_success_at \
         WHERE (last_failure_at IS NULL OR last_failure_at < ?4) \
           AND (consecutive_failures > 0 OR paused_until IS NOT NULL \
             OR last_success_at IS NULL OR last_success_at < ?3)",
        provider.as_str(),
        now,
        now - HEALTH_REFRESH,
        sent_at
    )
}

fn provider_failed(
    provider: Provider,
    class: &str,
    paused_until: Option<Timestamp>,
    now: Timestamp,
) -> Statement {
    statement!(
        "INSERT INTO provider_health (provider, consecutive_failures, last_failure_at, last_error, \
           paused_until) \
         SELECT ?1, 1, ?2, ?3, ?4 WHERE changes() = 1 ON CONFLICT (provider) DO UPDATE SET \
           consecutive_failures = consecutive_failures + 1, last_failure_at = ?2, \
           last_error = ?3, paused_until = COALESCE(?4, paused_until)",
        provider.as_str(),
        now,
        class,
        SqlValue::from(paused_until)
    )
}

#[cfg(test)]
mod tests;
