//! Where a backfill stands inside a provider's list, and how far one step takes it. A page is
//! registered in chunks of at most [`MAX_LINES`] subjects (one import statement each); the
//! stored cursor names the provider's page and how many of its subjects are done, so a walk
//! resumes mid-page after a restart or a spent budget. Align's list is a single page of up to
//! 50,000 customers: without the offset, a run that cannot finish it would start it over
//! every time.
//!
//! A page is read and registered as a plan ([`plan_page`]): the chunk's new subjects and the
//! walk's move past it, one batch; a page that could not be read ends the walk or waits for
//! the next run by the rule every provider request shares ([`ends_walk`]).

use crate::db::backfills::Backfill;
use crate::import::{NewSubject, MAX_LINES};
use crate::outbound::{OutboundError, ProviderAnswer};
use crate::providers::ListPage;
use crate::registration::ImportPlan;
use crate::time::{TimeDelta, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// A backfill's stored cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The provider's continuation for the page being read; `None`: the first page.
    pub page: Option<String>,
    /// Subjects of that page already registered.
    #[serde(default)]
    pub offset: usize,
}

impl Position {
    /// The stored cursor (`None`: the start of the walk).
    pub fn parse(cursor: Option<&str>) -> Result<Self, String> {
        match cursor {
            None => Ok(Self::default()),
            Some(text) => serde_json::from_str(text)
                .map_err(|_| "the stored backfill cursor is unreadable".to_owned()),
        }
    }

    fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One chunk of a page to register, and the cursor after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Indexes into the page's subjects.
    pub range: std::ops::Range<usize>,
    /// The cursor once the chunk is registered; `None`: the walk is done.
    pub next: Option<String>,
}

/// The next chunk of `page` (read at `at.page`) from `at.offset`.
pub fn next_step(page: &ListPage, at: &Position) -> Step {
    let start = at.offset.min(page.subjects.len());
    let end = (start + MAX_LINES).min(page.subjects.len());
    let next = if end < page.subjects.len() {
        Some(Position {
            page: at.page.clone(),
            offset: end,
        })
    } else {
        page.next.as_ref().map(|next| Position {
            page: Some(next.clone()),
            offset: 0,
        })
    };
    Step {
        range: start..end,
        next: next.map(|p| p.encode()),
    }
}

/// A page's next chunk, planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagePlan {
    /// Registers the chunk's new subjects and moves the walk past it, one batch.
    pub import: ImportPlan,
    /// Where the walk then stands; `None`: done.
    pub next: Option<String>,
}

/// The plan for the next chunk of `page` (read at `at`). A ref the page lists twice is
/// registered once, yet both entries count as seen.
pub fn plan_page(
    walk: &Backfill,
    page: &ListPage,
    at: &Position,
    first_check_step: TimeDelta,
    now: Timestamp,
) -> PagePlan {
    let step = next_step(page, at);
    let mut unique = HashSet::new();
    let subjects: Vec<NewSubject> = page.subjects[step.range.clone()]
        .iter()
        .filter(|(subject_ref, _)| unique.insert(subject_ref.clone()))
        .map(|(subject_ref, ref_kind)| NewSubject {
            provider: walk.provider,
            subject_ref: subject_ref.clone(),
            ref_kind: *ref_kind,
            external_id: None,
        })
        .collect();
    let refs: Vec<&NewSubject> = subjects.iter().collect();
    let import = ImportPlan::page(
        walk,
        &refs,
        first_check_step,
        step.next.as_deref(),
        step.range.len(),
        now,
    );
    PagePlan {
        import,
        next: step.next,
    }
}

/// Whether a page the provider would not serve ends the walk (as failed, with the reason) or
/// is asked again next run: by [`ProviderAnswer`], the rule checks use too. Only what waiting
/// can fix is retried (a rate limit, an outage); an answer that is final for this request (a
/// bad range, an expired cursor, a list too large to read) or a refusal of kyc-edge itself
/// (its key, its permissions, a moved endpoint) will not change by itself, and a walk that
/// never ends would keep the provider's only walk slot.
pub fn ends_walk(error: &OutboundError) -> bool {
    match error.provider_answer() {
        ProviderAnswer::Final | ProviderAnswer::Refused => true,
        ProviderAnswer::RateLimited { .. } | ProviderAnswer::Unavailable => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject::{RefKind, SubjectRef};

    fn page(n: usize, next: Option<&str>) -> ListPage {
        ListPage {
            subjects: (0..n)
                .map(|i| (SubjectRef::parse(&format!("c{i}")).unwrap(), RefKind::User))
                .collect(),
            skipped: 0,
            next: next.map(Into::into),
        }
    }

    #[test]
    fn a_page_is_registered_a_chunk_at_a_time_and_the_walk_resumes_mid_page() {
        let long = page(2 * MAX_LINES + 5, None);
        let first = next_step(&long, &Position::parse(None).unwrap());
        assert_eq!(first.range, 0..MAX_LINES);
        let at = Position::parse(first.next.as_deref()).unwrap();
        assert_eq!(
            at,
            Position {
                page: None,
                offset: MAX_LINES
            }
        );
        let second = next_step(&long, &at);
        assert_eq!(second.range, MAX_LINES..2 * MAX_LINES);
        let last = next_step(&long, &Position::parse(second.next.as_deref()).unwrap());
        assert_eq!(last.range, 2 * MAX_LINES..2 * MAX_LINES + 5);
        assert_eq!(last.next, None, "the only page, read to its end: done");
    }

    #[test]
    fn a_finished_page_moves_to_the_providers_next_one() {
        let step = next_step(&page(3, Some("{\"id\":\"p2\"}")), &Position::default());
        assert_eq!(step.range, 0..3);
        let at = Position::parse(step.next.as_deref()).unwrap();
        assert_eq!(
            at,
            Position {
                page: Some("{\"id\":\"p2\"}".into()),
                offset: 0
            }
        );
        // A page that shrank under a stored offset ends without repeating anything.
        let shrunk = next_step(
            &page(2, None),
            &Position {
                page: None,
                offset: 5,
            },
        );
        assert_eq!((shrunk.range, shrunk.next), (2..2, None));
        assert!(Position::parse(Some("garbage")).is_err());
    }

    #[test]
    fn a_walk_retries_only_what_waiting_can_fix() {
        let http = |status: u16| OutboundError::Http {
            status,
            retry_after: None,
        };
        for status in [400, 401, 403, 404, 405, 410, 422] {
            assert!(ends_walk(&http(status)), "{status}");
        }
        for status in [408, 429, 500, 502, 503] {
            assert!(!ends_walk(&http(status)), "{status}");
        }
        assert!(!ends_walk(&OutboundError::Timeout));
        assert!(!ends_walk(&OutboundError::Transport));
        assert!(ends_walk(&OutboundError::TooLarge { limit: 1 }));
        assert!(ends_walk(&OutboundError::Redirect {
            status: 302,
            location: None
        }));
    }

    #[test]
    fn a_page_is_registered_through_the_import_plan_and_moves_its_walk_once() {
        use crate::db::backfills::{load, start};
        use crate::db::row;
        use crate::db::sqlite::{batch, database, run};
        let db = database();
        let argos = crate::subject::Provider::named("argos");
        let now = crate::time::from_millis(1_800_000_000_000).unwrap();
        run(&db, &start(argos, None, "2026-11-29", now));
        let walk: Backfill = row(&run(&db, &load(argos))[0]).unwrap();
        let mut listed = page(3, Some("{\"id\":\"p2\"}"));
        listed.subjects.push(listed.subjects[0].clone());
        let plan = plan_page(
            &walk,
            &listed,
            &Position::default(),
            TimeDelta::seconds(1),
            now,
        );
        assert_eq!(
            Position::parse(plan.next.as_deref()).unwrap(),
            Position {
                page: Some("{\"id\":\"p2\"}".into()),
                offset: 0
            }
        );
        let imported = plan.import.read(&batch(&db, &plan.import.statements));
        assert_eq!((imported.created(), imported.walk_moved), (3, true));
        assert!(
            imported.first_checks_until.is_empty(),
            "a walk reads no schedule"
        );
        let walk: Backfill = row(&run(&db, &load(argos))[0]).unwrap();
        assert_eq!((walk.pages_read, walk.seen, walk.found), (1, 4, 3));
        // Another run that read the same page first: nothing registered twice, no move.
        let raced = plan.import.read(&batch(&db, &plan.import.statements));
        assert_eq!((raced.created(), raced.walk_moved), (0, false));
        // An empty page only moves the walk.
        let empty = plan_page(
            &walk,
            &page(0, None),
            &Position::parse(walk.cursor.as_deref()).unwrap(),
            TimeDelta::seconds(1),
            now,
        );
        assert_eq!(empty.import.statements.len(), 1);
        assert!(
            empty
                .import
                .read(&batch(&db, &empty.import.statements))
                .walk_moved
        );
    }
}
