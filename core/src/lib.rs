//! kyc-core: everything kyc-edge decides, with no `worker` types.
//!
//! The worker adapter reads bytes, the clock and storage; this crate verifies, parses,
//! maps provider states onto the status model, orders observations, plans every write as
//! SQL values and schedules checks. Every function that needs the time takes `now`
//! (`SystemTime` traps on wasm32-unknown-unknown).

pub mod alerts;
pub mod api;
pub mod backfill;
pub mod config;
pub mod cron;
pub mod db;
pub mod headers;
pub mod import;
pub mod jobs;
pub mod notify;
pub mod observation;
pub mod outbound;
pub mod projection;
pub mod providers;
pub mod reconcile;
pub mod registration;
pub mod schedule;
pub mod secret;
pub mod status;
pub mod subject;
pub mod time;
pub mod transition;
