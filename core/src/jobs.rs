//! Queue jobs: what webhooks, the cron and refreshes ask the consumer to do. Plain data;
//! they travel as JSON text, so a message from another producer or an older version cannot
//! fail a whole batch's deserialization.

use crate::db::Row;
use crate::observation::Observation;
use crate::subject::{Provider, RefKind, SubjectRef};
use serde::{Deserialize, Serialize};

// A job is decoded from one queue message, run, and dropped: its size on the stack costs
// nothing worth an allocation per message to box the large variant.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum Job {
    Reconcile(ReconcileJob),
    /// Attempt notification `seq` (the outbox row).
    Notify {
        seq: i64,
    },
    /// Attempt alert message `seq` (`alert_messages`).
    Alert {
        seq: i64,
    },
    /// Put D1's row of a subject into KV again: a projection failed (see `projection`).
    Project {
        provider: Provider,
        subject_ref: SubjectRef,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileJob {
    pub provider: Provider,
    pub subject_ref: SubjectRef,
    pub ref_kind: RefKind,
    /// A reading the webhook proved by itself; applied without a fetch when it is newer.
    #[serde(default)]
    pub trusted: Option<Observation>,
    /// Ask for AML results too (an AML webhook triggered the check).
    #[serde(default)]
    pub aml: bool,
    /// The subject's row as the webhook's own batch wrote it (with the provider's health,
    /// see `db::subjects::PROVIDER_OK_SINCE`): the check starts from it instead of loading it
    /// again. A write since then fails the check's compare-and-set, and the check loads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Row>,
}

impl Job {
    pub fn encode(&self) -> String {
        // Serializing plain data with derived impls cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Why a message is not a job, saying only where: serde's messages quote the input
    /// (`unknown variant \`…\``), and the consumer logs this one.
    pub fn decode(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| {
            let what = if e.is_data() {
                "JSON of another shape"
            } else {
                "not JSON"
            };
            format!("{what} (line {}, column {})", e.line(), e.column())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_and_older_messages_still_read() {
        let job = Job::Reconcile(ReconcileJob {
            provider: Provider::named("argos"),
            subject_ref: SubjectRef::parse("u1").unwrap(),
            ref_kind: RefKind::User,
            trusted: None,
            aml: true,
            subject: None,
        });
        assert_eq!(Job::decode(&job.encode()).unwrap(), job);
        // A webhook's job carries its subject's row.
        let mut row = crate::db::Row::new();
        row.insert("provider".into(), "argos".into());
        row.insert("version".into(), 3.into());
        let carrying = Job::Reconcile(ReconcileJob {
            provider: Provider::named("argos"),
            subject_ref: SubjectRef::parse("u1").unwrap(),
            ref_kind: RefKind::User,
            trusted: None,
            aml: false,
            subject: Some(row),
        });
        assert_eq!(Job::decode(&carrying.encode()).unwrap(), carrying);
        // Queued by the previous version (a `run` field, no `aml`).
        let old = r#"{"job":"reconcile","provider":"align","subject_ref":"c1","ref_kind":"user","trusted":null,"run":1700000000000}"#;
        assert!(matches!(
            Job::decode(old),
            Ok(Job::Reconcile(ReconcileJob { aml: false, .. }))
        ));
        assert!(Job::decode(r#"{"job":"explode"}"#).is_err());
        assert_eq!(
            Job::decode(r#"{"job":"notify","seq":7}"#).unwrap(),
            Job::Notify { seq: 7 }
        );
        let project = Job::Project {
            provider: Provider::named("align"),
            subject_ref: SubjectRef::parse("c1").unwrap(),
        };
        assert_eq!(Job::decode(&project.encode()).unwrap(), project);
        assert!(Job::decode(
            r#"{"job":"reconcile","provider":"align","subject_ref":"a/b","ref_kind":"user"}"#
        )
        .is_err());
    }

    #[test]
    fn a_refused_message_is_not_quoted() {
        // Found by the jobs fuzz target: serde's error for
        // {"job":"reconcdoe+kyc@examplexample.com",...} was "unknown variant
        // `reconcdoe+kyc@examplexample.com`, expected ...", and the consumer logs it.
        for text in [
            r#"{"job":"jane.doe@example.com"}"#,
            r#"{"job":"notify","seq":"jane.doe@example.com"}"#,
            r#"{"job":"reconcile","provider":"jane.doe@example.com","subject_ref":"u1","ref_kind":"user"}"#,
            "jane.doe@example.com",
        ] {
            let why = Job::decode(text).unwrap_err();
            assert!(!why.contains("jane"), "{why}");
        }
        assert_eq!(
            Job::decode(r#"{"job":"explode"}"#).unwrap_err(),
            "JSON of another shape (line 1, column 16)"
        );
        assert_eq!(Job::decode("{").unwrap_err(), "not JSON (line 1, column 1)");
    }
}
