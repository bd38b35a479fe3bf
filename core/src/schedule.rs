//! When to check a subject next, how provider failures push checks back, and what one
//! invocation may spend on the Cloudflare plan the worker runs on.

use crate::status::KycStatus;
use crate::time::{parse_http_date, Timestamp};
use chrono::TimeDelta;

/// Cadence knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// Delays for undecided subjects: the first after a change, one step further after
    /// every check that found nothing new, the last repeating.
    pub open_steps: Vec<TimeDelta>,
    /// Delays for decided subjects, the same way: providers flip decisions, mostly soon after
    /// making them (fraud found within the hour, a review the next day), so the cadence decays
    /// from the decision to the last step, which repeats. The last is also the cadence of
    /// subjects the provider answered about for good (unknown to it, refused).
    pub terminal_steps: Vec<TimeDelta>,
    pub failure_base: TimeDelta,
    pub failure_cap: TimeDelta,
    /// How long a subject the cron enqueued is withheld from later runs. If its job is lost,
    /// it becomes due again after this.
    pub lease: TimeDelta,
    /// Checks in a row that found no record before a subject is retired (no longer checked
    /// until a webhook, a refresh or a registration names it again): junk refs do not poll
    /// the provider forever. `RETIRE_AFTER_UNFOUND_CHECKS`.
    pub retire_after_unfound: u32,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            open_steps: vec![
                TimeDelta::minutes(5),
                TimeDelta::minutes(15),
                TimeDelta::hours(1),
                TimeDelta::hours(6),
                TimeDelta::days(1),
            ],
            terminal_steps: vec![TimeDelta::hours(1), TimeDelta::days(1), TimeDelta::days(7)],
            failure_base: TimeDelta::minutes(1),
            failure_cap: TimeDelta::hours(1),
            lease: TimeDelta::minutes(15),
            retire_after_unfound: 10,
        }
    }
}

/// When the next check is due and which back-off step it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextCheck {
    pub at: Timestamp,
    pub step: u32,
}

/// Spread delays by ±10 % so subjects that changed together are not all due together.
/// Deterministic (FNV-1a of the seed and salt): repeatable in tests, and a retry of the same
/// job schedules the same time.
pub fn jitter(delay: TimeDelta, seed: &str, salt: u32) -> TimeDelta {
    jitter_by(delay, 10, seed, salt)
}

/// `delay` ± `percent` %, deterministic in `seed` and `salt`.
pub fn jitter_by(delay: TimeDelta, percent: i64, seed: &str, salt: u32) -> TimeDelta {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed.bytes().chain(salt.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let spread = delay.num_milliseconds() * percent / 100;
    if spread <= 0 {
        return delay;
    }
    let offset = (hash % (2 * spread as u64 + 1)) as i64 - spread;
    delay + TimeDelta::milliseconds(offset)
}

impl ScheduleConfig {
    /// The slowest cadence: the last terminal step.
    pub fn terminal_recheck(&self) -> TimeDelta {
        self.terminal_steps
            .last()
            .copied()
            .unwrap_or(TimeDelta::days(7))
    }
}

/// What a successful check found, for its schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Nothing new: one step further.
    Nothing,
    /// A change: the cadence starts again from its first step.
    Change,
    /// A change back to the status before the last one: two readings may have been ordered
    /// wrongly, or the provider is flipping. Checked again at the shortest delay, decided or
    /// not.
    Reversal,
}

/// The next check after one that succeeded.
pub fn after_check(
    config: &ScheduleConfig,
    status: KycStatus,
    found: Found,
    step: u32,
    now: Timestamp,
    seed: &str,
) -> NextCheck {
    let steps = if status.is_terminal() {
        &config.terminal_steps
    } else {
        &config.open_steps
    };
    let last = steps.len().saturating_sub(1) as u32;
    let (step, delay) = match found {
        Found::Reversal => (0, config.open_steps.first().copied()),
        Found::Change => (0, steps.first().copied()),
        Found::Nothing => {
            let step = (step + 1).min(last);
            (step, steps.get(step as usize).copied())
        }
    };
    let delay = delay.unwrap_or_else(|| config.terminal_recheck());
    NextCheck {
        at: now + jitter(delay, seed, step),
        step,
    }
}

/// Exponential back-off from `base`, doubling per attempt after the first, capped and
/// jittered; a `Retry-After` is a floor (a day caps absurd values).
pub fn backoff(
    base: TimeDelta,
    cap: TimeDelta,
    attempt: u32,
    retry_after: Option<TimeDelta>,
    seed: &str,
) -> TimeDelta {
    let exponent = attempt.saturating_sub(1).min(20);
    let delay = base.checked_mul(1 << exponent).map_or(cap, |d| d.min(cap));
    let delay = jitter(delay, seed, attempt);
    retry_after.map_or(delay, |r| {
        r.clamp(TimeDelta::zero(), TimeDelta::days(1)).max(delay)
    })
}

/// The next check after the provider failed for the `failures`-th time in a row.
pub fn after_failure(
    config: &ScheduleConfig,
    failures: u32,
    retry_after: Option<TimeDelta>,
    now: Timestamp,
    seed: &str,
) -> Timestamp {
    now + backoff(
        config.failure_base,
        config.failure_cap,
        failures,
        retry_after,
        seed,
    )
}

/// How long a `Retry-After` value asks us to wait: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<TimeDelta> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<i64>() {
        return Some(TimeDelta::try_seconds(seconds.max(0)).unwrap_or(TimeDelta::MAX));
    }
    // Delta-seconds too large for an i64 is still a (very long) wait, not an unreadable value.
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(TimeDelta::MAX);
    }
    parse_http_date(value).map(|at| (at - now).max(TimeDelta::zero()))
}

/// How long a `RateLimit-Reset` value asks us to wait: delta-seconds as the IETF draft says;
/// a value too large to be a delta (past 2001 as Unix seconds) is read as the Unix time of
/// the reset, as some APIs send it. Anything else is unreadable.
pub fn parse_ratelimit_reset(value: &str, now: Timestamp) -> Option<TimeDelta> {
    let value = value.trim();
    if value.is_empty() || value.len() > 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds = value.parse::<i64>().ok()?;
    if seconds >= 1_000_000_000 {
        let at = crate::time::from_millis(seconds.checked_mul(1000)?)?;
        return Some((at - now).max(TimeDelta::zero()));
    }
    TimeDelta::try_seconds(seconds)
}

/// A provider whose checks failed this many times in a row is shown as degraded.
pub const DEGRADED_AFTER_FAILURES: u32 = 3;

/// The Cloudflare plan the worker runs on; it bounds what one invocation may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkersPlan {
    /// 50 subrequests, 50 D1 queries and 10 ms CPU per invocation.
    Free,
    /// 10,000 subrequests, 1,000 D1 queries, 30 s CPU by default.
    Paid,
}

impl WorkersPlan {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "free" => Some(WorkersPlan::Free),
            "paid" => Some(WorkersPlan::Paid),
            _ => None,
        }
    }

    /// The most subjects one cron run may enqueue. A run costs a few D1 statements to pick and
    /// lease them and one `sendBatch` per 100 jobs: 500 on Free is 5 sends (~15 of its 50
    /// subrequests) and little CPU; 10,000 on Paid is 100 sends.
    pub fn max_budget(self) -> u32 {
        match self {
            WorkersPlan::Free => 500,
            WorkersPlan::Paid => 10_000,
        }
    }

    /// First checks of imported or backfilled subjects per cron run, all providers together,
    /// unless `FIRST_CHECKS_PER_RUN` says otherwise. Free's *daily* meters bind long before its
    /// per-run budget does: a first check costs 3 queue operations, ~12 D1 rows written and a
    /// KV write (make bench), so 4 a run (1,152 a day) spends about a third of the 10,000 queue
    /// operations and a seventh of the 100,000 rows written, leaving the rest to webhooks and
    /// re-checks. 250 a run would exhaust D1's daily writes within three hours, after which
    /// every write, webhooks included, fails until midnight UTC. Paid: half the budget.
    pub fn first_checks_per_run(self, budget: u32) -> u32 {
        match self {
            WorkersPlan::Free => 4.min(budget),
            WorkersPlan::Paid => budget / 2,
        }
    }

    /// Calls to other services (fetch, D1, KV, Queue) one invocation may make. Free allows
    /// 50 subrequests and 50 D1 queries; counting every call against the smaller keeps a
    /// queue batch inside both.
    pub fn subrequests(self) -> u32 {
        match self {
            WorkersPlan::Free => 50,
            WorkersPlan::Paid => 1_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_millis;

    const MINUTE: TimeDelta = TimeDelta::minutes(1);
    const HOUR: TimeDelta = TimeDelta::hours(1);
    const DAY: TimeDelta = TimeDelta::days(1);

    fn now() -> Timestamp {
        from_millis(1_700_000_000_000).unwrap()
    }

    fn within_jitter(actual: TimeDelta, expected: TimeDelta) -> bool {
        (actual - expected).abs() <= expected / 10
    }

    #[test]
    fn undecided_subjects_back_off_step_by_step_to_the_cap() {
        let config = ScheduleConfig::default();
        let mut step = 0;
        let mut delays = vec![];
        for _ in 0..7 {
            let next = after_check(
                &config,
                KycStatus::Pending,
                Found::Nothing,
                step,
                now(),
                "align/x",
            );
            delays.push(next.at - now());
            step = next.step;
        }
        let expected = [MINUTE * 15, HOUR, HOUR * 6, DAY, DAY, DAY, DAY];
        for (d, e) in delays.iter().zip(expected) {
            assert!(within_jitter(*d, e), "{d} vs {e}");
        }
    }

    #[test]
    fn a_change_brings_the_next_check_close() {
        let config = ScheduleConfig::default();
        let next = after_check(
            &config,
            KycStatus::Pending,
            Found::Change,
            4,
            now(),
            "align/x",
        );
        assert_eq!(next.step, 0);
        assert!(within_jitter(next.at - now(), MINUTE * 5));
    }

    #[test]
    fn decisions_are_rechecked_within_the_hour_the_next_day_then_weekly() {
        let config = ScheduleConfig::default();
        for status in [KycStatus::Approved, KycStatus::Rejected] {
            let mut next = after_check(&config, status, Found::Change, 3, now(), "argos/u1");
            let mut delays = vec![next.at - now()];
            for _ in 0..3 {
                next = after_check(
                    &config,
                    status,
                    Found::Nothing,
                    next.step,
                    now(),
                    "argos/u1",
                );
                delays.push(next.at - now());
            }
            for (d, e) in delays.iter().zip([HOUR, DAY, DAY * 7, DAY * 7]) {
                assert!(within_jitter(*d, e), "{status}: {d} vs {e}");
            }
        }
    }

    #[test]
    fn a_reversal_is_rechecked_soon_even_when_decided() {
        let config = ScheduleConfig::default();
        let next = after_check(
            &config,
            KycStatus::Approved,
            Found::Reversal,
            2,
            now(),
            "align/x",
        );
        assert_eq!(next.step, 0);
        assert!(within_jitter(next.at - now(), MINUTE * 5));
    }

    #[test]
    fn jitter_spreads_subjects_but_is_repeatable() {
        let a = jitter(HOUR, "align/a", 1);
        assert_eq!(a, jitter(HOUR, "align/a", 1));
        let distinct: std::collections::HashSet<_> = (0..50)
            .map(|i| jitter(HOUR, &format!("align/{i}"), 1))
            .collect();
        assert!(distinct.len() > 40);
        assert!(distinct.iter().all(|d| within_jitter(*d, HOUR)));
    }

    #[test]
    fn failures_back_off_exponentially_to_the_cap() {
        let config = ScheduleConfig::default();
        let waits: Vec<TimeDelta> = (1..=8)
            .map(|n| after_failure(&config, n, None, now(), "s") - now())
            .collect();
        let expected = [1, 2, 4, 8, 16, 32, 60, 60].map(|m| MINUTE * m);
        for (w, e) in waits.iter().zip(expected) {
            assert!(within_jitter(*w, e), "{w} vs {e}");
        }
        let huge = after_failure(&config, u32::MAX, None, now(), "s") - now();
        assert!(within_jitter(huge, HOUR), "no overflow at any count");
    }

    #[test]
    fn retry_after_is_honoured_as_a_floor() {
        let config = ScheduleConfig::default();
        let wait = after_failure(&config, 1, Some(MINUTE * 10), now(), "s") - now();
        assert_eq!(wait, MINUTE * 10);
        let short = after_failure(&config, 1, Some(TimeDelta::seconds(1)), now(), "s") - now();
        assert!(
            within_jitter(short, MINUTE),
            "never sooner than the back-off"
        );
        let absurd = after_failure(&config, 1, Some(DAY * 365), now(), "s") - now();
        assert_eq!(absurd, DAY);
    }

    #[test]
    fn retry_after_in_both_forms() {
        assert_eq!(
            parse_retry_after("120", now()),
            Some(TimeDelta::seconds(120))
        );
        assert_eq!(parse_retry_after("-5", now()), Some(TimeDelta::zero()));
        assert_eq!(
            parse_retry_after("99999999999999999", now()),
            Some(TimeDelta::MAX),
            "absurd values do not overflow"
        );
        let date_now = from_millis(784_111_777_000).unwrap();
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", date_now),
            Some(TimeDelta::seconds(60))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:40:37 GMT", date_now),
            Some(TimeDelta::zero()),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("soon", now()), None);
    }

    #[test]
    fn ratelimit_reset_is_a_delta_or_a_unix_time() {
        assert_eq!(
            parse_ratelimit_reset("42", now()),
            Some(TimeDelta::seconds(42))
        );
        assert_eq!(parse_ratelimit_reset(" 0 ", now()), Some(TimeDelta::zero()));
        let unix = now().timestamp() + 90;
        assert_eq!(
            parse_ratelimit_reset(&unix.to_string(), now()),
            Some(TimeDelta::seconds(90))
        );
        assert_eq!(
            parse_ratelimit_reset("1000000000", now()),
            Some(TimeDelta::zero()),
            "a reset in the past means now"
        );
        for bad in [
            "",
            "-5",
            "1.5",
            "soon",
            "9999999999999",
            "Sun, 06 Nov 1994 08:50:37 GMT",
        ] {
            assert_eq!(parse_ratelimit_reset(bad, now()), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_beyond_an_i64_saturates() {
        // Found by the retry_after fuzz target: 22 digits overflowed the i64 parse and fell
        // through to the HTTP-date parser, so the header was ignored instead of saturating.
        for huge in [
            "9999999999999999999999",
            "9223372036854775808",
            " 18446744073709551616\n",
        ] {
            assert_eq!(
                parse_retry_after(huge, now()),
                Some(TimeDelta::MAX),
                "{huge:?}"
            );
        }
    }

    #[test]
    fn plans_bound_budgets_and_subrequests() {
        assert_eq!(WorkersPlan::Free.max_budget(), 500);
        assert_eq!(WorkersPlan::Paid.max_budget(), 10_000);
        assert_eq!(WorkersPlan::Free.subrequests(), 50);
        assert_eq!(WorkersPlan::parse("free"), Some(WorkersPlan::Free));
        assert_eq!(WorkersPlan::parse("enterprise"), None);
    }
}
