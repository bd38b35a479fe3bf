use super::*;
use crate::db::sqlite::{batch, database, run};
use crate::db::subjects::{load, register, SubjectRow};
use crate::subject::RefKind;
use crate::time::from_millis;
use rusqlite::Connection;

fn p(name: &str) -> Provider {
    Provider::named(name)
}

fn lane(name: &str, due: u32, cap: u32) -> Lane {
    Lane {
        provider: p(name),
        due,
        cap,
    }
}

/// Runs the plan against providers that have `lane.due` subjects due: what each leased, in
/// the lanes' order, and how many lease statements it took.
fn lease(budget: u32, lanes: &[Lane]) -> (Vec<u32>, usize) {
    let mut left: BTreeMap<Provider, u32> = lanes.iter().map(|l| (l.provider, l.due)).collect();
    let mut take = |claim: &Claim| {
        let due = left.get_mut(&claim.provider).unwrap();
        let leased = claim.limit.min(*due);
        *due -= leased;
        leased
    };
    let plan = ClaimPlan::first_round(budget, lanes);
    let leased: Vec<u32> = plan.claims.iter().map(&mut take).collect();
    let mut statements = plan.claims.len();
    let mut jobs: u32 = leased.iter().sum();
    let mut refills = plan.refills(&leased);
    while let Some(claim) = refills.next(jobs) {
        jobs += take(&claim);
        statements += 1;
    }
    let taken = lanes.iter().map(|l| l.due - left[&l.provider]).collect();
    (taken, statements)
}

const UNLIMITED: u32 = u32::MAX;

#[test]
fn disabled_and_paused_providers_are_skipped_with_their_reason_in_registry_order() {
    let partition = Partition::of(&[p("align"), p("argos"), p("persona")], &[p("argos")]);
    assert_eq!(partition.active, vec![p("align"), p("persona")]);
    assert_eq!(
        partition.skipped_names(),
        vec!["argos:paused", "sumsub:disabled"]
    );
    let disabled_and_paused = Partition::of(&[], &[p("align")]);
    assert!(disabled_and_paused.active.is_empty());
    assert_eq!(disabled_and_paused.skipped[0].reason, SkipReason::Disabled);
    let all: Vec<Provider> = Provider::all().collect();
    assert_eq!(Partition::of(&all, &[]).active, all);
}

#[test]
fn providers_with_enough_due_get_equal_shares_and_no_refill() {
    let (taken, statements) = lease(
        10,
        &[lane("align", 50, UNLIMITED), lane("argos", 50, UNLIMITED)],
    );
    assert_eq!(taken, vec![5, 5]);
    assert_eq!(statements, 2, "nothing left over: no refill asked");
}

#[test]
fn a_provider_with_less_due_leaves_its_budget_to_the_others() {
    let lanes = [
        lane("align", 100, UNLIMITED),
        lane("argos", 100, UNLIMITED),
        lane("sumsub", 4, UNLIMITED),
    ];
    // Shares of 10; sumsub leaves 6, which the first filled provider takes whole.
    assert_eq!(lease(30, &lanes), (vec![16, 10, 4], 4));
}

#[test]
fn a_refill_never_passes_the_providers_cap_nor_the_budget() {
    // align's cap is under its share: its claim is the cap, and it gets no refill.
    assert_eq!(
        lease(100, &[lane("align", 500, 30), lane("argos", 10, UNLIMITED)]),
        (vec![30, 10], 2)
    );
    // align's cap is past its share: the refill stops at the cap, not at the 40 left.
    assert_eq!(
        lease(100, &[lane("align", 500, 60), lane("argos", 10, UNLIMITED)]),
        (vec![60, 10], 3)
    );
    // Two filled providers: the second is refilled with what the first left of the budget.
    assert_eq!(
        lease(
            30,
            &[
                lane("align", 500, 12),
                lane("argos", 500, UNLIMITED),
                lane("sumsub", 2, UNLIMITED)
            ]
        ),
        (vec![12, 16, 2], 5)
    );
    // Nothing left of the budget: no refill, however much is due.
    let plan = ClaimPlan::first_round(10, &[lane("align", 500, UNLIMITED)]);
    assert_eq!(plan.refills(&[10]).next(10), None);
}

#[test]
fn shares_add_up_to_the_budget_so_no_round_leases_past_it() {
    let three = |due: u32| {
        [
            lane("align", 100, UNLIMITED),
            lane("argos", 100, UNLIMITED),
            lane("sumsub", due, UNLIMITED),
        ]
    };
    // 10 over 3: shares of 4, 3 and 3, all filled: the budget, and nothing left to refill.
    assert_eq!(lease(10, &three(100)), (vec![4, 3, 3], 3));
    // One with 1 due: 8 leased, the 2 left go to the first filled provider.
    assert_eq!(lease(10, &three(1)), (vec![6, 3, 1], 4));
    // A budget smaller than the number of providers: the first ones in registry order get one
    // each, the last none.
    assert_eq!(lease(2, &three(100)), (vec![1, 1, 0], 2));
}

#[test]
fn one_provider_takes_the_whole_budget_within_its_cap() {
    assert_eq!(lease(10, &[lane("persona", 25, UNLIMITED)]), (vec![10], 1));
    assert_eq!(lease(10, &[lane("persona", 25, 4)]), (vec![4], 1));
    assert_eq!(lease(10, &[lane("persona", 3, UNLIMITED)]), (vec![3], 1));
}

#[test]
fn nothing_is_asked_of_providers_with_nothing_due_nor_when_none_is_active() {
    assert_eq!(lease(10, &[]), (vec![], 0));
    let plan = ClaimPlan::first_round(10, &[]);
    assert!(plan.claims.is_empty());
    assert_eq!(plan.refills(&[]).next(0), None);
    // Nothing due still counts in the shares (the count may be stale), but is not asked.
    let plan = ClaimPlan::first_round(
        10,
        &[lane("align", 0, UNLIMITED), lane("argos", 9, UNLIMITED)],
    );
    assert_eq!(
        plan.claims
            .iter()
            .map(|c| (c.provider, c.limit))
            .collect::<Vec<_>>(),
        vec![(p("argos"), 5)]
    );
}

fn at(ms: i64) -> Timestamp {
    from_millis(1_800_000_000_000 + ms).unwrap()
}

fn seed_due(db: &Connection, provider: Provider, id: &str, due_at: i64) {
    let subject_ref = SubjectRef::parse(id).unwrap();
    batch(
        db,
        &register(provider, &subject_ref, RefKind::User, None, at(0)),
    );
    run(
        db,
        &statement!(
            "UPDATE subjects SET next_check_at = ?1 WHERE provider = ?2 AND ref = ?3",
            at(due_at),
            provider.as_str(),
            id
        ),
    );
}

fn next_check_at(db: &Connection, due: &DueSubject) -> Timestamp {
    let found = run(db, &load(due.provider, &due.subject_ref));
    row::<SubjectRow>(&found[0]).unwrap().next_check_at
}

fn sorted(subjects: &[DueSubject]) -> Vec<String> {
    let mut keys: Vec<String> = subjects
        .iter()
        .map(|due| format!("{}/{}", due.provider, due.subject_ref))
        .collect();
    keys.sort();
    keys
}

#[test]
fn the_plans_claims_lease_the_oldest_due_of_each_provider_and_a_release_gives_the_tail_back() {
    let db = database();
    let (align, argos, sumsub) = (p("align"), p("argos"), p("sumsub"));
    // align: 5 due, oldest last-named; argos: 1 due and 1 not yet; sumsub: disabled.
    for (id, due_at) in [("a1", 50), ("a2", 40), ("a3", 30), ("a4", 20), ("a5", 10)] {
        seed_due(&db, align, id, due_at);
    }
    seed_due(&db, argos, "g1", 60);
    seed_due(&db, argos, "g2", 5_000);
    seed_due(&db, sumsub, "s1", 0);
    let now = at(1_000);
    let lease_until = now + TimeDelta::minutes(15);
    let enabled = [align, argos];
    let surveyed = Surveyed::read(&batch(&db, &survey(&enabled, now, 4, TimeDelta::days(30))));
    let partition = Partition::of(&enabled, &surveyed.agenda.paused);
    let plan = ClaimPlan::first_round(4, &Lane::all(&partition.active, &surveyed.agenda));
    // `RETURNING` does not follow the `ORDER BY`: each round is compared as a set.
    let mut rounds = vec![];
    let mut counts = vec![];
    for claim in &plan.claims {
        let rows = run(&db, &claim.statement(now, lease_until));
        counts.push(rows.len() as u32);
        rounds.push(Leased::read(&rows).subjects);
    }
    let mut refills = plan.refills(&counts);
    while let Some(claim) = refills.next(rounds.iter().map(Vec::len).sum::<usize>() as u32) {
        rounds.push(Leased::read(&run(&db, &claim.statement(now, lease_until))).subjects);
    }
    // Shares of 2: argos has only 1, align fills its 2 and is refilled with the 1 left.
    assert_eq!(
        rounds.iter().map(|round| sorted(round)).collect::<Vec<_>>(),
        vec![
            vec!["align/a4", "align/a5"],
            vec!["argos/g1"],
            vec!["align/a3"]
        ]
    );
    let mut leased = rounds.concat();
    leased.sort_by_key(|due| due.subject_ref.as_str().to_owned());
    for due in &leased {
        assert_eq!(next_check_at(&db, due), lease_until, "{due:?} is leased");
    }
    assert_eq!(
        Agenda::read(&run(&db, &runs::agenda(&enabled, now, 10, now, now))).due,
        vec![(align, 2), (argos, 0)],
        "the leased are no longer due; the rest wait"
    );
    // Queueing stopped after the first job (align/a3): the tail is given back, one statement
    // a provider.
    let unsent = &leased[1..];
    let releases = releases(unsent, now);
    assert_eq!(releases.len(), 2);
    for statement in &releases {
        run(&db, statement);
    }
    assert_eq!(next_check_at(&db, &leased[0]), lease_until);
    for due in unsent {
        assert_eq!(next_check_at(&db, due), now, "{due:?} is due again");
    }
    let again = |limit: u32| {
        sorted(&Leased::read(&run(&db, &claim_due(align, now, lease_until, limit))).subjects)
    };
    assert_eq!(
        again(2),
        vec!["align/a1", "align/a2"],
        "those that waited come first"
    );
    assert_eq!(again(10), vec!["align/a4", "align/a5"], "then the released");
}

#[test]
fn leased_rows_become_jobs_and_unreadable_rows_are_named_not_queued() {
    let mut rows = run(
        &database(),
        &statement!(
            "SELECT 'argos' AS provider, 'u1' AS ref, 'user' AS ref_kind, 'approved' AS status"
        ),
    );
    rows.push(
        serde_json::from_str(
            r#"{"provider":"argos","ref":"u2","ref_kind":"robot","status":"approved"}"#,
        )
        .unwrap(),
    );
    let leased = Leased::read(&rows);
    assert_eq!(sorted(&leased.subjects), vec!["argos/u1"]);
    assert_eq!(leased.unreadable.len(), 1);
    assert!(leased.unreadable[0].starts_with("argos/u2: "));
    let jobs = jobs(&leased.subjects);
    assert!(
        matches!(&jobs[..], [Job::Reconcile(job)] if job.subject_ref.as_str() == "u1" && !job.aml)
    );
}

#[test]
fn the_fold_is_read_by_name_and_a_run_without_one_keeps_the_surveyed_tallies() {
    use crate::db::events::record_webhook;
    use crate::providers::{WebhookEvent, WebhookSubject};
    use crate::transition::Announcement;
    let db = database();
    let event = WebhookEvent {
        subject: Some(WebhookSubject {
            subject_ref: SubjectRef::parse("u1").unwrap(),
            ref_kind: RefKind::User,
        }),
        kind: "status".into(),
        provider_at: None,
        announces: Announcement::Status(crate::status::KycStatus::Approved),
        trusted: None,
        about_aml: false,
        event_id: None,
    };
    batch(
        &db,
        &record_webhook(p("argos"), &event, "key-1", "receipt-1", at(0)).statements,
    );
    let kept = TimeDelta::days(30);
    let surveyed = Surveyed::read(&batch(&db, &survey(&[p("argos")], at(1), 10, kept)));
    assert!(surveyed.agenda.fold);
    let housekeeping = Housekeeping::plan(&surveyed.agenda, at(1), kept, false);
    let folded = housekeeping.read(&batch(&db, &housekeeping.statements), &surveyed);
    assert_eq!(folded.activity[&p("argos")].webhooks, 1);
    let accepted = |tallies: &Rows| {
        tallies
            .iter()
            .find(|t| t["name"] == "webhook.accepted.argos")
            .map(|t| t["value"].clone())
    };
    assert_eq!(accepted(&surveyed.tallies), None, "not folded yet");
    assert_eq!(
        accepted(&folded.tallies),
        Some(1.into()),
        "the tallies after the fold"
    );
    // Nothing more to fold: the retention runs alone and the surveyed tallies stand.
    let surveyed = Surveyed::read(&batch(&db, &survey(&[p("argos")], at(2), 10, kept)));
    assert!(!surveyed.agenda.fold);
    assert!(!surveyed.agenda.prune, "nothing is 30 days old");
    let quiet = Housekeeping::plan(&surveyed.agenda, at(2), kept, false);
    assert!(quiet.statements.is_empty(), "a quiet run asks nothing more");
    let folded = quiet.read(&[], &surveyed);
    assert!(folded.activity.is_empty());
    assert_eq!(folded.tallies, surveyed.tallies);
    // A month on, the event is old enough: the retention runs alone, and deletes it (the
    // newest event always stays, so a second one is recorded first).
    batch(
        &db,
        &record_webhook(p("argos"), &event, "key-2", "receipt-2", at(3)).statements,
    );
    let later = at(3) + kept + TimeDelta::minutes(1);
    let surveyed = Surveyed::read(&batch(&db, &survey(&[p("argos")], later, 10, kept)));
    assert!(surveyed.agenda.prune);
    let housekeeping = Housekeeping::plan(&surveyed.agenda, later, kept, false);
    let without_prune = Agenda {
        prune: false,
        ..surveyed.agenda.clone()
    };
    assert_eq!(
        housekeeping.statements.len(),
        Housekeeping::plan(&without_prune, later, kept, false)
            .statements
            .len()
            + 4,
        "the fold when due, then events, notifications, alerts, messages"
    );
    batch(&db, &housekeeping.statements);
    let surveyed = Surveyed::read(&batch(&db, &survey(&[p("argos")], later, 10, kept)));
    assert!(
        !surveyed.agenda.prune,
        "the old event was pruned; the newest stays"
    );
}
