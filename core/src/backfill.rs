//! Where a backfill stands inside a provider's list, and how far one step takes it. A page is
//! registered in chunks of at most [`MAX_LINES`] subjects (one import statement each); the
//! stored cursor names the provider's page and how many of its subjects are done, so a walk
//! resumes mid-page after a restart or a spent budget. Align's list is a single page of up to
//! 50,000 customers: without the offset, a run that cannot finish it would start it over
//! every time.

use crate::import::MAX_LINES;
use crate::providers::ListPage;
use serde::{Deserialize, Serialize};

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
}
