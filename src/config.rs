//! `Env` -> `kyc_core::config::Config`. Vars and secrets are both plain strings on `env`.

use kyc_core::config::{Config, ConfigError};
use worker::Env;

pub fn load(env: &Env) -> Result<Config, ConfigError> {
    Config::from_lookup(&|key| env.var(key).ok().map(|v| v.to_string()))
}
