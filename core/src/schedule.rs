//! When to check a subject next, how much one cron run may enqueue, and how provider
//! failures push checks back.

use crate::status::KycStatus;
use crate::timefmt::parse_http_date;

const SECOND: i64 = 1000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// Cadence knobs. Durations in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// Delays for undecided subjects: the first after a change, one step further after
    /// every check that found nothing new, the last repeating.
    pub open_steps: Vec<i64>,
    /// Re-check delay for decided subjects: providers flip decisions.
    pub terminal_recheck: i64,
    pub failure_base: i64,
    pub failure_cap: i64,
    /// How long a subject the cron enqueued is withheld from later runs. If its job is lost,
    /// it becomes due again after this.
    pub lease: i64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            open_steps: vec![5 * MINUTE, 15 * MINUTE, HOUR, 6 * HOUR, DAY],
            terminal_recheck: 7 * DAY,
            failure_base: MINUTE,
            failure_cap: HOUR,
            lease: 15 * MINUTE,
        }
    }
}

/// When the next check is due and which back-off step it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextCheck {
    pub at: i64,
    pub step: u32,
}

/// Spread checks by ±10 % so subjects that changed together are not all due together.
/// Deterministic (FNV-1a of the subject key and step), so it is testable and needs no RNG.
pub fn jitter(delay: i64, seed: &str, salt: u32) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed.bytes().chain(salt.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let spread = delay / 10;
    if spread == 0 {
        return delay;
    }
    let offset = (hash % (2 * spread as u64 + 1)) as i64 - spread;
    delay + offset
}

/// The next check after one that succeeded.
pub fn after_check(
    config: &ScheduleConfig,
    status: KycStatus,
    changed: bool,
    step: u32,
    now: i64,
    seed: &str,
) -> NextCheck {
    if status.is_terminal() {
        return NextCheck {
            at: now + jitter(config.terminal_recheck, seed, 0),
            step: 0,
        };
    }
    let last = config.open_steps.len().saturating_sub(1) as u32;
    let step = if changed { 0 } else { (step + 1).min(last) };
    let delay = config.open_steps.get(step as usize).copied().unwrap_or(DAY);
    NextCheck {
        at: now + jitter(delay, seed, step),
        step,
    }
}

/// The next check after the provider failed for the `failures`-th time in a row
/// (exponential from `failure_base`, capped, jittered) or asked us to wait.
pub fn after_failure(
    config: &ScheduleConfig,
    failures: u32,
    retry_after: Option<i64>,
    now: i64,
    seed: &str,
) -> i64 {
    let exponent = failures.saturating_sub(1).min(20);
    let backoff = config
        .failure_base
        .saturating_mul(1 << exponent)
        .min(config.failure_cap);
    let backoff = jitter(backoff, seed, failures);
    // Retry-After is a floor, not a suggestion; a day caps absurd values.
    let wait = retry_after.map_or(backoff, |r| r.clamp(0, DAY).max(backoff));
    now + wait
}

/// How long a `Retry-After` value asks us to wait, in milliseconds: delta-seconds or an
/// HTTP date.
pub fn parse_retry_after(value: &str, now: i64) -> Option<i64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<i64>() {
        return Some(seconds.max(0).saturating_mul(SECOND));
    }
    parse_http_date(value).map(|at| (at - now).max(0))
}

/// What a provider API answer means for the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseClass {
    Ok,
    /// 429: wait at least this long (if the provider said).
    RateLimited {
        retry_after: Option<i64>,
    },
    /// 408 or 5xx: try again later with back-off.
    Transient,
    /// Any other 4xx: our request or configuration is wrong (bad key, unknown subject).
    Permanent,
}

pub fn classify_response(status: u16, retry_after: Option<&str>, now: i64) -> ResponseClass {
    match status {
        200..=299 => ResponseClass::Ok,
        429 => ResponseClass::RateLimited {
            retry_after: retry_after.and_then(|v| parse_retry_after(v, now)),
        },
        408 | 500..=599 => ResponseClass::Transient,
        _ => ResponseClass::Permanent,
    }
}

/// A provider whose checks failed this many times in a row is shown as degraded.
pub const DEGRADED_AFTER_FAILURES: u32 = 3;

/// The Cloudflare plan the worker runs on; it bounds what one cron run may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// 50 subrequests and 10 ms CPU per invocation.
    Free,
    /// 10,000 subrequests, 30 s CPU by default.
    Paid,
}

impl Plan {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "free" => Some(Plan::Free),
            "paid" => Some(Plan::Paid),
            _ => None,
        }
    }

    /// The most subjects one cron run may enqueue. A run costs one D1 statement to select
    /// and lease them, one `sendBatch` per 100 jobs and a few D1 statements of bookkeeping:
    /// 500 on Free is 5 sends (~10 subrequests of 50) and little CPU; 10,000 on Paid is
    /// 100 sends of 10,000 allowed, and two runs' worth of the 5-minute goal.
    pub fn max_budget(self) -> u32 {
        match self {
            Plan::Free => 500,
            Plan::Paid => 10_000,
        }
    }

    /// The configured budget, never above what the plan allows.
    pub fn budget(self, configured: Option<u32>) -> u32 {
        configured.map_or(self.max_budget(), |b| b.clamp(1, self.max_budget()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn within_jitter(actual: i64, expected: i64) -> bool {
        (actual - expected).abs() <= expected / 10
    }

    #[test]
    fn undecided_subjects_back_off_step_by_step_to_the_cap() {
        let config = ScheduleConfig::default();
        let mut step = 0;
        let mut delays = vec![];
        for _ in 0..7 {
            let next = after_check(&config, KycStatus::Pending, false, step, NOW, "align/x");
            delays.push(next.at - NOW);
            step = next.step;
        }
        let expected = [15 * MINUTE, HOUR, 6 * HOUR, DAY, DAY, DAY, DAY];
        for (d, e) in delays.iter().zip(expected) {
            assert!(within_jitter(*d, e), "{d} vs {e}");
        }
    }

    #[test]
    fn a_change_brings_the_next_check_close() {
        let config = ScheduleConfig::default();
        let next = after_check(&config, KycStatus::Pending, true, 4, NOW, "align/x");
        assert_eq!(next.step, 0);
        assert!(within_jitter(next.at - NOW, 5 * MINUTE));
    }

    #[test]
    fn decided_subjects_are_rechecked_weekly() {
        let config = ScheduleConfig::default();
        for status in [KycStatus::Approved, KycStatus::Rejected] {
            let next = after_check(&config, status, true, 0, NOW, "argos/u1");
            assert!(within_jitter(next.at - NOW, 7 * DAY), "{status}");
        }
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
        let waits: Vec<i64> = (1..=8)
            .map(|n| after_failure(&config, n, None, NOW, "s") - NOW)
            .collect();
        let expected = [1, 2, 4, 8, 16, 32, 60, 60].map(|m| m * MINUTE);
        for (w, e) in waits.iter().zip(expected) {
            assert!(within_jitter(*w, e), "{w} vs {e}");
        }
    }

    #[test]
    fn retry_after_is_honoured_as_a_floor() {
        let config = ScheduleConfig::default();
        let wait = after_failure(&config, 1, Some(10 * MINUTE), NOW, "s") - NOW;
        assert_eq!(wait, 10 * MINUTE);
        let short = after_failure(&config, 1, Some(SECOND), NOW, "s") - NOW;
        assert!(
            within_jitter(short, MINUTE),
            "never sooner than the back-off"
        );
        let absurd = after_failure(&config, 1, Some(365 * DAY), NOW, "s") - NOW;
        assert_eq!(absurd, DAY);
    }

    #[test]
    fn retry_after_in_both_forms() {
        assert_eq!(parse_retry_after("120", NOW), Some(120 * SECOND));
        assert_eq!(parse_retry_after("-5", NOW), Some(0));
        let date_now = 784_111_777_000;
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", date_now),
            Some(60 * SECOND)
        );
        assert_eq!(parse_retry_after("soon", NOW), None);
    }

    #[test]
    fn responses_are_classified() {
        assert_eq!(classify_response(200, None, NOW), ResponseClass::Ok);
        assert_eq!(
            classify_response(429, Some("30"), NOW),
            ResponseClass::RateLimited {
                retry_after: Some(30 * SECOND)
            }
        );
        assert_eq!(
            classify_response(429, None, NOW),
            ResponseClass::RateLimited { retry_after: None }
        );
        for s in [408, 500, 502, 503, 504] {
            assert_eq!(
                classify_response(s, None, NOW),
                ResponseClass::Transient,
                "{s}"
            );
        }
        for s in [400, 401, 403, 404] {
            assert_eq!(
                classify_response(s, None, NOW),
                ResponseClass::Permanent,
                "{s}"
            );
        }
    }

    #[test]
    fn the_budget_never_exceeds_the_plan() {
        assert_eq!(Plan::Free.budget(None), 500);
        assert_eq!(Plan::Paid.budget(None), 10_000);
        assert_eq!(Plan::Free.budget(Some(100_000)), 500);
        assert_eq!(Plan::Paid.budget(Some(2_000)), 2_000);
        assert_eq!(Plan::Free.budget(Some(0)), 1);
    }
}
