//! Ordering rules: which observation wins, and when a change is drift.

use crate::observation::{Observation, Source};
use crate::status::{Aml, KycStatus};
use crate::time::{epoch, Timestamp};

/// The part of a subject's row that decisions read and write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub status: KycStatus,
    pub provider_status: Option<String>,
    pub sub_status: Option<String>,
    pub aml: Option<Aml>,
    /// When the current status took effect (provider's time when it says, else ours).
    pub status_at: Option<Timestamp>,
    /// When the newest applied or confirmed observation was made; the epoch = never.
    pub observed_at: Timestamp,
}

impl Recorded {
    /// A subject that is tracked but about which nothing has been learned.
    pub fn unknown() -> Self {
        Self {
            status: KycStatus::Unknown,
            provider_status: None,
            sub_status: None,
            aml: None,
            status_at: None,
            observed_at: epoch(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Older than (or as old as) what is on record: ignored. A late "pending" never
    /// overwrites a newer "approved".
    Stale,
    /// Newer, and says what the record says: only `observed_at` advances.
    Confirmed { observed_at: Timestamp },
    /// Newer and different: the record becomes `next`.
    Apply(Change),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub previous: KycStatus,
    pub next: Recorded,
    pub status_changed: bool,
    pub aml_changed: bool,
}

/// Decide what an observation does to the record. Pure: the caller persists the result
/// with a compare-and-set on the record it read, so two writers cannot both apply against
/// the same record.
pub fn decide(current: &Recorded, observation: &Observation) -> Decision {
    if observation.observed_at <= current.observed_at {
        return Decision::Stale;
    }
    // A provider that forgot the subject (its data deleted) has not decided anything new.
    if observation.no_record && current.status.is_terminal() {
        return Decision::Confirmed {
            observed_at: observation.observed_at,
        };
    }
    // A reading that says nothing about AML keeps the AML on record.
    let aml = observation.aml.clone().or_else(|| current.aml.clone());
    let status_changed = observation.status != current.status;
    let aml_changed = aml != current.aml;
    let unchanged = !status_changed
        && !aml_changed
        && observation.provider_status == current.provider_status
        && observation.sub_status == current.sub_status;
    if unchanged {
        return Decision::Confirmed {
            observed_at: observation.observed_at,
        };
    }
    let status_at = if status_changed {
        Some(observation.status_at.unwrap_or(observation.observed_at))
    } else {
        current.status_at.or(observation.status_at)
    };
    Decision::Apply(Change {
        previous: current.status,
        next: Recorded {
            status: observation.status,
            provider_status: observation.provider_status.clone(),
            sub_status: observation.sub_status.clone(),
            aml,
            status_at,
            observed_at: observation.observed_at,
        },
        status_changed,
        aml_changed,
    })
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
    use crate::time::from_millis;

    fn at(ms: i64) -> Timestamp {
        from_millis(ms).unwrap()
    }

    fn recorded(status: KycStatus, observed_at: i64) -> Recorded {
        Recorded {
            status,
            provider_status: Some(status.as_str().into()),
            sub_status: None,
            aml: None,
            status_at: Some(at(observed_at)),
            observed_at: at(observed_at),
        }
    }

    fn observation(status: KycStatus, observed_at: i64, source: Source) -> Observation {
        Observation {
            status,
            provider_status: Some(status.as_str().into()),
            sub_status: None,
            aml: None,
            status_at: None,
            observed_at: at(observed_at),
            source,
            no_record: false,
        }
    }

    #[test]
    fn a_late_pending_never_overwrites_approved() {
        let current = recorded(KycStatus::Approved, 2_000);
        let late = observation(KycStatus::Pending, 1_000, Source::Webhook);
        assert_eq!(decide(&current, &late), Decision::Stale);
    }

    #[test]
    fn an_observation_as_old_as_the_record_is_stale() {
        let current = recorded(KycStatus::Pending, 2_000);
        let same_time = observation(KycStatus::Approved, 2_000, Source::Poll);
        assert_eq!(decide(&current, &same_time), Decision::Stale);
    }

    #[test]
    fn a_newer_poll_may_move_a_decision_back() {
        // Providers flip decisions (ARGOS `updated`); a fresh authoritative read wins.
        let current = recorded(KycStatus::Approved, 2_000);
        let flip = observation(KycStatus::Rejected, 3_000, Source::Poll);
        let Decision::Apply(change) = decide(&current, &flip) else {
            panic!("expected a change");
        };
        assert_eq!(change.previous, KycStatus::Approved);
        assert_eq!(change.next.status, KycStatus::Rejected);
        assert_eq!(change.next.status_at, Some(at(3_000)));
        assert!(change.status_changed && !change.aml_changed);
    }

    #[test]
    fn the_same_reading_only_confirms() {
        let current = recorded(KycStatus::Pending, 2_000);
        let again = observation(KycStatus::Pending, 5_000, Source::Poll);
        assert_eq!(
            decide(&current, &again),
            Decision::Confirmed {
                observed_at: at(5_000)
            }
        );
    }

    #[test]
    fn a_sub_status_change_applies_without_a_status_change() {
        let current = recorded(KycStatus::Pending, 2_000);
        let mut next = observation(KycStatus::Pending, 3_000, Source::Poll);
        next.sub_status = Some("kyc_form_submission_accepted".into());
        let Decision::Apply(change) = decide(&current, &next) else {
            panic!("expected a change");
        };
        assert!(!change.status_changed);
        assert_eq!(
            change.next.status_at,
            Some(at(2_000)),
            "status_at keeps the status's own time"
        );
    }

    #[test]
    fn the_providers_status_time_is_kept_when_given() {
        let current = recorded(KycStatus::Pending, 2_000);
        let mut next = observation(KycStatus::Approved, 9_000, Source::Poll);
        next.status_at = Some(at(8_500));
        let Decision::Apply(change) = decide(&current, &next) else {
            panic!("expected a change");
        };
        assert_eq!(change.next.status_at, Some(at(8_500)));
    }

    #[test]
    fn aml_is_kept_when_a_reading_says_nothing_about_it() {
        let mut current = recorded(KycStatus::Approved, 2_000);
        current.aml = Some(Aml {
            status: "Red Flag".into(),
            risk_level: Some("HIGH".into()),
        });
        let plain = observation(KycStatus::Approved, 3_000, Source::Poll);
        assert_eq!(
            decide(&current, &plain),
            Decision::Confirmed {
                observed_at: at(3_000)
            }
        );

        let mut screened = plain.clone();
        screened.aml = Some(Aml {
            status: "Not Screened".into(),
            risk_level: None,
        });
        let Decision::Apply(change) = decide(&current, &screened) else {
            panic!("expected an AML change");
        };
        assert!(change.aml_changed && !change.status_changed);
    }

    fn change(previous: KycStatus, next: KycStatus) -> Change {
        let Decision::Apply(change) =
            decide(&recorded(previous, 1), &observation(next, 2, Source::Poll))
        else {
            panic!("expected a change");
        };
        change
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
        let mut detail = observation(KycStatus::Pending, 2, Source::Poll);
        detail.sub_status = Some("kyc_form_submission_accepted".into());
        let Decision::Apply(detail_only) = decide(&recorded(KycStatus::Pending, 1), &detail) else {
            panic!("expected a change");
        };
        assert!(!detail_only.may_be_drift(Source::Poll));
    }

    #[test]
    fn a_provider_that_forgot_the_subject_never_erases_a_decision() {
        for decided in [KycStatus::Approved, KycStatus::Rejected] {
            let current = recorded(decided, 1_000);
            let mut empty = observation(KycStatus::NotStarted, 2_000, Source::Poll);
            empty.no_record = true;
            assert_eq!(
                decide(&current, &empty),
                Decision::Confirmed {
                    observed_at: at(2_000)
                },
                "{decided}"
            );
        }
        // Before any decision, "no record" is what the provider knows: not started.
        let mut empty = observation(KycStatus::NotStarted, 2_000, Source::Poll);
        empty.no_record = true;
        let Decision::Apply(change) = decide(&recorded(KycStatus::Unknown, 1_000), &empty) else {
            panic!("expected a change");
        };
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
