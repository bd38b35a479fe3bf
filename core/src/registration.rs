//! Registering subjects, decided here and executed by the adapter: one subject
//! (`PUT /v1/subjects/{provider}/{ref}`), many (`POST /v1/subjects/batch`), or a backfill
//! page's. Each is a plan: the statements of one D1 batch, built from `db::subjects`, and the
//! reader of what they did. Batch import and backfill pages share one plan, [`ImportPlan`]:
//! the same statements register subjects and schedule their first checks, and the same reader
//! says which were created.

use crate::db::backfills::{advance, Backfill};
use crate::db::subjects::{import, register, SubjectRow, IMPORTED, REGISTERED};
use crate::db::tallies::{Tally, ALL};
use crate::db::{row, Rows, Statement};
use crate::import::NewSubject;
use crate::jobs::{Job, ReconcileJob};
use crate::statement;
use crate::subject::{ExternalId, Provider, RefKind, SubjectRef};
use crate::time::{from_millis, TimeDelta, Timestamp};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

/// `PUT /v1/subjects/{provider}/{ref}`: start tracking one subject, due at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterPlan {
    pub statements: Vec<Statement>,
}

/// Registration through the API names users (submissions are what a backfill or an import
/// may name).
pub fn plan_register(
    provider: Provider,
    subject_ref: &SubjectRef,
    external_id: Option<&ExternalId>,
    now: Timestamp,
) -> RegisterPlan {
    RegisterPlan {
        statements: register(provider, subject_ref, RefKind::User, external_id, now),
    }
}

/// What registering found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    Created,
    /// Known and retired: tracked again, due at once.
    Revived,
    Existing,
}

/// What a registration did, and what follows from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub row: SubjectRow,
    pub registered: Registered,
    /// A known subject's external id changed (a change a reader sees).
    pub renamed: bool,
}

impl Registration {
    /// What a reader sees changed (a new subject, or a new external id): project it to KV.
    pub fn project(&self) -> bool {
        self.registered == Registered::Created || self.renamed
    }

    /// The check to queue now, so its status is learned at once rather than at the next cron
    /// run (which would also do: the subject is due in D1, so a lost message delays it only).
    pub fn check_now(&self) -> Option<Job> {
        (self.registered != Registered::Existing).then(|| {
            Job::Reconcile(ReconcileJob {
                provider: self.row.provider,
                subject_ref: self.row.subject_ref.clone(),
                ref_kind: self.row.ref_kind,
                trusted: None,
                aml: false,
                subject: None,
            })
        })
    }

    /// 201 for a new subject, 200 for a known one.
    pub fn http_status(&self) -> u16 {
        if self.registered == Registered::Created {
            201
        } else {
            200
        }
    }

    /// For the log line.
    pub fn outcome(&self) -> &'static str {
        match self.registered {
            Registered::Created => "created",
            Registered::Revived => "revived",
            Registered::Existing => "existing",
        }
    }
}

impl RegisterPlan {
    /// Read the batch's results; `None` when the subject's row was not returned.
    pub fn read(&self, results: &[Rows]) -> Result<Option<Registration>, serde_json::Error> {
        let returned = |index: usize| results.get(index).is_some_and(|rows| !rows.is_empty());
        let Some(found) = results.get(REGISTERED.row).and_then(|rows| rows.first()) else {
            return Ok(None);
        };
        // A new row is never retired: created and revived do not meet.
        let registered = if returned(REGISTERED.created) {
            Registered::Created
        } else if returned(REGISTERED.revived) {
            Registered::Revived
        } else {
            Registered::Existing
        };
        Ok(Some(Registration {
            row: row(found)?,
            registered,
            renamed: returned(REGISTERED.renamed),
        }))
    }
}

/// Many subjects registered in one batch: all written or none. Subjects already tracked are
/// left as they are; new ones are due one after another behind every earlier import
/// (`db::subjects::import`). What follows the registrations in the same batch depends on the
/// caller: a batch import reads back when the first checks fall due, a backfill page moves
/// its walk past the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportPlan {
    pub statements: Vec<Statement>,
    /// Per provider, the statement that returns the refs it created.
    created: Vec<CreatedBy>,
    /// The tallies read back (batch import), when anything is registered.
    first_checks: Option<usize>,
    /// The walk's guarded move past the page (backfill).
    walk: Option<usize>,
    now: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CreatedBy {
    provider: Provider,
    statement: usize,
}

/// What an import's batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    created: HashSet<(Provider, String)>,
    /// Per provider registered, when the last first check now scheduled falls due (never in
    /// the past).
    pub first_checks_until: BTreeMap<Provider, Timestamp>,
    /// The walk moved past the page; `false` when another run moved it first (or it ended).
    pub walk_moved: bool,
}

impl Imported {
    pub fn was_created(&self, subject: &NewSubject) -> bool {
        self.created
            .contains(&(subject.provider, subject.subject_ref.as_str().to_owned()))
    }

    pub fn created(&self) -> usize {
        self.created.len()
    }
}

impl ImportPlan {
    /// The registration statements, one group per provider, in provider order.
    fn registering(subjects: &[&NewSubject], step: TimeDelta, now: Timestamp) -> Self {
        let mut by_provider: BTreeMap<Provider, Vec<&NewSubject>> = BTreeMap::new();
        for subject in subjects {
            by_provider
                .entry(subject.provider)
                .or_default()
                .push(subject);
        }
        let mut statements = vec![];
        let mut created = vec![];
        for (provider, subjects) in &by_provider {
            created.push(CreatedBy {
                provider: *provider,
                statement: statements.len() + IMPORTED,
            });
            statements.extend(import(*provider, subjects, step, now));
        }
        ImportPlan {
            statements,
            created,
            first_checks: None,
            walk: None,
            now,
        }
    }

    /// `POST /v1/subjects/batch`: the valid lines (any providers), and the first-check
    /// schedule read back. Nothing at all when no line is valid.
    pub fn batch(subjects: &[&NewSubject], step: TimeDelta, now: Timestamp) -> Self {
        let mut plan = Self::registering(subjects, step, now);
        if !plan.statements.is_empty() {
            plan.first_checks = Some(plan.statements.len());
            plan.statements.push(statement!(ALL));
        }
        plan
    }

    /// A backfill page's chunk: its subjects (possibly none), and the walk moved to `next`
    /// past the `seen` entries of the chunk, guarded on the cursor it was read at.
    pub fn page(
        walk: &Backfill,
        subjects: &[&NewSubject],
        step: TimeDelta,
        next: Option<&str>,
        seen: usize,
        now: Timestamp,
    ) -> Self {
        let mut plan = Self::registering(subjects, step, now);
        plan.walk = Some(plan.statements.len());
        plan.statements
            .push(advance(walk, next, seen, !subjects.is_empty(), now));
        plan
    }

    /// Read the batch's results (empty when the plan had no statements).
    pub fn read(&self, results: &[Rows]) -> Imported {
        let returned = |index: Option<usize>| {
            index
                .and_then(|i| results.get(i))
                .is_some_and(|rows| !rows.is_empty())
        };
        let created = self
            .created
            .iter()
            .flat_map(|by| {
                results
                    .get(by.statement)
                    .into_iter()
                    .flatten()
                    .filter_map(|row| row.get("ref").and_then(Value::as_str))
                    .map(|subject_ref| (by.provider, subject_ref.to_owned()))
            })
            .collect();
        Imported {
            created,
            first_checks_until: self.first_checks_until(results),
            walk_moved: returned(self.walk),
        }
    }

    fn first_checks_until(&self, results: &[Rows]) -> BTreeMap<Provider, Timestamp> {
        let tallies = self.first_checks.and_then(|i| results.get(i));
        let mut until = BTreeMap::new();
        for tally in tallies.into_iter().flatten() {
            let name = tally.get("name").and_then(Value::as_str);
            let (Some(Tally::FirstChecksUntil(provider)), Some(ms)) = (
                name.and_then(Tally::parse),
                tally.get("value").and_then(Value::as_i64),
            ) else {
                continue;
            };
            if self.created.iter().any(|by| by.provider == provider) {
                let at = from_millis(ms).unwrap_or(self.now).max(self.now);
                until.insert(provider, at);
            }
        }
        until
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::sqlite::{batch, database, run};
    use crate::status::KycStatus;
    use rusqlite::Connection;

    fn at(ms: i64) -> Timestamp {
        from_millis(1_800_000_000_000 + ms).unwrap()
    }

    fn r(id: &str) -> SubjectRef {
        SubjectRef::parse(id).unwrap()
    }

    fn align() -> Provider {
        Provider::named("align")
    }

    fn put(db: &Connection, id: &str, external_id: Option<&str>, now: i64) -> Registration {
        let external_id = external_id.map(|e| ExternalId::parse(e).unwrap());
        let plan = plan_register(align(), &r(id), external_id.as_ref(), at(now));
        plan.read(&batch(db, &plan.statements)).unwrap().unwrap()
    }

    fn count(db: &Connection, query: &str) -> i64 {
        run(db, &Statement::new(query.to_owned(), vec![]))[0]["n"]
            .as_i64()
            .unwrap()
    }

    #[test]
    fn registering_creates_once_then_finds_it_and_a_new_external_id_renames_it() {
        let db = database();
        let created = put(&db, "c1", Some("user-7"), 0);
        assert_eq!(
            (created.registered, created.renamed, created.http_status()),
            (Registered::Created, false, 201)
        );
        assert!(created.project(), "a new subject is projected");
        assert_eq!(
            created.check_now(),
            Some(Job::Reconcile(ReconcileJob {
                provider: align(),
                subject_ref: r("c1"),
                ref_kind: RefKind::User,
                trusted: None,
                aml: false,
                subject: None,
            })),
            "its status is learned at once"
        );
        let row = &created.row;
        assert_eq!(
            (row.status, row.version, row.external_id.as_deref()),
            (KycStatus::Unknown, 1, Some("user-7"))
        );
        assert_eq!(
            row.status_at,
            Some(at(0)),
            "unknown took effect at registration"
        );
        assert_eq!(row.next_check_at, at(0), "due at once");
        // Again with the same id: nothing moves, nothing is projected or queued.
        let again = put(&db, "c1", Some("user-7"), 5);
        assert_eq!(
            (again.registered, again.renamed, again.http_status()),
            (Registered::Existing, false, 200)
        );
        assert!(!again.project() && again.check_now().is_none());
        assert_eq!((again.outcome(), again.row.version), ("existing", 1));
        // With another id: the id and the version move, and a reader sees it (projected).
        let renamed = put(&db, "c1", Some("user-8"), 9);
        assert_eq!(
            (renamed.registered, renamed.renamed),
            (Registered::Existing, true)
        );
        assert!(renamed.project() && renamed.check_now().is_none());
        assert_eq!(
            (renamed.row.version, renamed.row.external_id.as_deref()),
            (2, Some("user-8"))
        );
        // Without an id: the known one stays.
        assert!(!put(&db, "c1", None, 10).renamed);
        assert_eq!(
            count(
                &db,
                "SELECT value AS n FROM tallies WHERE name = 'status.align.unknown'"
            ),
            1,
            "counted once"
        );
    }

    #[test]
    fn a_retired_subject_registered_again_is_revived_and_checked_now() {
        let db = database();
        put(&db, "c1", None, 0);
        run(
            &db,
            &Statement::new(
                "UPDATE subjects SET retired_at = 1, unfound = 10, next_check_at = 253402300799000",
                vec![],
            ),
        );
        let revived = put(&db, "c1", None, 50);
        assert_eq!(
            (revived.registered, revived.outcome(), revived.http_status()),
            (Registered::Revived, "revived", 200)
        );
        assert!(revived.check_now().is_some(), "its check is queued");
        assert!(!revived.project(), "nothing a reader sees changed");
        assert_eq!(
            (
                revived.row.retired_at,
                revived.row.unfound,
                revived.row.next_check_at
            ),
            (None, 0, at(50)),
            "due at once"
        );
    }

    fn new(provider: &str, id: &str) -> NewSubject {
        NewSubject {
            provider: Provider::named(provider),
            subject_ref: r(id),
            ref_kind: RefKind::User,
            external_id: None,
        }
    }

    #[test]
    fn a_batch_import_says_which_lines_it_created_and_when_each_providers_first_checks_end() {
        let db = database();
        put(&db, "known", None, 0);
        let step = TimeDelta::seconds(3);
        let lines = [
            new("align", "a"),
            new("argos", "u1"),
            new("align", "known"),
            new("align", "b"),
        ];
        let subjects: Vec<&NewSubject> = lines.iter().collect();
        let plan = ImportPlan::batch(&subjects, step, at(10));
        assert_eq!(
            plan.statements.len(),
            11,
            "five per provider, one read back"
        );
        let imported = plan.read(&batch(&db, &plan.statements));
        let created: Vec<bool> = lines.iter().map(|l| imported.was_created(l)).collect();
        assert_eq!(created, [true, true, false, true]);
        assert_eq!(imported.created(), 3);
        assert_eq!(
            imported.first_checks_until,
            BTreeMap::from([
                (Provider::named("align"), at(10) + step * 2),
                (Provider::named("argos"), at(10) + step),
            ]),
            "the last first check scheduled: the queue's end, after the last new subject"
        );
        assert!(!imported.walk_moved);
        // Sent again: nothing is created, and a queue already past answers now, never before.
        let again = ImportPlan::batch(&subjects, step, at(1_000_000));
        let imported = again.read(&batch(&db, &again.statements));
        assert_eq!(imported.created(), 0);
        assert_eq!(
            imported.first_checks_until[&Provider::named("argos")],
            at(1_000_000)
        );
        // No valid line: nothing to run.
        let none = ImportPlan::batch(&[], step, at(0));
        assert!(none.statements.is_empty());
        assert_eq!(none.read(&[]), Imported::default());
    }
}
