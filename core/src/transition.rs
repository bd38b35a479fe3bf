//! Ordering rules: which reading wins, and when a change is drift (docs/ordering.md).

use crate::observation::{Observation, Order, Source, Window};
use crate::status::{Aml, KycStatus};
use crate::time::Timestamp;

/// The part of a subject's row that decisions read and write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub status: KycStatus,
    pub provider_status: Option<String>,
    pub sub_status: Option<String>,
    /// When the current status took effect (provider's time when it says, else ours).
    pub status_at: Option<Timestamp>,
    /// When the status on record was read: the window of the latest reading that applied or
    /// confirmed it ([`Window::never`] before any).
    pub window: Window,
    pub aml: Option<Aml>,
    /// When the AML result on record was read.
    pub aml_window: Window,
}

impl Recorded {
    /// A subject that is tracked but about which nothing has been learned.
    pub fn unknown() -> Self {
        Self {
            status: KycStatus::Unknown,
            provider_status: None,
            sub_status: None,
            status_at: None,
            window: Window::never(),
            aml: None,
            aml_window: Window::never(),
        }
    }
}

/// What a reading does to the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Decided,
    /// Part of the reading differs from the record, and the two may have been read in either
    /// order (their windows overlap): it is neither applied nor dropped. A fresh poll, sent
    /// once both windows have closed, decides.
    pub contested: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided {
    /// Nothing moves: the reading is older than the record (or contested).
    Stale,
    /// The reading agrees with the record: only when it was read moves.
    Confirmed(Recorded),
    /// The reading is newer and differs: the record becomes `next`.
    Apply(Change),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub previous: KycStatus,
    pub next: Recorded,
    pub status_changed: bool,
    pub aml_changed: bool,
}

/// What a reading does to one part of the record (the status, or AML).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The reading says nothing about this part.
    Keep,
    Stale,
    Confirm(Window),
    Apply,
    Contested,
}

/// One part: older readings lose, agreeing ones confirm, and a differing one applies only
/// if it was certainly read later; if the two may have been read in either order, it is
/// contested.
fn part(reading: Window, recorded: Window, agrees: bool) -> Part {
    match reading.order(recorded) {
        Order::Before => Part::Stale,
        _ if agrees => Part::Confirm(reading.latest_of(recorded)),
        Order::After => Part::Apply,
        Order::Overlap => Part::Contested,
    }
}

/// Decide what an observation does to the record. Pure: the caller persists the result
/// with a compare-and-set on the record it read, so two writers cannot both apply against
/// the same record.
pub fn decide(current: &Recorded, observation: &Observation) -> Decision {
    let status = if observation.no_record && current.window != Window::never() {
        // A provider that holds no record has decided nothing new: its empty answer (a
        // deletion, or a transient hiccup) never moves a status that was learned. Before
        // anything was read, it is what the provider knows: not started.
        match observation.window.order(current.window) {
            Order::Before => Part::Stale,
            _ => Part::Confirm(current.window),
        }
    } else {
        let agrees = observation.status == current.status
            && observation.provider_status == current.provider_status
            && observation.sub_status == current.sub_status;
        part(observation.window, current.window, agrees)
    };
    let aml = observation.aml.as_ref().map_or(Part::Keep, |reading| {
        part(
            reading.window,
            current.aml_window,
            current.aml.as_ref() == Some(&reading.aml),
        )
    });
    let mut next = current.clone();
    match status {
        Part::Apply => {
            next.status = observation.status;
            next.provider_status = observation.provider_status.clone();
            next.sub_status = observation.sub_status.clone();
            next.window = observation.window;
            next.status_at = if observation.status != current.status {
                Some(observation.status_at.unwrap_or(observation.window.from))
            } else {
                current.status_at.or(observation.status_at)
            };
        }
        Part::Confirm(window) => next.window = window,
        Part::Keep | Part::Stale | Part::Contested => {}
    }
    match (aml, &observation.aml) {
        (Part::Apply, Some(reading)) => {
            next.aml = Some(reading.aml.clone());
            next.aml_window = reading.window;
        }
        (Part::Confirm(window), _) => next.aml_window = window,
        _ => {}
    }
    let contested = status == Part::Contested || aml == Part::Contested;
    let outcome = if status == Part::Apply || aml == Part::Apply {
        Decided::Apply(Change {
            previous: current.status,
            status_changed: next.status != current.status,
            aml_changed: next.aml != current.aml,
            next,
        })
    } else if matches!(status, Part::Confirm(_)) || matches!(aml, Part::Confirm(_)) {
        Decided::Confirmed(next)
    } else {
        Decided::Stale
    };
    Decision { outcome, contested }
}

impl Change {
    /// Whether this change is drift unless a webhook announced it: a status change found by
    /// polling. Learning the first status of a newly tracked subject is never drift: there was
    /// nothing to miss. Whether a webhook announced it is decided when the change is written
    /// (see `reconcile`), so a webhook recorded while the poll was in flight counts.
    pub fn may_be_drift(&self, source: Source) -> bool {
        source == Source::Poll && self.status_changed && self.previous != KycStatus::Unknown
    }
}

/// What a webhook claimed about a subject's status. Even an unauthenticated claim counts:
/// drift measures missed webhooks, not trusted ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Announcement {
    /// The webhook named the status it announces.
    Status(KycStatus),
    /// The webhook said the status changed without saying to what.
    AnyChange,
    /// The webhook was about something else (AML, deletion of data, unknown trigger).
    Nothing,
}

/// How an announcement of any change is stored (`events.announces`).
pub const ANY_CHANGE: &str = "*";

impl Announcement {
    /// Storage form: a status name, `*` for any change, NULL for nothing. The drift check in
    /// `reconcile` matches these forms in SQL.
    pub fn to_db(self) -> Option<&'static str> {
        match self {
            Announcement::Status(s) => Some(s.as_str()),
            Announcement::AnyChange => Some(ANY_CHANGE),
            Announcement::Nothing => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::AmlReading;
    use crate::time::from_millis;

    fn at(ms: i64) -> Timestamp {
        from_millis(ms).unwrap()
    }

    fn window(from: i64, to: i64) -> Window {
        Window {
            from: at(from),
            to: at(to),
            provider_at: None,
        }
    }

    fn recorded(status: KycStatus, from: i64, to: i64) -> Recorded {
        Recorded {
            status,
            provider_status: Some(status.as_str().into()),
            sub_status: None,
            status_at: Some(at(from)),
            window: window(from, to),
            aml: None,
            aml_window: Window::never(),
        }
    }

    fn observation(status: KycStatus, from: i64, to: i64, source: Source) -> Observation {
        Observation {
            status,
            provider_status: Some(status.as_str().into()),
            sub_status: None,
            aml: None,
            status_at: None,
            window: window(from, to),
            source,
            no_record: false,
        }
    }

    fn applied(decision: Decision) -> Change {
        assert!(!decision.contested, "{decision:?}");
        let Decided::Apply(change) = decision.outcome else {
            panic!("expected a change, got {decision:?}");
        };
        change
    }

    #[test]
    fn a_late_pending_never_overwrites_approved() {
        let current = recorded(KycStatus::Approved, 2_000, 2_100);
        let late = observation(KycStatus::Pending, 1_000, 1_500, Source::Poll);
        assert_eq!(
            decide(&current, &late),
            Decision {
                outcome: Decided::Stale,
                contested: false
            }
        );
    }

    #[test]
    fn two_readings_in_flight_together_that_disagree_are_contested_not_ordered() {
        // Sent at 1 000 and 1 200, answered at 1 900 and 1 300: either may have been read
        // first, whatever the send times say. Neither wins; a fresh poll decides.
        let current = recorded(KycStatus::Approved, 1_200, 1_300);
        let slow = observation(KycStatus::Rejected, 1_000, 1_900, Source::Poll);
        assert_eq!(
            decide(&current, &slow),
            Decision {
                outcome: Decided::Stale,
                contested: true
            }
        );
        // The same reading the other way round: the record keeps what it holds.
        let current = recorded(KycStatus::Rejected, 1_000, 1_900);
        let fast = observation(KycStatus::Approved, 1_200, 1_300, Source::Poll);
        assert!(decide(&current, &fast).contested);
    }

    #[test]
    fn overlapping_readings_that_agree_confirm_the_later_bounds() {
        let current = recorded(KycStatus::Pending, 1_000, 1_900);
        let again = observation(KycStatus::Pending, 1_200, 1_300, Source::Poll);
        let decision = decide(&current, &again);
        assert!(!decision.contested);
        let Decided::Confirmed(next) = decision.outcome else {
            panic!("{decision:?}");
        };
        assert_eq!(next.window, window(1_200, 1_900));
    }

    #[test]
    fn a_newer_poll_may_move_a_decision_back() {
        // Providers flip decisions (ARGOS `updated`, Sumsub GREEN then RED).
        let current = recorded(KycStatus::Approved, 2_000, 2_100);
        let flip = observation(KycStatus::Rejected, 3_000, 3_100, Source::Poll);
        let change = applied(decide(&current, &flip));
        assert_eq!(change.previous, KycStatus::Approved);
        assert_eq!(change.next.status, KycStatus::Rejected);
        assert_eq!(change.next.status_at, Some(at(3_000)));
        assert_eq!(change.next.window, window(3_000, 3_100));
        assert!(change.status_changed && !change.aml_changed);
    }

    #[test]
    fn the_same_reading_later_only_confirms() {
        let current = recorded(KycStatus::Pending, 2_000, 2_100);
        let again = observation(KycStatus::Pending, 5_000, 5_100, Source::Poll);
        let decision = decide(&current, &again);
        let Decided::Confirmed(next) = decision.outcome else {
            panic!("{decision:?}");
        };
        assert_eq!(next.window, window(5_000, 5_100));
        assert_eq!(next.status_at, current.status_at);
    }

    #[test]
    fn a_sub_status_change_applies_without_a_status_change() {
        let current = recorded(KycStatus::Pending, 2_000, 2_100);
        let mut next = observation(KycStatus::Pending, 3_000, 3_100, Source::Poll);
        next.sub_status = Some("kyc_form_submission_accepted".into());
        let change = applied(decide(&current, &next));
        assert!(!change.status_changed);
        assert_eq!(
            change.next.status_at,
            Some(at(2_000)),
            "status_at keeps the status's own time"
        );
    }

    #[test]
    fn the_providers_status_time_is_kept_when_given() {
        let current = recorded(KycStatus::Pending, 2_000, 2_100);
        let mut next = observation(KycStatus::Approved, 9_000, 9_100, Source::Poll);
        next.status_at = Some(at(8_500));
        assert_eq!(
            applied(decide(&current, &next)).next.status_at,
            Some(at(8_500))
        );
    }

    fn aml(status: &str, from: i64, to: i64) -> Option<AmlReading> {
        Some(AmlReading {
            aml: Aml {
                status: status.into(),
                risk_level: None,
            },
            window: window(from, to),
        })
    }

    #[test]
    fn aml_is_kept_when_a_reading_says_nothing_about_it() {
        let mut current = recorded(KycStatus::Approved, 2_000, 2_100);
        current.aml = Some(Aml {
            status: "Red Flag".into(),
            risk_level: Some("HIGH".into()),
        });
        current.aml_window = window(2_000, 2_200);
        let plain = observation(KycStatus::Approved, 3_000, 3_100, Source::Poll);
        let decision = decide(&current, &plain);
        let Decided::Confirmed(next) = decision.outcome else {
            panic!("{decision:?}");
        };
        assert_eq!(next.aml, current.aml);
        assert_eq!(next.aml_window, current.aml_window);

        let mut screened = plain.clone();
        screened.aml = aml("Not Screened", 3_100, 3_200);
        let change = applied(decide(&current, &screened));
        assert!(change.aml_changed && !change.status_changed);
        assert_eq!(change.next.aml_window, window(3_100, 3_200));
    }

    #[test]
    fn aml_is_ordered_by_its_own_window() {
        // The status read late is older than the record; the AML read at the same time is
        // newer than the AML on record: only the AML applies.
        let mut current = recorded(KycStatus::Approved, 5_000, 5_100);
        current.aml_window = window(1_000, 1_100);
        let mut reading = observation(KycStatus::Pending, 2_000, 2_100, Source::Poll);
        reading.aml = aml("Red Flag", 2_000, 2_100);
        let change = applied(decide(&current, &reading));
        assert_eq!(change.next.status, KycStatus::Approved);
        assert_eq!(change.next.window, current.window);
        assert!(change.aml_changed && !change.status_changed);
    }

    fn change(previous: KycStatus, next: KycStatus) -> Change {
        applied(decide(
            &recorded(previous, 1, 2),
            &observation(next, 3, 4, Source::Poll),
        ))
    }

    #[test]
    fn only_polled_status_changes_of_known_subjects_may_be_drift() {
        assert!(change(KycStatus::Pending, KycStatus::Approved).may_be_drift(Source::Poll));
        assert!(
            !change(KycStatus::Pending, KycStatus::Approved).may_be_drift(Source::Webhook),
            "a webhook body is its own announcement"
        );
        assert!(
            !change(KycStatus::Unknown, KycStatus::Approved).may_be_drift(Source::Poll),
            "learning a new subject's first status is not drift"
        );
        let mut detail = observation(KycStatus::Pending, 3, 4, Source::Poll);
        detail.sub_status = Some("kyc_form_submission_accepted".into());
        let detail_only = applied(decide(&recorded(KycStatus::Pending, 1, 2), &detail));
        assert!(!detail_only.may_be_drift(Source::Poll));
    }

    #[test]
    fn a_provider_with_no_record_never_moves_a_learned_status() {
        // A deletion never erases a decision, and a transient empty answer never moves a
        // subject under review back to not_started.
        for learned in [
            KycStatus::Approved,
            KycStatus::Rejected,
            KycStatus::Pending,
            KycStatus::Incomplete,
        ] {
            let current = recorded(learned, 1_000, 1_100);
            let mut empty = observation(KycStatus::NotStarted, 2_000, 2_100, Source::Poll);
            empty.no_record = true;
            let decision = decide(&current, &empty);
            assert_eq!(
                decision.outcome,
                Decided::Confirmed(current.clone()),
                "{learned}"
            );
            assert!(!decision.contested);
        }
        // Before anything was learned, "no record" is what the provider knows: not started.
        let mut empty = observation(KycStatus::NotStarted, 2_000, 2_100, Source::Poll);
        empty.no_record = true;
        let change = applied(decide(&Recorded::unknown(), &empty));
        assert_eq!(change.next.status, KycStatus::NotStarted);
    }

    #[test]
    fn announcements_have_a_storage_form() {
        assert_eq!(
            Announcement::Status(KycStatus::Pending).to_db(),
            Some("pending")
        );
        assert_eq!(Announcement::AnyChange.to_db(), Some(ANY_CHANGE));
        assert_eq!(Announcement::Nothing.to_db(), None);
    }
}
