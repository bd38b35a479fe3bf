//! The `events` table: every accepted webhook (`webhook`), every repeat of one
//! (`duplicate`) and every applied change (`change`). Ids only, no PII.

use super::subjects::{COLUMNS, PROVIDER_OK_SINCE};
use super::tallies::Tally;
use super::{SqlValue, Statement};
use crate::providers::{WebhookEvent, WebhookSubject};
use crate::statement;
use crate::status::KycStatus;
use crate::subject::{Provider, SubjectRef};
use crate::time::Timestamp;

/// Record an accepted webhook, as one batch (a transaction):
///
/// - the event row, unless the event (`dedup_key`) was recorded before; `receipt` is unique
///   per request, so later statements can tell whether *this* request inserted it;
/// - the subject, if the event names one it does not track yet (due at once), and its count;
/// - the subject made due (`RETURNING due`) when the event is new, or when it repeats one and,
///   since that event last asked for a check, a successful check has started or another
///   event has asked for one: providers resend identical bodies for genuinely new events
///   (ARGOS AML: Red Flag → Cleared → Red Flag), a check still in flight may have been sent
///   before the change the repeat announces, and a check is idempotent. Otherwise the subject
///   is still due from the last copy, so a retry storm costs no subject write. Making a
///   subject due revives it if it was retired;
/// - a repeat is counted in a tally, never stored as a row: a replayed body costs one row
///   written (the tally), two when it asks for a check (and the event row then remembers
///   when, for the next repeat).
///
/// Five statements when the event names a subject, two otherwise: the new subject's count and
/// a repeat's are one tally write (never both: a repeat creates no subject).
pub fn record_webhook(
    provider: Provider,
    event: &WebhookEvent,
    dedup_key: &str,
    receipt: &str,
    now: Timestamp,
) -> WebhookRecord {
    let p = provider.as_str();
    let subject_ref = event.subject.as_ref().map(|s| s.subject_ref.as_str());
    let announces = event.announces.to_db();
    // Deduplicated by a lookup rather than `ON CONFLICT`, whose target must name one unique
    // index exactly: this way the statement runs on the schema before 0011 too, so the worker
    // can be deployed before that migration is applied (README, "Upgrading"). The batch is a
    // transaction and D1 runs one at a time, so the lookup and the insert cannot be split;
    // the unique indexes (`events_webhooks`, `events_unattached`) still refuse a second row.
    let mut statements = vec![statement!(
        "INSERT INTO events (provider, ref, type, kind, dedup_key, receipt, announces, \
           provider_at, at) \
         SELECT ?1, ?2, 'webhook', ?3, ?4, ?5, ?6, ?7, ?8 \
         WHERE NOT EXISTS (SELECT 1 FROM events WHERE provider = ?1 AND ref IS ?2 \
           AND dedup_key = ?4 AND type = 'webhook')",
        p,
        subject_ref,
        event.kind.as_str(),
        dedup_key,
        receipt,
        announces,
        event.provider_at,
        now
    )];
    let duplicates = Tally::Duplicates(provider).name();
    let (created, made_due, tally) = match &event.subject {
        Some(subject) => {
            let about = about_subject(provider, subject, dedup_key, receipt, now, &duplicates);
            let first = statements.len();
            statements.extend(about);
            // In the order `about_subject` writes them.
            (Some(first), Some(first + 1), first + 2)
        }
        None => {
            statements.push(statement!(
                format!(
                    "INSERT INTO tallies (name, value) SELECT ?6, 1 WHERE NOT {MINE} \
                     ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING name"
                ),
                p,
                SqlValue::Null,
                SqlValue::Null,
                dedup_key,
                receipt,
                duplicates.as_str()
            ));
            (None, None, statements.len() - 1)
        }
    };
    WebhookRecord {
        statements,
        tally,
        duplicates,
        created,
        made_due,
    }
}

/// The event row of this request exists: it inserted it (`?1` provider, `?2` the subject's ref
/// or NULL, `?4` dedup key, `?5` this request's receipt). Found through `events_webhooks`,
/// which holds the rows about no subject too.
const MINE: &str = "EXISTS (SELECT 1 FROM events WHERE provider = ?1 AND ref IS ?2 \
     AND dedup_key = ?4 AND type = 'webhook' AND receipt = ?5)";
/// When the event last asked for a check: its first arrival, or a repeat's since.
const LAST_ASKED: &str = "(SELECT COALESCE(last_at, at) FROM events \
     WHERE provider = ?1 AND ref = ?2 AND dedup_key = ?4 AND type = 'webhook')";

/// A webhook's statements about its subject, in this order: create it (returns `created`),
/// make it due (returns `due`), the batch's one tally write, a repeat's `last_at`. Creating
/// and making due return the subject's row as written (the check starts from it, see
/// [`crate::jobs::ReconcileJob::subject`]).
fn about_subject(
    provider: Provider,
    subject: &WebhookSubject,
    dedup_key: &str,
    receipt: &str,
    now: Timestamp,
    duplicates: &str,
) -> [Statement; 4] {
    let p = provider.as_str();
    let subject_ref = subject.subject_ref.as_str();
    [
        statement!(
            format!(
                "INSERT INTO subjects (provider, ref, ref_kind, status_at, created_at, \
                   updated_at, next_check_at, requested_at) \
                 SELECT ?1, ?2, ?3, ?6, ?6, ?6, ?6, ?6 WHERE {MINE} \
                 ON CONFLICT (provider, ref) DO NOTHING \
                 RETURNING 1 AS created, {COLUMNS}, {PROVIDER_OK_SINCE}"
            ),
            p,
            subject_ref,
            subject.ref_kind.as_str(),
            dedup_key,
            receipt,
            now
        ),
        statement!(
            format!(
                "UPDATE subjects SET next_check_at = MIN(next_check_at, ?3), requested_at = ?3, \
                   check_step = 0, retired_at = NULL, unfound = 0 \
                 WHERE provider = ?1 AND ref = ?2 AND changes() = 0 AND ({MINE} \
                   OR last_checked_at >= {LAST_ASKED} OR requested_at > {LAST_ASKED}) \
                 RETURNING 1 AS due, {COLUMNS}, {PROVIDER_OK_SINCE}"
            ),
            p,
            subject_ref,
            now,
            dedup_key,
            receipt
        ),
        // The batch's one tally write: a repeat counts as a duplicate; a new event counts the
        // subject it created. A new event about a tracked subject always makes it due (the
        // statement before changed one row), so for a new event nothing changed there means
        // the subject was just created.
        statement!(
            format!(
                "INSERT INTO tallies (name, value) \
                 SELECT CASE WHEN m THEN ?7 ELSE ?6 END, 1 FROM (SELECT {MINE} AS m) \
                 WHERE NOT m OR changes() = 0 \
                 ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING name"
            ),
            p,
            subject_ref,
            SqlValue::Null,
            dedup_key,
            receipt,
            duplicates,
            Tally::Status(provider, KycStatus::Unknown).name()
        ),
        // A repeat that asked for a check: the next repeat is judged from now. That it asked
        // is read from the subject (asked for at this very instant: `requested_at`), as the
        // statement before is the tally's; only for a repeat (CASE: a new event reads no
        // subject here). The tally wrote a row for every repeat (and for a new subject), and
        // none for a new event about a tracked subject: then the event is not even looked up
        // (`id = NULL` matches nothing), which keeps a status change's webhook 3 rows lighter.
        statement!(
            "UPDATE events SET last_at = ?3 WHERE id = CASE WHEN changes() = 1 THEN \
                 (SELECT id FROM events WHERE provider = ?1 AND ref = ?5 AND dedup_key = ?2 \
                   AND type = 'webhook') END \
               AND CASE WHEN receipt IS NOT ?4 \
                 THEN EXISTS (SELECT 1 FROM subjects WHERE provider = ?1 AND ref = ?5 \
                   AND requested_at = ?3) ELSE 0 END",
            p,
            dedup_key,
            now,
            receipt,
            subject_ref
        ),
    ]
}

/// The batch that records a webhook, and where to read its outcome: each of these
/// statements returns a row exactly when it did what it is named for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    pub statements: Vec<Statement>,
    /// The tally write: it returns `duplicates` exactly when the event was recorded before.
    pub tally: usize,
    pub duplicates: String,
    /// The subject was created (it is due).
    pub created: Option<usize>,
    /// An existing subject was made due.
    pub made_due: Option<usize>,
}

/// What recording a webhook did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookOutcome {
    /// The event was recorded before: this request is a repeat.
    pub duplicate: bool,
    /// The subject did not exist: this event created it.
    pub created: bool,
    /// The subject existed and this event made it due for a check.
    pub made_due: bool,
    /// The subject's row as this batch left it, when it created it or made it due.
    pub subject: Option<super::Row>,
}

impl WebhookRecord {
    /// Read the batch's results.
    pub fn outcome(&self, results: &[super::Rows]) -> WebhookOutcome {
        let returned = |index: usize| results.get(index).is_some_and(|rows| !rows.is_empty());
        let duplicate = results.get(self.tally).is_some_and(|rows| {
            rows.iter()
                .any(|r| r.get("name").and_then(|n| n.as_str()) == Some(self.duplicates.as_str()))
        });
        let subject = [self.created, self.made_due]
            .into_iter()
            .flatten()
            .find_map(|index| results.get(index).and_then(|rows| rows.first()).cloned());
        WebhookOutcome {
            duplicate,
            created: self.created.is_some_and(returned),
            made_due: self.made_due.is_some_and(returned),
            subject,
        }
    }
}

/// Whether a webhook `w` about the subject `subject` names (conditions on `w`) meets `matching`:
/// a lookup in each index the subject's rows are in (migrations/0011), its webhooks and the
/// repeats stored as rows before 0008 (`type <> 'webhook'` is spelled out for SQLite to use
/// the partial index).
pub(crate) fn webhook_exists(subject: &str, matching: &str) -> String {
    format!(
        "(EXISTS (SELECT 1 FROM events w WHERE {subject} AND w.type = 'webhook' AND {matching}) \
         OR EXISTS (SELECT 1 FROM events w WHERE {subject} AND w.type <> 'webhook' \
           AND w.type = 'duplicate' AND {matching}))"
    )
}

/// A subject's history, newest first, from before event `before` (a page cursor).
/// Rows `{id, type, kind, announces, provider_at, at, source, from_status, to_status, drift}`.
/// Its webhooks and its other rows are in two indexes (migrations/0011): the newest `limit`
/// of each, merged. The webhooks' index is in key order, so all of the subject's webhooks
/// before the cursor are read and sorted; the other rows come in id order.
pub fn history(
    provider: Provider,
    subject_ref: &SubjectRef,
    before: Option<i64>,
    limit: u32,
) -> Statement {
    const COLUMNS: &str = "id, type, kind, announces, provider_at, at, last_at, source, \
         from_status, to_status, drift";
    statement!(
        format!(
            "SELECT * FROM (SELECT {COLUMNS} FROM events \
               WHERE provider = ?1 AND ref = ?2 AND type = 'webhook' AND id < ?3 \
               ORDER BY id DESC LIMIT ?4) \
             UNION ALL SELECT * FROM (SELECT {COLUMNS} FROM events \
               WHERE provider = ?1 AND ref = ?2 AND type <> 'webhook' AND id < ?3 \
               ORDER BY id DESC LIMIT ?4) \
             ORDER BY id DESC LIMIT ?4"
        ),
        provider.as_str(),
        subject_ref.as_str(),
        before.unwrap_or(i64::MAX >> 11),
        limit
    )
}

/// Delete up to `batch` events older than `before`, oldest first, and only those already
/// folded into the tallies. Ids grow with time, so the delete reads a range of at most
/// `batch` ids from the oldest, and an empty range when the oldest is not old enough: the
/// cost of a run is bounded however large the table. The newest event always stays: ids are
/// plain rowids, which keep growing only while the largest is never deleted (the fold's mark
/// counts on it).
pub fn prune(before: Timestamp, batch: u32) -> Statement {
    statement!(
        "DELETE FROM events WHERE id >= (SELECT MIN(id) FROM events) \
           AND id < (SELECT CASE WHEN (SELECT at FROM events WHERE id = (SELECT MIN(id) FROM events)) < ?1 \
             THEN MIN(id) + ?2 ELSE MIN(id) END FROM events) \
           AND at < ?1 AND id <= (SELECT value FROM tallies WHERE name = 'fold.events') \
           AND id < (SELECT MAX(id) FROM events)",
        before,
        batch
    )
}
