//! Tallies: the counts `/v1/stats` shows, kept without writing a counter row per request.
//! A new subject counts as `unknown` in the transaction that creates it. Status moves,
//! webhook, duplicate, change and drift counts are folded from event rows once per cron run
//! (every status change writes a `change` row naming both statuses, marked `moves`, in its
//! own transaction); between runs, stats add the rows since the last fold, so every figure is
//! exact. Change rows of versions that moved the counts themselves are not marked.
//!
//! Every tally name is built here and nowhere else.

use super::{Row, Statement};
use crate::statement;
use crate::status::KycStatus;
use crate::subject::Provider;
use crate::time::{TimeDelta, Timestamp};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// A named count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    /// Subjects of a provider in a status.
    Status(Provider, KycStatus),
    /// Webhooks accepted as new events.
    Accepted(Provider),
    /// Webhooks that repeated an earlier body.
    Duplicates(Provider),
    /// Changes applied to subjects.
    Changes(Provider),
    /// Changes found by polling that no webhook announced.
    Drift(Provider),
    /// Notifications the application acknowledged.
    Delivered,
    /// Not a count: when the first imported subject of the latest import falls due (ms).
    FirstChecksFrom(Provider),
    /// Not a count: when the next imported subject's first check may fall due (ms); the last
    /// one scheduled falls due just before. Imports are spread from here on.
    FirstChecksUntil(Provider),
    /// Not a count: how many subjects the latest import statement created.
    ImportCreated,
}

impl Tally {
    pub fn name(self) -> String {
        match self {
            Tally::Status(p, s) => format!("status.{p}.{s}"),
            Tally::Accepted(p) => format!("webhook.accepted.{p}"),
            Tally::Duplicates(p) => format!("webhook.duplicate.{p}"),
            Tally::Changes(p) => format!("changes.{p}"),
            Tally::Drift(p) => format!("drift.{p}"),
            Tally::Delivered => "notify.delivered".to_owned(),
            Tally::FirstChecksFrom(p) => format!("first_checks.{p}.from"),
            Tally::FirstChecksUntil(p) => format!("first_checks.{p}.until"),
            Tally::ImportCreated => "import.created".to_owned(),
        }
    }
}

impl Tally {
    /// The tally a name stands for; `None` for names of other things (the fold's mark,
    /// counts an older version kept).
    pub fn parse(name: &str) -> Option<Tally> {
        let parts: Vec<&str> = name.splitn(3, '.').collect();
        match parts.as_slice() {
            ["status", provider, status] => Some(Tally::Status(
                Provider::parse(provider)?,
                KycStatus::parse(status)?,
            )),
            ["webhook", "accepted", provider] => Some(Tally::Accepted(Provider::parse(provider)?)),
            ["webhook", "duplicate", provider] => {
                Some(Tally::Duplicates(Provider::parse(provider)?))
            }
            ["changes", provider] => Some(Tally::Changes(Provider::parse(provider)?)),
            ["drift", provider] => Some(Tally::Drift(Provider::parse(provider)?)),
            ["notify", "delivered"] => Some(Tally::Delivered),
            ["first_checks", provider, "from"] => {
                Some(Tally::FirstChecksFrom(Provider::parse(provider)?))
            }
            ["first_checks", provider, "until"] => {
                Some(Tally::FirstChecksUntil(Provider::parse(provider)?))
            }
            ["import", "created"] => Some(Tally::ImportCreated),
            _ => None,
        }
    }
}

/// Event counts of one provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Activity {
    pub webhooks: i64,
    pub duplicates: i64,
    pub changes: i64,
    pub drift: i64,
}

/// Per provider, what [`SINCE_FOLD`] (or the fold's first statement) counted.
pub fn activity(rows: &[Row]) -> BTreeMap<Provider, Activity> {
    let mut by_provider: BTreeMap<Provider, Activity> = BTreeMap::new();
    for found in rows {
        let (Some(provider), Some(kind)) = (
            found
                .get("provider")
                .and_then(Value::as_str)
                .and_then(Provider::parse),
            found.get("type").and_then(Value::as_str),
        ) else {
            continue;
        };
        let n = found.get("n").and_then(Value::as_i64).unwrap_or(0);
        let entry = by_provider.entry(provider).or_default();
        match kind {
            "webhook" => entry.webhooks += n,
            "duplicate" => entry.duplicates += n,
            _ => {
                entry.changes += n;
                entry.drift += found.get("drift").and_then(Value::as_i64).unwrap_or(0);
            }
        }
    }
    by_provider
}

/// Every count, exact: the tallies plus what happened since the last fold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub statuses: BTreeMap<Provider, BTreeMap<KycStatus, i64>>,
    pub activity: BTreeMap<Provider, Activity>,
    pub delivered: i64,
    /// Per provider, when the last imported subject's first check falls due (ms).
    pub first_checks_until: BTreeMap<Provider, i64>,
}

/// Per provider and status, how many subjects the changes in [`SINCE_FOLD`]'s rows moved
/// into (positive) or out of (negative) it.
fn status_moves(rows: &[Row]) -> Vec<(Provider, KycStatus, i64)> {
    let mut moves = Vec::new();
    for found in rows {
        let text = |name: &str| found.get(name).and_then(Value::as_str);
        if found.get("moves").and_then(Value::as_i64) != Some(1) {
            continue;
        }
        let (Some(provider), Some("change"), Some(from), Some(to)) = (
            text("provider").and_then(Provider::parse),
            text("type"),
            text("from_status").and_then(KycStatus::parse),
            text("to_status").and_then(KycStatus::parse),
        ) else {
            continue;
        };
        let n = found.get("n").and_then(Value::as_i64).unwrap_or(0);
        if from != to {
            moves.push((provider, from, -n));
            moves.push((provider, to, n));
        }
    }
    moves
}

/// Counts from [`ALL`]'s rows and [`SINCE_FOLD`]'s rows.
pub fn counts(tallies: &[Row], since_fold: &[Row]) -> Counts {
    let mut counts = Counts {
        activity: activity(since_fold),
        ..Counts::default()
    };
    for (provider, status, delta) in status_moves(since_fold) {
        *counts
            .statuses
            .entry(provider)
            .or_default()
            .entry(status)
            .or_default() += delta;
    }
    for tally in tallies {
        let (Some(tally), Some(value)) = (
            tally
                .get("name")
                .and_then(Value::as_str)
                .and_then(Tally::parse),
            tally.get("value").and_then(Value::as_i64),
        ) else {
            continue;
        };
        match tally {
            Tally::Status(provider, status) => {
                *counts
                    .statuses
                    .entry(provider)
                    .or_default()
                    .entry(status)
                    .or_default() += value;
            }
            Tally::Accepted(p) => counts.activity.entry(p).or_default().webhooks += value,
            Tally::Duplicates(p) => counts.activity.entry(p).or_default().duplicates += value,
            Tally::Changes(p) => counts.activity.entry(p).or_default().changes += value,
            Tally::Drift(p) => counts.activity.entry(p).or_default().drift += value,
            Tally::Delivered => counts.delivered += value,
            Tally::FirstChecksUntil(p) => {
                counts.first_checks_until.insert(p, value);
            }
            Tally::FirstChecksFrom(_) | Tally::ImportCreated => {}
        }
    }
    counts
}

/// Add `delta` to a tally, only if the statement before it in the batch changed exactly one
/// row (see `reconcile`: the chain of guarded statements).
pub fn add_if_previous_changed(tally: Tally, delta: i64) -> Statement {
    statement!(
        "INSERT INTO tallies (name, value) SELECT ?1, ?2 WHERE changes() = 1 \
         ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        tally.name(),
        delta
    )
}

/// Event counts since the last fold, by provider, type and (for changes) the statuses moved
/// from and to and whether the fold moves them, with the drift among changes: rows
/// `{provider, type, from_status, to_status, moves, n, drift}`. `NOT INDEXED`: left to itself SQLite serves the GROUP BY
/// from `events_by_subject` and reads the whole table; the id range reads only what is new.
/// Changes are written as suspected drift or not ([`crate::reconcile::SUSPECTED_DRIFT`]) and
/// counted as drift when the cron settles them ([`fold`]); `drift = 1` rows here are only
/// those an older version wrote.
pub const SINCE_FOLD: &str =
    "SELECT provider, type, from_status, to_status, moves, COUNT(*) AS n, \
       SUM(drift = 1) AS drift \
     FROM events NOT INDEXED \
     WHERE id > (SELECT value FROM tallies WHERE name = 'fold.events') \
       AND type IN ('webhook', 'duplicate', 'change') \
     GROUP BY provider, type, from_status, to_status, moves";

/// A webhook of the same subject announcing the change's status (or any change) that arrived
/// after the change was written and no later than `?2` after it (`c` is the change); a repeat
/// counts only for an undated body (see [`crate::reconcile::ANNOUNCED_AT`]).
fn late_announcement() -> String {
    super::events::webhook_exists(
        "w.provider = c.provider AND w.ref = c.ref",
        "w.announces IN (c.to_status, '*') \
         AND ((w.at > c.at AND w.at <= c.at + ?2) \
           OR (w.provider_at IS NULL AND w.last_at > c.at AND w.last_at <= c.at + ?2))",
    )
}

/// Suspected drift old enough to settle (`?1`: written no later than this) and already
/// folded (so the fold never counts it).
pub(crate) const SETTLING: &str = "c.drift = 2 AND c.at <= ?1 \
     AND c.id <= (SELECT value FROM tallies WHERE name = 'fold.events')";

/// Fold the events since the last fold into the tallies and move the mark, then settle the
/// suspected drift written at least `grace` before `now`: a change no webhook announced, not
/// even one arriving up to `grace` after the poll that found it, is drift (counted); the
/// others are not. One batch (a transaction: no event can slip between the count and the
/// mark). The first statement returns what was folded (as [`SINCE_FOLD`]).
pub fn fold(now: Timestamp, grace: TimeDelta) -> Vec<Statement> {
    let late = late_announcement();
    let cutoff = now - grace;
    let grace_ms = grace.num_milliseconds();
    vec![
        statement!(SINCE_FOLD),
        // One scan of the new rows (materialized), read four ways: counts by type, drift,
        // and each status change as one subject out of its old status and into its new one.
        statement!(format!(
            "WITH new AS MATERIALIZED ({SINCE_FOLD}) \
             INSERT INTO tallies (name, value) \
             SELECT name, SUM(n) FROM ( \
               SELECT CASE type WHEN 'webhook' THEN 'webhook.accepted.' \
                 WHEN 'duplicate' THEN 'webhook.duplicate.' ELSE 'changes.' END || provider \
                 AS name, n FROM new \
               UNION ALL \
               SELECT 'drift.' || provider, drift FROM new WHERE type = 'change' \
               UNION ALL \
               SELECT 'status.' || provider || '.' || to_status, n FROM new \
               WHERE type = 'change' AND moves = 1 AND from_status <> to_status \
               UNION ALL \
               SELECT 'status.' || provider || '.' || from_status, -n FROM new \
               WHERE type = 'change' AND moves = 1 AND from_status <> to_status) \
             WHERE true GROUP BY name HAVING SUM(n) <> 0 \
             ON CONFLICT (name) DO UPDATE SET value = value + excluded.value"
        )),
        statement!(
            "UPDATE tallies SET value = (SELECT COALESCE(MAX(id), value) FROM events) \
             WHERE name = 'fold.events'"
        ),
        statement!(
            format!(
                "INSERT INTO tallies (name, value) \
                 SELECT 'drift.' || c.provider, COUNT(*) FROM events c \
                 WHERE {SETTLING} AND NOT {late} GROUP BY c.provider \
                 ON CONFLICT (name) DO UPDATE SET value = value + excluded.value"
            ),
            cutoff,
            grace_ms
        ),
        statement!(
            format!(
                "UPDATE events AS c SET drift = CASE WHEN {late} THEN 0 ELSE 1 END \
                 WHERE {SETTLING}"
            ),
            cutoff,
            grace_ms
        ),
    ]
}

/// Suspected drift not yet settled, per provider: rows `{provider, n}` (from the partial
/// index of suspects, so it reads only them).
pub const SUSPECTED: &str =
    "SELECT provider, COUNT(*) AS n FROM events WHERE drift = 2 GROUP BY provider";

/// Every tally: rows `{name, value}`.
pub const ALL: &str = "SELECT name, value FROM tallies";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        let mut all = vec![Tally::Delivered, Tally::ImportCreated];
        for provider in Provider::all() {
            all.extend([
                Tally::Accepted(provider),
                Tally::Duplicates(provider),
                Tally::Changes(provider),
                Tally::Drift(provider),
                Tally::FirstChecksFrom(provider),
                Tally::FirstChecksUntil(provider),
            ]);
            all.extend(KycStatus::ALL.map(|s| Tally::Status(provider, s)));
        }
        for tally in all {
            assert_eq!(Tally::parse(&tally.name()), Some(tally), "{}", tally.name());
        }
        for other in [
            "fold.events",
            "webhook.rejected.align",
            "status.onfido.approved",
            "x",
        ] {
            assert_eq!(Tally::parse(other), None, "{other}");
        }
    }

    #[test]
    fn names_are_stable() {
        assert_eq!(
            Tally::Status(Provider::named("argos"), KycStatus::ResubmissionRequired).name(),
            "status.argos.resubmission_required"
        );
        assert_eq!(
            Tally::Accepted(Provider::named("align")).name(),
            "webhook.accepted.align"
        );
        assert_eq!(
            Tally::Duplicates(Provider::named("align")).name(),
            "webhook.duplicate.align"
        );
        assert_eq!(
            Tally::Changes(Provider::named("argos")).name(),
            "changes.argos"
        );
        assert_eq!(Tally::Drift(Provider::named("argos")).name(), "drift.argos");
    }
}
