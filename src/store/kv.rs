//! The KV projection of subjects. Written after D1 commits; never read to decide anything.

use super::subjects::SubjectRow;
use kyc_core::subject::Provider;
use worker::{console_warn, Env};

pub const KV_BINDING: &str = "STATUS";

fn key(provider: &str, subject_ref: &str) -> String {
    format!("subject/{provider}/{subject_ref}")
}

/// Mirror a subject into KV. A failure is logged, not raised: D1 already holds the truth
/// and reads fall back to it.
pub async fn project(env: &Env, row: &SubjectRow) {
    let result = async {
        let body = serde_json::to_string(&row.view()).map_err(|e| e.to_string())?;
        env.kv(KV_BINDING)
            .map_err(|e| e.to_string())?
            .put(&key(&row.provider, &row.subject_ref), body)
            .map_err(|e| e.to_string())?
            .execute()
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    if let Err(error) = result {
        console_warn!(
            "kv projection of {}/{} failed: {error}",
            row.provider,
            row.subject_ref
        );
    }
}

/// The projected subject as JSON text, if KV has it.
pub async fn read(env: &Env, provider: Provider, subject_ref: &str) -> Option<String> {
    let kv = env.kv(KV_BINDING).ok()?;
    match kv.get(&key(provider.as_str(), subject_ref)).text().await {
        Ok(value) => value,
        Err(error) => {
            console_warn!("kv read of {provider}/{subject_ref} failed: {error}");
            None
        }
    }
}
