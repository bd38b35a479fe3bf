//! The reconcile decision: from a subject as stored and what one check learned, a *plan*:
//! the guarded statements to run as one D1 batch, the history row, the counts, the schedule
//! and whether to project to KV. Pure: the adapter executes plans and reports whether the
//! guard held; a writer whose guard lost re-reads the subject and plans again.
//!
//! Every write to a subject is a compare-and-set on the state it was decided from: its
//! `version` (moved by every change a reader sees) and its `observed_at` (moved by every
//! confirmation). The statements after the guard form a chain: each runs only if the one
//! before it changed exactly one row (`changes() = 1`), so a lost guard writes nothing at
//! all. Drift is decided inside the batch, against the webhooks recorded by then.

use crate::db::notifications::insert_if_previous_changed;
use crate::db::subjects::{SubjectRow, COLUMNS};
use crate::db::tallies::{add_if_previous_changed, Tally};
use crate::db::{row, Rows, SqlValue, Statement};
use crate::notify::{payload, Kind};
use crate::observation::{Observation, Source};
use crate::outbound::{CheckFailure, FailureScope};
use crate::schedule::{after_check, after_failure, jitter, NextCheck, ScheduleConfig};
use crate::statement;
use crate::subject::Provider;
use crate::time::{epoch, Timestamp};
use crate::transition::{decide, Change, Decision, ANY_CHANGE};
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
}

/// What a plan does when its guard holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The reading is older than the record: nothing to write.
    Stale,
    /// Same state, newer reading: the ordering mark and the schedule move.
    Confirmed,
    /// The state changes (version + 1, history row, counts, KV projection).
    Changed(Change),
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
    /// Indexes of the change's notifications (`RETURNING seq`): the outbox rows.
    pub notifications: Vec<usize>,
    pub effect: Effect,
    /// When the subject is next due, as planned (a request made meanwhile keeps it sooner).
    pub next_check: Option<NextCheck>,
    /// Write the returned row to KV: what a reader sees changed.
    pub project: bool,
    /// Whether the change may be drift (decided in the batch: see [`Plan::history`]).
    pub may_be_drift: bool,
}

/// What a plan's batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The plan writes nothing (a stale reading).
    Nothing,
    /// The guard lost: someone wrote the subject since it was read; nothing was written.
    Lost,
    /// The subject as written, whether the change was drift, and the notifications it
    /// recorded (their `seq`).
    Won {
        row: Box<SubjectRow>,
        drift: bool,
        notifications: Vec<i64>,
    },
}

impl Plan {
    /// Nothing to write about the subject: only `statements` (the provider's health) run.
    fn stale(statements: Vec<Statement>) -> Self {
        Plan {
            statements,
            guard: None,
            history: None,
            notifications: vec![],
            effect: Effect::Stale,
            next_check: None,
            project: false,
            may_be_drift: false,
        }
    }
}

impl Plan {
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
            == Some(1);
        let notifications = self
            .notifications
            .iter()
            .filter_map(|&i| results.get(i))
            .flat_map(|rows| crate::db::notifications::seqs(rows))
            .collect();
        Ok(Written::Won {
            row: Box::new(row(returned)?),
            drift,
            notifications,
        })
    }
}

/// Plan the write for one check of `stored`.
pub fn plan(stored: &SubjectRow, outcome: &Outcome, context: Context<'_>) -> Plan {
    match outcome {
        Outcome::Read(reading) => plan_reading(stored, reading, context),
        Outcome::Failed { failure, sent_at } => plan_failure(stored, failure, *sent_at, context),
    }
}

fn plan_reading(stored: &SubjectRow, reading: &Reading, context: Context<'_>) -> Plan {
    let provider_ok = reading
        .polled_at
        .map(|_| provider_succeeded(stored.provider, context.now));
    let mut statements: Vec<Statement> = provider_ok.into_iter().collect();
    let observation = &reading.observation;
    let seed = stored.key();
    let last_checked_at = match (stored.last_checked_at, reading.polled_at) {
        (Some(stored), Some(polled)) => Some(stored.max(polled)),
        (stored, polled) => stored.or(polled),
    };
    let (effect, next) = match decide(&stored.recorded(), observation) {
        Decision::Stale => {
            // Someone recorded a newer reading, and scheduled after it: leave it all be.
            return Plan::stale(statements);
        }
        Decision::Confirmed { observed_at } => {
            let next = after_check(
                context.schedule,
                stored.status,
                false,
                stored.check_step,
                context.now,
                &seed,
            );
            statements.push(statement!(
                format!(
                    "UPDATE subjects SET observed_at = ?5, last_checked_at = ?6, {SCHEDULE}, \
                       failures = 0, last_error = NULL \
                     WHERE {GUARD} RETURNING {COLUMNS}"
                ),
                stored.provider.as_str(),
                stored.subject_ref.as_str(),
                stored.version,
                stored.observed_at,
                observed_at,
                last_checked_at,
                reading.polled_at.unwrap_or_else(epoch),
                next.at,
                next.step
            ));
            (Effect::Confirmed, next)
        }
        Decision::Apply(change) => {
            let next = after_check(
                context.schedule,
                change.next.status,
                true,
                stored.check_step,
                context.now,
                &seed,
            );
            let state = &change.next;
            let aml = state.aml.as_ref();
            statements.push(statement!(
                format!(
                    "UPDATE subjects SET observed_at = ?5, last_checked_at = ?6, {SCHEDULE}, \
                       failures = 0, last_error = NULL, status = ?10, provider_status = ?11, \
                       sub_status = ?12, aml_status = ?13, aml_risk_level = ?14, status_at = ?15, \
                       source = ?16, updated_at = ?17, version = version + 1 \
                     WHERE {GUARD} RETURNING {COLUMNS}"
                ),
                stored.provider.as_str(),
                stored.subject_ref.as_str(),
                stored.version,
                stored.observed_at,
                state.observed_at,
                last_checked_at,
                reading.polled_at.unwrap_or_else(epoch),
                next.at,
                next.step,
                state.status.as_str(),
                state.provider_status.as_deref(),
                state.sub_status.as_deref(),
                aml.map(|a| a.status.as_str()),
                aml.and_then(|a| a.risk_level.as_deref()),
                state.status_at,
                observation.source.as_str(),
                context.now
            ));
            (Effect::Changed(change), next)
        }
    };
    let guard = statements.len() - 1;
    let mut plan = Plan {
        statements,
        guard: Some(guard),
        history: None,
        notifications: vec![],
        effect,
        next_check: Some(next),
        project: false,
        may_be_drift: false,
    };
    if let Effect::Changed(change) = &plan.effect {
        let change = change.clone();
        plan.project = true;
        plan.may_be_drift = change.may_be_drift(observation.source);
        plan.history = Some(plan.statements.len());
        plan.statements.push(history_row(
            stored,
            &change,
            observation.source,
            plan.may_be_drift,
            context.now,
        ));
        // The outbox: a notification per kind of change a reader was told, chained to the
        // history row, so it exists exactly when the change does.
        let kinds = [
            (change.status_changed, Kind::StatusChanged),
            (change.aml_changed, Kind::AmlUpdated),
        ];
        for kind in kinds
            .into_iter()
            .filter(|(told, _)| *told)
            .map(|(_, kind)| kind)
        {
            plan.notifications.push(plan.statements.len());
            plan.statements.push(insert_if_previous_changed(
                stored.provider,
                &stored.subject_ref,
                kind,
                payload(kind, stored, &change, observation.source, context.now),
                context.now,
            ));
        }
        if change.status_changed {
            plan.statements.extend([
                add_if_previous_changed(Tally::Status(stored.provider, change.previous), -1),
                add_if_previous_changed(Tally::Status(stored.provider, change.next.status), 1),
            ]);
        }
    }
    plan
}

/// The compare-and-set: `?1` provider, `?2` ref, `?3` version and `?4` observed_at as read.
const GUARD: &str = "provider = ?1 AND ref = ?2 AND version = ?3 AND observed_at = ?4";

/// The schedule after a successful check: `?7` when the poll was sent (the epoch for a
/// webhook body), `?8` the planned next check, `?9` its step. A check requested after the
/// poll was sent is still owed, so then the subject stays at least as due as it is.
const SCHEDULE: &str = "next_check_at = CASE WHEN requested_at > ?7 \
       THEN MIN(next_check_at, ?8) ELSE ?8 END, \
     check_step = CASE WHEN requested_at > ?7 THEN 0 ELSE ?9 END";

/// The history row of a change, chained to the guard. Drift is decided here, when the
/// change is written: a change that may be drift is drift unless a webhook recorded since
/// the previous check began announced its status (or any change), including webhooks that
/// arrived while this check was in flight.
fn history_row(
    stored: &SubjectRow,
    change: &Change,
    source: Source,
    may_be_drift: bool,
    now: Timestamp,
) -> Statement {
    let fields = match (change.status_changed, change.aml_changed) {
        (true, true) => "status,aml",
        (true, false) => "status",
        (false, true) => "aml",
        (false, false) => "detail",
    };
    statement!(
        "INSERT INTO events (provider, ref, type, kind, at, source, from_status, to_status, drift) \
         SELECT ?1, ?2, 'change', ?3, ?4, ?5, ?6, ?7, \
           CASE WHEN ?8 AND NOT EXISTS ( \
             SELECT 1 FROM events w WHERE w.provider = ?1 AND w.ref = ?2 \
               AND w.type IN ('webhook', 'duplicate') AND w.at >= ?9 \
               AND w.announces IN (?7, ?10)) THEN 1 ELSE 0 END \
         WHERE changes() = 1 RETURNING drift",
        stored.provider.as_str(),
        stored.subject_ref.as_str(),
        fields,
        now,
        source.as_str(),
        change.previous.as_str(),
        change.next.status.as_str(),
        may_be_drift,
        stored.last_checked_at.unwrap_or_else(epoch),
        ANY_CHANGE
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
        // The provider is healthy and would say the same again soon: ask at the slow cadence.
        FailureScope::Subject => (
            None,
            context.now + jitter(context.schedule.terminal_recheck, &seed, 0),
        ),
    };
    let mut statements = vec![statement!(
        format!(
            "UPDATE subjects SET failures = ?5, last_error = ?6, \
               next_check_at = CASE WHEN requested_at > ?7 THEN MIN(next_check_at, ?8) ELSE ?8 END \
             WHERE {GUARD} RETURNING {COLUMNS}"
        ),
        stored.provider.as_str(),
        stored.subject_ref.as_str(),
        stored.version,
        stored.observed_at,
        failures,
        class.as_str(),
        sent_at,
        next_at
    )];
    // Chained to the guard: a failure that loses its race and is planned again counts once.
    statements.extend(health);
    Plan {
        guard: Some(0),
        statements,
        history: None,
        notifications: vec![],
        effect: Effect::Failed { class, scope },
        next_check: Some(NextCheck {
            at: next_at,
            step: stored.check_step,
        }),
        project: false,
        may_be_drift: false,
    }
}

/// How often a healthy provider's row is touched at most: a success is recorded only when
/// it ends a failure streak or a pause, or once a minute, not on every check.
const HEALTH_REFRESH: TimeDelta = TimeDelta::minutes(1);

fn provider_succeeded(provider: Provider, now: Timestamp) -> Statement {
    statement!(
        "INSERT INTO provider_health (provider, consecutive_failures, last_success_at) \
         VALUES (?1, 0, ?2) ON CONFLICT (provider) DO UPDATE SET consecutive_failures = 0, \
           paused_until = NULL, last_success_at = excluded.last_success_at \
         WHERE consecutive_failures > 0 OR paused_until IS NOT NULL \
           OR last_success_at IS NULL OR last_success_at < ?3",
        provider.as_str(),
        now,
        now - HEALTH_REFRESH
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
