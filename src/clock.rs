//! The only place the adapter reads the clock (`SystemTime` traps on wasm32).

pub fn now() -> i64 {
    worker::Date::now().as_millis() as i64
}
