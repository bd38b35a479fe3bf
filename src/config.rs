//! `Env` -> `kyc_core::config::Config`, parsed once per isolate. Vars and secrets are both
//! plain strings on `env`.
//!
//! Why once: reading some 35 bindings across the wasm boundary and parsing them (tokens,
//! providers' keys, URLs) was a large part of what every request cost, and the answer cannot
//! change within an isolate: Cloudflare binds vars and secrets per deployed version, and an
//! isolate runs one version (a new secret or var is a new version, served by new isolates).
//! The outcome is kept whole, error included, so a malformed configuration still answers
//! every route, every job and every cron run with the same error naming the variable, as it
//! did when parsed each time.

use kyc_core::config::{Config, ConfigError};
use std::cell::OnceCell;
use std::rc::Rc;
use worker::Env;

thread_local! {
    /// The isolate's configuration (wasm32 is single-threaded: one per isolate).
    static LOADED: OnceCell<Result<Rc<Config>, ConfigError>> = const { OnceCell::new() };
}

pub fn load(env: &Env) -> Result<Rc<Config>, ConfigError> {
    LOADED.with(|cell| {
        cell.get_or_init(|| {
            Config::from_lookup(&|key| env.var(key).ok().map(|v| v.to_string())).map(Rc::new)
        })
        .clone()
    })
}
