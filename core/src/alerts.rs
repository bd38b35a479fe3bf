//! Alerts for the operator: which conditions hold now (from readings the adapter gathers), and
//! what to announce given the alerts already open — raise a new one, remind about a long one
//! after a quiet period, resolve one whose condition ended. Pure: the clock is passed in and
//! the plan is data; `db::alerts` turns it into statements.

use crate::outbound::class_of_recorded;
use crate::time::{format, TimeDelta, Timestamp};
use serde::Serialize;
use serde_json::{json, Value};

/// A condition is "the cron stalled" once this many periods passed without a run.
pub const STALLED_AFTER_PERIODS: i32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    DriftDetected,
    ProviderDegraded,
    DeliveryDisabled,
    NotificationDead,
    CronStalled,
    ConfigurationError,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::DriftDetected,
        Kind::ProviderDegraded,
        Kind::DeliveryDisabled,
        Kind::NotificationDead,
        Kind::CronStalled,
        Kind::ConfigurationError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DriftDetected => "drift_detected",
            Kind::ProviderDegraded => "provider_degraded",
            Kind::DeliveryDisabled => "delivery_disabled",
            Kind::NotificationDead => "notification_dead",
            Kind::CronStalled => "cron_stalled",
            Kind::ConfigurationError => "configuration_error",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// Critical: nothing reaches the app, or nothing is checked at all.
    pub fn severity(self) -> Severity {
        match self {
            Kind::DeliveryDisabled | Kind::CronStalled | Kind::ConfigurationError => {
                Severity::Critical
            }
            Kind::DriftDetected | Kind::ProviderDegraded | Kind::NotificationDead => {
                Severity::Warning
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A condition that holds now. `about` names what it concerns (a provider, `app`, `cron`,
/// `config`); `data` holds names and counts only.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub kind: Kind,
    pub about: String,
    pub text: String,
    pub data: Value,
    /// Already over when noticed (the cron finding its own gap): raised and resolved at once.
    pub ended: bool,
}

impl Condition {
    pub fn key(&self) -> String {
        key(self.kind, &self.about)
    }
}

pub fn key(kind: Kind, about: &str) -> String {
    format!("{}:{about}", kind.as_str())
}

/// One provider's health row, as the cron and stats read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderHealth {
    pub provider: String,
    pub consecutive_failures: u64,
    pub paused_until: Option<Timestamp>,
    pub last_error: Option<String>,
}

/// What the adapter read. A field left `None` (or empty) was not read this time: its kinds are
/// not evaluated, so their open alerts are neither resolved nor reminded (see [`Readings::scope`]).
#[derive(Debug, Clone, Default)]
pub struct Readings {
    /// Drift settled by this cron run, per provider (only providers with drift).
    pub drift: Option<Vec<(String, u64)>>,
    pub providers: Option<Vec<ProviderHealth>>,
    pub degraded_after_failures: u64,
    /// `Some(None)`: read, delivery enabled; `Some(Some(reason))`: disabled.
    pub delivery_disabled: Option<Option<String>>,
    pub dead_notifications: Option<u64>,
    /// The last cron run before now: `Some(None)` read, no run ever recorded.
    pub last_cron_run: Option<Option<Timestamp>>,
    pub cron_period: TimeDelta,
    /// The cron itself is running now: a stall it notices is over.
    pub cron_running: bool,
    pub configuration_error: Option<Option<String>>,
}

impl Readings {
    /// The kinds these readings can confirm or clear.
    pub fn scope(&self) -> Vec<Kind> {
        let mut kinds = vec![];
        if self.drift.is_some() {
            kinds.push(Kind::DriftDetected);
        }
        if self.providers.is_some() {
            kinds.push(Kind::ProviderDegraded);
        }
        if self.delivery_disabled.is_some() {
            kinds.push(Kind::DeliveryDisabled);
        }
        if self.dead_notifications.is_some() {
            kinds.push(Kind::NotificationDead);
        }
        if self.last_cron_run.is_some() {
            kinds.push(Kind::CronStalled);
        }
        if self.configuration_error.is_some() {
            kinds.push(Kind::ConfigurationError);
        }
        kinds
    }

    pub fn conditions(&self, now: Timestamp) -> Vec<Condition> {
        let mut found = vec![];
        for (provider, count) in self.drift.iter().flatten() {
            if *count > 0 {
                found.push(Condition {
                    kind: Kind::DriftDetected,
                    about: provider.clone(),
                    text: format!(
                        "{provider}: {count} status change(s) found by polling that no webhook announced (drift)"
                    ),
                    data: json!({ "provider": provider, "count": count }),
                    ended: false,
                });
            }
        }
        for health in self.providers.iter().flatten() {
            let paused = health.paused_until.filter(|until| *until > now);
            let failing = health.consecutive_failures >= self.degraded_after_failures.max(1);
            if !failing && paused.is_none() {
                continue;
            }
            let provider = &health.provider;
            let why = match paused {
                Some(until) => format!("paused by a 429 until {}", format(until)),
                None => format!("{} consecutive failed calls", health.consecutive_failures),
            };
            found.push(Condition {
                kind: Kind::ProviderDegraded,
                about: provider.clone(),
                text: format!("{provider} is degraded: {why}"),
                data: json!({
                    "provider": provider,
                    "consecutive_failures": health.consecutive_failures,
                    "paused_until": paused.map(format),
                    // Our own classification of the failure (status code, timeout), never a body.
                    "last_error": health.last_error.as_deref().map(class_of_recorded),
                }),
                ended: false,
            });
        }
        if let Some(Some(reason)) = &self.delivery_disabled {
            found.push(Condition {
                kind: Kind::DeliveryDisabled,
                about: "app".into(),
                text: format!("Notification delivery to the app is disabled ({reason})"),
                data: json!({ "endpoint": "APP_WEBHOOK_URL", "reason": reason }),
                ended: false,
            });
        }
        if let Some(dead) = self.dead_notifications.filter(|n| *n > 0) {
            found.push(Condition {
                kind: Kind::NotificationDead,
                about: "app".into(),
                text: format!("{dead} notification(s) to the app are dead (out of retries)"),
                data: json!({ "endpoint": "APP_WEBHOOK_URL", "count": dead }),
                ended: false,
            });
        }
        if let Some(last) = self.last_cron_run {
            let limit = self.cron_period * STALLED_AFTER_PERIODS;
            if let Some(last) = last.filter(|last| now - *last > limit) {
                let minutes = (now - last).num_minutes();
                found.push(Condition {
                    kind: Kind::CronStalled,
                    about: "cron".into(),
                    text: if self.cron_running {
                        format!("The cron ran again after {minutes} min without a run")
                    } else {
                        format!("The cron has not run for {minutes} min")
                    },
                    data: json!({
                        "last_run_at": format(last),
                        "minutes_since": minutes,
                        "period_minutes": self.cron_period.num_minutes(),
                    }),
                    ended: self.cron_running,
                });
            }
        }
        if let Some(Some(key)) = &self.configuration_error {
            found.push(Condition {
                kind: Kind::ConfigurationError,
                about: "config".into(),
                text: format!("Configuration error in {key}"),
                // The variable's name only: its value may be a secret.
                data: json!({ "variable": key }),
                ended: false,
            });
        }
        found
    }
}

/// An alert row still open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAlert {
    pub id: i64,
    pub key: String,
    pub kind: Kind,
    pub text: String,
    pub data: String,
    pub raised_at: Timestamp,
    pub notified_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Raise(Condition),
    /// Still holding after the quiet period: announced again, as a reminder.
    Remind(OpenAlert),
    Resolve(OpenAlert),
}

/// What to announce. Only open alerts of `scope`'s kinds are resolved or reminded: a request
/// that only read the cron's last run says nothing about providers.
pub fn evaluate(
    conditions: &[Condition],
    open: &[OpenAlert],
    scope: &[Kind],
    now: Timestamp,
    remind_after: TimeDelta,
) -> Vec<Step> {
    let mut steps = vec![];
    for condition in conditions {
        let key = condition.key();
        match open.iter().find(|a| a.key == key) {
            None if condition.ended => {
                steps.push(Step::Raise(condition.clone()));
                // Resolved by the same plan: the resolution finds the row the raise inserted.
                steps.push(Step::Resolve(OpenAlert {
                    id: 0,
                    key,
                    kind: condition.kind,
                    text: condition.text.clone(),
                    data: condition.data.to_string(),
                    raised_at: now,
                    notified_at: now,
                }));
            }
            None => steps.push(Step::Raise(condition.clone())),
            Some(alert) if condition.ended => steps.push(Step::Resolve(alert.clone())),
            Some(alert) if now - alert.notified_at >= remind_after => {
                steps.push(Step::Remind(alert.clone()))
            }
            Some(_) => {}
        }
    }
    for alert in open {
        if scope.contains(&alert.kind) && !conditions.iter().any(|c| c.key() == alert.key) {
            steps.push(Step::Resolve(alert.clone()));
        }
    }
    steps
}

pub const RAISED: &str = "alert.raised";
pub const RESOLVED: &str = "alert.resolved";

/// The body sent to ALERT_WEBHOOK_URL: Slack-compatible incoming webhooks render `text`; the
/// other fields are for machines.
pub fn body(
    kind: Kind,
    event: &str,
    text: &str,
    data: &Value,
    dashboard_url: Option<&str>,
    at: Timestamp,
) -> String {
    let mut line = match event {
        RESOLVED => format!("Resolved: {text}"),
        _ => format!("[{}] {text}", kind.severity().as_str()),
    };
    if let Some(url) = dashboard_url {
        line.push_str(&format!(" — <{url}|dashboard>"));
    }
    let mut body = json!({
        "text": line,
        "type": event,
        "alert": kind.as_str(),
        "severity": kind.severity().as_str(),
        "data": data,
        "timestamp": format(at),
    });
    if let (Some(url), Some(object)) = (dashboard_url, body.as_object_mut()) {
        object.insert("dashboard_url".into(), Value::from(url));
    }
    body.to_string()
}

/// Seconds before attempt `attempts + 1` of an alert message: quick at first (a blip), then
/// spaced out so a dead endpoint costs a handful of calls a day.
pub fn retry_delay(attempts: u32) -> TimeDelta {
    let steps = [10, 60, 300, 1_800, 7_200, 21_600];
    let index = (attempts.saturating_sub(1) as usize).min(steps.len() - 1);
    TimeDelta::seconds(steps[index])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::from_millis;

    fn at(minutes: i64) -> Timestamp {
        from_millis(1_800_000_000_000 + minutes * 60_000).unwrap()
    }

    fn open_from(steps: &[Step], now: Timestamp) -> Vec<OpenAlert> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Raise(c) if !c.ended => Some(OpenAlert {
                    id: 1,
                    key: c.key(),
                    kind: c.kind,
                    text: c.text.clone(),
                    data: c.data.to_string(),
                    raised_at: now,
                    notified_at: now,
                }),
                _ => None,
            })
            .collect()
    }

    fn degraded(failures: u64) -> Readings {
        Readings {
            providers: Some(vec![ProviderHealth {
                provider: "align".into(),
                consecutive_failures: failures,
                paused_until: None,
                last_error: Some("HTTP 503".into()),
            }]),
            degraded_after_failures: 3,
            ..Readings::default()
        }
    }

    #[test]
    fn a_condition_is_raised_once_reminded_after_the_quiet_period_and_resolved_once() {
        let quiet = TimeDelta::hours(4);
        let readings = degraded(3);
        let steps = evaluate(
            &readings.conditions(at(0)),
            &[],
            &readings.scope(),
            at(0),
            quiet,
        );
        assert!(matches!(&steps[..], [Step::Raise(c)] if c.kind == Kind::ProviderDegraded));
        let open = open_from(&steps, at(0));
        // While it lasts: nothing, until the quiet period passed.
        let later = degraded(9);
        for minutes in [5, 60, 239] {
            let steps = evaluate(
                &later.conditions(at(minutes)),
                &open,
                &later.scope(),
                at(minutes),
                quiet,
            );
            assert!(steps.is_empty(), "{minutes}: {steps:?}");
        }
        let steps = evaluate(
            &later.conditions(at(240)),
            &open,
            &later.scope(),
            at(240),
            quiet,
        );
        assert!(matches!(&steps[..], [Step::Remind(_)]));
        let healthy = degraded(0);
        let steps = evaluate(
            &healthy.conditions(at(250)),
            &open,
            &healthy.scope(),
            at(250),
            quiet,
        );
        assert!(matches!(&steps[..], [Step::Resolve(a)] if a.key == "provider_degraded:align"));
    }

    #[test]
    fn a_reading_not_taken_resolves_nothing() {
        let open = open_from(
            &evaluate(
                &degraded(5).conditions(at(0)),
                &[],
                &[],
                at(0),
                TimeDelta::hours(1),
            ),
            at(0),
        );
        // A request reads only the cron's last run.
        let request = Readings {
            last_cron_run: Some(Some(at(-1))),
            cron_period: TimeDelta::minutes(5),
            ..Readings::default()
        };
        let steps = evaluate(
            &request.conditions(at(1)),
            &open,
            &request.scope(),
            at(1),
            TimeDelta::hours(1),
        );
        assert!(steps.is_empty(), "{steps:?}");
    }

    #[test]
    fn a_redirect_location_never_reaches_an_alert() {
        let mut readings = degraded(3);
        if let Some(p) = readings.providers.as_mut() {
            p[0].last_error =
                Some("HTTP 302 redirect (not followed) to https://x.example/c/cust_123?t=s".into());
        }
        let data = &readings.conditions(at(0))[0].data;
        assert_eq!(data["last_error"], "HTTP 302 redirect (not followed)");
        assert_eq!(
            degraded(3).conditions(at(0))[0].data["last_error"],
            "HTTP 503"
        );
    }

    #[test]
    fn a_429_pause_degrades_until_it_ends() {
        let mut readings = degraded(0);
        if let Some(p) = readings.providers.as_mut() {
            p[0].paused_until = Some(at(10));
        }
        assert_eq!(readings.conditions(at(0)).len(), 1);
        assert!(readings.conditions(at(10)).is_empty());
    }

    #[test]
    fn the_cron_stalls_after_three_periods_and_its_next_run_ends_the_stall() {
        let mut readings = Readings {
            last_cron_run: Some(Some(at(0))),
            cron_period: TimeDelta::minutes(5),
            ..Readings::default()
        };
        assert!(
            readings.conditions(at(15)).is_empty(),
            "three periods exactly"
        );
        let seen = readings.conditions(at(16));
        assert_eq!(seen.len(), 1);
        assert!(!seen[0].ended);
        assert_eq!(readings.conditions(at(16))[0].data["minutes_since"], 16);
        // No run ever: nothing to compare with (a fresh deployment).
        readings.last_cron_run = Some(None);
        assert!(readings.conditions(at(100)).is_empty());

        // The next run notices its own gap: raised and resolved at once, or resolved if a
        // request raised it already.
        let run = Readings {
            last_cron_run: Some(Some(at(0))),
            cron_period: TimeDelta::minutes(5),
            cron_running: true,
            ..Readings::default()
        };
        let steps = evaluate(
            &run.conditions(at(20)),
            &[],
            &run.scope(),
            at(20),
            TimeDelta::hours(1),
        );
        assert!(matches!(&steps[..], [Step::Raise(_), Step::Resolve(_)]));
        let open = open_from(
            &evaluate(&seen, &[], &[], at(16), TimeDelta::hours(1)),
            at(16),
        );
        let steps = evaluate(
            &run.conditions(at(20)),
            &open,
            &run.scope(),
            at(20),
            TimeDelta::hours(1),
        );
        assert!(matches!(&steps[..], [Step::Resolve(a)] if a.kind == Kind::CronStalled));
    }

    #[test]
    fn drift_delivery_and_dead_notifications_name_counts_never_subjects() {
        let readings = Readings {
            drift: Some(vec![("align".into(), 2), ("argos".into(), 0)]),
            delivery_disabled: Some(Some("410 Gone".into())),
            dead_notifications: Some(3),
            configuration_error: Some(Some("APP_WEBHOOK_SECRET")).map(|k| k.map(String::from)),
            ..Readings::default()
        };
        let found = readings.conditions(at(0));
        let kinds: Vec<Kind> = found.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::DriftDetected,
                Kind::DeliveryDisabled,
                Kind::NotificationDead,
                Kind::ConfigurationError
            ]
        );
        assert_eq!(found[0].data, json!({ "provider": "align", "count": 2 }));
        let text = body(
            found[0].kind,
            RAISED,
            &found[0].text,
            &found[0].data,
            Some("https://kyc.example/dashboard"),
            at(0),
        );
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["type"], "alert.raised");
        assert_eq!(parsed["alert"], "drift_detected");
        assert_eq!(parsed["severity"], "warning");
        assert_eq!(parsed["data"]["count"], 2);
        let line = parsed["text"].as_str().unwrap();
        assert!(
            line.contains("align") && line.contains("dashboard"),
            "{line}"
        );
        assert!(!line.contains('\n'));
        let resolved: Value = serde_json::from_str(&body(
            Kind::CronStalled,
            RESOLVED,
            "x",
            &json!({}),
            None,
            at(0),
        ))
        .unwrap();
        assert_eq!(resolved["severity"], "critical");
        assert_eq!(resolved["type"], "alert.resolved");
        assert!(resolved.get("dashboard_url").is_none());
    }

    #[test]
    fn retries_spread_out() {
        assert_eq!(retry_delay(1), TimeDelta::seconds(10));
        assert!(retry_delay(3) < retry_delay(4));
        assert_eq!(retry_delay(100), TimeDelta::hours(6));
    }
}
