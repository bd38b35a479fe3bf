//! What a provider told us about a subject, and when: readings are windows of time, not
//! instants (docs/ordering.md).

use crate::status::{Aml, KycStatus};
use crate::time::{as_millis, epoch, Timestamp};
use chrono::TimeDelta;
use serde::{Deserialize, Serialize};

/// Where an observation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// An authenticated webhook body applied as it is (Align HMAC + `kycs` + `created_at`).
    Webhook,
    /// An authoritative fetch from the provider's API.
    Poll,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Webhook => "webhook",
            Source::Poll => "poll",
        }
    }
}

/// How far a provider's clock may be from ours, and how long its API may lag behind the
/// webhooks it sends, without a reading being misordered. Within this, two readings that
/// might have been taken in either order are never ordered: they are re-checked.
pub const CLOCK_TOLERANCE: TimeDelta = TimeDelta::seconds(60);

/// When a reading was taken, on our clock: the provider read the state it reports at some
/// instant in `[from, to]`. A poll's window runs from when its first request was sent to
/// when its last answer arrived: the send time is only a lower bound of when the provider
/// read its state, and the arrival an upper bound. Two windows that overlap cannot be
/// ordered; one that ends before another starts is older.
///
/// A reading the provider dated itself (an authenticated body) also keeps that date: two
/// such readings are ordered by the provider's own clock, which needs no tolerance against
/// itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    #[serde(with = "as_millis")]
    pub from: Timestamp,
    #[serde(with = "as_millis")]
    pub to: Timestamp,
    /// The provider's own time of the reading, when it dated it.
    #[serde(with = "as_millis::option", default)]
    pub provider_at: Option<Timestamp>,
}

/// How two windows are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Entirely earlier.
    Before,
    /// They share an instant: either reading may have been taken first.
    Overlap,
    /// Entirely later.
    After,
}

/// One request of a check as it happened on our clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exchange {
    pub sent_at: Timestamp,
    pub received_at: Timestamp,
}

impl Window {
    /// An instant of our own clock.
    pub fn at(instant: Timestamp) -> Self {
        Self {
            from: instant,
            to: instant,
            provider_at: None,
        }
    }

    /// Nothing read yet: older than every reading.
    pub fn never() -> Self {
        Self::at(epoch())
    }

    /// The window of one request: from when it was sent to when its answer arrived.
    pub fn of(exchange: Exchange) -> Self {
        Self {
            from: exchange.sent_at,
            to: exchange.received_at.max(exchange.sent_at),
            provider_at: None,
        }
    }

    /// The window of the requests that produced a reading: from the first one sent to the
    /// last one answered. `None` without requests.
    pub fn spanning(exchanges: impl IntoIterator<Item = Exchange>) -> Option<Self> {
        exchanges.into_iter().fold(None, |window, exchange| {
            Some(window.map_or(Window::of(exchange), |w| w.including(exchange)))
        })
    }

    /// Widened to cover one more request of the same reading.
    pub fn including(self, exchange: Exchange) -> Self {
        let this = Window::of(exchange);
        Self {
            from: self.from.min(this.from),
            to: self.to.max(this.to),
            provider_at: None,
        }
    }

    /// An event the provider dated `provider_at` on its own clock, received at `received_at`
    /// on ours. Its clock may be [`CLOCK_TOLERANCE`] away from ours, and its API may lag the
    /// webhook by as much: the window reaches that far on each side of the claim, never
    /// starts after its arrival, and ends no later than that much after its arrival (a claim
    /// dated in the future cannot hold off the polls that follow for long).
    pub fn provider_dated(provider_at: Timestamp, received_at: Timestamp) -> Self {
        Self {
            from: (provider_at - CLOCK_TOLERANCE).min(received_at),
            to: provider_at.min(received_at) + CLOCK_TOLERANCE,
            provider_at: Some(provider_at),
        }
    }

    /// Narrowed by a time the provider's answer mentions (a decision time on its clock): it
    /// read its state after recording that, so the window starts no earlier than that time,
    /// less the tolerated skew, and never after its own end.
    pub fn not_before_provider_time(self, provider_at: Timestamp) -> Self {
        Self {
            from: self.from.max((provider_at - CLOCK_TOLERANCE).min(self.to)),
            ..self
        }
    }

    /// Where `self` lies relative to `other`.
    pub fn order(self, other: Window) -> Order {
        if let (Some(mine), Some(theirs)) = (self.provider_at, other.provider_at) {
            return match mine.cmp(&theirs) {
                std::cmp::Ordering::Less => Order::Before,
                std::cmp::Ordering::Equal => Order::Overlap,
                std::cmp::Ordering::Greater => Order::After,
            };
        }
        if self.to < other.from {
            Order::Before
        } else if self.from > other.to {
            Order::After
        } else {
            Order::Overlap
        }
    }

    /// The last of two readings that saw the same state: it was seen at the later of two
    /// instants, one in each window, so no earlier than the later start and no later than
    /// the later end.
    pub fn latest_of(self, other: Window) -> Self {
        Self {
            from: self.from.max(other.from),
            to: self.to.max(other.to),
            // The later of the two is dated by the provider only if both are.
            provider_at: self
                .provider_at
                .max(other.provider_at)
                .filter(|_| self.provider_at.is_some() && other.provider_at.is_some()),
        }
    }
}

/// An AML screening result, with the window of the requests that read it: AML is ordered
/// on its own, since a check may read it later than the status (ARGOS lists it apart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmlReading {
    pub aml: Aml,
    pub window: Window,
}

/// One reading of a subject's state.
///
/// Invariant: `window` brackets the instant the provider was in this state: for an API
/// answer, the requests that produced the status (narrowed by any decision time the answer
/// carries); for an authenticated body, its own timestamp widened by the tolerated clock
/// skew ([`Window::provider_dated`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub status: KycStatus,
    /// The provider's raw status word (`kycs.status`, `kyc.result`).
    pub provider_status: Option<String>,
    pub sub_status: Option<String>,
    /// `None` when this reading says nothing about AML (it keeps what is on record).
    pub aml: Option<AmlReading>,
    /// When the provider says the status took effect, if it says.
    #[serde(with = "as_millis::option", default)]
    pub status_at: Option<Timestamp>,
    pub window: Window,
    pub source: Source,
    /// The provider holds no record of the subject at all (ARGOS: no submissions, e.g. after
    /// `delete`). Such a reading never moves a status that was learned.
    #[serde(default)]
    pub no_record: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_millis;

    fn at(s: i64) -> Timestamp {
        from_millis(1_800_000_000_000 + s * 1000).unwrap()
    }

    fn window(from: i64, to: i64) -> Window {
        Window {
            from: at(from),
            to: at(to),
            provider_at: None,
        }
    }

    #[test]
    fn windows_that_share_an_instant_cannot_be_ordered() {
        assert_eq!(window(1, 2).order(window(3, 4)), Order::Before);
        assert_eq!(window(3, 4).order(window(1, 2)), Order::After);
        assert_eq!(window(1, 3).order(window(2, 4)), Order::Overlap);
        assert_eq!(window(1, 2).order(window(2, 3)), Order::Overlap);
        assert_eq!(window(1, 9).order(window(4, 5)), Order::Overlap);
    }

    #[test]
    fn a_check_spans_its_requests() {
        let exchanges = [
            Exchange {
                sent_at: at(10),
                received_at: at(12),
            },
            Exchange {
                sent_at: at(12),
                received_at: at(15),
            },
        ];
        assert_eq!(Window::spanning(exchanges), Some(window(10, 15)));
        assert_eq!(Window::spanning([]), None);
    }

    #[test]
    fn two_readings_the_provider_dated_are_ordered_by_its_clock() {
        let first = Window::provider_dated(at(100), at(101));
        let second = Window::provider_dated(at(101), at(130));
        assert_eq!(second.order(first), Order::After);
        assert_eq!(first.order(second), Order::Before);
        assert_eq!(first.order(first), Order::Overlap);
        // Against a poll, on our clock, the tolerance applies.
        assert_eq!(second.order(window(99, 99)), Order::Overlap);
    }

    #[test]
    fn a_provider_dated_claim_is_widened_by_the_tolerance_and_bounded_by_arrival() {
        let tolerance = CLOCK_TOLERANCE.num_seconds();
        // On time: the tolerance both ways, ending the tolerance after arrival at most.
        let dated = |w: Window, p: i64| Window {
            provider_at: Some(at(p)),
            ..w
        };
        assert_eq!(
            Window::provider_dated(at(100), at(101)),
            dated(window(100 - tolerance, 100 + tolerance), 100)
        );
        // Delivered late (a retry hours later): the claim's time, not its arrival.
        assert_eq!(
            Window::provider_dated(at(100), at(10_000)),
            dated(window(100 - tolerance, 100 + tolerance), 100)
        );
        // Dated in the future: it cannot hold off later polls for long.
        assert_eq!(
            Window::provider_dated(at(10_000), at(100)),
            dated(window(100, 100 + tolerance), 10_000)
        );
    }

    #[test]
    fn a_provider_time_narrows_a_window_only_inside_it() {
        let tolerance = CLOCK_TOLERANCE.num_seconds();
        let slow = window(0, 500);
        assert_eq!(
            slow.not_before_provider_time(at(300)),
            window(300 - tolerance, 500)
        );
        assert_eq!(slow.not_before_provider_time(at(10)), slow);
        assert_eq!(slow.not_before_provider_time(at(9_000)), window(500, 500));
    }

    #[test]
    fn the_latest_of_two_agreeing_readings() {
        assert_eq!(window(1, 5).latest_of(window(3, 4)), window(3, 5));
    }
}
