//! The KV projection of subjects, for fast reads at the edge. Written only with the row D1
//! returned from a winning write, and only when what a reader sees changed; never read to
//! decide anything.
//!
//! KV has no compare-and-set, so two projections can land out of order. After each put the
//! writer reads the subject's version in D1; if a newer one was written meanwhile, it deletes
//! the key (readers then fall back to D1, and the newer writer's own put restores it). Every
//! entry also expires (`KV_TTL_SECONDS`), so a put or delete that fails cannot leave an older
//! status readable for longer than that.

use crate::calls::{Call, Calls};
use crate::d1;
use crate::error::StoreError;
use kyc_core::db::subjects::SubjectRow;
use kyc_core::statement;
use kyc_core::subject::{Provider, SubjectRef};
use kyc_core::time::TimeDelta;
use serde::Deserialize;
use worker::{D1Database, Env};

pub const BINDING: &str = "STATUS";

fn key(provider: Provider, subject_ref: &SubjectRef) -> String {
    format!("subject/{provider}/{subject_ref}")
}

/// What became of a projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    Written,
    /// A newer version was written meanwhile: the key was removed.
    Superseded,
}

/// Project `row` (as D1 returned it from the write). An error leaves at worst an entry that
/// expires after `ttl`.
pub async fn project(
    calls: &Calls,
    env: &Env,
    db: &D1Database,
    row: &SubjectRow,
    ttl: TimeDelta,
) -> Result<Projection, StoreError> {
    let kv = env.kv(BINDING).map_err(|e| StoreError::Kv(e.to_string()))?;
    let key = key(row.provider, &row.subject_ref);
    let body =
        serde_json::to_string(&row.status_view()).map_err(|e| StoreError::Kv(e.to_string()))?;
    calls.spend(Call::KvWrite)?;
    let put = kv
        .put(&key, body)
        .map_err(|e| StoreError::Kv(e.to_string()))?
        .expiration_ttl(ttl.num_seconds().max(60) as u64)
        .execute()
        .await;
    if let Err(error) = put {
        // Whatever KV holds now is older than D1: remove it rather than serve it.
        remove(calls, env, &key).await?;
        return Err(StoreError::Kv(error.to_string()));
    }
    #[derive(Deserialize)]
    struct Version {
        version: i64,
    }
    let current: Option<Version> = d1::first(
        &d1::run(
            calls,
            db,
            &statement!(
                "SELECT version FROM subjects WHERE provider = ?1 AND ref = ?2",
                row.provider.as_str(),
                row.subject_ref.as_str()
            ),
        )
        .await?,
    )?;
    if current.is_some_and(|c| c.version > row.version) {
        remove(calls, env, &key).await?;
        return Ok(Projection::Superseded);
    }
    Ok(Projection::Written)
}

async fn remove(calls: &Calls, env: &Env, key: &str) -> Result<(), StoreError> {
    calls.spend(Call::KvWrite)?;
    env.kv(BINDING)
        .map_err(|e| StoreError::Kv(e.to_string()))?
        .delete(key)
        .await
        .map_err(|e| StoreError::Kv(e.to_string()))
}

/// The projected subject as JSON text, if KV has it.
pub async fn read(
    calls: &Calls,
    env: &Env,
    provider: Provider,
    subject_ref: &SubjectRef,
) -> Result<Option<String>, StoreError> {
    calls.spend(Call::KvRead)?;
    env.kv(BINDING)
        .map_err(|e| StoreError::Kv(e.to_string()))?
        .get(&key(provider, subject_ref))
        .text()
        .await
        .map_err(|e| StoreError::Kv(e.to_string()))
}
