//! Ordering rules: which observation wins, and when a change is drift.

use crate::observation::{Observation, Source};
use crate::status::{Aml, KycStatus};

/// The part of a subject's row that decisions read and write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub status: KycStatus,
    pub provider_status: Option<String>,
    pub sub_status: Option<String>,
    pub aml: Option<Aml>,
    /// When the current status took effect (provider's time when it says, else ours).
    pub status_at: Option<i64>,
    /// When the newest applied or confirmed observation was made; 0 = never.
    pub observed_at: i64,
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
            observed_at: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Older than (or as old as) what is on record: ignored. A late "pending" never
    /// overwrites a newer "approved".
    Stale,
    /// Newer, and says what the record says: only `observed_at` advances.
    Confirmed { observed_at: i64 },
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
/// under a version check, so two writers cannot both apply against the same record.
pub fn decide(current: &Recorded, observation: &Observation) -> Decision {
    if observation.observed_at <= current.observed_at {
        return Decision::Stale;
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

impl Announcement {
    /// Storage form: a status name, `*` for any change, NULL for nothing.
    pub fn to_db(self) -> Option<&'static str> {
        match self {
            Announcement::Status(s) => Some(s.as_str()),
            Announcement::AnyChange => Some("*"),
            Announcement::Nothing => None,
        }
    }

    pub fn from_db(value: Option<&str>) -> Self {
        match value {
            Some("*") => Announcement::AnyChange,
            Some(s) => KycStatus::parse(s).map_or(Announcement::AnyChange, Announcement::Status),
            None => Announcement::Nothing,
        }
    }

    fn covers(self, status: KycStatus) -> bool {
        match self {
            Announcement::Status(s) => s == status,
            Announcement::AnyChange => true,
            Announcement::Nothing => false,
        }
    }
}

/// A status change found by polling that no webhook since the previous check announced
/// means a webhook was missed. Learning the first status of a newly tracked subject is not
/// drift: there was nothing to miss.
pub fn is_drift(change: &Change, source: Source, announcements: &[Announcement]) -> bool {
    source == Source::Poll
        && change.status_changed
        && change.previous != KycStatus::Unknown
        && !announcements.iter().any(|a| a.covers(change.next.status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(status: KycStatus, observed_at: i64) -> Recorded {
        Recorded {
            status,
            provider_status: Some(status.as_str().into()),
            sub_status: None,
            aml: None,
            status_at: Some(observed_at),
            observed_at,
        }
    }

    fn observation(status: KycStatus, observed_at: i64, source: Source) -> Observation {
        Observation {
            status,
            provider_status: Some(status.as_str().into()),
            sub_status: None,
            aml: None,
            status_at: None,
            observed_at,
            source,
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
        assert_eq!(change.next.status_at, Some(3_000));
        assert!(change.status_changed && !change.aml_changed);
    }

    #[test]
    fn the_same_reading_only_confirms() {
        let current = recorded(KycStatus::Pending, 2_000);
        let again = observation(KycStatus::Pending, 5_000, Source::Poll);
        assert_eq!(
            decide(&current, &again),
            Decision::Confirmed { observed_at: 5_000 }
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
            Some(2_000),
            "status_at keeps the status's own time"
        );
    }

    #[test]
    fn the_providers_status_time_is_kept_when_given() {
        let current = recorded(KycStatus::Pending, 2_000);
        let mut next = observation(KycStatus::Approved, 9_000, Source::Poll);
        next.status_at = Some(8_500);
        let Decision::Apply(change) = decide(&current, &next) else {
            panic!("expected a change");
        };
        assert_eq!(change.next.status_at, Some(8_500));
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
            Decision::Confirmed { observed_at: 3_000 }
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
    fn drift_is_a_polled_change_no_webhook_announced() {
        let c = change(KycStatus::Pending, KycStatus::Approved);
        assert!(is_drift(&c, Source::Poll, &[]));
        assert!(is_drift(&c, Source::Poll, &[Announcement::Nothing]));
        assert!(is_drift(
            &c,
            Source::Poll,
            &[Announcement::Status(KycStatus::Rejected)]
        ));
        assert!(!is_drift(
            &c,
            Source::Poll,
            &[Announcement::Status(KycStatus::Approved)]
        ));
        assert!(!is_drift(
            &c,
            Source::Poll,
            &[Announcement::Nothing, Announcement::AnyChange]
        ));
        assert!(
            !is_drift(&c, Source::Webhook, &[]),
            "a webhook body is its own announcement"
        );
    }

    #[test]
    fn learning_a_new_subjects_first_status_is_not_drift() {
        assert!(!is_drift(
            &change(KycStatus::Unknown, KycStatus::Approved),
            Source::Poll,
            &[]
        ));
    }

    #[test]
    fn announcements_round_trip_through_storage() {
        for a in [
            Announcement::Status(KycStatus::Pending),
            Announcement::AnyChange,
            Announcement::Nothing,
        ] {
            assert_eq!(Announcement::from_db(a.to_db()), a);
        }
    }
}
