//! The `alerts` and `alert_messages` tables: an evaluation's steps as one batch of guarded
//! statements, and the delivery of each message with its own retries.
//!
//! Every message insert is guarded by `changes() = 1` on the statement before it, so an alert
//! that another invocation raised (or resolved) first is not announced twice.

use super::{Rows, Statement};
use crate::alerts::{body, Kind, OpenAlert, ProviderHealth, Step, RAISED, RESOLVED};
use crate::statement;
use crate::subject::Provider;
use crate::time::{from_millis, TimeDelta, Timestamp};
use serde_json::Value;

pub const OPEN: &str = "SELECT id, key, kind, text, data, raised_at, notified_at FROM alerts \
     WHERE resolved_at IS NULL ORDER BY id";

/// Open alerts of one kind (the request path reads only the cron's).
pub fn open_of(kind: Kind) -> Statement {
    statement!(
        "SELECT id, key, kind, text, data, raised_at, notified_at FROM alerts \
         WHERE resolved_at IS NULL AND kind = ?1",
        kind.as_str()
    )
}

/// Open alerts first, then the latest resolved ones.
pub fn recent(limit: u32) -> Statement {
    statement!(
        "SELECT id, kind, severity, text, data, raised_at, notified_at, resolved_at FROM alerts \
         ORDER BY resolved_at IS NOT NULL, id DESC LIMIT ?1",
        limit
    )
}

/// Messages waiting, failing (pending after a failed attempt: one in flight for the first time
/// has no answer yet) and dead, and the last answer.
pub const DELIVERY: &str = "SELECT \
     COUNT(*) FILTER (WHERE state = 'pending') AS pending, \
     COUNT(*) FILTER (WHERE state = 'pending' AND last_response IS NOT NULL) AS failing, \
     COUNT(*) FILTER (WHERE state = 'dead') AS dead, \
     COUNT(*) FILTER (WHERE state = 'delivered') AS delivered, \
     (SELECT last_response FROM alert_messages WHERE last_response IS NOT NULL \
       AND state != 'delivered' \
       ORDER BY seq DESC LIMIT 1) AS last_error \
     FROM alert_messages";

pub fn read_open(rows: &Rows) -> Vec<OpenAlert> {
    rows.iter()
        .filter_map(|r| {
            let time = |name: &str| r.get(name).and_then(Value::as_i64).and_then(from_millis);
            let text = |name: &str| r.get(name).and_then(Value::as_str).map(str::to_owned);
            Some(OpenAlert {
                id: r.get("id").and_then(Value::as_i64)?,
                key: text("key")?,
                kind: Kind::parse(r.get("kind").and_then(Value::as_str)?)?,
                text: text("text")?,
                data: text("data")?,
                raised_at: time("raised_at")?,
                notified_at: time("notified_at")?,
            })
        })
        .collect()
}

/// A message is due at once (`next_attempt_at` 0): `now` is the cron's scheduled time, which
/// may be ahead of the clock the consumer claims with.
fn message(
    event: &str,
    kind: Kind,
    text: &str,
    data: &str,
    dashboard_url: Option<&str>,
    now: Timestamp,
    guard: Statement,
) -> Statement {
    let data: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    let payload = body(kind, event, text, &data, dashboard_url, now);
    let mut params = vec![event.into(), payload.into(), now.into()];
    params.extend(guard.params);
    Statement::new(
        format!(
            "INSERT INTO alert_messages (alert_id, type, body, created_at, next_attempt_at) \
             SELECT id, ?1, ?2, ?3, 0 FROM alerts WHERE changes() = 1 AND {} \
             RETURNING seq",
            guard.sql
        ),
        params,
    )
}

/// The statements for `steps`. With `deliver` (ALERT_WEBHOOK_URL set) each announcement also
/// inserts a message (`RETURNING seq`: queue those); without, alerts are only recorded.
pub fn plan(
    steps: &[Step],
    now: Timestamp,
    deliver: bool,
    dashboard_url: Option<&str>,
) -> Vec<Statement> {
    let mut statements = vec![];
    for step in steps {
        match step {
            Step::Raise(condition) => {
                let key = condition.key();
                let data = condition.data.to_string();
                statements.push(statement!(
                    "INSERT INTO alerts (key, kind, severity, text, data, raised_at, notified_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) \
                     ON CONFLICT (key) WHERE resolved_at IS NULL DO NOTHING",
                    key.as_str(),
                    condition.kind.as_str(),
                    condition.kind.severity().as_str(),
                    condition.text.as_str(),
                    data.as_str(),
                    now
                ));
                if deliver {
                    statements.push(message(
                        RAISED,
                        condition.kind,
                        &condition.text,
                        &data,
                        dashboard_url,
                        now,
                        statement!("key = ?4 AND resolved_at IS NULL", key),
                    ));
                }
            }
            Step::Remind(alert) => {
                statements.push(statement!(
                    "UPDATE alerts SET notified_at = ?1 \
                     WHERE id = ?2 AND notified_at = ?3 AND resolved_at IS NULL",
                    now,
                    alert.id,
                    alert.notified_at
                ));
                if deliver {
                    statements.push(message(
                        RAISED,
                        alert.kind,
                        &format!("Still: {}", alert.text),
                        &alert.data,
                        dashboard_url,
                        now,
                        statement!("id = ?4", alert.id),
                    ));
                }
            }
            Step::Resolve(alert) => {
                // By key: a condition raised and resolved by the same plan has no id yet.
                statements.push(statement!(
                    "UPDATE alerts SET resolved_at = ?1 WHERE key = ?2 AND resolved_at IS NULL",
                    now,
                    alert.key.as_str()
                ));
                if deliver {
                    statements.push(message(
                        RESOLVED,
                        alert.kind,
                        &alert.text,
                        &alert.data,
                        dashboard_url,
                        now,
                        statement!(
                            "id = (SELECT MAX(id) FROM alerts WHERE key = ?4 AND resolved_at = ?5)",
                            alert.key.as_str(),
                            now
                        ),
                    ));
                }
            }
        }
    }
    statements
}

/// The seqs of messages a plan's batch inserted.
pub fn seqs(results: &[Rows]) -> Vec<i64> {
    results
        .iter()
        .flatten()
        .filter_map(|r| r.get("seq").and_then(Value::as_i64))
        .collect()
}

/// Present once alerts have looked at drift at all.
const DRIFT_LOOKED: &str = "alerts.drift_seen";

/// The tally that remembers how much drift alerts have already seen, per provider.
fn drift_seen(provider: &str) -> String {
    format!("alerts.drift_seen.{provider}")
}

/// Drift counted since the alerts last looked, per provider, from every tally row (`ALL`,
/// read after the fold settled this run's drift), and the statements that move the mark. The
/// first look (no `alerts.drift_seen` tally yet) marks every total, announcing nothing: the
/// drift of the past is not news at the first run after an upgrade. After that a provider
/// without a mark has seen none. Writes only when drift grew (or at that first look).
pub fn drift_since(tallies: &Rows) -> (Vec<(String, u64)>, Vec<Statement>) {
    let value = |name: &str| {
        tallies
            .iter()
            .find(|r| r.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|r| r.get("value"))
            .and_then(Value::as_i64)
    };
    let first_look = value(DRIFT_LOOKED).is_none();
    let mut found = vec![];
    let mut marks = vec![];
    if first_look {
        marks.push(statement!(
            "INSERT INTO tallies (name, value) VALUES (?1, 1) ON CONFLICT (name) DO NOTHING",
            DRIFT_LOOKED
        ));
    }
    for row in tallies {
        let Some(provider) = row
            .get("name")
            .and_then(Value::as_str)
            .and_then(|n| n.strip_prefix("drift."))
        else {
            continue;
        };
        let total = row.get("value").and_then(Value::as_i64).unwrap_or(0);
        let seen = value(&drift_seen(provider));
        let new = match seen {
            Some(seen) => total.saturating_sub(seen).max(0),
            None if first_look => 0,
            None => total.max(0),
        };
        if new > 0 {
            found.push((provider.to_owned(), new as u64));
        }
        if seen != Some(total) {
            marks.push(statement!(
                "INSERT INTO tallies (name, value) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                drift_seen(provider),
                total
            ));
        }
    }
    (found, marks)
}

/// Claims an attempt: nobody else attempts the message until `lease_until`.
pub fn claim(seq: i64, now: Timestamp, lease_until: Timestamp) -> Statement {
    statement!(
        "UPDATE alert_messages SET attempts = attempts + 1, next_attempt_at = ?3 \
         WHERE seq = ?1 AND state = 'pending' AND next_attempt_at <= ?2 \
         RETURNING seq, body, attempts",
        seq,
        now,
        lease_until
    )
}

pub fn delivered(seq: i64, response: &str, now: Timestamp) -> Statement {
    statement!(
        "UPDATE alert_messages SET state = 'delivered', last_response = ?2, settled_at = ?3 \
         WHERE seq = ?1",
        seq,
        response,
        now
    )
}

/// A failed attempt: retried at `retry_at`, or dead without one.
pub fn failed(seq: i64, response: &str, now: Timestamp, retry_at: Option<Timestamp>) -> Statement {
    match retry_at {
        Some(at) => statement!(
            "UPDATE alert_messages SET last_response = ?2, next_attempt_at = ?3 WHERE seq = ?1",
            seq,
            response,
            at
        ),
        None => statement!(
            "UPDATE alert_messages SET state = 'dead', last_response = ?2, settled_at = ?3 \
             WHERE seq = ?1",
            seq,
            response,
            now
        ),
    }
}

/// Messages due an attempt (a lost queue message, a retry too far out for the queue).
pub fn due(now: Timestamp, limit: u32) -> Statement {
    statement!(
        "SELECT seq FROM alert_messages WHERE state = 'pending' AND next_attempt_at <= ?1 \
         ORDER BY seq LIMIT ?2",
        now,
        limit
    )
}

/// Settled messages older than the retention, a bounded number per run; resolved alerts too.
pub fn prune(before: Timestamp, limit: u32) -> Vec<Statement> {
    vec![
        statement!(
            "DELETE FROM alert_messages WHERE seq IN (SELECT seq FROM alert_messages \
             WHERE state != 'pending' AND created_at < ?1 LIMIT ?2)",
            before,
            limit
        ),
        statement!(
            "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts \
             WHERE resolved_at < ?1 LIMIT ?2)",
            before,
            limit
        ),
    ]
}

/// The cron's evaluation reads, as one statement (a quiet run's cost is counted in
/// statements): provider health, the application's delivery state, the previous run (this one
/// is recorded after it), the open alerts and the alert messages due (`due_limit` at most).
/// Each list comes back as a JSON array in its own column; [`CronReads::read`] reads them by
/// name with the same readers as the separate queries.
pub fn cron_reads(now: Timestamp, due_limit: u32) -> Statement {
    statement!(
        "SELECT \
         (SELECT json_group_array(json_object('provider', provider, \
            'consecutive_failures', consecutive_failures, 'paused_until', paused_until, \
            'last_error', last_error)) FROM provider_health) AS health, \
         (SELECT COUNT(*) FROM notifications INDEXED BY notifications_dead \
            WHERE state = 'dead') AS dead, \
         (SELECT json_object('reason', reason) FROM delivery_disabled LIMIT 1) AS disabled, \
         (SELECT MAX(run_id) FROM cron_runs) AS last_run, \
         (SELECT json_group_array(json_object('id', id, 'key', key, 'kind', kind, \
            'text', text, 'data', data, 'raised_at', raised_at, 'notified_at', notified_at)) \
            FROM (SELECT * FROM alerts WHERE resolved_at IS NULL ORDER BY id)) AS open, \
         (SELECT json_group_array(seq) FROM (SELECT seq FROM alert_messages \
            WHERE state = 'pending' AND next_attempt_at <= ?1 ORDER BY seq LIMIT ?2)) AS due",
        now,
        due_limit
    )
}

/// What [`cron_reads`] answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CronReads {
    /// The health of the `enabled` providers only: a disabled one's old row says nothing.
    pub health: Vec<ProviderHealth>,
    pub dead_notifications: u64,
    /// Why delivery to the application is disabled, while it is.
    pub delivery_disabled: Option<String>,
    pub last_run: Option<Timestamp>,
    pub open: Vec<OpenAlert>,
    pub due: Vec<i64>,
}

impl CronReads {
    pub fn read(rows: &Rows, enabled: &[Provider]) -> Self {
        let Some(answer) = rows.first() else {
            return CronReads::default();
        };
        // A JSON column (SQLite hands JSON back as text): its rows, none when absent or unreadable.
        let json_rows = |name: &str| -> Rows {
            answer
                .get(name)
                .and_then(Value::as_str)
                .and_then(|text| serde_json::from_str::<Vec<Value>>(text).ok())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|value| match value {
                    Value::Object(row) => Some(row),
                    _ => None,
                })
                .collect()
        };
        let health = json_rows("health")
            .iter()
            .filter_map(|r| {
                let provider = r.get("provider").and_then(Value::as_str)?;
                let known = Provider::parse(provider).is_some_and(|p| enabled.contains(&p));
                known.then(|| ProviderHealth {
                    provider: provider.to_owned(),
                    consecutive_failures: r
                        .get("consecutive_failures")
                        .and_then(Value::as_u64)
                        .unwrap_or(0),
                    paused_until: r
                        .get("paused_until")
                        .and_then(Value::as_i64)
                        .and_then(from_millis),
                    last_error: r
                        .get("last_error")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                })
            })
            .collect();
        let disabled = answer
            .get("disabled")
            .and_then(Value::as_str)
            .and_then(|text| serde_json::from_str::<Value>(text).ok());
        CronReads {
            health,
            dead_notifications: answer.get("dead").and_then(Value::as_u64).unwrap_or(0),
            delivery_disabled: disabled.map(|d| {
                d.get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("disabled")
                    .to_owned()
            }),
            last_run: answer
                .get("last_run")
                .and_then(Value::as_i64)
                .and_then(from_millis),
            open: read_open(&json_rows("open")),
            due: answer
                .get("due")
                .and_then(Value::as_str)
                .and_then(|text| serde_json::from_str::<Vec<i64>>(text).ok())
                .unwrap_or_default(),
        }
    }
}

/// When the latest cron run was scheduled, from [`super::runs::latest`]'s rows.
fn last_run(rows: &Rows) -> Option<Timestamp> {
    rows.first()
        .and_then(|r| r.get("run_id"))
        .and_then(Value::as_i64)
        .and_then(from_millis)
}

/// A request's look for a stalled cron, as one batch: the latest run and the open stall.
pub fn stall_reads() -> Vec<Statement> {
    vec![super::runs::latest(1), open_of(Kind::CronStalled)]
}

/// What [`stall_reads`]'s batch answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StallReads {
    pub last_run: Option<Timestamp>,
    pub open: Vec<OpenAlert>,
}

impl StallReads {
    pub fn read(results: &[Rows]) -> Self {
        let empty = Rows::new();
        StallReads {
            last_run: last_run(results.first().unwrap_or(&empty)),
            open: read_open(results.get(1).unwrap_or(&empty)),
        }
    }
}

/// An unusable configuration's reads, as one batch: the open configuration alert and the alert
/// messages due (`due_limit` at most).
pub fn configuration_reads(now: Timestamp, due_limit: u32) -> Vec<Statement> {
    vec![open_of(Kind::ConfigurationError), due(now, due_limit)]
}

/// What [`configuration_reads`]'s batch answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigurationReads {
    pub open: Vec<OpenAlert>,
    pub due: Vec<i64>,
}

impl ConfigurationReads {
    pub fn read(results: &[Rows]) -> Self {
        let empty = Rows::new();
        ConfigurationReads {
            open: read_open(results.first().unwrap_or(&empty)),
            due: seqs(results.get(1..2).unwrap_or_default()),
        }
    }
}

/// An attempt's lease: longer than the POST's timeout plus the writes around it.
pub const ATTEMPT_LEASE: TimeDelta = TimeDelta::minutes(2);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{evaluate, ProviderHealth, Readings};
    use crate::db::sqlite::{batch, database, run};

    fn at(minutes: i64) -> Timestamp {
        from_millis(1_800_000_000_000 + minutes * 60_000).unwrap()
    }

    fn readings(failures: u64) -> Readings {
        Readings {
            providers: Some(vec![ProviderHealth {
                provider: "align".into(),
                consecutive_failures: failures,
                paused_until: None,
                last_error: None,
            }]),
            degraded_after_failures: 3,
            ..Readings::default()
        }
    }

    fn step(db: &rusqlite::Connection, r: &Readings, now: Timestamp) -> Vec<i64> {
        let open = read_open(&run(db, &statement!(OPEN)));
        let steps = evaluate(
            &r.conditions(now),
            &open,
            &r.scope(),
            now,
            TimeDelta::hours(4),
        );
        seqs(&batch(db, &plan(&steps, now, true, None)))
    }

    #[test]
    fn drift_is_news_once_and_the_past_is_not() {
        let db = database();
        let all = |db: &rusqlite::Connection| run(db, &statement!(crate::db::tallies::ALL));
        run(
            &db,
            &statement!("INSERT INTO tallies (name, value) VALUES ('drift.align', 4)"),
        );
        let (found, marks) = drift_since(&all(&db));
        assert!(found.is_empty(), "history before the first look");
        assert_eq!(marks.len(), 2);
        batch(&db, &marks);
        assert_eq!(
            drift_since(&all(&db)),
            (vec![], vec![]),
            "nothing new: no write"
        );
        run(
            &db,
            &statement!("UPDATE tallies SET value = 6 WHERE name = 'drift.align'"),
        );
        let (found, marks) = drift_since(&all(&db));
        assert_eq!(found, vec![("align".to_owned(), 2)]);
        batch(&db, &marks);
        assert!(drift_since(&all(&db)).0.is_empty());
        // A provider's first drift after the first look is news.
        run(
            &db,
            &statement!("INSERT INTO tallies (name, value) VALUES ('drift.argos', 1)"),
        );
        assert_eq!(drift_since(&all(&db)).0, vec![("argos".to_owned(), 1)]);
    }

    #[test]
    fn two_invocations_raising_the_same_alert_announce_it_once() {
        let db = database();
        let steps = evaluate(
            &readings(5).conditions(at(0)),
            &[],
            &[],
            at(0),
            TimeDelta::hours(1),
        );
        let first = seqs(&batch(&db, &plan(&steps, at(0), true, None)));
        let second = seqs(&batch(&db, &plan(&steps, at(0), true, None)));
        assert_eq!(first.len(), 1);
        assert!(second.is_empty(), "{second:?}");
        assert_eq!(read_open(&run(&db, &statement!(OPEN))).len(), 1);
    }

    #[test]
    fn raise_remind_resolve_then_a_new_episode() {
        let db = database();
        assert_eq!(step(&db, &readings(3), at(0)).len(), 1);
        assert!(step(&db, &readings(4), at(5)).is_empty());
        assert_eq!(step(&db, &readings(4), at(240)).len(), 1, "reminder");
        assert_eq!(step(&db, &readings(0), at(245)).len(), 1, "resolved");
        assert!(step(&db, &readings(0), at(250)).is_empty());
        assert_eq!(step(&db, &readings(3), at(255)).len(), 1, "a new episode");
        let rows = run(&db, &recent(10));
        assert_eq!(rows.len(), 2);
        assert!(rows[0]["resolved_at"].is_null(), "open first");
        let types: Vec<String> = run(
            &db,
            &statement!("SELECT type FROM alert_messages ORDER BY seq"),
        )
        .iter()
        .map(|r| r["type"].as_str().unwrap().to_owned())
        .collect();
        assert_eq!(
            types,
            [RAISED, RAISED, RESOLVED, RAISED]
                .map(String::from)
                .to_vec()
        );
    }

    #[test]
    fn a_stall_the_cron_notices_itself_is_raised_and_resolved_in_one_batch() {
        let db = database();
        let r = Readings {
            last_cron_run: Some(Some(at(0))),
            cron_period: TimeDelta::minutes(5),
            cron_running: true,
            ..Readings::default()
        };
        let seqs = step(&db, &r, at(30));
        assert_eq!(seqs.len(), 2);
        assert!(read_open(&run(&db, &statement!(OPEN))).is_empty());
    }

    #[test]
    fn messages_are_claimed_once_retried_and_die() {
        let db = database();
        let seq = step(&db, &readings(3), at(0))[0];
        let claimed = run(&db, &claim(seq, at(0), at(2)));
        assert_eq!(claimed.len(), 1);
        assert!(run(&db, &claim(seq, at(1), at(3))).is_empty(), "leased");
        run(&db, &failed(seq, "HTTP 500", at(0), Some(at(1))));
        let delivery = run(&db, &statement!(DELIVERY));
        assert_eq!(delivery[0]["failing"], 1);
        assert_eq!(delivery[0]["last_error"], "HTTP 500");
        assert_eq!(run(&db, &due(at(1), 10)).len(), 1);
        assert_eq!(run(&db, &claim(seq, at(1), at(3))).len(), 1);
        run(&db, &failed(seq, "HTTP 500", at(1), None));
        assert_eq!(run(&db, &statement!(DELIVERY))[0]["dead"], 1);
        assert!(run(&db, &due(at(100), 10)).is_empty());
    }

    #[test]
    fn the_reads_batches_are_read_by_name() {
        let db = database();
        let quiet = CronReads::read(&run(&db, &cron_reads(at(0), 10)), &[]);
        assert_eq!(quiet, CronReads::default());
        let align = Provider::named("align");
        run(
            &db,
            &statement!(
                "INSERT INTO provider_health (provider, consecutive_failures, paused_until) \
                 VALUES ('align', 4, ?1), ('argos', 1, NULL)",
                at(30)
            ),
        );
        run(
            &db,
            &statement!(
                "INSERT INTO delivery_disabled (disabled_at, reason) VALUES (?1, 'gone')",
                at(1)
            ),
        );
        batch(
            &db,
            &crate::db::runs::record(&crate::db::runs::CronRun {
                scheduled_at: at(5),
                started_at: at(5),
                duration_ms: 10,
                due: 0,
                enqueued: 0,
                skipped: vec![],
                activity: "{}".into(),
                statuses: "{}".into(),
            }),
        );
        let seqs = step(&db, &readings(3), at(6));
        let read = CronReads::read(&run(&db, &cron_reads(at(6), 10)), &[align]);
        assert_eq!(
            read.health,
            vec![ProviderHealth {
                provider: "align".into(),
                consecutive_failures: 4,
                paused_until: Some(at(30)),
                last_error: None,
            }],
            "argos is not enabled: its row says nothing"
        );
        assert_eq!(read.delivery_disabled.as_deref(), Some("gone"));
        assert_eq!(read.last_run, Some(at(5)));
        assert_eq!(read.open.len(), 1);
        assert_eq!(read.due, seqs);
        let stall = StallReads::read(&batch(&db, &stall_reads()));
        assert_eq!((stall.last_run, stall.open.len()), (Some(at(5)), 0));
        let configuration = ConfigurationReads::read(&batch(&db, &configuration_reads(at(6), 10)));
        assert_eq!((configuration.open.len(), configuration.due), (0, seqs));
    }
}
