//! One attempt to deliver a notification, decided here and executed by the adapter: the claim
//! (a lease, so no one else sends it meanwhile), then, once the application answered, a
//! [`Settlement`]: the statements that record what the answer means, and what follows (a
//! retry soon enough to go back to the queue, or the subject's next notification, released
//! only once this one is delivered or dead).

use super::{classify, describe_reply, retry_delay, Answer};
use crate::db::notifications::{claim as claim_attempt, seqs, settle, successor};
use crate::db::notifications::{Notification, Outcome};
use crate::db::{Rows, Statement};
use crate::jobs::Job;
use crate::time::{TimeDelta, Timestamp};

/// An attempt in flight is not retried by anyone else before this: longer than the longest
/// POST (`NOTIFY_TIMEOUT_MS`) plus the writes around it.
pub const ATTEMPT_LEASE: TimeDelta = TimeDelta::minutes(2);

/// Retries due sooner than this go back to the queue with a delay; later ones are found by
/// the cron.
pub const QUEUED_RETRY_LIMIT: TimeDelta = TimeDelta::minutes(15);

/// Claim notification `seq` for an attempt at `now`, leased for [`ATTEMPT_LEASE`]: returns
/// the row, or nothing when it is not this attempt's to make (settled, not due, waiting for
/// an older one of its subject, being attempted elsewhere, or delivery is disabled).
pub fn claim(seq: i64, now: Timestamp) -> Statement {
    claim_attempt(seq, now, now + ATTEMPT_LEASE)
}

/// What came back from the POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    Answered {
        status: u16,
        retry_after: Option<TimeDelta>,
        /// A redirect's `Location`, for the attempt's record.
        location: Option<&'a str>,
    },
    /// No answer (a timeout, no connection): why, for the attempt's record.
    NotAnswered(String),
}

/// What to send once the settlement is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUp {
    pub job: Job,
    pub delay_seconds: u32,
}

/// An attempt's outcome, planned: run [`Settlement::statements`] as one batch, then send
/// [`Settlement::follow_up`] if there is one (if that send fails, the cron finds the
/// notification due: delayed, never lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    pub statements: Vec<Statement>,
    pub outcome: Outcome,
    /// What the attempt's record and the log say of the answer.
    pub response: String,
    /// The statement returning the subject's next pending notification (delivered or dead).
    successor: Option<usize>,
    /// A retry soon enough to go back to the queue: its delay.
    queued_retry: Option<FollowUp>,
}

/// Plan the settlement of `notification`'s attempt (claimed with its attempt count), answered
/// by `reply` at `now`. It is dead once retried past its deadline: `expires_at` for a
/// redelivery, else `max_age` after its creation.
pub fn plan_settlement(
    notification: &Notification,
    reply: &Reply<'_>,
    max_age: TimeDelta,
    now: Timestamp,
) -> Settlement {
    let (answer, response) = match reply {
        Reply::Answered {
            status,
            retry_after,
            location,
        } => (
            classify(*status, *retry_after),
            describe_reply(*status, *location),
        ),
        Reply::NotAnswered(why) => (Answer::Failed { retry_after: None }, why.clone()),
    };
    let deadline = notification
        .expires_at
        .unwrap_or(notification.created_at + max_age);
    let outcome = match answer {
        Answer::Delivered => Outcome::Delivered,
        Answer::Gone => Outcome::Gone,
        Answer::Failed { .. } if now >= deadline => Outcome::Dead,
        Answer::Failed { retry_after } => Outcome::Retry {
            retry_at: now + retry_delay(notification.attempts, retry_after, &notification.id()),
        },
    };
    let mut statements = settle(notification, &outcome, &response, now);
    let mut next = None;
    let mut queued_retry = None;
    match outcome {
        Outcome::Delivered | Outcome::Dead => {
            next = Some(statements.len());
            statements.push(successor(notification.seq));
        }
        Outcome::Retry { retry_at } if retry_at - now <= QUEUED_RETRY_LIMIT => {
            queued_retry = Some(FollowUp {
                job: Job::Notify {
                    seq: notification.seq,
                },
                // Rounded up, plus a second: a message that arrives before the attempt is due
                // is refused by the claim and would wait for the cron instead.
                delay_seconds: ((retry_at - now).num_milliseconds().max(0) / 1000 + 1) as u32,
            });
        }
        // A later retry is the cron's to find; after a 410 nothing is sent until delivery is
        // enabled again.
        Outcome::Retry { .. } | Outcome::Gone => {}
    }
    Settlement {
        statements,
        outcome,
        response,
        successor: next,
        queued_retry,
    }
}

impl Settlement {
    /// For the log line.
    pub fn outcome_name(&self) -> &'static str {
        match self.outcome {
            Outcome::Delivered => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Dead => "dead",
            Outcome::Gone => "gone",
        }
    }

    /// What to send once the batch ran: the retry, or the subject's next notification (now).
    pub fn follow_up(&self, results: &[Rows]) -> Option<FollowUp> {
        if let Some(retry) = &self.queued_retry {
            return Some(retry.clone());
        }
        let next = self.successor.and_then(|i| results.get(i))?;
        seqs(next).first().map(|seq| FollowUp {
            job: Job::Notify { seq: *seq },
            delay_seconds: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::row;
    use crate::db::sqlite::{batch, database, run};
    use crate::time::from_millis;
    use rusqlite::Connection;

    const MAX_AGE: TimeDelta = TimeDelta::hours(24);

    fn at(ms: i64) -> Timestamp {
        from_millis(1_800_000_000_000 + ms).unwrap()
    }

    /// A pending notification of `subject`, created (and due) at `created`.
    fn record(db: &Connection, subject: &str, created: i64) -> i64 {
        let inserted = run(
            db,
            &Statement::new(
                "INSERT INTO notifications (provider, ref, type, payload, created_at, \
                   next_attempt_at) VALUES ('align', ?1, 'kyc.status.changed', '{}', ?2, ?2) \
                 RETURNING seq",
                vec![subject.into(), at(created).into()],
            ),
        );
        seqs(&inserted)[0]
    }

    fn attempt(db: &Connection, seq: i64, now: i64) -> Option<Notification> {
        run(db, &claim(seq, at(now)))
            .first()
            .map(|claimed| row(claimed).unwrap())
    }

    fn answered(status: u16) -> Reply<'static> {
        Reply::Answered {
            status,
            retry_after: None,
            location: None,
        }
    }

    /// Plans and runs the settlement; what follows it.
    fn settle_at(
        db: &Connection,
        notification: &Notification,
        reply: &Reply<'_>,
        now: i64,
    ) -> (Settlement, Option<FollowUp>) {
        let settlement = plan_settlement(notification, reply, MAX_AGE, at(now));
        let follow_up = settlement.follow_up(&batch(db, &settlement.statements));
        (settlement, follow_up)
    }

    #[test]
    fn a_delivered_attempt_releases_the_next_notification_of_its_subject() {
        let db = database();
        let first = record(&db, "c1", 0);
        let second = record(&db, "c1", 1);
        assert!(
            attempt(&db, second, 10).is_none(),
            "an older one is pending"
        );
        let claimed = attempt(&db, first, 10).unwrap();
        assert!(attempt(&db, first, 10).is_none(), "leased: claimed once");
        let settlement = plan_settlement(&claimed, &answered(204), MAX_AGE, at(11));
        assert_eq!(
            (settlement.outcome_name(), settlement.response.as_str()),
            ("delivered", "HTTP 204")
        );
        assert!(
            attempt(&db, second, 11).is_none(),
            "held until this one is settled"
        );
        let follow_up = settlement.follow_up(&batch(&db, &settlement.statements));
        assert_eq!(
            follow_up,
            Some(FollowUp {
                job: Job::Notify { seq: second },
                delay_seconds: 0
            })
        );
        assert!(attempt(&db, second, 12).is_some());
    }

    #[test]
    fn a_failed_attempt_is_retried_through_the_queue_and_holds_its_subjects_next() {
        let db = database();
        let first = record(&db, "c1", 0);
        let second = record(&db, "c1", 1);
        let claimed = attempt(&db, first, 10).unwrap();
        let (settlement, follow_up) = settle_at(&db, &claimed, &answered(503), 10);
        let Outcome::Retry { retry_at } = settlement.outcome else {
            panic!("{:?}", settlement.outcome)
        };
        let delay = retry_at - at(10);
        assert!(
            delay >= TimeDelta::seconds(4) && delay <= TimeDelta::seconds(6),
            "{delay}"
        );
        let follow_up = follow_up.unwrap();
        assert_eq!(follow_up.job, Job::Notify { seq: first }, "itself, later");
        assert_eq!(
            i64::from(follow_up.delay_seconds),
            delay.num_seconds() + 1,
            "rounded up, plus a second: never before it is due"
        );
        assert!(attempt(&db, second, 11).is_none(), "still held");
        assert!(attempt(&db, first, 11).is_none(), "not due yet");
        assert_eq!(attempt(&db, first, 10_000).unwrap().attempts, 2);
    }

    #[test]
    fn a_retry_later_than_the_queue_limit_is_left_to_the_cron() {
        let db = database();
        let seq = record(&db, "c1", 0);
        let claimed = attempt(&db, seq, 10).unwrap();
        let reply = Reply::Answered {
            status: 429,
            retry_after: Some(TimeDelta::hours(1)),
            location: None,
        };
        let (settlement, follow_up) = settle_at(&db, &claimed, &reply, 10);
        assert_eq!(
            settlement.outcome,
            Outcome::Retry {
                retry_at: at(10) + TimeDelta::hours(1)
            }
        );
        assert_eq!(follow_up, None);
    }

    #[test]
    fn past_its_deadline_a_failed_attempt_is_dead_and_lets_the_next_go() {
        let db = database();
        let first = record(&db, "c1", 0);
        let second = record(&db, "c1", 1);
        let late = MAX_AGE.num_milliseconds();
        let claimed = attempt(&db, first, late).unwrap();
        let timeout = Reply::NotAnswered("timeout".into());
        let (settlement, follow_up) = settle_at(&db, &claimed, &timeout, late);
        assert_eq!(
            (settlement.outcome_name(), settlement.response.as_str()),
            ("dead", "timeout")
        );
        assert_eq!(follow_up.map(|f| f.job), Some(Job::Notify { seq: second }));
        assert!(attempt(&db, second, late + 1).is_some());
    }

    #[test]
    fn gone_queues_nothing_and_records_where_a_redirect_pointed() {
        let db = database();
        let seq = record(&db, "c1", 0);
        let claimed = attempt(&db, seq, 10).unwrap();
        let (settlement, follow_up) = settle_at(&db, &claimed, &answered(410), 10);
        assert_eq!((settlement.outcome, follow_up), (Outcome::Gone, None));
        let moved = Reply::Answered {
            status: 301,
            retry_after: None,
            location: Some("https://app.example/new"),
        };
        let settlement = plan_settlement(&claimed, &moved, MAX_AGE, at(11));
        assert_eq!(settlement.outcome_name(), "retry");
        assert_eq!(
            settlement.response,
            "HTTP 301 redirect (not followed) to https://app.example/new"
        );
    }
}
