//! Configuration from the worker's vars and secrets, parsed once per request. A provider
//! whose secrets are missing is disabled (route 404, cron skips it), never half-configured;
//! a malformed value is an error, not a silent default.

use crate::providers::align::Align;
use crate::providers::argos::{Argos, Encryption};
use crate::providers::ProviderProtocol;
use crate::schedule::{Plan, ScheduleConfig};
use crate::secret::Secret;
use crate::subject::Provider;
use std::fmt;
use std::net::IpAddr;

pub const DEFAULT_ALIGN_API_BASE: &str = "https://api.alignlabs.dev";
pub const DEFAULT_ARGOS_API_BASE: &str = "https://rest-api.argosidentity.com";
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;

#[derive(Debug)]
pub struct Config {
    pub align: Option<Align>,
    pub argos: Option<Argos>,
    /// Bearer token of the application API; without it `/v1` refuses everyone.
    pub api_token: Option<Secret>,
    pub max_body_bytes: usize,
    pub plan: Plan,
    /// Subjects one cron run may enqueue.
    pub reconcile_budget: u32,
    pub schedule: ScheduleConfig,
    pub provider_timeout_ms: u32,
    pub event_retention_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn text(get: Lookup<'_>, key: &str) -> Option<String> {
    get(key)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn secret(get: Lookup<'_>, key: &str) -> Option<Secret> {
    get(key).as_deref().and_then(Secret::new)
}

fn number<T: std::str::FromStr>(
    get: Lookup<'_>,
    key: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match text(get, key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| ConfigError {
            key,
            problem: format!("{v:?} is not a whole number"),
        }),
    }
}

fn api_base(get: Lookup<'_>, key: &'static str, default: &str) -> Result<String, ConfigError> {
    let base = text(get, key).unwrap_or_else(|| default.to_owned());
    if base.starts_with("https://") || base.starts_with("http://") {
        Ok(base)
    } else {
        Err(ConfigError {
            key,
            problem: "must be an http(s) URL".into(),
        })
    }
}

fn seconds_list(get: Lookup<'_>, key: &'static str) -> Result<Option<Vec<i64>>, ConfigError> {
    let Some(value) = text(get, key) else {
        return Ok(None);
    };
    let steps: Result<Vec<i64>, _> = value.split(',').map(|s| s.trim().parse::<i64>()).collect();
    match steps {
        Ok(steps) if !steps.is_empty() && steps.iter().all(|s| *s > 0) => {
            Ok(Some(steps.into_iter().map(|s| s * 1000).collect()))
        }
        _ => Err(ConfigError {
            key,
            problem: "must be a comma-separated list of positive seconds".into(),
        }),
    }
}

fn allowed_ips(get: Lookup<'_>) -> Result<Vec<IpAddr>, ConfigError> {
    text(get, "ARGOS_ALLOWED_IPS")
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|ip| {
                    ip.parse().map_err(|_| ConfigError {
                        key: "ARGOS_ALLOWED_IPS",
                        problem: format!("{ip:?} is not an IP address"),
                    })
                })
                .collect()
        })
        .unwrap_or(Ok(vec![]))
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        let align = match secret(get, "ALIGN_API_KEY") {
            Some(key) => Some(Align::new(
                key,
                api_base(get, "ALIGN_API_BASE", DEFAULT_ALIGN_API_BASE)?,
            )),
            None => None,
        };
        let encryption = match text(get, "ARGOS_ENCRYPTION").as_deref() {
            None | Some("off") => Encryption::Off,
            Some("aes-256-ecb") => Encryption::Aes256Ecb,
            Some(other) => {
                return Err(ConfigError {
                    key: "ARGOS_ENCRYPTION",
                    problem: format!("{other:?} is not one of off, aes-256-ecb"),
                })
            }
        };
        let argos = match (
            secret(get, "ARGOS_API_KEY"),
            secret(get, "ARGOS_WEBHOOK_TOKEN"),
        ) {
            (Some(api_key), Some(webhook_token)) => Some(Argos::new(
                api_key,
                webhook_token,
                // ARGOS documents its base both with and without `/v3`; paths carry it.
                api_base(get, "ARGOS_API_BASE", DEFAULT_ARGOS_API_BASE)?
                    .trim_end_matches('/')
                    .trim_end_matches("/v3")
                    .to_owned(),
                allowed_ips(get)?,
                encryption,
            )),
            _ => None,
        };
        let plan = match text(get, "WORKERS_PLAN").as_deref() {
            None => Plan::Free,
            Some(p) => Plan::parse(p).ok_or_else(|| ConfigError {
                key: "WORKERS_PLAN",
                problem: format!("{p:?} is not one of free, paid"),
            })?,
        };
        let configured_budget = match text(get, "RECONCILE_BUDGET") {
            None => None,
            Some(_) => Some(number(get, "RECONCILE_BUDGET", 0u32)?),
        };
        let mut schedule = ScheduleConfig::default();
        if let Some(steps) = seconds_list(get, "RECHECK_STEPS_SECONDS")? {
            schedule.open_steps = steps;
        }
        schedule.terminal_recheck = number(
            get,
            "TERMINAL_RECHECK_SECONDS",
            schedule.terminal_recheck / 1000,
        )? * 1000;
        Ok(Self {
            align,
            argos,
            api_token: secret(get, "API_TOKEN"),
            max_body_bytes: number(get, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)?,
            plan,
            reconcile_budget: plan.budget(configured_budget),
            schedule,
            provider_timeout_ms: number(get, "PROVIDER_TIMEOUT_MS", 10_000)?,
            event_retention_days: number(get, "EVENT_RETENTION_DAYS", 30)?,
        })
    }

    /// The enabled provider's protocol, `None` when it is disabled.
    pub fn protocol(&self, provider: Provider) -> Option<&dyn ProviderProtocol> {
        match provider {
            Provider::Align => self.align.as_ref().map(|a| a as &dyn ProviderProtocol),
            Provider::Argos => self.argos.as_ref().map(|a| a as &dyn ProviderProtocol),
        }
    }

    pub fn enabled_providers(&self) -> Vec<Provider> {
        Provider::ALL
            .into_iter()
            .filter(|p| self.protocol(*p).is_some())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(&|k| map.get(k).cloned())
    }

    #[test]
    fn providers_without_secrets_are_disabled() {
        let c = config(&[]).unwrap();
        assert!(c.enabled_providers().is_empty());
        assert!(c.api_token.is_none());
        let c = config(&[("ARGOS_API_KEY", "k")]).unwrap();
        assert!(c.argos.is_none(), "ARGOS needs its webhook token too");
        let c = config(&[
            ("ALIGN_API_KEY", "k"),
            ("ARGOS_API_KEY", "k"),
            ("ARGOS_WEBHOOK_TOKEN", "t"),
        ])
        .unwrap();
        assert_eq!(
            c.enabled_providers(),
            vec![Provider::Align, Provider::Argos]
        );
    }

    #[test]
    fn defaults_are_safe() {
        let c = config(&[]).unwrap();
        assert_eq!(c.plan, Plan::Free);
        assert_eq!(c.reconcile_budget, 500);
        assert_eq!(c.max_body_bytes, 256 * 1024);
        assert_eq!(c.schedule, ScheduleConfig::default());
    }

    #[test]
    fn knobs_are_read() {
        let c = config(&[
            ("WORKERS_PLAN", "paid"),
            ("RECONCILE_BUDGET", "2500"),
            ("RECHECK_STEPS_SECONDS", "60, 600"),
            ("TERMINAL_RECHECK_SECONDS", "3600"),
            ("MAX_BODY_BYTES", "1024"),
        ])
        .unwrap();
        assert_eq!(c.reconcile_budget, 2500);
        assert_eq!(c.schedule.open_steps, vec![60_000, 600_000]);
        assert_eq!(c.schedule.terminal_recheck, 3_600_000);
        assert_eq!(c.max_body_bytes, 1024);
    }

    #[test]
    fn an_argos_base_with_v3_is_not_doubled() {
        let c = config(&[
            ("ARGOS_API_KEY", "k"),
            ("ARGOS_WEBHOOK_TOKEN", "t"),
            ("ARGOS_API_BASE", "https://rest-api.argosidentity.com/v3/"),
        ])
        .unwrap();
        let request = c.protocol(Provider::Argos).unwrap().status_request(
            &crate::subject::SubjectRef::parse("u1").unwrap(),
            crate::subject::RefKind::User,
        );
        assert!(
            request
                .url
                .starts_with("https://rest-api.argosidentity.com/v3/submission?"),
            "{}",
            request.url
        );
    }

    #[test]
    fn malformed_values_are_errors_naming_the_key() {
        for (key, value) in [
            ("ARGOS_ENCRYPTION", "aes-128"),
            ("WORKERS_PLAN", "enterprise"),
            ("RECONCILE_BUDGET", "lots"),
            ("RECHECK_STEPS_SECONDS", "5,-1"),
            ("MAX_BODY_BYTES", "1e6"),
            ("ALIGN_API_BASE", "api.alignlabs.dev"),
        ] {
            let err = config(&[(key, value), ("ALIGN_API_KEY", "k")]).unwrap_err();
            assert_eq!(err.key, key);
        }
        let err = config(&[
            ("ARGOS_API_KEY", "k"),
            ("ARGOS_WEBHOOK_TOKEN", "t"),
            ("ARGOS_ALLOWED_IPS", "52.78.194.237, nope"),
        ])
        .unwrap_err();
        assert_eq!(err.key, "ARGOS_ALLOWED_IPS");
    }
}
