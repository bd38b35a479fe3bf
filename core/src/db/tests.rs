//! The statements that are not reconcile plans, on SQLite with the real migrations:
//! registration, webhook recording and dedup, the cron's claim, pruning and the fold.

use super::events::{prune, record_webhook, WebhookOutcome};
use super::sqlite::{batch, database, query_plan, run};
use super::subjects::{claim_due, register, DueSubject, SubjectRow};
use super::tallies::{counts, fold, Tally, ALL, SINCE_FOLD};
use super::{row, Statement};
use crate::providers::{WebhookEvent, WebhookSubject};
use crate::status::KycStatus;
use crate::subject::{Provider, RefKind, SubjectRef};
use crate::time::{from_millis, Timestamp};
use crate::transition::Announcement;
use chrono::TimeDelta;
use rusqlite::Connection;
use std::collections::BTreeMap;

fn at(ms: i64) -> Timestamp {
    from_millis(1_800_000_000_000 + ms).unwrap()
}

fn r(id: &str) -> SubjectRef {
    SubjectRef::parse(id).unwrap()
}

fn subject(db: &Connection, provider: Provider, id: &str) -> Option<SubjectRow> {
    run(db, &super::subjects::load(provider, &r(id)))
        .first()
        .map(|found| row(found).unwrap())
}

fn tallies(db: &Connection) -> BTreeMap<String, i64> {
    run(db, &Statement::new(ALL, vec![]))
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["value"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn sql(db: &Connection, query: &str) -> i64 {
    run(db, &Statement::new(query.to_owned(), vec![]))[0]["n"]
        .as_i64()
        .unwrap()
}

fn webhook(id: &str, announces: KycStatus) -> WebhookEvent {
    WebhookEvent {
        subject: Some(WebhookSubject {
            subject_ref: r(id),
            ref_kind: RefKind::User,
        }),
        kind: "aml".into(),
        provider_at: None,
        announces: Announcement::Status(announces),
        trusted: None,
        about_aml: true,
        event_id: None,
    }
}

/// Records a webhook; returns (duplicate, created, made due).
fn deliver(
    db: &Connection,
    event: &WebhookEvent,
    body: &str,
    now: Timestamp,
) -> (bool, bool, bool) {
    let receipt = format!("r-{}", now.timestamp_millis());
    let record = record_webhook(
        Provider::named("argos"),
        event,
        &crate::providers::dedup_key(body.as_bytes()),
        &receipt,
        now,
    );
    let outcome = record.outcome(&batch(db, &record.statements));
    (outcome.duplicate, outcome.created, outcome.made_due)
}

fn set_checked(db: &Connection, checked: Timestamp) {
    run(
        db,
        &Statement::new(
            "UPDATE subjects SET last_checked_at = ?1, next_check_at = ?2",
            vec![checked.into(), (checked + TimeDelta::days(1)).into()],
        ),
    );
}

#[test]
fn a_repeated_body_asks_for_a_check_only_once_a_check_started_since_it_last_arrived() {
    let db = database();
    let red = webhook("u1", KycStatus::Approved);
    // First Red Flag: new event, new subject, due.
    assert_eq!(deliver(&db, &red, "red flag", at(0)), (false, true, false));
    // A retry of it before any check: recorded as a duplicate, nothing else written.
    assert_eq!(deliver(&db, &red, "red flag", at(1)), (true, false, false));
    set_checked(&db, at(2));
    // Cleared: a new body, due again.
    assert_eq!(deliver(&db, &red, "cleared", at(3)), (false, false, true));
    set_checked(&db, at(4));
    // Red Flag again, byte for byte: a duplicate, but a check started since the last copy,
    // so it may announce something new: due.
    assert_eq!(deliver(&db, &red, "red flag", at(5)), (true, false, true));
    let due = subject(&db, Provider::named("argos"), "u1").unwrap();
    assert_eq!((due.next_check_at, due.requested_at), (at(5), Some(at(5))));
    // Another copy before any check since: counted, nothing else written.
    assert_eq!(deliver(&db, &red, "red flag", at(6)), (true, false, false));
    // Repeats are counted, never stored as rows.
    assert_eq!(
        sql(
            &db,
            "SELECT COUNT(*) AS n FROM events WHERE type = 'duplicate'"
        ),
        0
    );
    assert_eq!(
        tallies(&db)[&Tally::Duplicates(Provider::named("argos")).name()],
        3
    );
    assert_eq!(
        sql(
            &db,
            "SELECT COUNT(*) AS n FROM events WHERE type = 'webhook'"
        ),
        2
    );
}

#[test]
fn events_about_no_subject_are_recorded_and_deduplicated() {
    let db = database();
    let event = WebhookEvent {
        subject: None,
        kind: "onramp_transfer.status.updated".into(),
        provider_at: None,
        announces: Announcement::Nothing,
        trusted: None,
        about_aml: false,
        event_id: None,
    };
    let record = record_webhook(Provider::named("align"), &event, "k", "r1", at(0));
    assert_eq!(record.created, None);
    assert_eq!(
        record.outcome(&batch(&db, &record.statements)),
        WebhookOutcome {
            duplicate: false,
            created: false,
            made_due: false,
            subject: None
        }
    );
    let again = record_webhook(Provider::named("align"), &event, "k", "r2", at(1));
    assert_eq!(
        again.outcome(&batch(&db, &again.statements)),
        WebhookOutcome {
            duplicate: true,
            created: false,
            made_due: false,
            subject: None
        },
        "a repeat is a duplicate"
    );
    assert_eq!(sql(&db, "SELECT COUNT(*) AS n FROM subjects"), 0);
}

fn seed_due(db: &Connection, subjects: &[(Provider, &str, i64)]) {
    for (provider, id, due_at) in subjects {
        batch(db, &register(*provider, &r(id), RefKind::User, None, at(0)));
        run(
            db,
            &Statement::new(
                "UPDATE subjects SET next_check_at = ?1 WHERE provider = ?2 AND ref = ?3",
                vec![at(*due_at).into(), provider.as_str().into(), (*id).into()],
            ),
        );
    }
}

fn claim(db: &Connection, provider: Provider, now: i64, budget: u32) -> Vec<String> {
    let lease = TimeDelta::minutes(15);
    let mut claimed: Vec<String> = run(db, &claim_due(provider, at(now), at(now) + lease, budget))
        .iter()
        .map(|found| {
            let due: DueSubject = row(found).unwrap();
            format!("{}/{}", due.provider, due.subject_ref)
        })
        .collect();
    claimed.sort();
    claimed
}

#[test]
fn only_due_subjects_of_the_provider_are_claimed_once_per_lease() {
    let db = database();
    seed_due(
        &db,
        &[
            (Provider::named("align"), "a", 100),
            (Provider::named("align"), "b", 200),
            (Provider::named("argos"), "c", 50),
            (Provider::named("align"), "later", 1_000),
        ],
    );
    assert_eq!(
        claim(&db, Provider::named("align"), 500, 10),
        ["align/a", "align/b"]
    );
    assert!(
        claim(&db, Provider::named("align"), 500, 10).is_empty(),
        "leased"
    );
    assert_eq!(claim(&db, Provider::named("argos"), 500, 10), ["argos/c"]);
    let lease_end = 500 + 15 * 60_000;
    assert!(
        claim(&db, Provider::named("align"), lease_end - 1, 10).contains(&"align/later".to_owned())
    );
    assert_eq!(
        claim(&db, Provider::named("align"), lease_end, 10),
        ["align/a", "align/b"]
    );
}

#[test]
fn the_budget_takes_the_oldest_due_first_and_reaches_everyone_in_turn() {
    let db = database();
    let subjects: Vec<(Provider, String, i64)> = (0..25)
        .map(|i| (Provider::named("align"), format!("s{i:02}"), 1_000 - i * 10))
        .collect();
    let refs: Vec<(Provider, &str, i64)> = subjects
        .iter()
        .map(|(p, id, due)| (*p, id.as_str(), *due))
        .collect();
    seed_due(&db, &refs);
    let first = claim(&db, Provider::named("align"), 2_000, 10);
    assert_eq!(first.first().map(String::as_str), Some("align/s15"));
    assert!(first.contains(&"align/s24".to_owned()), "oldest due first");
    let mut seen: std::collections::BTreeSet<String> = first.into_iter().collect();
    let mut runs = 1;
    // Five-minute runs, within the first claim's 15-minute lease.
    while seen.len() < 25 {
        let claimed = claim(&db, Provider::named("align"), 2_000 + runs * 300_000, 10);
        runs += 1;
        assert!(claimed.len() <= 10);
        assert!(
            claimed.iter().all(|c| seen.insert(c.clone())),
            "{claimed:?}"
        );
    }
    assert_eq!(runs, 3);
}

#[test]
fn claiming_due_reads_the_index_not_the_table() {
    let db = database();
    let statement = claim_due(Provider::named("align"), at(0), at(1), 10);
    let plan = query_plan(&db, &statement);
    assert!(
        !plan
            .iter()
            .any(|step| step.starts_with("SCAN subjects") || step.starts_with("SCAN events")),
        "{}: {plan:?}",
        statement.sql
    );
}

#[test]
fn pruning_deletes_old_folded_events_in_bounded_batches() {
    let db = database();
    for i in 0..25 {
        deliver(
            &db,
            &webhook("u1", KycStatus::Pending),
            &format!("body {i}"),
            at(i * 1000),
        );
    }
    let events = |db: &Connection| sql(db, "SELECT COUNT(*) AS n FROM events");
    assert_eq!(events(&db), 25);
    // Nothing is pruned before it is folded into the tallies.
    run(&db, &prune(at(100_000), 10));
    assert_eq!(events(&db), 25);
    batch(&db, &fold(at(0), crate::reconcile::DRIFT_GRACE));
    run(&db, &prune(at(20_000), 10));
    assert_eq!(events(&db), 15, "at most a batch per run");
    run(&db, &prune(at(20_000), 10));
    assert_eq!(events(&db), 5, "only those older than the cut-off");
    run(&db, &prune(at(20_000), 10));
    assert_eq!(events(&db), 5);
    assert_eq!(
        tallies(&db)["webhook.accepted.argos"],
        25,
        "pruning keeps the counts"
    );
}

#[test]
fn ids_keep_growing_without_autoincrement_because_the_newest_event_stays() {
    let db = database();
    for i in 0..5 {
        deliver(
            &db,
            &webhook("u1", KycStatus::Pending),
            &format!("body {i}"),
            at(i * 1000),
        );
    }
    batch(&db, &fold(at(0), crate::reconcile::DRIFT_GRACE));
    run(&db, &prune(at(1_000_000), 100));
    let ids = |db: &Connection| {
        run(
            db,
            &Statement::new("SELECT id FROM events ORDER BY id", vec![]),
        )
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .collect::<Vec<_>>()
    };
    assert_eq!(ids(&db), [5], "everything old went but the newest");
    deliver(
        &db,
        &webhook("u1", KycStatus::Pending),
        "body 5",
        at(2_000_000),
    );
    assert_eq!(ids(&db), [5, 6], "so the next id is past every id folded");
    let schema = run(
        &db,
        &Statement::new(
            "SELECT sql FROM sqlite_master WHERE name IN ('events', 'notifications')",
            vec![],
        ),
    );
    assert!(
        schema
            .iter()
            .all(|t| !t["sql"].as_str().unwrap().contains("AUTOINCREMENT")),
        "{schema:?}"
    );
}

#[test]
fn pruning_reads_a_range_of_ids_never_the_table() {
    let db = database();
    let plan = query_plan(&db, &prune(at(0), 500));
    assert!(
        plan.iter()
            .any(|step| step == "SEARCH events USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"),
        "{plan:?}"
    );
    assert!(
        !plan.iter().any(|step| step.starts_with("SCAN")),
        "{plan:?}"
    );
}

#[test]
fn the_fold_reads_only_the_events_since_the_last_fold() {
    let db = database();
    for statement in fold(at(0), crate::reconcile::DRIFT_GRACE).iter().take(2) {
        let plan = query_plan(&db, statement).join("; ");
        assert!(
            plan.contains("SEARCH events USING INTEGER PRIMARY KEY (rowid>?)"),
            "{plan}"
        );
        assert!(!plan.contains("SCAN events"), "{plan}");
    }
}

#[test]
fn the_fold_counts_every_event_once() {
    let db = database();
    let event = webhook("u1", KycStatus::Pending);
    deliver(&db, &event, "a", at(0));
    deliver(&db, &event, "a", at(1));
    deliver(&db, &event, "b", at(2));
    // Rows an older version wrote: a duplicate row, and a change counted as drift at once.
    run(
        &db,
        &Statement::new(
            "INSERT INTO events (provider, ref, type, at, dedup_key) \
               VALUES ('argos', 'u1', 'duplicate', 2, 'a'); \
             ",
            vec![],
        ),
    );
    run(
        &db,
        &Statement::new(
            "INSERT INTO events (provider, ref, type, at, from_status, to_status, moves, drift) \
             VALUES ('argos', 'u1', 'change', 3, 'unknown', 'pending', 1, 0), \
                    ('argos', 'u1', 'change', 4, 'pending', 'approved', 1, 1), \
                    ('argos', 'u2', 'change', 4, 'unknown', 'rejected', 0, 0)",
            vec![],
        ),
    );
    let before = counts(
        &run(&db, &Statement::new(ALL, vec![])),
        &run(&db, &statement!(SINCE_FOLD)),
    );
    let folded = batch(&db, &fold(at(0), crate::reconcile::DRIFT_GRACE));
    assert_eq!(
        folded[0].len(),
        5,
        "webhook, duplicate and each kind of change: {:?}",
        folded[0]
    );
    let t = tallies(&db);
    // The changes moved the subject unknown → pending → approved: folded, the tallies alone
    // say what the tallies and the rows since the fold said before. The change an older
    // version wrote (not `moves`) moved its counts itself: neither stats nor the fold move
    // it again.
    let argos = Provider::named("argos");
    assert_eq!(t[&Tally::Status(argos, KycStatus::Approved).name()], 1);
    assert_eq!(t[&Tally::Status(argos, KycStatus::Unknown).name()], 0);
    let nonzero = |c: super::tallies::Counts| -> Vec<(Provider, KycStatus, i64)> {
        let all = c.statuses.into_iter();
        all.flat_map(|(p, by)| by.into_iter().map(move |(s, n)| (p, s, n)))
            .filter(|(_, _, n)| *n != 0)
            .collect()
    };
    let after = counts(&run(&db, &Statement::new(ALL, vec![])), &[]);
    assert_eq!(nonzero(before.clone()), nonzero(after));
    assert_eq!(before.statuses[&argos][&KycStatus::Approved], 1);
    assert!(!t.contains_key(&Tally::Status(argos, KycStatus::Rejected).name()));
    assert_eq!(t[&Tally::Accepted(Provider::named("argos")).name()], 2);
    // One repeat counted at its arrival, one row from before.
    assert_eq!(t[&Tally::Duplicates(Provider::named("argos")).name()], 2);
    assert_eq!(t[&Tally::Changes(Provider::named("argos")).name()], 3);
    assert_eq!(t[&Tally::Drift(Provider::named("argos")).name()], 1);
    // Folding again adds nothing.
    let again = batch(&db, &fold(at(0), crate::reconcile::DRIFT_GRACE));
    assert!(again[0].is_empty());
    assert_eq!(tallies(&db), t);
}

/// A change row as a reconcile plan writes it: suspected drift or not.
fn change_row(db: &Connection, id: &str, to: KycStatus, drift: i64, written: Timestamp) {
    run(
        db,
        &crate::statement!(
            "INSERT INTO events (provider, ref, type, at, source, from_status, to_status, drift) \
             VALUES ('argos', ?1, 'change', ?2, 'poll', 'pending', ?3, ?4)",
            id,
            written,
            to.as_str(),
            drift
        ),
    );
}

#[test]
fn suspected_drift_is_settled_once_late_webhooks_had_time_to_arrive() {
    use crate::reconcile::{DRIFT_GRACE, NO_DRIFT, SUSPECTED_DRIFT};
    let db = database();
    let minute = 60_000;
    // Three changes found by polling at 0 that no webhook had announced yet.
    for id in ["slow", "missed", "other"] {
        change_row(&db, id, KycStatus::Approved, SUSPECTED_DRIFT, at(0));
    }
    change_row(&db, "announced", KycStatus::Approved, NO_DRIFT, at(0));
    // The webhook of `slow` arrives 4 minutes after the poll; `other` gets one about another
    // status; `missed` none at all.
    deliver(
        &db,
        &webhook("slow", KycStatus::Approved),
        "s",
        at(4 * minute),
    );
    deliver(
        &db,
        &webhook("other", KycStatus::Rejected),
        "o",
        at(4 * minute),
    );
    let drift = |db: &Connection| {
        tallies(db)
            .get(&Tally::Drift(Provider::named("argos")).name())
            .copied()
            .unwrap_or(0)
    };
    // Within the grace, nothing is settled.
    batch(&db, &fold(at(5 * minute), DRIFT_GRACE));
    assert_eq!(drift(&db), 0);
    assert_eq!(
        sql(&db, "SELECT COUNT(*) AS n FROM events WHERE drift = 2"),
        3
    );
    // After it: the missed ones are drift, the slow one is not; each settled once.
    let later = at(DRIFT_GRACE.num_milliseconds() + minute);
    batch(&db, &fold(later, DRIFT_GRACE));
    assert_eq!(drift(&db), 2);
    let settled = |id: &str| {
        run(
            &db,
            &crate::statement!(
                "SELECT drift FROM events WHERE ref = ?1 AND type = 'change'",
                id
            ),
        )[0]["drift"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(
        [settled("slow"), settled("missed"), settled("other")],
        [0, 1, 1]
    );
    batch(&db, &fold(later, DRIFT_GRACE));
    assert_eq!(drift(&db), 2, "settled once");
}

#[test]
fn a_repeat_stored_as_a_row_before_0008_still_announces_a_change() {
    use crate::reconcile::{DRIFT_GRACE, SUSPECTED_DRIFT};
    let db = database();
    change_row(&db, "old", KycStatus::Approved, SUSPECTED_DRIFT, at(0));
    run(
        &db,
        &crate::statement!(
            "INSERT INTO events (provider, ref, type, announces, at) \
             VALUES ('argos', 'old', 'duplicate', 'approved', ?1)",
            at(60_000)
        ),
    );
    batch(
        &db,
        &fold(at(DRIFT_GRACE.num_milliseconds() + 60_000), DRIFT_GRACE),
    );
    assert_eq!(
        sql(&db, "SELECT drift AS n FROM events WHERE type = 'change'"),
        0
    );
}

#[test]
fn settling_drift_reads_only_the_suspects() {
    let db = database();
    let statements = fold(at(0), crate::reconcile::DRIFT_GRACE);
    for statement in &statements[3..] {
        let plan = query_plan(&db, statement).join("; ");
        assert!(plan.contains("events_drift_suspected"), "{plan}");
        // The webhooks that may announce a suspect: a lookup per subject in each index.
        assert!(plan.contains("USING INDEX events_webhooks"), "{plan}");
        assert!(plan.contains("USING INDEX events_by_subject"), "{plan}");
        assert!(
            !plan.contains("SCAN events") && !plan.contains("SCAN w"),
            "{plan}"
        );
    }
}

#[test]
fn a_webhook_is_recorded_and_found_again_through_one_index() {
    let db = database();
    let about_nothing = WebhookEvent {
        subject: None,
        ..webhook("u1", KycStatus::Approved)
    };
    for event in [webhook("u1", KycStatus::Approved), about_nothing] {
        let record = record_webhook(Provider::named("argos"), &event, "k", "r", at(0));
        for statement in &record.statements {
            let plan = query_plan(&db, statement).join("; ");
            assert!(!plan.contains("SCAN events"), "{}: {plan}", statement.sql);
        }
    }
}

/// The worker is deployed before 0011 is applied (README, "Upgrading"): on the schema before
/// it, webhooks are recorded, deduplicated and listed as on the new one.
#[test]
fn webhooks_are_recorded_and_deduplicated_on_the_schema_before_0011_too() {
    use super::events::history;
    let migrations = super::sqlite::MIGRATIONS;
    let old = Connection::open_in_memory().unwrap();
    for migration in &migrations[..migrations.len() - 1] {
        old.execute_batch(migration).unwrap();
    }
    let about_nothing = WebhookEvent {
        subject: None,
        ..webhook("u1", KycStatus::Approved)
    };
    for db in [old, database()] {
        let u1 = webhook("u1", KycStatus::Approved);
        assert_eq!(deliver(&db, &u1, "a", at(0)), (false, true, false));
        assert!(deliver(&db, &u1, "a", at(1)).0, "a repeat");
        assert!(!deliver(&db, &about_nothing, "b", at(2)).0);
        assert!(deliver(&db, &about_nothing, "b", at(3)).0, "a repeat");
        assert_eq!(
            sql(
                &db,
                "SELECT COUNT(*) AS n FROM events WHERE type = 'webhook'"
            ),
            2
        );
        let listed = run(&db, &history(Provider::named("argos"), &r("u1"), None, 10));
        assert_eq!(listed.len(), 1);
    }
}

#[test]
fn a_subjects_history_merges_its_webhooks_and_its_changes_newest_first() {
    use super::events::history;
    let db = database();
    // Webhooks whose dedup keys sort against their order of arrival, and changes between them.
    for (i, body) in ["z", "y", "x"].into_iter().enumerate() {
        let now = at(10 * i as i64);
        deliver(&db, &webhook("u1", KycStatus::Approved), body, now);
        change_row(
            &db,
            "u1",
            KycStatus::Approved,
            0,
            now + TimeDelta::milliseconds(1),
        );
    }
    deliver(&db, &webhook("u2", KycStatus::Approved), "other", at(50));
    let page = |before: Option<i64>, limit: u32| -> Vec<(i64, String)> {
        run(
            &db,
            &history(Provider::named("argos"), &r("u1"), before, limit),
        )
        .iter()
        .map(|e| {
            (
                e["id"].as_i64().unwrap(),
                e["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
    };
    let all = page(None, 10);
    let types: Vec<&str> = all.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(
        types,
        ["change", "webhook", "change", "webhook", "change", "webhook"]
    );
    assert!(all.windows(2).all(|w| w[0].0 > w[1].0), "{all:?}");
    assert_eq!(page(None, 3), all[..3]);
    assert_eq!(page(Some(all[2].0), 3), all[3..]);
    let plan = query_plan(&db, &history(Provider::named("argos"), &r("u1"), None, 10)).join("; ");
    assert!(
        plan.contains("events_webhooks")
            && plan.contains("events_by_subject")
            && !plan.contains("SCAN events"),
        "{plan}"
    );
}

#[test]
fn no_migration_makes_event_ids_restart_below_the_folds_mark() {
    // Before 0007 events used AUTOINCREMENT, and pruning could empty the table; 0007 copied
    // them into a plain-rowid table. Emptied, ids restarted at 1, under the fold's mark: those
    // events were never counted.
    let db = Connection::open_in_memory().unwrap();
    let migrations = super::sqlite::MIGRATIONS;
    for migration in &migrations[..6] {
        db.execute_batch(migration).unwrap();
    }
    db.execute_batch(
        "INSERT INTO events (provider, type, at) VALUES ('argos', 'webhook', 1), ('argos', 'webhook', 2); \
         UPDATE tallies SET value = 2 WHERE name = 'fold.events'; \
         DELETE FROM events;",
    )
    .unwrap();
    for migration in &migrations[6..] {
        db.execute_batch(migration).unwrap();
    }
    deliver(&db, &webhook("u1", KycStatus::Pending), "new", at(0));
    let newest = sql(
        &db,
        "SELECT MAX(id) AS n FROM events WHERE type = 'webhook'",
    );
    assert!(newest > 2, "a new event's id {newest} is above the mark");
    batch(&db, &fold(at(0), crate::reconcile::DRIFT_GRACE));
    assert_eq!(
        tallies(&db)[&Tally::Accepted(Provider::named("argos")).name()],
        1,
        "and it is counted"
    );
}

#[test]
fn every_list_filter_and_cursor_is_served_by_an_index() {
    let db = database();
    let mut combinations = 0;
    for provider in [None, Some(Provider::named("argos"))] {
        // A cursor comes from a page of the same listing.
        let cursor = Some((provider.unwrap_or(Provider::named("align")), r("c-9")));
        for status in [None, Some(KycStatus::Pending)] {
            for external_id in [None, Some("user-1".to_owned())] {
                for after in [None, cursor.clone()] {
                    let filter = super::subjects::ListFilter {
                        provider,
                        status,
                        external_id: external_id.clone(),
                        after,
                        limit: 50,
                    };
                    let statement = super::subjects::list(&filter);
                    let plan = query_plan(&db, &statement).join("; ");
                    assert!(!plan.contains("SCAN subjects"), "{filter:?}: {plan}");
                    assert!(!plan.contains("TEMP B-TREE"), "sorted in the index: {plan}");
                    let expected = match (&filter.external_id, filter.status, filter.provider) {
                        (Some(_), _, _) => "USING INDEX subjects_by_external_id (external_id=?",
                        (None, Some(_), Some(_)) => {
                            "USING INDEX subjects_by_status (status=? AND provider=?"
                        }
                        (None, Some(_), None) => {
                            "USING INDEX subjects_by_status (status=? AND (provider,ref)>(?,?))"
                        }
                        (None, None, Some(_)) if filter.after.is_some() => {
                            "USING PRIMARY KEY (provider=? AND ref>?)"
                        }
                        (None, None, Some(_)) => "USING PRIMARY KEY (provider=?)",
                        (None, None, None) => "USING PRIMARY KEY ((provider,ref)>(?,?))",
                    };
                    assert!(plan.contains(expected), "{filter:?}: {plan}");
                    combinations += 1;
                }
            }
        }
    }
    assert_eq!(combinations, 16);
}

#[test]
fn list_pages_are_stable_under_inserts() {
    let db = database();
    for id in ["a", "c", "e"] {
        batch(
            &db,
            &register(Provider::named("align"), &r(id), RefKind::User, None, at(0)),
        );
    }
    let page = |after: Option<(Provider, SubjectRef)>| -> Vec<String> {
        let filter = super::subjects::ListFilter {
            after,
            limit: 2,
            ..Default::default()
        };
        run(&db, &super::subjects::list(&filter))
            .iter()
            .map(|found| row::<SubjectRow>(found).unwrap().subject_ref.to_string())
            .collect()
    };
    assert_eq!(page(None), ["a", "c"]);
    // A subject inserted before the cursor does not shift the next page.
    batch(
        &db,
        &register(
            Provider::named("align"),
            &r("b"),
            RefKind::User,
            None,
            at(1),
        ),
    );
    assert_eq!(page(Some((Provider::named("align"), r("c")))), ["e"]);
    // A provider's listing with a cursor from before or after its keys.
    let by_provider = |provider, after| -> usize {
        let filter = super::subjects::ListFilter {
            provider: Some(provider),
            after,
            limit: 10,
            ..Default::default()
        };
        run(&db, &super::subjects::list(&filter)).len()
    };
    assert_eq!(
        by_provider(
            Provider::named("align"),
            Some((Provider::named("align"), r("b")))
        ),
        2
    );
    assert_eq!(
        by_provider(
            Provider::named("argos"),
            Some((Provider::named("align"), r("z")))
        ),
        0
    );
    assert_eq!(
        by_provider(
            Provider::named("align"),
            Some((Provider::named("argos"), r("a")))
        ),
        0
    );
}

mod notifications {
    use super::super::notifications::{self as outbox, ListFilter, Notification, Outcome, State};
    use super::super::sqlite::{batch, database, query_plan, run};
    use super::super::{row, Statement};
    use super::{at, r};
    use crate::notify::Kind;
    use crate::subject::Provider;
    use crate::time::TimeDelta;
    use rusqlite::Connection;

    /// Records a notification for `id` (the chain's first link stands in for the history row).
    fn record(db: &Connection, id: &str, created: i64) -> i64 {
        let results = batch(
            db,
            &[
                Statement::new("SELECT 1 WHERE 0", vec![]),
                Statement::new("INSERT INTO tallies (name, value) VALUES ('x', 0) ON CONFLICT (name) DO UPDATE SET value = 0", vec![]),
                outbox::insert_if_previous_changed(
                    Provider::named("align"),
                    &r(id),
                    Kind::StatusChanged,
                    "{}".into(),
                    at(created),
                ),
            ],
        );
        outbox::seqs(&results[2])[0]
    }

    fn claim(db: &Connection, seq: i64, now: i64) -> Option<Notification> {
        run(
            db,
            &outbox::claim(seq, at(now), at(now) + TimeDelta::minutes(2)),
        )
        .first()
        .map(|found| row(found).unwrap())
    }

    /// Settles an attempt and returns its subject's next pending notification.
    fn settle(db: &Connection, n: &Notification, outcome: Outcome, now: i64) -> Vec<i64> {
        let mut statements = outbox::settle(n, &outcome, "HTTP 200", at(now));
        statements.push(outbox::successor(n.seq));
        let results = batch(db, &statements);
        results
            .last()
            .map(|rows| outbox::seqs(rows))
            .unwrap_or_default()
    }

    #[test]
    fn a_subjects_notifications_are_attempted_one_after_another() {
        let db = database();
        let first = record(&db, "c1", 0);
        let second = record(&db, "c1", 1);
        let other = record(&db, "c2", 2);
        assert!(
            claim(&db, second, 10).is_none(),
            "an older one is still pending"
        );
        assert!(
            claim(&db, other, 10).is_some(),
            "other subjects do not wait"
        );
        let attempt = claim(&db, first, 10).unwrap();
        assert_eq!(attempt.attempts, 1);
        assert!(
            claim(&db, first, 10).is_none(),
            "leased: no second attempt at once"
        );
        assert_eq!(
            settle(&db, &attempt, Outcome::Delivered, 11),
            [second],
            "its successor is next"
        );
        assert!(claim(&db, second, 12).is_some());
    }

    #[test]
    fn an_outcome_is_written_only_under_the_attempt_it_belongs_to() {
        let db = database();
        let seq = record(&db, "c1", 0);
        let first = claim(&db, seq, 10).unwrap();
        batch(
            &db,
            &outbox::settle(
                &first,
                &Outcome::Retry { retry_at: at(20) },
                "HTTP 503",
                at(11),
            ),
        );
        assert!(
            claim(&db, seq, 15).is_none(),
            "not due before its retry time"
        );
        let second = claim(&db, seq, 20).unwrap();
        assert_eq!(second.attempts, 2);
        // The first attempt's late outcome changes nothing.
        batch(
            &db,
            &outbox::settle(&first, &Outcome::Dead, "timeout", at(21)),
        );
        batch(
            &db,
            &outbox::settle(&second, &Outcome::Delivered, "HTTP 200", at(22)),
        );
        let stored: Notification =
            row(&run(&db, &outbox::load(seq, at(0).timestamp_millis()))[0]).unwrap();
        assert_eq!((stored.state.as_str(), stored.attempts), ("delivered", 2));
        assert_eq!(super::tallies(&db)["notify.delivered"], 1);
    }

    #[test]
    fn gone_stops_every_attempt_until_enabled() {
        let db = database();
        let a = record(&db, "c1", 0);
        let b = record(&db, "c2", 0);
        let attempt = claim(&db, a, 10).unwrap();
        batch(
            &db,
            &outbox::settle(&attempt, &Outcome::Gone, "HTTP 410", at(11)),
        );
        assert!(claim(&db, b, 12).is_none(), "delivery is disabled");
        assert_eq!(run(&db, &Statement::new(outbox::DISABLED, vec![])).len(), 1);
        assert_eq!(run(&db, &Statement::new(outbox::ENABLE, vec![])).len(), 1);
        assert!(
            claim(&db, a, 13).is_some(),
            "the refused one is due again at once"
        );
    }

    #[test]
    fn the_cron_finds_heads_of_queues_that_are_due() {
        let db = database();
        let first = record(&db, "c1", 0);
        record(&db, "c1", 1);
        let other = record(&db, "c2", 2);
        let due = |now| outbox::seqs(&run(&db, &outbox::due(at(now), 10)));
        assert_eq!(
            due(5),
            [first, other],
            "only the head of each subject's queue"
        );
        let attempt = claim(&db, first, 5).unwrap();
        assert_eq!(due(6), [other], "an attempt in flight is leased");
        batch(
            &db,
            &outbox::settle(&attempt, &Outcome::Dead, "HTTP 500", at(7)),
        );
        assert_eq!(due(8).len(), 2, "a dead one lets its successor go");
    }

    #[test]
    fn a_dead_notification_can_be_sent_again_by_its_id() {
        let db = database();
        let seq = record(&db, "c1", 0);
        let attempt = claim(&db, seq, 1).unwrap();
        batch(
            &db,
            &outbox::settle(&attempt, &Outcome::Dead, "HTTP 500", at(2)),
        );
        let created = at(0).timestamp_millis();
        assert!(
            run(&db, &outbox::redeliver(seq, created + 1, at(3), at(100))).is_empty(),
            "the id must match"
        );
        assert_eq!(
            outbox::seqs(&run(&db, &outbox::redeliver(seq, created, at(3), at(100)))),
            [seq]
        );
        let again = claim(&db, seq, 3).unwrap();
        assert_eq!((again.attempts, again.expires_at), (1, Some(at(100))));
        assert!(
            run(&db, &outbox::redeliver(seq, created, at(4), at(100))).is_empty(),
            "a pending one is not redelivered"
        );
    }

    #[test]
    fn pruning_takes_settled_old_rows_a_batch_at_a_time_and_reads_nothing_while_none_is_old() {
        let db = database();
        let seqs: Vec<i64> = (0..5).map(|i| record(&db, &format!("c{i}"), i)).collect();
        for &seq in &seqs[..4] {
            let attempt = claim(&db, seq, 10).unwrap();
            settle(&db, &attempt, Outcome::Delivered, 11);
        }
        let left = |db: &Connection| {
            run(
                db,
                &Statement::new("SELECT seq FROM notifications ORDER BY seq", vec![]),
            )
            .iter()
            .filter_map(|row| row["seq"].as_i64())
            .collect::<Vec<_>>()
        };
        run(&db, &outbox::prune(at(0), 10, false));
        assert_eq!(left(&db), seqs, "none is older than the cut-off");
        run(&db, &outbox::prune(at(100), 2, false));
        assert_eq!(left(&db), seqs[2..], "at most a batch per run");
        run(&db, &outbox::prune(at(100), 10, false));
        assert_eq!(left(&db), seqs[4..], "a pending one is kept");
        run(&db, &outbox::prune(at(100), 10, true));
        assert_eq!(
            left(&db),
            seqs[4..],
            "unless nothing would ever send it; the newest stays"
        );
        let plan = query_plan(&db, &outbox::prune(at(100), 10, false)).join("; ");
        assert!(!plan.contains("SCAN notifications"), "{plan}");
    }

    #[test]
    fn listings_use_their_indexes() {
        let db = database();
        for (filter, index) in [
            (
                ListFilter {
                    state: Some(State::Dead),
                    limit: 10,
                    ..Default::default()
                },
                "notifications_dead",
            ),
            (
                ListFilter {
                    subject: Some((Provider::named("align"), r("c1"))),
                    state: Some(State::Pending),
                    limit: 10,
                    ..Default::default()
                },
                "notifications_by_subject",
            ),
            (
                ListFilter {
                    limit: 10,
                    before: Some(50),
                    ..Default::default()
                },
                "INTEGER PRIMARY KEY",
            ),
        ] {
            let plan = query_plan(&db, &outbox::list(&filter)).join("; ");
            assert!(
                plan.contains(index) && !plan.contains("TEMP B-TREE"),
                "{filter:?}: {plan}"
            );
        }
        let plan = query_plan(&db, &outbox::due(at(0), 10)).join("; ");
        assert!(plan.contains("notifications_due"), "{plan}");
    }
}

#[test]
fn the_longest_undecided_come_first_from_their_own_index() {
    let db = database();
    for (id, status, since) in [
        ("decided", "approved", 0),
        ("newer", "pending", 50),
        ("oldest", "incomplete", 10),
        ("middle", "unknown", 30),
    ] {
        batch(
            &db,
            &register(Provider::named("align"), &r(id), RefKind::User, None, at(0)),
        );
        run(
            &db,
            &Statement::new(
                "UPDATE subjects SET status = ?1, status_at = ?2 WHERE ref = ?3",
                vec![status.into(), at(since).into(), id.into()],
            ),
        );
    }
    let order: Vec<String> = run(&db, &super::subjects::stuck(10))
        .iter()
        .map(|found| row::<SubjectRow>(found).unwrap().subject_ref.to_string())
        .collect();
    assert_eq!(order, ["oldest", "middle", "newer"]);
    let plan = query_plan(&db, &super::subjects::stuck(10)).join("; ");
    assert!(
        plan.contains("subjects_open") && !plan.contains("TEMP B-TREE"),
        "{plan}"
    );
}

mod imports {
    use super::super::sqlite::{batch, database, query_plan, run};
    use super::super::subjects::{import, register, unchecked};
    use super::{at, r, subject, tallies};
    use crate::import::NewSubject;
    use crate::registration::ImportPlan;
    use crate::subject::{ExternalId, Provider, RefKind};
    use chrono::TimeDelta;
    use rusqlite::Connection;

    const STEP: TimeDelta = TimeDelta::seconds(3);

    fn new(id: &str, external_id: Option<&str>) -> NewSubject {
        NewSubject {
            provider: Provider::named("align"),
            subject_ref: r(id),
            ref_kind: RefKind::User,
            external_id: external_id.map(|e| ExternalId::parse(e).unwrap()),
        }
    }

    /// Imports `subjects`; the refs it created.
    fn import_at(db: &Connection, subjects: &[NewSubject], now: i64) -> Vec<String> {
        let refs: Vec<&NewSubject> = subjects.iter().collect();
        let plan = ImportPlan::batch(&refs, STEP, at(now));
        let imported = plan.read(&batch(db, &plan.statements));
        subjects
            .iter()
            .filter(|s| imported.was_created(s))
            .map(|s| s.subject_ref.as_str().to_owned())
            .collect()
    }

    fn due_at(db: &Connection, id: &str) -> i64 {
        (subject(db, Provider::named("align"), id)
            .unwrap()
            .next_check_at
            - at(0))
        .num_milliseconds()
    }

    #[test]
    fn an_import_creates_the_new_leaves_the_known_and_counts_once() {
        let db = database();
        batch(
            &db,
            &register(
                Provider::named("align"),
                &r("known"),
                RefKind::User,
                None,
                at(0),
            ),
        );
        let lines = [
            new("a", Some("user-a")),
            new("known", Some("someone-else")),
            new("b", None),
        ];
        assert_eq!(import_at(&db, &lines, 10), ["a", "b"]);
        let a = subject(&db, Provider::named("align"), "a").unwrap();
        assert_eq!(a.external_id.as_deref(), Some("user-a"));
        assert_eq!(a.status, crate::status::KycStatus::Unknown);
        assert_eq!(
            subject(&db, Provider::named("align"), "known")
                .unwrap()
                .external_id,
            None,
            "a known subject is left as it is"
        );
        assert_eq!(tallies(&db)["status.align.unknown"], 3);
        // Sent again (a retry after a timeout): nothing changes.
        assert!(import_at(&db, &lines, 20).is_empty());
        assert_eq!(tallies(&db)["status.align.unknown"], 3);
        assert_eq!(super::sql(&db, "SELECT COUNT(*) AS n FROM subjects"), 3);
    }

    #[test]
    fn first_checks_are_spread_after_those_of_earlier_imports() {
        let db = database();
        let first: Vec<NewSubject> = (0..4).map(|i| new(&format!("one-{i}"), None)).collect();
        import_at(&db, &first, 1_000);
        let step = STEP.num_milliseconds();
        let times: Vec<i64> = (0..4).map(|i| due_at(&db, &format!("one-{i}"))).collect();
        assert_eq!(
            times,
            [1_000, 1_000 + step, 1_000 + 2 * step, 1_000 + 3 * step]
        );
        // The next import queues behind, even a moment later.
        import_at(&db, &[new("two-0", None), new("one-0", None)], 2_000);
        assert_eq!(due_at(&db, "two-0"), 1_000 + 4 * step);
        // Once the queue is past, an import starts now.
        import_at(&db, &[new("three-0", None)], 1_000_000);
        assert_eq!(due_at(&db, "three-0"), 1_000_000);
        assert_eq!(
            tallies(&db)["first_checks.align.until"],
            1_800_000_000_000 + 1_000_000 + step
        );
    }

    #[test]
    fn subjects_waiting_for_a_first_check_are_counted_from_their_own_index() {
        let db = database();
        let lines: Vec<NewSubject> = (0..5).map(|i| new(&format!("w{i}"), None)).collect();
        import_at(&db, &lines, 0);
        let waiting =
            |db: &Connection| run(db, &unchecked(Provider::named("align"), 100))[0]["n"].as_i64();
        assert_eq!(waiting(&db), Some(5));
        assert_eq!(
            run(&db, &unchecked(Provider::named("align"), 3))[0]["n"].as_i64(),
            Some(3)
        );
        run(
            &db,
            &crate::db::Statement::new(
                "UPDATE subjects SET last_checked_at = 1 WHERE ref = 'w0'",
                vec![],
            ),
        );
        run(
            &db,
            &crate::db::Statement::new(
                "UPDATE subjects SET last_error = 'HTTP 404' WHERE ref = 'w1'",
                vec![],
            ),
        );
        assert_eq!(waiting(&db), Some(3));
        let plan = query_plan(&db, &unchecked(Provider::named("align"), 100)).join("; ");
        assert!(plan.contains("subjects_unchecked"), "{plan}");
    }

    #[test]
    fn a_thousand_lines_are_one_statement() {
        let db = database();
        let lines: Vec<NewSubject> = (0..1000).map(|i| new(&format!("k{i}"), None)).collect();
        let refs: Vec<&NewSubject> = lines.iter().collect();
        let statements = import(Provider::named("align"), &refs, STEP, at(0));
        assert_eq!(
            statements.len(),
            5,
            "a fixed number of statements, whatever the size"
        );
        let plan = ImportPlan::batch(&refs, STEP, at(0));
        assert_eq!(plan.statements[..5], statements[..]);
        assert_eq!(plan.read(&batch(&db, &plan.statements)).created(), 1000);
    }
}

mod backfills {
    use super::super::backfills::{advance, failed, load, running, start, Backfill, State};
    use super::super::row;
    use super::super::sqlite::{batch, database, run};
    use super::super::subjects::import;
    use super::{at, r, tallies};
    use crate::import::NewSubject;
    use crate::subject::{Provider, RefKind};
    use chrono::TimeDelta;
    use rusqlite::Connection;

    fn current(db: &Connection) -> Backfill {
        row(&run(db, &load(Provider::named("argos")))[0]).unwrap()
    }

    /// A page naming `ids`, imported and the walk moved past it, as the cron does.
    fn page(db: &Connection, walk: &Backfill, ids: &[&str], next: Option<&str>) -> Vec<String> {
        let subjects: Vec<NewSubject> = ids
            .iter()
            .map(|id| NewSubject {
                provider: Provider::named("argos"),
                subject_ref: r(id),
                ref_kind: RefKind::User,
                external_id: None,
            })
            .collect();
        let refs: Vec<&NewSubject> = subjects.iter().collect();
        let mut statements = import(
            Provider::named("argos"),
            &refs,
            TimeDelta::seconds(1),
            at(10),
        );
        statements.push(advance(walk, next, ids.len(), true, at(10)));
        let results = batch(db, &statements);
        results
            .last()
            .unwrap()
            .iter()
            .map(|s| s["state"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_walk_counts_each_new_subject_once_and_resumes_where_it_stopped() {
        let db = database();
        let started = run(
            &db,
            &start(
                Provider::named("argos"),
                Some("2026-01-01"),
                "2026-11-29",
                at(0),
            ),
        );
        assert_eq!(started.len(), 1);
        assert!(
            run(
                &db,
                &start(Provider::named("argos"), None, "2026-11-29", at(1))
            )
            .is_empty(),
            "one walk at a time"
        );
        let walk = current(&db);
        assert_eq!(
            page(&db, &walk, &["u1", "u2", "u1"], Some("{\"id\":\"p2\"}")),
            ["running"]
        );
        // A run that read the same first page (it raced, or ran before a restart) moves nothing.
        assert!(page(&db, &walk, &["u1", "u2"], Some("{\"id\":\"p2\"}")).is_empty());
        let walk = current(&db);
        assert_eq!((walk.pages_read, walk.seen, walk.found), (1, 3, 2));
        assert_eq!(walk.cursor.as_deref(), Some("{\"id\":\"p2\"}"));
        assert_eq!(page(&db, &walk, &["u2", "u3"], None), ["done"]);
        let done = current(&db);
        assert_eq!(
            (done.state, done.pages_read, done.seen, done.found),
            (State::Done, 2, 5, 3)
        );
        assert_eq!(done.finished_at, Some(at(10)));
        assert!(run(&db, &running()).is_empty());
        assert_eq!(tallies(&db)["status.argos.unknown"], 3);
        // A finished walk can be started again, from the first page.
        let again: Backfill = row(&run(
            &db,
            &start(Provider::named("argos"), None, "2026-12-01", at(20)),
        )[0])
        .unwrap();
        assert_eq!(
            (again.state, again.cursor, again.found),
            (State::Running, None, 0)
        );
    }

    #[test]
    fn an_empty_page_counts_nothing_found() {
        let db = database();
        run(
            &db,
            &start(Provider::named("argos"), None, "2026-11-29", at(0)),
        );
        // An earlier import's count is still in the scratch tally: an empty page must not use it.
        let first = current(&db);
        page(&db, &first, &["a", "b"], Some("{\"id\":\"p2\"}"));
        let walk = current(&db);
        let results = batch(&db, &[advance(&walk, None, 0, false, at(11))]);
        assert_eq!(results[0].len(), 1);
        assert_eq!(current(&db).found, 2);
    }

    #[test]
    fn a_failure_is_retried_unless_permanent() {
        let db = database();
        run(
            &db,
            &start(Provider::named("argos"), None, "2026-11-29", at(0)),
        );
        run(&db, &failed(&current(&db), "HTTP 503", false, at(5)));
        let walk = current(&db);
        assert_eq!(
            (walk.state, walk.last_error.as_deref()),
            (State::Running, Some("HTTP 503"))
        );
        run(&db, &failed(&walk, "HTTP 400", true, at(6)));
        assert_eq!(current(&db).state, State::Failed);
        assert_eq!(
            run(
                &db,
                &start(Provider::named("argos"), None, "2026-11-29", at(7))
            )
            .len(),
            1,
            "a failed walk can be started again"
        );
    }
}

#[test]
fn the_agenda_says_when_a_fold_has_work_and_what_is_due() {
    use super::runs::{agenda, Agenda};
    use crate::reconcile::{DRIFT_GRACE, SUSPECTED_DRIFT};
    let db = database();
    let argos = Provider::named("argos");
    let align = Provider::named("align");
    let ask = |db: &Connection, now: Timestamp| {
        Agenda::read(&run(
            db,
            &agenda(
                &[align, argos],
                now,
                10,
                now - DRIFT_GRACE,
                now - TimeDelta::days(30),
            ),
        ))
    };
    // An empty database: nothing to fold, nothing to prune, nothing due.
    let idle = ask(&db, at(0));
    assert!(!idle.fold);
    assert!(!idle.prune);
    assert_eq!(idle.due, vec![(align, 0), (argos, 0)]);
    // A webhook: an event to fold and a subject due.
    deliver(&db, &webhook("u1", KycStatus::Approved), "a", at(0));
    let busy = ask(&db, at(1));
    assert!(busy.fold);
    assert!(!busy.prune, "a new event is not old");
    assert_eq!((busy.due(argos), busy.due(align)), (1, 0));
    // Folded: nothing left to fold until a suspected drift is old enough to settle.
    batch(&db, &fold(at(1), DRIFT_GRACE));
    assert!(!ask(&db, at(2)).fold);
    change_row(&db, "u1", KycStatus::Approved, SUSPECTED_DRIFT, at(2));
    batch(&db, &fold(at(3), DRIFT_GRACE));
    assert!(!ask(&db, at(4)).fold, "within the grace: nothing to settle");
    let later = at(3) + DRIFT_GRACE + TimeDelta::minutes(1);
    assert!(ask(&db, later).fold, "a suspect to settle");
    batch(&db, &fold(later, DRIFT_GRACE));
    assert!(!ask(&db, later).fold);
    // A paused provider is named.
    run(
        &db,
        &crate::statement!(
            "INSERT INTO provider_health (provider, consecutive_failures, paused_until) \
             VALUES ('argos', 1, ?1)",
            at(10_000_000)
        ),
    );
    assert_eq!(ask(&db, later).paused, vec![argos]);
    // Every registered provider in one statement (D1 limits the terms of a compound SELECT:
    // the statement has three, whatever the number of providers).
    let all: Vec<Provider> = Provider::all().collect();
    let statement = agenda(&all, later, 10, later - DRIFT_GRACE, later);
    assert_eq!(statement.sql.matches("UNION ALL").count(), 2);
    assert_eq!(Agenda::read(&run(&db, &statement)).due.len(), all.len());
}
