//! The cron's share of backfills: a few pages of each running walk per run. A page's chunk of
//! registrations and the cursor's move past it are one D1 batch, so a walk resumes exactly
//! where it stopped, whatever stopped it (a restart, a spent budget, a provider outage).

use crate::d1;
use crate::error::StoreError;
use crate::log::Line;
use crate::outbound::{self, NotSent};
use crate::services::Services;
use kyc_core::backfill::{ends_walk, plan_page, Position};
use kyc_core::db::backfills::{self, Backfill};
use kyc_core::db::row;
use kyc_core::providers::ListWalk;
use kyc_core::time::Timestamp;

/// What this run's backfill work did, for the cron's log line.
#[derive(Default)]
pub struct Progress {
    pub pages: u32,
    pub found: u32,
}

/// Why a page was not registered: whether the walk may retry it next run.
enum PageError {
    Transient(String),
    Permanent(String),
    /// The invocation's calls are spent: stop every walk until the next run.
    OverBudget,
}

pub async fn run(
    services: &Services<'_>,
    now: Timestamp,
    log: &mut Line,
) -> Result<Progress, StoreError> {
    let mut progress = Progress::default();
    let walks = d1::run(&services.calls, services.db, &backfills::running()).await?;
    'walks: for found in &walks {
        let mut walk: Backfill = match row(found) {
            Ok(walk) => walk,
            Err(e) => {
                log.set("backfill_error", format!("unreadable backfill row: {e}"));
                continue;
            }
        };
        let mut pages = 0;
        while pages < services.config.backfill_pages_per_run {
            match page(services, &walk, now, &mut progress).await {
                Ok(Some(next)) => walk.cursor = Some(next),
                Ok(None) => break,
                Err(PageError::OverBudget) => break 'walks,
                Err(PageError::Transient(why)) => {
                    record(services, &walk, &why, false, now).await?;
                    break;
                }
                Err(PageError::Permanent(why)) => {
                    record(services, &walk, &why, true, now).await?;
                    break;
                }
            }
            pages += 1;
        }
    }
    if !walks.is_empty() {
        log.set("backfill_pages", progress.pages)
            .set("backfill_found", progress.found);
    }
    Ok(progress)
}

async fn record(
    services: &Services<'_>,
    walk: &Backfill,
    why: &str,
    permanent: bool,
    now: Timestamp,
) -> Result<(), StoreError> {
    d1::run(
        &services.calls,
        services.db,
        &backfills::failed(walk, why, permanent, now),
    )
    .await
    .map(drop)
}

/// Reads the page the walk stands at and registers its next chunk. `Ok(Some(cursor))`: the
/// walk moved on and continues; `Ok(None)`: it is done, or another run moved it first.
async fn page(
    services: &Services<'_>,
    walk: &Backfill,
    now: Timestamp,
    progress: &mut Progress,
) -> Result<Option<String>, PageError> {
    let store = |e: StoreError| match e {
        StoreError::OverBudget => PageError::OverBudget,
        other => PageError::Transient(other.to_string()),
    };
    let Some(protocol) = services.config.protocol(walk.provider) else {
        return Err(PageError::Permanent(format!(
            "{} is not enabled",
            walk.provider
        )));
    };
    let at = Position::parse(walk.cursor.as_deref()).map_err(PageError::Permanent)?;
    let request = protocol
        .list_request(&ListWalk {
            since: walk.since.as_deref(),
            until: walk.until.as_deref().unwrap_or_default(),
            cursor: at.page.as_deref(),
        })
        .map_err(PageError::Permanent)?;
    let body = match outbound::get(
        &services.calls,
        &request,
        services.config.provider_timeout,
        services.config.provider_max_list_bytes,
    )
    .await
    {
        Ok(body) => body,
        Err(NotSent::OverBudget) => return Err(PageError::OverBudget),
        // The rule every provider request shares: only what waiting can fix is retried.
        Err(NotSent::Failed(error)) if ends_walk(&error) => {
            return Err(PageError::Permanent(error.to_string()))
        }
        Err(NotSent::Failed(error)) => return Err(PageError::Transient(error.to_string())),
    };
    let page = protocol
        .read_list(&body)
        .map_err(|e| PageError::Permanent(e.to_string()))?;
    let plan = plan_page(walk, &page, &at, services.config.first_check_step(), now);
    let results = d1::batch(&services.calls, services.db, &plan.import.statements)
        .await
        .map_err(store)?;
    let imported = plan.import.read(&results);
    progress.pages += 1;
    progress.found += imported.created() as u32;
    Ok(if imported.walk_moved { plan.next } else { None })
}
