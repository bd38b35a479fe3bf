//! What a cron run does, decided before it is done: what it asks D1 first, what it folds and
//! prunes, which providers it leases for and how many of each provider's due subjects, the jobs
//! it queues and what it gives back when queueing fails part-way. The adapter (`src/cron.rs`)
//! runs these plans and reads their batches through the readers here, never by position.

use crate::db::runs::{self, Agenda};
use crate::db::subjects::{claim_due, release, DueSubject};
use crate::db::tallies::{self, Activity};
use crate::db::{alerts, events, notifications, row, Rows, Statement};
use crate::jobs::{Job, ReconcileJob};
use crate::reconcile::DRIFT_GRACE;
use crate::statement;
use crate::subject::{ref_for_log, Provider, SubjectRef};
use crate::time::{TimeDelta, Timestamp};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// Rows deleted per table and run at most: pruning never costs more than this a run.
pub const PRUNE_BATCH: u32 = 1_000;

/// The run's first batch: its [`Agenda`] and every tally. Due subjects are counted up to four
/// budgets per provider: a backlog must not cost a row read per subject on every run. `kept`:
/// how long events, notifications and alerts are kept.
pub fn survey(
    enabled: &[Provider],
    now: Timestamp,
    budget: u32,
    kept: TimeDelta,
) -> Vec<Statement> {
    vec![
        runs::agenda(
            enabled,
            now,
            budget.saturating_mul(4),
            now - DRIFT_GRACE,
            now - kept,
        ),
        statement!(tallies::ALL),
    ]
}

/// A [`survey`]'s answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Surveyed {
    pub agenda: Agenda,
    /// Every tally before this run's fold (status counts lag by the changes it folds: the
    /// statuses at the run are [`Folded::tallies`]').
    pub tallies: Rows,
}

impl Surveyed {
    pub fn read(results: &[Rows]) -> Self {
        let empty = Rows::new();
        Surveyed {
            agenda: Agenda::read(results.first().unwrap_or(&empty)),
            tallies: results.get(1).cloned().unwrap_or_default(),
        }
    }
}

/// The fold, when the agenda has something to fold, and the retention's pruning, as one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Housekeeping {
    pub statements: Vec<Statement>,
    /// Where the fold's counts and the tallies it leaves are returned, when it folds.
    fold: Option<FoldAnswers>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FoldAnswers {
    activity: usize,
    tallies: usize,
}

/// What [`Housekeeping`]'s batch left: the counts folded (per provider) and every tally after
/// the fold, which the alerts watch (drift is settled there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Folded {
    pub activity: BTreeMap<Provider, Activity>,
    pub tallies: Rows,
}

impl Housekeeping {
    /// What the agenda found to do: no statements when there is neither anything to fold nor
    /// anything old enough to prune (a quiet run). `kept`: how long events, notifications and
    /// alerts are kept (as given to [`survey`]); `delivery_configured`: without an endpoint,
    /// unsent notifications are pruned too. The pruning comes after the fold: it only deletes
    /// folded events.
    pub fn plan(
        agenda: &Agenda,
        now: Timestamp,
        kept: TimeDelta,
        delivery_configured: bool,
    ) -> Self {
        let before = now - kept;
        let mut statements = vec![];
        let mut answers = None;
        if agenda.fold {
            statements = tallies::fold(now, DRIFT_GRACE);
            answers = Some(FoldAnswers {
                // The fold's first statement counts what it folds.
                activity: 0,
                tallies: statements.len(),
            });
            statements.push(statement!(tallies::ALL));
        }
        if agenda.prune {
            statements.push(events::prune(before, PRUNE_BATCH));
            statements.push(notifications::prune(
                before,
                PRUNE_BATCH,
                !delivery_configured,
            ));
            statements.extend(alerts::prune(before, PRUNE_BATCH));
        }
        Housekeeping {
            statements,
            fold: answers,
        }
    }

    /// Read the batch; without a fold nothing was counted and the surveyed tallies stand.
    pub fn read(&self, results: &[Rows], surveyed: &Surveyed) -> Folded {
        let Some(at) = self.fold else {
            return Folded {
                activity: BTreeMap::new(),
                tallies: surveyed.tallies.clone(),
            };
        };
        Folded {
            activity: results
                .get(at.activity)
                .map(|rows| tallies::activity(rows))
                .unwrap_or_default(),
            tallies: results.get(at.tallies).cloned().unwrap_or_default(),
        }
    }
}

/// Why a run leases nothing for a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Not configured in this deployment: its subjects never drain.
    Disabled,
    /// Answered 429 and is paused until its `Retry-After`.
    Paused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    pub provider: Provider,
    pub reason: SkipReason,
}

/// As the run's record and log name it: `provider:reason`.
impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = match self.reason {
            SkipReason::Disabled => "disabled",
            SkipReason::Paused => "paused",
        };
        write!(f, "{}:{reason}", self.provider)
    }
}

/// Every registered provider, in the registry's order: leased for, or skipped and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partition {
    pub active: Vec<Provider>,
    pub skipped: Vec<Skipped>,
}

impl Partition {
    pub fn of(enabled: &[Provider], paused: &[Provider]) -> Self {
        let mut partition = Partition::default();
        for provider in Provider::all() {
            let reason = if !enabled.contains(&provider) {
                SkipReason::Disabled
            } else if paused.contains(&provider) {
                SkipReason::Paused
            } else {
                partition.active.push(provider);
                continue;
            };
            partition.skipped.push(Skipped { provider, reason });
        }
        partition
    }

    /// The skipped providers as the run's record and log name them.
    pub fn skipped_names(&self) -> Vec<String> {
        self.skipped.iter().map(Skipped::to_string).collect()
    }
}

/// An active provider as the budget sees it: how many it has due (the agenda's count) and how
/// many its API's rate limit allows a run (`max_checks_per_run`; unlimited when it has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    pub provider: Provider,
    pub due: u32,
    pub cap: u32,
}

impl Lane {
    pub fn all(active: &[Provider], agenda: &Agenda) -> Vec<Lane> {
        active
            .iter()
            .map(|&provider| Lane {
                provider,
                due: agenda.due(provider),
                cap: provider
                    .registration()
                    .max_checks_per_run
                    .unwrap_or(u32::MAX),
            })
            .collect()
    }
}

/// One lease: up to `limit` of the provider's due subjects, oldest due first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub provider: Provider,
    pub limit: u32,
    /// How many more the provider's cap allows past this claim: a refill's most.
    room: u32,
}

impl Claim {
    pub fn statement(&self, now: Timestamp, lease_until: Timestamp) -> Statement {
        claim_due(self.provider, now, lease_until, self.limit)
    }
}

/// The first round of leases: each active provider gets an equal share of the budget (rounded
/// up), never more than its cap; a provider with nothing due is not asked (the count said so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPlan {
    budget: u32,
    pub claims: Vec<Claim>,
}

impl ClaimPlan {
    /// Equal shares that add up to the budget exactly (the first `budget % lanes` get one
    /// more), so a first round never leases past it.
    pub fn first_round(budget: u32, lanes: &[Lane]) -> Self {
        let count = lanes.len().max(1) as u32;
        let (base, extra) = (budget / count, budget % count);
        let claims = lanes
            .iter()
            .zip(0..)
            .map(|(lane, index)| (lane, base + u32::from(index < extra)))
            .filter(|(lane, share)| lane.due > 0 && *share > 0)
            .map(|(lane, share)| Claim {
                provider: lane.provider,
                limit: share.min(lane.cap),
                room: lane.cap.saturating_sub(share),
            })
            .collect();
        ClaimPlan { budget, claims }
    }

    /// The refill round, from how many rows each of [`Self::claims`] leased (in order): a
    /// provider that filled its share while its cap allows more may have more due; it gets what
    /// the others left.
    pub fn refills(&self, leased: &[u32]) -> Refills {
        let filled = self
            .claims
            .iter()
            .zip(leased)
            .filter(|(claim, &leased)| leased == claim.limit && claim.room > 0)
            .map(|(claim, _)| *claim)
            .collect::<Vec<_>>();
        Refills {
            budget: self.budget,
            filled: filled.into_iter(),
        }
    }
}

/// The refills, one after another: each is told how many jobs the run has so far, since what
/// one refill leases is not there for the next.
#[derive(Debug, Clone)]
pub struct Refills {
    budget: u32,
    filled: std::vec::IntoIter<Claim>,
}

impl Refills {
    /// The next refill: what is left of the budget after `jobs`, never past the provider's cap.
    /// `None` when every filled provider has had its turn.
    pub fn next(&mut self, jobs: u32) -> Option<Claim> {
        self.filled.find_map(|claim| {
            let left = self.budget.saturating_sub(jobs).min(claim.room);
            (left > 0).then_some(Claim {
                provider: claim.provider,
                limit: left,
                room: 0,
            })
        })
    }
}

/// A lease's rows: the subjects to queue, and the rows this version could not read (leased,
/// but never guessed into a job: `provider/ref: error`, the ref as logs name it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leased {
    pub subjects: Vec<DueSubject>,
    pub unreadable: Vec<String>,
}

impl Leased {
    pub fn read(rows: &Rows) -> Self {
        let mut leased = Leased::default();
        for found in rows {
            match row::<DueSubject>(found) {
                Ok(due) => leased.subjects.push(due),
                Err(error) => {
                    let text = |name: &str| found.get(name).and_then(Value::as_str).unwrap_or("?");
                    leased.unreadable.push(format!(
                        "{}/{}: {error}",
                        text("provider"),
                        ref_for_log(text("ref"))
                    ));
                }
            }
        }
        leased
    }
}

/// One reconcile job per leased subject, in lease order.
pub fn jobs(leased: &[DueSubject]) -> Vec<Job> {
    leased
        .iter()
        .map(|due| {
            Job::Reconcile(ReconcileJob {
                provider: due.provider,
                subject_ref: due.subject_ref.clone(),
                ref_kind: due.ref_kind,
                trusted: None,
                aml: false,
                subject: None,
            })
        })
        .collect()
}

/// Give back the subjects whose jobs could not be queued, one statement per provider (in the
/// registry's order): due again at `now` instead of at the lease's end.
pub fn releases(unsent: &[DueSubject], now: Timestamp) -> Vec<Statement> {
    Provider::all()
        .filter_map(|provider| {
            let refs: Vec<&SubjectRef> = unsent
                .iter()
                .filter(|due| due.provider == provider)
                .map(|due| &due.subject_ref)
                .collect();
            (!refs.is_empty()).then(|| release(provider, &refs, now))
        })
        .collect()
}

#[cfg(test)]
mod tests;
