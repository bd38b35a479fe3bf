//! Recording accepted webhooks: the event row (dedup key), the subject made due, and the
//! counters, in one D1 transaction.

use super::{changes, int, opt_int, opt_text, text};
use kyc_core::providers::WebhookEvent;
use kyc_core::subject::Provider;
use worker::{D1Database, Result};

pub enum Recorded {
    New,
    Duplicate,
}

/// Record an accepted webhook. The subject is upserted and made due only when this request
/// inserted the event row (its `receipt` is on it), so a duplicate changes nothing but its
/// counter.
pub async fn record(
    db: &D1Database,
    provider: Provider,
    event: &WebhookEvent,
    dedup_key: &str,
    receipt: &str,
    now: i64,
) -> Result<Recorded> {
    let p = provider.as_str();
    let subject = event.subject.as_ref();
    let subject_ref = subject.map(|s| s.subject_ref.as_str());
    let insert = db
        .prepare(
            "INSERT INTO events (provider, ref, type, kind, dedup_key, receipt, announces, provider_at, at) \
             VALUES (?1, ?2, 'webhook', ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (provider, dedup_key) DO NOTHING",
        )
        .bind(&[
            text(p),
            opt_text(subject_ref),
            text(&event.kind),
            text(dedup_key),
            text(receipt),
            opt_text(event.announces.to_db()),
            opt_int(event.provider_at),
            int(now),
        ])?;
    let mine =
        "EXISTS (SELECT 1 FROM events WHERE provider = ?1 AND dedup_key = ?2 AND receipt = ?3)";
    let mut statements = vec![insert];
    if let Some(subject) = subject {
        statements.push(
            db.prepare(format!(
                "INSERT INTO subjects (provider, ref, ref_kind, created_at, updated_at, next_check_at) \
                 SELECT ?1, ?4, ?5, ?6, ?6, ?6 WHERE {mine} \
                 ON CONFLICT (provider, ref) DO UPDATE SET \
                   next_check_at = MIN(next_check_at, excluded.next_check_at), check_step = 0"
            ))
            .bind(&[
                text(p),
                text(dedup_key),
                text(receipt),
                text(subject.subject_ref.as_str()),
                text(subject.ref_kind.as_str()),
                int(now),
            ])?,
        );
    }
    for (outcome, condition) in [
        ("accepted", mine.to_owned()),
        ("duplicate", format!("NOT {mine}")),
    ] {
        statements.push(
            db.prepare(format!(
                "INSERT INTO counters (name, value) SELECT ?4, 1 WHERE {condition} \
                 ON CONFLICT (name) DO UPDATE SET value = value + 1"
            ))
            .bind(&[
                text(p),
                text(dedup_key),
                text(receipt),
                text(&format!("webhook.{outcome}.{p}")),
            ])?,
        );
    }
    let results = db.batch(statements).await?;
    let inserted = match results.first() {
        Some(insert) => changes(insert)? == 1,
        None => false,
    };
    Ok(if inserted {
        Recorded::New
    } else {
        Recorded::Duplicate
    })
}

/// Count a refused webhook. The request itself leaves no other trace.
pub async fn count_rejected(db: &D1Database, provider: Provider) -> Result<()> {
    db.prepare(
        "INSERT INTO counters (name, value) VALUES (?1, 1) \
         ON CONFLICT (name) DO UPDATE SET value = value + 1",
    )
    .bind(&[text(&format!("webhook.rejected.{provider}"))])?
    .run()
    .await?;
    Ok(())
}
