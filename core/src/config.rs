//! Configuration from the worker's vars and secrets (the adapter parses it once per isolate,
//! src/config.rs: vars and secrets are fixed per deployed version). A provider
//! whose secrets are missing is disabled (route 404, cron skips it), never half-configured;
//! a malformed value is an error naming the variable, never a silent default.

use crate::notify::SigningKeys;
use crate::providers::ProviderProtocol;
use crate::schedule::{ScheduleConfig, WorkersPlan};
use crate::secret::{token_list, Secret};
use crate::subject::Provider;
use chrono::TimeDelta;
use std::fmt;
use std::net::IpAddr;

pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// The most bytes of one provider answer read before it is parsed (`PROVIDER_MAX_ANSWER_BYTES`).
pub const DEFAULT_PROVIDER_MAX_ANSWER_BYTES: usize = 2 * 1024 * 1024;
/// The most bytes of one page of a provider's list (backfill) read before it is parsed
/// (`PROVIDER_MAX_LIST_BYTES`): Align answers its whole list at once.
pub const DEFAULT_PROVIDER_MAX_LIST_BYTES: usize = 32 * 1024 * 1024;
/// The Cron Trigger's cadence (wrangler.toml): the period imports are paced against.
pub const CRON_PERIOD: TimeDelta = TimeDelta::minutes(5);
/// The longest `NOTIFY_TIMEOUT_MS` is taken to be: half an attempt's lease
/// (`notify::delivery::ATTEMPT_LEASE`), so a slow endpoint's attempt ends before it could be
/// claimed again.
pub const MAX_NOTIFY_TIMEOUT_MS: i64 = 60_000;
/// KV's shortest expiration.
pub const MIN_KV_TTL_SECONDS: i64 = 60;

#[derive(Debug)]
pub struct Config {
    /// Each registered provider's protocol, in registry order; `None` when it is disabled.
    providers: Vec<Option<Box<dyn ProviderProtocol>>>,
    /// For each registered provider, in registry order, the secrets it lacks: empty when it
    /// is enabled.
    missing_secrets: Vec<Vec<&'static str>>,
    /// Admin bearer tokens of the application API (`API_TOKEN`, comma-separated for
    /// rotation): everything `/v1` offers. Without any, `/v1` refuses everyone.
    pub api_tokens: Vec<Secret>,
    /// Read-only bearer tokens (`API_READ_TOKEN`): `GET /v1/...` and the dashboard's reads.
    pub read_tokens: Vec<Secret>,
    /// The most bytes of a provider's answer to a check read before parsing.
    pub provider_max_answer_bytes: usize,
    /// The most bytes of one page of a provider's list (backfill) read before parsing.
    pub provider_max_list_bytes: usize,
    pub max_body_bytes: usize,
    pub workers_plan: WorkersPlan,
    /// Subjects one cron run may enqueue.
    pub reconcile_budget: u32,
    /// Imported subjects of one provider whose first check falls due per cron period: the
    /// share of the budget imports and backfills may take (`FIRST_CHECKS_PER_RUN`; by
    /// default the plan's, [`WorkersPlan::first_checks_per_run`], split between the enabled providers).
    pub first_checks_per_run: u32,
    /// Pages of a provider's list one cron run reads for a backfill (`BACKFILL_PAGES_PER_RUN`).
    pub backfill_pages_per_run: u32,
    pub schedule: ScheduleConfig,
    pub provider_timeout: TimeDelta,
    pub event_retention: TimeDelta,
    /// How long a KV projection lives: the longest a failed KV write can leave an older
    /// status readable (reads then fall back to D1).
    pub kv_ttl: TimeDelta,
    /// Where and how notifications are sent; `None` without `APP_WEBHOOK_URL` (they are
    /// recorded, listed by the API, and pruned after `EVENT_RETENTION_DAYS`).
    pub delivery: Option<Delivery>,
    /// Alerts for the operator (`ALERT_WEBHOOK_URL` and friends).
    pub alerts: Alerts,
}

/// Alerts: always recorded (the dashboard lists them); sent when `ALERT_WEBHOOK_URL` is set.
#[derive(Debug, Clone)]
pub struct Alerts {
    pub delivery: Option<AlertDelivery>,
    /// Linked from every alert (`DASHBOARD_URL`).
    pub dashboard_url: Option<String>,
    /// An alert still open this long after it was announced is announced again
    /// (`ALERT_REMIND_AFTER_MINUTES`, default 4 hours).
    pub remind_after: TimeDelta,
}

#[derive(Debug, Clone)]
pub struct AlertDelivery {
    pub url: String,
    /// `ALERT_WEBHOOK_SECRET`: signed like notifications when set (Slack's incoming webhooks
    /// take no signature, so it is optional).
    pub keys: Option<SigningKeys>,
    pub timeout: TimeDelta,
    /// Attempts of one message before it is dead (`ALERT_MAX_ATTEMPTS`, default 8: about a
    /// day with [`crate::alerts::retry_delay`]).
    pub max_attempts: u32,
}

/// Sending notifications to the application.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub url: String,
    pub keys: SigningKeys,
    /// A notification is retried until it is this old, then dead.
    pub max_age: TimeDelta,
    pub timeout: TimeDelta,
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

/// Reads variables by name, turning each malformed one into an error that names it.
/// Provider modules read their own variables through it ([`crate::providers::Registration`]).
pub struct Vars<'a> {
    get: Lookup<'a>,
}

impl Vars<'_> {
    /// A value, trimmed; `None` when unset or blank.
    pub fn text(&self, key: &str) -> Option<String> {
        (self.get)(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub fn secret(&self, key: &str) -> Option<Secret> {
        (self.get)(key).as_deref().and_then(Secret::new)
    }

    /// A comma-separated list of bearer tokens, each at least
    /// [`crate::secret::MIN_TOKEN_LEN`] characters; empty when unset. The error never
    /// quotes a token.
    pub fn tokens(&self, key: &'static str) -> Result<Vec<Secret>, ConfigError> {
        token_list(&(self.get)(key).unwrap_or_default()).map_err(|e| ConfigError {
            key,
            problem: e.to_string(),
        })
    }

    /// One bearer token (no list), at least [`crate::secret::MIN_TOKEN_LEN`] characters.
    pub fn token(&self, key: &'static str) -> Result<Option<Secret>, ConfigError> {
        let mut tokens = self.tokens(key)?;
        if tokens.len() > 1 {
            return Err(ConfigError {
                key,
                problem: "holds one token, not a list".into(),
            });
        }
        Ok(tokens.pop())
    }

    /// A size in bytes (≥ 1), as `usize`.
    pub fn bytes(&self, key: &'static str, default: usize) -> Result<usize, ConfigError> {
        let value = self.positive_or(key, i64::try_from(default).unwrap_or(i64::MAX))?;
        usize::try_from(value).map_err(|_| ConfigError {
            key,
            problem: format!("{value} is too large"),
        })
    }

    /// A whole number ≥ 1 (durations, budgets and sizes are never zero or negative).
    pub fn positive(&self, key: &'static str) -> Result<Option<i64>, ConfigError> {
        let Some(value) = self.text(key) else {
            return Ok(None);
        };
        match value.parse::<i64>() {
            Ok(n) if n >= 1 => Ok(Some(n)),
            _ => Err(ConfigError {
                key,
                problem: format!("{value:?} is not a whole number of at least 1"),
            }),
        }
    }

    pub fn positive_or(&self, key: &'static str, default: i64) -> Result<i64, ConfigError> {
        Ok(self.positive(key)?.unwrap_or(default))
    }

    pub fn seconds(&self, key: &'static str, default: TimeDelta) -> Result<TimeDelta, ConfigError> {
        self.positive(key)?.map_or(Ok(default), |s| {
            TimeDelta::try_seconds(s).ok_or_else(|| ConfigError {
                key,
                problem: format!("{s} seconds is too long"),
            })
        })
    }

    pub fn seconds_list(&self, key: &'static str) -> Result<Option<Vec<TimeDelta>>, ConfigError> {
        let Some(value) = self.text(key) else {
            return Ok(None);
        };
        let steps: Option<Vec<TimeDelta>> = value
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|s| *s >= 1)
                    .and_then(TimeDelta::try_seconds)
            })
            .collect();
        match steps {
            Some(steps) if !steps.is_empty() => Ok(Some(steps)),
            _ => Err(ConfigError {
                key,
                problem: "must be a comma-separated list of whole seconds, each at least 1".into(),
            }),
        }
    }

    /// An http(s) URL the worker calls. One over plain HTTP or on this machine is the local
    /// sandbox's: refused unless the worker runs locally (`LOCAL_DEV=true`, which `make dev`
    /// and the tests pass and `wrangler deploy` never ships), so a deployed worker never sends
    /// keys or notifications to it.
    pub fn endpoint(&self, key: &'static str, default: &str) -> Result<String, ConfigError> {
        let base = self.text(key).unwrap_or_else(|| default.to_owned());
        let Some(rest) = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("http://"))
        else {
            return Err(ConfigError {
                key,
                problem: "must be an http(s) URL".into(),
            });
        };
        let local = base.starts_with("http://") || is_this_machine(host(rest));
        if local && self.text("LOCAL_DEV").as_deref() != Some("true") {
            return Err(ConfigError {
                key,
                problem: format!(
                    "{base:?} is plain HTTP or this machine: only a local run (LOCAL_DEV=true, \
                     set by make dev) may call it; use the provider's https URL"
                ),
            });
        }
        Ok(base)
    }

    /// A comma-separated list of IP addresses; empty when unset.
    pub fn ip_list(&self, key: &'static str) -> Result<Vec<IpAddr>, ConfigError> {
        let Some(list) = self.text(key) else {
            return Ok(vec![]);
        };
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|ip| {
                ip.parse().map_err(|_| ConfigError {
                    key,
                    problem: format!("{ip:?} is not an IP address"),
                })
            })
            .collect()
    }

    pub fn one_of<T>(
        &self,
        key: &'static str,
        default: T,
        choices: &[(&str, T)],
    ) -> Result<T, ConfigError>
    where
        T: Copy,
    {
        let Some(value) = self.text(key) else {
            return Ok(default);
        };
        choices
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, choice)| *choice)
            .ok_or_else(|| ConfigError {
                key,
                problem: format!(
                    "{value:?} is not one of {}",
                    choices
                        .iter()
                        .map(|(name, _)| *name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }
}

/// The host of a URL without its scheme: before the path, after any user info, without the
/// port (`[::1]:8788` → `::1`).
fn host(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    }
}

fn is_this_machine(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// Per provider (in `Provider::all()` order), the secrets a disabled one lacks; none for an
/// enabled one.
fn missing_secrets(
    vars: &Vars<'_>,
    providers: &[Option<Box<dyn ProviderProtocol>>],
) -> Vec<Vec<&'static str>> {
    Provider::all()
        .zip(providers)
        .map(|(p, protocol)| match protocol {
            Some(_) => vec![],
            None => (p.registration().secrets.iter())
                .copied()
                .filter(|key| vars.secret(key).is_none())
                .collect(),
        })
        .collect()
}

/// The check cadences: the defaults, each overridable.
fn schedule(vars: &Vars<'_>) -> Result<ScheduleConfig, ConfigError> {
    let mut schedule = ScheduleConfig::default();
    if let Some(steps) = vars.seconds_list("RECHECK_STEPS_SECONDS")? {
        schedule.open_steps = steps;
    }
    if let Some(steps) = vars.seconds_list("TERMINAL_RECHECK_SECONDS")? {
        schedule.terminal_steps = steps;
    }
    if let Some(checks) = vars.positive("RETIRE_AFTER_UNFOUND_CHECKS")? {
        schedule.retire_after_unfound = to_u32("RETIRE_AFTER_UNFOUND_CHECKS", checks)?;
    }
    Ok(schedule)
}

/// Notifications to the application: on when `APP_WEBHOOK_URL` is set, which then needs its
/// secret.
fn delivery(vars: &Vars<'_>) -> Result<Option<Delivery>, ConfigError> {
    let Some(url) = vars.text("APP_WEBHOOK_URL") else {
        return Ok(None);
    };
    let url = vars.endpoint("APP_WEBHOOK_URL", &url)?;
    let secret = vars.text("APP_WEBHOOK_SECRET").ok_or(ConfigError {
        key: "APP_WEBHOOK_SECRET",
        problem: "is required when APP_WEBHOOK_URL is set".into(),
    })?;
    let keys = SigningKeys::parse(&secret).map_err(|e| ConfigError {
        key: "APP_WEBHOOK_SECRET",
        problem: e.to_string(),
    })?;
    Ok(Some(Delivery {
        url,
        keys,
        max_age: vars.seconds("NOTIFY_MAX_AGE_SECONDS", TimeDelta::days(1))?,
        // Below the 2-minute lease of an attempt, so a slow endpoint never sees a second
        // attempt of the same id while the first is still open.
        timeout: TimeDelta::milliseconds(
            vars.positive_or("NOTIFY_TIMEOUT_MS", 15_000)?
                .min(MAX_NOTIFY_TIMEOUT_MS),
        ),
    }))
}

pub fn to_u32(key: &'static str, value: i64) -> Result<u32, ConfigError> {
    u32::try_from(value).map_err(|_| ConfigError {
        key,
        problem: format!("{value} is too large"),
    })
}

impl Config {
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        let vars = Vars { get };
        let providers = Provider::all()
            .map(|p| (p.registration().configure)(&vars))
            .collect::<Result<Vec<_>, _>>()?;
        let missing_secrets = missing_secrets(&vars, &providers);
        let plan = vars.one_of(
            "WORKERS_PLAN",
            WorkersPlan::Free,
            &[("free", WorkersPlan::Free), ("paid", WorkersPlan::Paid)],
        )?;
        let enabled = u32::try_from(providers.iter().flatten().count()).unwrap_or(u32::MAX);
        // A budget above the plan's is capped: the plan is a hard limit, not a preference. One
        // below the number of enabled providers is raised to it: the cron's equal shares would
        // otherwise give the last providers none, run after run.
        let reconcile_budget = match vars.positive("RECONCILE_BUDGET")? {
            Some(budget) => to_u32("RECONCILE_BUDGET", budget)?.min(plan.max_budget()),
            None => plan.max_budget(),
        }
        .max(enabled);
        let first_checks_per_run = match vars.positive("FIRST_CHECKS_PER_RUN")? {
            Some(n) => to_u32("FIRST_CHECKS_PER_RUN", n)?.min(reconcile_budget),
            None => (plan.first_checks_per_run(reconcile_budget) / enabled.max(1)).max(1),
        };
        let schedule = schedule(&vars)?;
        let kv_ttl = vars.seconds("KV_TTL_SECONDS", TimeDelta::hours(1))?;
        if kv_ttl.num_seconds() < MIN_KV_TTL_SECONDS {
            return Err(ConfigError {
                key: "KV_TTL_SECONDS",
                problem: format!(
                    "KV expires entries after {MIN_KV_TTL_SECONDS} seconds at the soonest"
                ),
            });
        }
        let max_body_bytes = vars.positive_or("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES as i64)?;
        let delivery = delivery(&vars)?;
        Ok(Self {
            providers,
            missing_secrets,
            api_tokens: vars.tokens("API_TOKEN")?,
            read_tokens: vars.tokens("API_READ_TOKEN")?,
            provider_max_answer_bytes: vars.bytes(
                "PROVIDER_MAX_ANSWER_BYTES",
                DEFAULT_PROVIDER_MAX_ANSWER_BYTES,
            )?,
            provider_max_list_bytes: vars
                .bytes("PROVIDER_MAX_LIST_BYTES", DEFAULT_PROVIDER_MAX_LIST_BYTES)?,
            max_body_bytes: usize::try_from(max_body_bytes).map_err(|_| ConfigError {
                key: "MAX_BODY_BYTES",
                problem: format!("{max_body_bytes} is too large"),
            })?,
            workers_plan: plan,
            reconcile_budget,
            first_checks_per_run,
            backfill_pages_per_run: to_u32(
                "BACKFILL_PAGES_PER_RUN",
                vars.positive_or("BACKFILL_PAGES_PER_RUN", 5)?,
            )?,
            schedule,
            provider_timeout: TimeDelta::milliseconds(
                vars.positive_or("PROVIDER_TIMEOUT_MS", 10_000)?,
            ),
            event_retention: TimeDelta::try_days(vars.positive_or("EVENT_RETENTION_DAYS", 30)?)
                .ok_or(ConfigError {
                    key: "EVENT_RETENTION_DAYS",
                    problem: "is too long".into(),
                })?,
            kv_ttl,
            delivery,
            alerts: alerts(&vars)?,
        })
    }

    /// The enabled provider's protocol, `None` when it is disabled.
    pub fn protocol(&self, provider: Provider) -> Option<&dyn ProviderProtocol> {
        self.providers.get(provider.index())?.as_deref()
    }

    /// How far apart imported subjects' first checks fall due: a cron period's worth of
    /// `first_checks_per_run` (the cadence in wrangler.toml is every 5 minutes).
    pub fn first_check_step(&self) -> TimeDelta {
        CRON_PERIOD / i32::try_from(self.first_checks_per_run.max(1)).unwrap_or(i32::MAX)
    }

    /// The secrets a disabled provider lacks (`provider_not_configured`); empty when enabled.
    pub fn missing_secrets(&self, provider: Provider) -> &[&'static str] {
        self.missing_secrets
            .get(provider.index())
            .map_or(&[], Vec::as_slice)
    }

    pub fn enabled_providers(&self) -> Vec<Provider> {
        Provider::all()
            .filter(|p| self.protocol(*p).is_some())
            .collect()
    }
}

impl Alerts {
    /// The alert settings alone: a configuration error elsewhere is itself an alert, and
    /// announcing it must not need the rest of the configuration to be valid.
    pub fn from_lookup(get: Lookup<'_>) -> Result<Self, ConfigError> {
        alerts(&Vars { get })
    }
}

fn alerts(vars: &Vars<'_>) -> Result<Alerts, ConfigError> {
    let delivery = match vars.text("ALERT_WEBHOOK_URL") {
        None => None,
        Some(url) => {
            let url = vars.endpoint("ALERT_WEBHOOK_URL", &url)?;
            let keys = match vars.text("ALERT_WEBHOOK_SECRET") {
                None => None,
                Some(secret) => Some(SigningKeys::parse(&secret).map_err(|e| ConfigError {
                    key: "ALERT_WEBHOOK_SECRET",
                    problem: e.to_string(),
                })?),
            };
            Some(AlertDelivery {
                url,
                keys,
                timeout: TimeDelta::milliseconds(
                    vars.positive_or("ALERT_TIMEOUT_MS", 10_000)?
                        .min(MAX_NOTIFY_TIMEOUT_MS),
                ),
                max_attempts: to_u32(
                    "ALERT_MAX_ATTEMPTS",
                    vars.positive_or("ALERT_MAX_ATTEMPTS", 8)?,
                )?,
            })
        }
    };
    let dashboard_url = match vars.text("DASHBOARD_URL") {
        None => None,
        Some(url) if url.starts_with("https://") || url.starts_with("http://") => Some(url),
        Some(_) => {
            return Err(ConfigError {
                key: "DASHBOARD_URL",
                problem: "must be an http(s) URL".into(),
            })
        }
    };
    Ok(Alerts {
        delivery,
        dashboard_url,
        remind_after: TimeDelta::try_minutes(vars.positive_or("ALERT_REMIND_AFTER_MINUTES", 240)?)
            .ok_or(ConfigError {
                key: "ALERT_REMIND_AFTER_MINUTES",
                problem: "is too long".into(),
            })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::CheckTarget;
    use crate::subject::{RefKind, SubjectRef};
    use std::collections::HashMap;

    /// A webhook token long enough to be accepted.
    pub(crate) const TOKEN: &str = "argos-webhook-token-of-32-chars-";

    /// `pairs`, with ARGOS's allow-list explicitly off unless they set one.
    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.entry("ARGOS_ALLOWED_IPS".into())
            .or_insert_with(|| "any".into());
        Config::from_lookup(&|k| map.get(k).cloned())
    }

    const ADMIN: &str = "admin-token-0123456789abcdef0123";
    const ADMIN_NEXT: &str = "admin-token-next-0123456789abcdef";
    const READER: &str = "read-token-0123456789abcdef01234";

    #[test]
    fn a_disabled_provider_names_the_secrets_it_lacks_and_an_enabled_one_none() {
        let align = Provider::parse("align").unwrap();
        let sumsub = Provider::parse("sumsub").unwrap();
        let argos = Provider::parse("argos").unwrap();
        let c = config(&[
            ("ALIGN_API_KEY", "k"),
            ("SUMSUB_SECRET_KEY", "s"),
            ("ARGOS_WEBHOOK_TOKEN", TOKEN),
        ])
        .unwrap();
        assert_eq!(c.missing_secrets(align), &[] as &[&str]);
        assert_eq!(
            c.missing_secrets(sumsub),
            ["SUMSUB_APP_TOKEN", "SUMSUB_WEBHOOK_SECRET"]
        );
        assert_eq!(c.missing_secrets(argos), ["ARGOS_API_KEY"]);
        // Every disabled provider lacks at least one of its secrets: none is left unexplained.
        let none = config(&[]).unwrap();
        for provider in Provider::all() {
            assert!(none.protocol(provider).is_none());
            assert_eq!(
                none.missing_secrets(provider),
                provider.registration().secrets
            );
        }
    }

    #[test]
    fn api_tokens_are_lists_of_at_least_32_characters() {
        let c = config(&[
            ("API_TOKEN", &format!("{ADMIN}, {ADMIN_NEXT}")),
            ("API_READ_TOKEN", READER),
        ])
        .unwrap();
        assert_eq!(c.api_tokens.len(), 2);
        assert_eq!(c.read_tokens.len(), 1);
        for (key, value) in [
            ("API_TOKEN", "test-api-token-5b1d"),
            ("API_TOKEN", &format!("{ADMIN},short")),
            ("API_READ_TOKEN", "reader"),
            ("ARGOS_WEBHOOK_TOKEN", "argos-hook-token-e2e-40aa"),
        ] {
            let err = config(&[
                (key, value),
                ("ARGOS_API_KEY", "k"),
                ("ARGOS_WEBHOOK_TOKEN", TOKEN),
            ])
            .and(config(&[(key, value), ("ARGOS_API_KEY", "k")]))
            .unwrap_err();
            assert_eq!(err.key, key, "{key}={value}");
            assert!(err.problem.contains("32 characters"), "{err}");
            assert!(!err.to_string().contains(value), "never echoed: {err}");
        }
    }

    #[test]
    fn argos_allow_list_is_off_only_when_told_so() {
        let lookup = |ips: Option<&'static str>| {
            move |k: &str| match k {
                "ARGOS_API_KEY" => Some("k".to_owned()),
                "ARGOS_WEBHOOK_TOKEN" => Some(TOKEN.to_owned()),
                "ARGOS_ALLOWED_IPS" => ips.map(str::to_owned),
                _ => None,
            }
        };
        for missing in [None, Some(""), Some("  "), Some(",")] {
            let err = Config::from_lookup(&lookup(missing)).unwrap_err();
            assert_eq!(err.key, "ARGOS_ALLOWED_IPS", "{missing:?}");
            assert!(err.problem.contains("any"), "{err}");
        }
        for set in ["any", "52.78.194.237", "52.78.194.237, 2001:db8::1"] {
            assert!(Config::from_lookup(&lookup(Some(set))).is_ok(), "{set}");
        }
        // Disabled ARGOS needs no list.
        assert!(Config::from_lookup(&|_| None).is_ok());
    }

    #[test]
    fn provider_answers_are_bounded_by_default() {
        let c = config(&[]).unwrap();
        assert_eq!(c.provider_max_answer_bytes, 2 * 1024 * 1024);
        assert_eq!(c.provider_max_list_bytes, 32 * 1024 * 1024);
        let c = config(&[
            ("PROVIDER_MAX_ANSWER_BYTES", "4096"),
            ("PROVIDER_MAX_LIST_BYTES", "65536"),
        ])
        .unwrap();
        assert_eq!(
            (c.provider_max_answer_bytes, c.provider_max_list_bytes),
            (4096, 65536)
        );
        assert_eq!(
            config(&[("PROVIDER_MAX_ANSWER_BYTES", "0")])
                .unwrap_err()
                .key,
            "PROVIDER_MAX_ANSWER_BYTES"
        );
    }

    #[test]
    fn providers_without_secrets_are_disabled() {
        let c = config(&[]).unwrap();
        assert!(c.enabled_providers().is_empty());
        assert!(c.api_tokens.is_empty() && c.read_tokens.is_empty());
        let c = config(&[("ARGOS_API_KEY", "k")]).unwrap();
        assert!(
            c.protocol(Provider::named("argos")).is_none(),
            "ARGOS needs its webhook token too"
        );
        let c = config(&[
            ("ALIGN_API_KEY", "k"),
            ("ARGOS_API_KEY", "k"),
            ("ARGOS_WEBHOOK_TOKEN", TOKEN),
        ])
        .unwrap();
        assert_eq!(
            c.enabled_providers(),
            vec![Provider::named("align"), Provider::named("argos")]
        );
    }

    #[test]
    fn defaults_are_safe() {
        let c = config(&[]).unwrap();
        assert_eq!(c.workers_plan, WorkersPlan::Free);
        assert_eq!(c.reconcile_budget, 500);
        assert_eq!(c.max_body_bytes, 256 * 1024);
        assert_eq!(c.schedule, ScheduleConfig::default());
        assert_eq!(c.kv_ttl, TimeDelta::hours(1));
        assert_eq!(c.event_retention, TimeDelta::days(30));
    }

    #[test]
    fn knobs_are_read() {
        let c = config(&[
            ("WORKERS_PLAN", "paid"),
            ("RECONCILE_BUDGET", "2500"),
            ("RECHECK_STEPS_SECONDS", "60, 600"),
            ("TERMINAL_RECHECK_SECONDS", "3600"),
            ("RETIRE_AFTER_UNFOUND_CHECKS", "3"),
            ("MAX_BODY_BYTES", "1024"),
            ("KV_TTL_SECONDS", "60"),
            ("PROVIDER_TIMEOUT_MS", "2500"),
        ])
        .unwrap();
        assert_eq!(c.reconcile_budget, 2500);
        assert_eq!(
            c.schedule.open_steps,
            vec![TimeDelta::seconds(60), TimeDelta::seconds(600)]
        );
        assert_eq!(c.schedule.terminal_steps, vec![TimeDelta::hours(1)]);
        assert_eq!(c.schedule.retire_after_unfound, 3);
        assert_eq!(c.max_body_bytes, 1024);
        assert_eq!(c.kv_ttl, TimeDelta::seconds(60));
        assert_eq!(c.provider_timeout, TimeDelta::milliseconds(2500));
    }

    #[test]
    fn first_checks_fit_the_plan_split_between_providers_unless_told() {
        let both = [
            ("ALIGN_API_KEY", "k"),
            ("ARGOS_API_KEY", "k"),
            ("ARGOS_WEBHOOK_TOKEN", TOKEN),
        ];
        // Free: what its daily meters allow, not half its per-run budget.
        let c = config(&both).unwrap();
        assert_eq!(c.first_checks_per_run, 2);
        assert_eq!(c.first_check_step(), TimeDelta::seconds(150));
        assert_eq!(c.backfill_pages_per_run, 5);
        let c = config(&both[..1]).unwrap();
        assert_eq!(c.first_checks_per_run, 4);
        // Paid: half the budget.
        let mut paid = both.to_vec();
        paid.push(("WORKERS_PLAN", "paid"));
        let c = config(&paid).unwrap();
        assert_eq!(c.first_checks_per_run, 2_500);
        assert_eq!(c.first_check_step(), TimeDelta::milliseconds(120));
        let mut told = both.to_vec();
        told.extend([
            ("FIRST_CHECKS_PER_RUN", "1000"),
            ("BACKFILL_PAGES_PER_RUN", "2"),
        ]);
        let c = config(&told).unwrap();
        assert_eq!(c.first_checks_per_run, 500, "never more than the budget");
        assert_eq!(c.backfill_pages_per_run, 2);
        assert!(config(&[("FIRST_CHECKS_PER_RUN", "0")]).is_err());
    }

    #[test]
    fn a_budget_below_the_enabled_providers_is_raised_to_one_each() {
        let two = [
            ("ALIGN_API_KEY", "k"),
            ("ARGOS_API_KEY", "k"),
            ("ARGOS_WEBHOOK_TOKEN", "argos-hook-token-0123456789abcdef"),
            ("ARGOS_ALLOWED_IPS", "any"),
            ("RECONCILE_BUDGET", "1"),
        ];
        let c = config(&two).unwrap();
        assert_eq!(c.enabled_providers().len(), 2);
        assert_eq!(c.reconcile_budget, 2);
    }

    #[test]
    fn a_budget_above_the_plan_is_capped_at_the_plan() {
        let c = config(&[("RECONCILE_BUDGET", "100000")]).unwrap();
        assert_eq!(c.reconcile_budget, WorkersPlan::Free.max_budget());
    }

    #[test]
    fn an_argos_base_with_v3_is_not_doubled() {
        let c = config(&[
            ("ARGOS_API_KEY", "k"),
            ("ARGOS_WEBHOOK_TOKEN", TOKEN),
            ("ARGOS_API_BASE", "https://rest-api.argosidentity.com/v3/"),
        ])
        .unwrap();
        let mut check = c
            .protocol(Provider::named("argos"))
            .unwrap()
            .check(CheckTarget {
                subject_ref: SubjectRef::parse("u1").unwrap(),
                ref_kind: RefKind::User,
                aml: false,
            });
        let request = check.next_request(crate::time::epoch()).unwrap();
        assert!(
            request
                .url
                .starts_with("https://rest-api.argosidentity.com/v3/submission?"),
            "{}",
            request.url
        );
    }

    #[test]
    fn a_sandbox_on_this_machine_or_plain_http_is_refused_unless_the_run_is_local() {
        let with = |key: &'static str, url: &str, local: Option<&str>| {
            let mut pairs = vec![
                ("ALIGN_API_KEY", "k"),
                ("ARGOS_API_KEY", "k"),
                ("ARGOS_WEBHOOK_TOKEN", TOKEN),
                (
                    "APP_WEBHOOK_SECRET",
                    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                ),
                (key, url),
            ];
            if let Some(value) = local {
                pairs.push(("LOCAL_DEV", value));
            }
            config(&pairs)
        };
        for key in ["ALIGN_API_BASE", "ARGOS_API_BASE", "APP_WEBHOOK_URL"] {
            for url in [
                "http://127.0.0.1:8788",
                "https://localhost:8788/",
                "https://api.localhost",
                "https://[::1]:8788/x",
                "https://user@127.0.0.2/",
                "https://0.0.0.0",
                "http://sandbox.example",
            ] {
                let refused = with(key, url, None).unwrap_err();
                assert_eq!(refused.key, key, "{url}");
                assert!(refused.problem.contains("LOCAL_DEV"), "{refused}");
                assert!(with(key, url, Some("1")).is_err(), "only exactly true");
                assert!(with(key, url, Some("true")).is_ok(), "{key} {url}");
            }
            for url in [
                "https://api.alignlabs.dev",
                "https://127.example.com:8443/v1",
            ] {
                assert!(with(key, url, None).is_ok(), "{key} {url}");
            }
        }
    }

    #[test]
    fn malformed_values_are_errors_naming_the_variable() {
        for (key, value) in [
            ("ARGOS_ENCRYPTION", "aes-128"),
            ("WORKERS_PLAN", "enterprise"),
            ("RECONCILE_BUDGET", "lots"),
            ("RECONCILE_BUDGET", "0"),
            ("RECONCILE_BUDGET", "-5"),
            ("RECHECK_STEPS_SECONDS", "5,-1"),
            ("RECHECK_STEPS_SECONDS", "5,0"),
            ("RECHECK_STEPS_SECONDS", ","),
            ("TERMINAL_RECHECK_SECONDS", "0"),
            ("MAX_BODY_BYTES", "1e6"),
            ("MAX_BODY_BYTES", "0"),
            ("PROVIDER_TIMEOUT_MS", "-1"),
            ("EVENT_RETENTION_DAYS", "0"),
            ("KV_TTL_SECONDS", "59"),
            ("KV_TTL_SECONDS", "0"),
            ("ARGOS_MAX_PAGES", "0"),
            ("ALIGN_API_BASE", "api.alignlabs.dev"),
        ] {
            let err = config(&[(key, value), ("ALIGN_API_KEY", "k")]).unwrap_err();
            assert_eq!(err.key, key, "{key}={value}");
        }
        let err = config(&[
            ("ARGOS_API_KEY", "k"),
            ("ARGOS_WEBHOOK_TOKEN", TOKEN),
            ("ARGOS_ALLOWED_IPS", "52.78.194.237, nope"),
        ])
        .unwrap_err();
        assert_eq!(err.key, "ARGOS_ALLOWED_IPS");
    }

    #[test]
    fn delivery_needs_a_url_and_a_usable_secret() {
        assert!(config(&[(
            "APP_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        )])
        .unwrap()
        .delivery
        .is_none());
        let c = config(&[
            ("APP_WEBHOOK_URL", "https://app.example/hooks/kyc"),
            (
                "APP_WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
            ("NOTIFY_MAX_AGE_SECONDS", "60"),
        ])
        .unwrap();
        let delivery = c.delivery.unwrap();
        assert_eq!(delivery.url, "https://app.example/hooks/kyc");
        assert_eq!(delivery.max_age, TimeDelta::seconds(60));
        assert_eq!(delivery.timeout, TimeDelta::seconds(15));
        let slow = config(&[
            ("APP_WEBHOOK_URL", "https://app.example/hooks/kyc"),
            (
                "APP_WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
            ("NOTIFY_TIMEOUT_MS", "600000"),
        ])
        .unwrap();
        assert_eq!(
            slow.delivery.unwrap().timeout,
            TimeDelta::seconds(60),
            "never past an attempt's lease"
        );
        for (pairs, key) in [
            (
                vec![("APP_WEBHOOK_URL", "https://app.example")],
                "APP_WEBHOOK_SECRET",
            ),
            (
                vec![
                    ("APP_WEBHOOK_URL", "https://app.example"),
                    ("APP_WEBHOOK_SECRET", "whsec_***"),
                ],
                "APP_WEBHOOK_SECRET",
            ),
            (
                vec![
                    ("APP_WEBHOOK_URL", "app.example"),
                    (
                        "APP_WEBHOOK_SECRET",
                        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    ),
                ],
                "APP_WEBHOOK_URL",
            ),
        ] {
            assert_eq!(config(&pairs).unwrap_err().key, key, "{pairs:?}");
        }
        let err = config(&[
            ("APP_WEBHOOK_URL", "https://a.example"),
            ("APP_WEBHOOK_SECRET", "whsec_c2hvcnQ="),
        ])
        .unwrap_err()
        .to_string();
        assert!(!err.contains("c2hvcnQ"), "{err}");
    }

    #[test]
    fn errors_name_the_variable_and_never_a_secret() {
        let err = config(&[("ALIGN_API_KEY", "sk_live_1"), ("MAX_BODY_BYTES", "big")])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("MAX_BODY_BYTES:"), "{err}");
        assert!(!err.contains("sk_live_1"));
    }
}
