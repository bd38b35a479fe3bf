//! The `subjects` table: one row per tracked subject, written under a version check.

use super::{changes, int, opt_int, opt_text, text};
use kyc_core::observation::Source;
use kyc_core::schedule::NextCheck;
use kyc_core::status::{Aml, KycStatus};
use kyc_core::subject::{ExternalId, Provider, RefKind, SubjectRef};
use kyc_core::timefmt::format_rfc3339;
use kyc_core::transition::{Announcement, Change, Recorded};
use serde::{Deserialize, Serialize};
use worker::{D1Database, Result};

#[derive(Debug, Clone, Deserialize)]
pub struct SubjectRow {
    pub provider: String,
    #[serde(rename = "ref")]
    pub subject_ref: String,
    pub ref_kind: String,
    pub external_id: Option<String>,
    pub status: String,
    pub provider_status: Option<String>,
    pub sub_status: Option<String>,
    pub aml_status: Option<String>,
    pub aml_risk_level: Option<String>,
    pub status_at: Option<i64>,
    pub observed_at: i64,
    pub source: Option<String>,
    pub updated_at: i64,
    pub last_checked_at: Option<i64>,
    pub next_check_at: i64,
    pub check_step: u32,
    pub failures: u32,
    pub version: i64,
}

/// The public shape of a subject (PRODUCT.md), served by the API and stored in KV.
#[derive(Debug, Serialize)]
pub struct SubjectView<'a> {
    provider: &'a str,
    #[serde(rename = "ref")]
    subject_ref: &'a str,
    external_id: Option<&'a str>,
    status: &'a str,
    provider_status: Option<&'a str>,
    sub_status: Option<&'a str>,
    aml: Option<Aml>,
    status_at: Option<String>,
    updated_at: String,
    last_checked_at: Option<String>,
    next_check_at: String,
    source: Option<&'a str>,
    version: i64,
}

impl SubjectRow {
    pub fn recorded(&self) -> Recorded {
        Recorded {
            // A word this version does not know reads as unknown, never as a decision.
            status: KycStatus::parse(&self.status).unwrap_or(KycStatus::Unknown),
            provider_status: self.provider_status.clone(),
            sub_status: self.sub_status.clone(),
            aml: self.aml(),
            status_at: self.status_at,
            observed_at: self.observed_at,
        }
    }

    fn aml(&self) -> Option<Aml> {
        self.aml_status.as_ref().map(|status| Aml {
            status: status.clone(),
            risk_level: self.aml_risk_level.clone(),
        })
    }

    pub fn ref_kind(&self) -> RefKind {
        RefKind::parse(&self.ref_kind).unwrap_or(RefKind::User)
    }

    pub fn view(&self) -> SubjectView<'_> {
        SubjectView {
            provider: &self.provider,
            subject_ref: &self.subject_ref,
            external_id: self.external_id.as_deref(),
            status: &self.status,
            provider_status: self.provider_status.as_deref(),
            sub_status: self.sub_status.as_deref(),
            aml: self.aml(),
            status_at: self.status_at.map(format_rfc3339),
            updated_at: format_rfc3339(self.updated_at),
            last_checked_at: self.last_checked_at.map(format_rfc3339),
            next_check_at: format_rfc3339(self.next_check_at),
            source: self.source.as_deref(),
            version: self.version,
        }
    }
}

const COLUMNS: &str = "provider, ref, ref_kind, external_id, status, provider_status, sub_status, \
     aml_status, aml_risk_level, status_at, observed_at, source, updated_at, last_checked_at, \
     next_check_at, check_step, failures, version";

pub async fn load(
    db: &D1Database,
    provider: Provider,
    subject_ref: &str,
) -> Result<Option<SubjectRow>> {
    db.prepare(format!(
        "SELECT {COLUMNS} FROM subjects WHERE provider = ?1 AND ref = ?2"
    ))
    .bind(&[text(provider.as_str()), text(subject_ref)])?
    .first(None)
    .await
}

#[derive(Deserialize)]
struct AnnouncementRow {
    announces: Option<String>,
}

/// A subject and what webhooks announced about it since its last successful check, in one
/// round trip.
pub async fn load_for_reconcile(
    db: &D1Database,
    provider: Provider,
    subject_ref: &SubjectRef,
) -> Result<Option<(SubjectRow, Vec<Announcement>)>> {
    let key = [text(provider.as_str()), text(subject_ref.as_str())];
    let subject = db
        .prepare(format!(
            "SELECT {COLUMNS} FROM subjects WHERE provider = ?1 AND ref = ?2"
        ))
        .bind(&key)?;
    let announcements = db
        .prepare(
            "SELECT announces FROM events WHERE provider = ?1 AND ref = ?2 AND type = 'webhook' \
             AND at >= COALESCE((SELECT last_checked_at FROM subjects WHERE provider = ?1 AND ref = ?2), 0)",
        )
        .bind(&key)?;
    let results = db.batch(vec![subject, announcements]).await?;
    let (Some(subject), Some(announcements)) = (results.first(), results.get(1)) else {
        return Ok(None);
    };
    let Some(row) = subject.results::<SubjectRow>()?.into_iter().next() else {
        return Ok(None);
    };
    let announcements = announcements
        .results::<AnnouncementRow>()?
        .into_iter()
        .map(|a| Announcement::from_db(a.announces.as_deref()))
        .collect();
    Ok(Some((row, announcements)))
}

/// Start tracking a subject; `true` when it was not tracked before. An existing subject
/// only takes a new external id.
pub async fn register(
    db: &D1Database,
    provider: Provider,
    subject_ref: &SubjectRef,
    external_id: Option<&ExternalId>,
    now: i64,
) -> Result<bool> {
    let external_id = opt_text(external_id.map(ExternalId::as_str));
    let inserted = db
        .prepare(
            "INSERT INTO subjects (provider, ref, external_id, created_at, updated_at, next_check_at) \
             VALUES (?1, ?2, ?3, ?4, ?4, ?4) ON CONFLICT (provider, ref) DO NOTHING",
        )
        .bind(&[text(provider.as_str()), text(subject_ref.as_str()), external_id.clone(), int(now)])?
        .run()
        .await?;
    if changes(&inserted)? == 1 {
        return Ok(true);
    }
    db.prepare(
        "UPDATE subjects SET external_id = ?3, updated_at = ?4, version = version + 1 \
         WHERE provider = ?1 AND ref = ?2 AND ?3 IS NOT NULL AND external_id IS NOT ?3",
    )
    .bind(&[
        text(provider.as_str()),
        text(subject_ref.as_str()),
        external_id,
        int(now),
    ])?
    .run()
    .await?;
    Ok(false)
}

/// Persist an applied change and its history row in one transaction, if nobody else wrote
/// the subject since it was read. `false` on a version conflict: nothing was written.
#[allow(clippy::too_many_arguments)]
pub async fn apply_change(
    db: &D1Database,
    row: &SubjectRow,
    change: &Change,
    source: Source,
    checked_at: Option<i64>,
    next: NextCheck,
    drift: bool,
    now: i64,
) -> Result<bool> {
    let next_state = &change.next;
    let aml = next_state.aml.as_ref();
    let update = db
        .prepare(
            "UPDATE subjects SET status = ?3, provider_status = ?4, sub_status = ?5, aml_status = ?6, \
             aml_risk_level = ?7, status_at = ?8, observed_at = ?9, source = ?10, updated_at = ?11, \
             last_checked_at = COALESCE(?12, last_checked_at), next_check_at = ?13, check_step = ?14, \
             failures = 0, version = version + 1 \
             WHERE provider = ?1 AND ref = ?2 AND version = ?15",
        )
        .bind(&[
            text(&row.provider),
            text(&row.subject_ref),
            text(next_state.status.as_str()),
            opt_text(next_state.provider_status.as_deref()),
            opt_text(next_state.sub_status.as_deref()),
            opt_text(aml.map(|a| a.status.as_str())),
            opt_text(aml.and_then(|a| a.risk_level.as_deref())),
            opt_int(next_state.status_at),
            int(next_state.observed_at),
            text(source.as_str()),
            int(now),
            opt_int(checked_at),
            int(next.at),
            int(i64::from(next.step)),
            int(row.version),
        ])?;
    let fields = changed_fields(change);
    // `changes()` is the UPDATE's row count: the history row exists only if the update did.
    let history = db
        .prepare(
            "INSERT INTO events (provider, ref, type, kind, at, source, from_status, to_status, drift) \
             SELECT ?1, ?2, 'change', ?3, ?4, ?5, ?6, ?7, ?8 WHERE changes() = 1",
        )
        .bind(&[
            text(&row.provider),
            text(&row.subject_ref),
            text(&fields),
            int(now),
            text(source.as_str()),
            text(change.previous.as_str()),
            text(next_state.status.as_str()),
            int(i64::from(drift)),
        ])?;
    let results = db.batch(vec![update, history]).await?;
    match results.first() {
        Some(update) => Ok(changes(update)? == 1),
        None => Ok(false),
    }
}

/// Which fields a change touched, for the history ("status,aml").
fn changed_fields(change: &Change) -> String {
    let mut fields = vec![];
    if change.status_changed {
        fields.push("status");
    } else {
        fields.push("detail");
    }
    if change.aml_changed {
        fields.push("aml");
    }
    fields.join(",")
}

/// A check found nothing new: advance the ordering mark and the schedule.
pub async fn confirm(
    db: &D1Database,
    row: &SubjectRow,
    observed_at: i64,
    checked_at: Option<i64>,
    next: NextCheck,
) -> Result<bool> {
    let result = db
        .prepare(
            "UPDATE subjects SET observed_at = ?3, last_checked_at = COALESCE(?4, last_checked_at), \
             next_check_at = ?5, check_step = ?6, failures = 0 \
             WHERE provider = ?1 AND ref = ?2 AND version = ?7 AND observed_at < ?3",
        )
        .bind(&[
            text(&row.provider),
            text(&row.subject_ref),
            int(observed_at),
            opt_int(checked_at),
            int(next.at),
            int(i64::from(next.step)),
            int(row.version),
        ])?
        .run()
        .await?;
    Ok(changes(&result)? == 1)
}

/// A check failed: the status stays, the subject stays due (later).
pub async fn record_failure(db: &D1Database, row: &SubjectRow, next_check_at: i64) -> Result<()> {
    db.prepare(
        "UPDATE subjects SET failures = failures + 1, next_check_at = ?3 WHERE provider = ?1 AND ref = ?2",
    )
    .bind(&[text(&row.provider), text(&row.subject_ref), int(next_check_at)])?
    .run()
    .await?;
    Ok(())
}

/// Make a subject due now (refresh). `false` when it is not tracked.
pub async fn make_due(
    db: &D1Database,
    provider: Provider,
    subject_ref: &SubjectRef,
    now: i64,
) -> Result<bool> {
    let result = db
        .prepare("UPDATE subjects SET next_check_at = ?3, check_step = 0 WHERE provider = ?1 AND ref = ?2")
        .bind(&[text(provider.as_str()), text(subject_ref.as_str()), int(now)])?
        .run()
        .await?;
    Ok(changes(&result)? == 1)
}

#[derive(Debug, Deserialize)]
pub struct DueSubject {
    pub provider: String,
    #[serde(rename = "ref")]
    pub subject_ref: String,
    pub ref_kind: String,
}

/// Lease up to `budget` due subjects of the given providers (see `queries::CLAIM_DUE`).
pub async fn claim_due(
    db: &D1Database,
    providers: &[Provider],
    now: i64,
    lease_until: i64,
    budget: u32,
) -> Result<Vec<DueSubject>> {
    let names: Vec<&str> = providers.iter().map(|p| p.as_str()).collect();
    let names =
        serde_json::to_string(&names).map_err(|e| worker::Error::RustError(e.to_string()))?;
    db.prepare(kyc_core::queries::CLAIM_DUE)
        .bind(&[
            int(now),
            text(&names),
            int(lease_until),
            int(i64::from(budget)),
        ])?
        .all()
        .await?
        .results()
}

/// Give leased subjects back (their jobs could not be queued).
pub async fn release(db: &D1Database, subjects: &[DueSubject], now: i64) -> Result<()> {
    let keys: Vec<[&str; 2]> = subjects
        .iter()
        .map(|s| [s.provider.as_str(), s.subject_ref.as_str()])
        .collect();
    let keys = serde_json::to_string(&keys).map_err(|e| worker::Error::RustError(e.to_string()))?;
    db.prepare(
        "UPDATE subjects SET next_check_at = ?1 WHERE (provider, ref) IN ( \
           SELECT value ->> 0, value ->> 1 FROM json_each(?2))",
    )
    .bind(&[int(now), text(&keys)])?
    .run()
    .await?;
    Ok(())
}

pub async fn count_due(db: &D1Database, now: i64) -> Result<u32> {
    #[derive(Deserialize)]
    struct Count {
        n: u32,
    }
    let count: Option<Count> = db
        .prepare("SELECT COUNT(*) AS n FROM subjects WHERE next_check_at <= ?1")
        .bind(&[int(now)])?
        .first(None)
        .await?;
    Ok(count.map_or(0, |c| c.n))
}

#[derive(Debug, Default)]
pub struct ListFilter {
    pub provider: Option<Provider>,
    pub status: Option<KycStatus>,
    pub external_id: Option<String>,
    /// Exclusive start: the last `(provider, ref)` of the previous page.
    pub after: Option<(String, String)>,
    pub limit: u32,
}

pub async fn list(db: &D1Database, filter: &ListFilter) -> Result<Vec<SubjectRow>> {
    let (after_provider, after_ref) = filter
        .after
        .as_ref()
        .map_or((None, None), |(p, r)| (Some(p.as_str()), Some(r.as_str())));
    db.prepare(format!(
        "SELECT {COLUMNS} FROM subjects \
         WHERE (?1 IS NULL OR provider = ?1) AND (?2 IS NULL OR status = ?2) \
           AND (?3 IS NULL OR external_id = ?3) \
           AND (?4 IS NULL OR (provider, ref) > (?4, ?5)) \
         ORDER BY provider, ref LIMIT ?6"
    ))
    .bind(&[
        opt_text(filter.provider.map(Provider::as_str)),
        opt_text(filter.status.map(KycStatus::as_str)),
        opt_text(filter.external_id.as_deref()),
        opt_text(after_provider),
        opt_text(after_ref),
        int(i64::from(filter.limit)),
    ])?
    .all()
    .await?
    .results()
}

impl SubjectRow {
    /// The row as `apply_change` left it, for the KV projection without a re-read.
    pub fn with_change(
        &self,
        change: &Change,
        source: Source,
        checked_at: Option<i64>,
        next: NextCheck,
        now: i64,
    ) -> SubjectRow {
        let state = &change.next;
        SubjectRow {
            status: state.status.as_str().to_owned(),
            provider_status: state.provider_status.clone(),
            sub_status: state.sub_status.clone(),
            aml_status: state.aml.as_ref().map(|a| a.status.clone()),
            aml_risk_level: state.aml.as_ref().and_then(|a| a.risk_level.clone()),
            status_at: state.status_at,
            observed_at: state.observed_at,
            source: Some(source.as_str().to_owned()),
            updated_at: now,
            last_checked_at: checked_at.or(self.last_checked_at),
            next_check_at: next.at,
            check_step: next.step,
            failures: 0,
            version: self.version + 1,
            ..self.clone()
        }
    }
}
