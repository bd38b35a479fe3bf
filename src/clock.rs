//! The only place the adapter reads the clock (`SystemTime` traps on wasm32).

use kyc_core::time::{epoch, from_millis, Timestamp};

pub fn now() -> Timestamp {
    from_millis(worker::Date::now().as_millis() as i64).unwrap_or_else(epoch)
}
