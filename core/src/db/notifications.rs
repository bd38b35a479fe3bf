//! The `notifications` table (the outbox) and delivery's state. Per subject, a notification
//! is attempted only once every older one is delivered or dead; each attempt is claimed
//! (leased) so two consumers never send the same one at once, and every outcome is written
//! under the attempt count it was claimed with.

use super::tallies::Tally;
use super::{Row, Statement};
use crate::notify::{message_id, Kind};
use crate::statement;
use crate::subject::{Provider, SubjectRef};
use crate::time::{as_millis, format, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A notification's outbox row, chained to the statement before it (the change's history
/// row): it exists exactly when the change does. Returns its `seq`.
pub fn insert_if_previous_changed(
    provider: Provider,
    subject_ref: &SubjectRef,
    kind: Kind,
    payload: String,
    now: Timestamp,
) -> Statement {
    statement!(
        "INSERT INTO notifications (provider, ref, type, payload, created_at, next_attempt_at) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?5 WHERE changes() = 1 RETURNING seq",
        provider.as_str(),
        subject_ref.as_str(),
        kind.as_str(),
        payload,
        now
    )
}

/// No older notification of the same subject is still pending.
const HEAD_OF_SUBJECT: &str = "NOT EXISTS (SELECT 1 FROM notifications older \
     WHERE older.provider = notifications.provider AND older.ref = notifications.ref \
       AND older.seq < notifications.seq AND older.state = 'pending')";

/// Columns of a [`Notification`].
const COLUMNS: &str = "seq, provider, ref, type, payload, created_at, state, attempts, \
     next_attempt_at, expires_at, last_attempt_at, last_response, delivered_at";

/// A notification as stored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Notification {
    pub seq: i64,
    pub provider: Provider,
    #[serde(rename = "ref")]
    pub subject_ref: SubjectRef,
    #[serde(rename = "type")]
    pub kind: String,
    pub payload: String,
    #[serde(with = "as_millis")]
    pub created_at: Timestamp,
    pub state: String,
    pub attempts: u32,
    #[serde(with = "as_millis::option")]
    pub next_attempt_at: Option<Timestamp>,
    #[serde(with = "as_millis::option")]
    pub expires_at: Option<Timestamp>,
    #[serde(with = "as_millis::option")]
    pub last_attempt_at: Option<Timestamp>,
    pub last_response: Option<String>,
    #[serde(with = "as_millis::option")]
    pub delivered_at: Option<Timestamp>,
}

/// What the API shows of a notification.
#[derive(Debug, Serialize)]
pub struct NotificationView<'a> {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub provider: Provider,
    #[serde(rename = "ref")]
    pub subject_ref: &'a SubjectRef,
    pub state: &'a str,
    pub attempts: u32,
    pub created_at: String,
    pub next_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    pub last_response: Option<&'a str>,
    pub delivered_at: Option<String>,
    pub payload: Value,
}

impl Notification {
    pub fn id(&self) -> String {
        message_id(self.seq, self.created_at)
    }

    pub fn view(&self) -> NotificationView<'_> {
        NotificationView {
            id: self.id(),
            kind: &self.kind,
            provider: self.provider,
            subject_ref: &self.subject_ref,
            state: &self.state,
            attempts: self.attempts,
            created_at: format(self.created_at),
            next_attempt_at: self.next_attempt_at.map(format),
            last_attempt_at: self.last_attempt_at.map(format),
            last_response: self.last_response.as_deref(),
            delivered_at: self.delivered_at.map(format),
            payload: serde_json::from_str(&self.payload).unwrap_or(Value::Null),
        }
    }
}

/// Claim notification `seq` for an attempt at `now`: only while it is pending and due, the
/// oldest pending of its subject, and delivery is enabled. Its attempt count moves and it is
/// leased until `lease_until` (a lost attempt is retried then). Returns the row, or nothing
/// when it is not this attempt's to make.
pub fn claim(seq: i64, now: Timestamp, lease_until: Timestamp) -> Statement {
    statement!(
        format!(
            "UPDATE notifications SET attempts = attempts + 1, last_attempt_at = ?2, \
               next_attempt_at = ?3 \
             WHERE seq = ?1 AND state = 'pending' AND next_attempt_at <= ?2 AND {HEAD_OF_SUBJECT} \
               AND NOT EXISTS (SELECT 1 FROM delivery_disabled) \
             RETURNING {COLUMNS}"
        ),
        seq,
        now,
        lease_until
    )
}

/// The next pending notification of the same subject, once `seq` is settled: `{seq}`.
pub fn successor(seq: i64) -> Statement {
    statement!(
        "SELECT next.seq FROM notifications next, notifications settled \
         WHERE settled.seq = ?1 AND next.provider = settled.provider AND next.ref = settled.ref \
           AND next.seq > settled.seq AND next.state = 'pending' \
         ORDER BY next.seq LIMIT 1",
        seq
    )
}

/// The outcome of an attempt, written under the attempt count it was claimed with (a
/// redelivery or a newer claim meanwhile wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again at `retry_at`.
    Retry {
        retry_at: Timestamp,
    },
    /// Retried past its deadline.
    Dead,
    /// The endpoint answered 410: delivery stops until re-enabled.
    Gone,
}

/// The statements that record an attempt's outcome (the subject's next notification, once
/// this one is settled, is [`successor`]'s).
pub fn settle(
    notification: &Notification,
    outcome: &Outcome,
    response: &str,
    now: Timestamp,
) -> Vec<Statement> {
    let (seq, attempts) = (notification.seq, notification.attempts);
    let guard = "seq = ?1 AND state = 'pending' AND attempts = ?2";
    match outcome {
        Outcome::Delivered => vec![
            statement!(
                format!(
                    "UPDATE notifications SET state = 'delivered', delivered_at = ?3, \
                       next_attempt_at = NULL, last_response = ?4 WHERE {guard}"
                ),
                seq,
                attempts,
                now,
                response
            ),
            super::tallies::add_if_previous_changed(Tally::Delivered, 1),
        ],
        Outcome::Dead => vec![statement!(
            format!(
                "UPDATE notifications SET state = 'dead', next_attempt_at = NULL, \
                       last_response = ?3 WHERE {guard}"
            ),
            seq,
            attempts,
            response
        )],
        Outcome::Retry { retry_at } => vec![statement!(
            format!(
                "UPDATE notifications SET next_attempt_at = ?3, last_response = ?4 WHERE {guard}"
            ),
            seq,
            attempts,
            *retry_at,
            response
        )],
        Outcome::Gone => vec![
            statement!(
                "INSERT INTO delivery_disabled (id, disabled_at, reason) VALUES (1, ?1, ?2) \
                 ON CONFLICT (id) DO NOTHING",
                now,
                response
            ),
            // Still pending, due as soon as delivery is enabled again.
            statement!(
                format!(
                    "UPDATE notifications SET next_attempt_at = ?3, last_response = ?4 \
                     WHERE {guard}"
                ),
                seq,
                attempts,
                now,
                response
            ),
        ],
    }
}

/// Pending notifications whose attempt is due and that head their subject's queue, oldest
/// due first, while delivery is enabled: what the cron (re-)sends. `{seq}` rows; a lost queue
/// message is found here.
pub fn due(now: Timestamp, limit: u32) -> Statement {
    statement!(
        format!(
            "SELECT seq FROM notifications INDEXED BY notifications_due \
             WHERE state = 'pending' AND next_attempt_at <= ?1 AND {HEAD_OF_SUBJECT} \
               AND NOT EXISTS (SELECT 1 FROM delivery_disabled) \
             ORDER BY next_attempt_at LIMIT ?2"
        ),
        now,
        limit
    )
}

/// Send notification `seq` again (dead or delivered): pending and due now, retried until
/// `expires_at`. `created_ms` must match (the id names both). Returns `{seq}` when it did.
pub fn redeliver(seq: i64, created_ms: i64, now: Timestamp, expires_at: Timestamp) -> Statement {
    statement!(
        "UPDATE notifications SET state = 'pending', attempts = 0, next_attempt_at = ?3, \
           expires_at = ?4, delivered_at = NULL \
         WHERE seq = ?1 AND created_at = ?2 AND state IN ('dead', 'delivered') RETURNING seq",
        seq,
        created_ms,
        now,
        expires_at
    )
}

/// One notification by id parts.
pub fn load(seq: i64, created_ms: i64) -> Statement {
    statement!(
        format!("SELECT {COLUMNS} FROM notifications WHERE seq = ?1 AND created_at = ?2"),
        seq,
        created_ms
    )
}

/// Turn delivery back on; returns `{disabled_at}` when it was off.
pub const ENABLE: &str = "DELETE FROM delivery_disabled RETURNING disabled_at";

/// Delivery's state: `{disabled_at, reason}` while disabled, no row otherwise.
pub const DISABLED: &str = "SELECT disabled_at, reason FROM delivery_disabled";

/// Pending count and the oldest pending creation time: `{pending, oldest}`.
pub const PENDING: &str = "SELECT COUNT(*) AS pending, MIN(created_at) AS oldest \
     FROM notifications INDEXED BY notifications_due WHERE state = 'pending'";

/// Dead count: `{dead}`.
pub const DEAD: &str =
    "SELECT COUNT(*) AS dead FROM notifications INDEXED BY notifications_dead WHERE state = 'dead'";

/// A page of `GET /v1/notifications`, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub state: Option<State>,
    pub subject: Option<(Provider, SubjectRef)>,
    /// Exclusive: the last `seq` of the previous page.
    pub before: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Delivered,
    Dead,
}

impl State {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(State::Pending),
            "delivered" => Some(State::Delivered),
            "dead" => Some(State::Dead),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Delivered => "delivered",
            State::Dead => "dead",
        }
    }
}

/// The page's statement: a subject's notifications through `notifications_by_subject`, dead
/// ones through `notifications_dead`, the rest newest first by key (pending and delivered
/// are found among the newest).
pub fn list(filter: &ListFilter) -> Statement {
    let mut params = vec![];
    let mut conditions = vec![];
    let index = match (&filter.subject, filter.state) {
        (Some((provider, subject_ref)), _) => {
            params.push(provider.as_str().into());
            params.push(subject_ref.as_str().into());
            conditions.push("provider = ?1 AND ref = ?2".to_owned());
            "INDEXED BY notifications_by_subject "
        }
        (None, Some(State::Dead)) => "INDEXED BY notifications_dead ",
        (None, _) => "",
    };
    if let Some(state) = filter.state {
        // A literal from the enum, not a parameter: a partial index applies only when the
        // query names its condition.
        conditions.push(format!("state = '{}'", state.as_str()));
    }
    params.push(filter.before.unwrap_or(i64::MAX >> 11).into());
    conditions.push(format!("seq < ?{}", params.len()));
    params.push(filter.limit.into());
    Statement::new(
        format!(
            "SELECT {COLUMNS} FROM notifications {index}WHERE {} ORDER BY seq DESC LIMIT ?{}",
            conditions.join(" AND "),
            params.len()
        ),
        params,
    )
}

/// Delete up to `batch` settled notifications created before `before`, oldest first (a key
/// range, like the events' pruning). `unsent_too`: without an endpoint nothing is ever
/// delivered, so pending ones go too (they were a change feed for the API, kept as long as
/// the subjects' history). The newest stays, so `seq` (a plain rowid) never goes back.
pub fn prune(before: Timestamp, batch: u32, unsent_too: bool) -> Statement {
    statement!(
        "DELETE FROM notifications WHERE seq >= (SELECT MIN(seq) FROM notifications) \
           AND seq < (SELECT CASE WHEN (SELECT created_at FROM notifications \
               WHERE seq = (SELECT MIN(seq) FROM notifications)) < ?1 \
             THEN MIN(seq) + ?2 ELSE MIN(seq) END FROM notifications) \
           AND created_at < ?1 AND (state IN ('delivered', 'dead') OR ?3) \
           AND seq < (SELECT MAX(seq) FROM notifications)",
        before,
        batch,
        unsent_too
    )
}

/// The `seq` values a batch's rows carry (`RETURNING seq`, [`due`], successors).
pub fn seqs(rows: &[Row]) -> Vec<i64> {
    rows.iter()
        .filter_map(|row| row.get("seq").and_then(Value::as_i64))
        .collect()
}
