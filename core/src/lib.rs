//! kyc-core: everything kyc-edge decides, with no `worker` types.
//!
//! The worker adapter reads bytes, the clock and storage; this crate verifies, parses,
//! maps provider states onto the status model, orders observations and schedules checks.
//! Every function that needs the time takes `now` (milliseconds since the Unix epoch):
//! `SystemTime` traps on wasm32-unknown-unknown.

pub mod config;
pub mod headers;
pub mod observation;
pub mod providers;
pub mod queries;
pub mod schedule;
pub mod secret;
pub mod status;
pub mod subject;
pub mod timefmt;
pub mod transition;
