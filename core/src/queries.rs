//! SQL whose correctness the scheduler depends on, kept here so host tests run the very
//! statement D1 runs (both are SQLite) against the real migrations.

/// Lease due subjects for one cron run: at most `?4` of them, with `next_check_at <= ?1`,
/// of the providers in the JSON array `?2`, oldest due first (ties by key, so the order is
/// total), pushed to `?3` so later runs skip them until the lease ends. Returns the leased
/// rows. A run that cannot take every due subject leaves the rest at the head of the line.
pub const CLAIM_DUE: &str = "UPDATE subjects SET next_check_at = ?3 WHERE (provider, ref) IN ( \
       SELECT provider, ref FROM subjects \
       WHERE next_check_at <= ?1 AND provider IN (SELECT value FROM json_each(?2)) \
       ORDER BY next_check_at, provider, ref LIMIT ?4) \
     RETURNING provider, ref, ref_kind";

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{params, Connection};

    const MIGRATION: &str = include_str!("../../migrations/0001_init.sql");
    const LEASE: i64 = 15 * 60_000;

    fn database(due_at: &[(&str, &str, i64)]) -> Connection {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch(MIGRATION).unwrap();
        for (provider, subject_ref, next_check_at) in due_at {
            db.execute(
                "INSERT INTO subjects (provider, ref, created_at, updated_at, next_check_at) VALUES (?1, ?2, 0, 0, ?3)",
                params![provider, subject_ref, next_check_at],
            )
            .unwrap();
        }
        db
    }

    fn claim(db: &Connection, now: i64, providers: &str, budget: u32) -> Vec<String> {
        let mut statement = db.prepare(CLAIM_DUE).unwrap();
        let mut claimed: Vec<String> = statement
            .query_map(params![now, providers, now + LEASE, budget], |row| {
                Ok(format!(
                    "{}/{}",
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        claimed.sort();
        claimed
    }

    #[test]
    fn only_due_subjects_of_active_providers_are_claimed() {
        let db = database(&[
            ("align", "a", 100),
            ("align", "b", 200),
            ("argos", "c", 50),
            ("align", "later", 1_000),
        ]);
        assert_eq!(claim(&db, 500, r#"["align"]"#, 10), ["align/a", "align/b"]);
        assert_eq!(
            claim(&db, 500, r#"["align","argos"]"#, 10),
            ["argos/c"],
            "leased ones are not claimed twice"
        );
    }

    #[test]
    fn the_budget_takes_the_oldest_due_first() {
        let db = database(&[
            ("align", "newest", 300),
            ("align", "oldest", 100),
            ("align", "middle", 200),
        ]);
        assert_eq!(
            claim(&db, 1_000, r#"["align"]"#, 2),
            ["align/middle", "align/oldest"]
        );
    }

    #[test]
    fn runs_that_cannot_take_everything_reach_everyone_in_turn() {
        let subjects: Vec<(String, i64)> = (0..25)
            .map(|i| (format!("s{i:02}"), 1_000 - i * 10))
            .collect();
        let rows: Vec<(&str, &str, i64)> = subjects
            .iter()
            .map(|(r, at)| ("align", r.as_str(), *at))
            .collect();
        let db = database(&rows);
        let mut seen = std::collections::BTreeSet::new();
        let mut runs = 0;
        // Five-minute runs, budget 10: 25 due subjects need three runs, none is starved.
        while seen.len() < 25 {
            runs += 1;
            let claimed = claim(&db, 1_000 + runs * 300_000, r#"["align"]"#, 10);
            assert!(claimed.len() <= 10);
            assert!(
                claimed.iter().all(|c| seen.insert(c.clone())),
                "claimed twice within a lease: {claimed:?}"
            );
        }
        assert_eq!(runs, 3);
    }

    #[test]
    fn a_lost_job_is_offered_again_once_its_lease_ends() {
        let db = database(&[("align", "a", 100)]);
        assert_eq!(claim(&db, 100, r#"["align"]"#, 10), ["align/a"]);
        assert!(claim(&db, 100 + LEASE - 1, r#"["align"]"#, 10).is_empty());
        assert_eq!(claim(&db, 100 + LEASE, r#"["align"]"#, 10), ["align/a"]);
    }
}
