//! Alerts: gather the readings, let `kyc_core::alerts` decide, write the plan (only when it
//! announces something: a quiet run writes nothing), and deliver each message from the queue
//! with its own retries, so a slow or failing alert endpoint never holds up ingress or the
//! cron's reconciling.

use crate::calls::Calls;
use crate::error::StoreError;
use crate::log::Line;
use crate::outbound::{self, NotSent};
use crate::services::Services;
use crate::{clock, config, d1, queue};
use kyc_core::alerts::{evaluate, retry_delay, Readings};
use kyc_core::config::{AlertDelivery, Alerts, CRON_PERIOD};
use kyc_core::db::alerts::{
    self as store, ConfigurationReads, CronReads, StallReads, ATTEMPT_LEASE,
};
use kyc_core::db::{Rows, Statement};
use kyc_core::jobs::Job;
use kyc_core::notify::{describe_reply, WEBHOOK_ID, WEBHOOK_SIGNATURE, WEBHOOK_TIMESTAMP};
use kyc_core::schedule::DEGRADED_AFTER_FAILURES;
use kyc_core::time::{TimeDelta, Timestamp};
use serde_json::Value;
use std::cell::Cell;
use worker::{D1Database, Env};

/// Alert messages the cron hands to the queue per run at most (retries the queue could not
/// hold, lost messages).
const DUE_PER_RUN: u32 = 20;
/// Retries due sooner than this wait in the queue; later ones are found by the cron.
const QUEUED_RETRY_LIMIT: TimeDelta = TimeDelta::minutes(15);

/// The cron's evaluation, after its own work. `tallies`: every tally, read after this run's
/// fold settled its drift.
pub async fn evaluate_in_cron(
    services: &Services<'_>,
    now: Timestamp,
    tallies: &Rows,
    log: &mut Line,
) -> Result<(), StoreError> {
    let calls = &services.calls;
    let statement = store::cron_reads(now, DUE_PER_RUN);
    let enabled = services.config.enabled_providers();
    let read = CronReads::read(&d1::run(calls, services.db, &statement).await?, &enabled);
    let (drift, drift_marks) = store::drift_since(tallies);
    let readings = Readings {
        drift: Some(drift),
        providers: Some(read.health),
        degraded_after_failures: u64::from(DEGRADED_AFTER_FAILURES),
        delivery_disabled: Some(read.delivery_disabled),
        dead_notifications: Some(read.dead_notifications),
        // A run scheduled at or before the previous one (a manual re-run) is no gap.
        last_cron_run: Some(read.last_run.filter(|last| *last < now)),
        cron_period: CRON_PERIOD,
        cron_running: true,
        // The configuration loaded: an open configuration error is over.
        configuration_error: Some(None),
    };
    let mut seqs = apply(services, &readings, &read.open, now, drift_marks, log).await?;
    seqs.extend(read.due);
    seqs.sort_unstable();
    seqs.dedup();
    send(calls, services.env, &seqs, log).await;
    Ok(())
}

/// Evaluate, write the plan if there is one, and return the messages it inserted.
async fn apply(
    services: &Services<'_>,
    readings: &Readings,
    open: &[kyc_core::alerts::OpenAlert],
    now: Timestamp,
    mut extra: Vec<Statement>,
    log: &mut Line,
) -> Result<Vec<i64>, StoreError> {
    let alerts = &services.config.alerts;
    let steps = evaluate(
        &readings.conditions(now),
        open,
        &readings.scope(),
        now,
        alerts.remind_after,
    );
    if steps.is_empty() && extra.is_empty() {
        return Ok(vec![]);
    }
    log.set("alert_steps", steps.len() as u64);
    let mut plan = store::plan(
        &steps,
        now,
        alerts.delivery.is_some(),
        alerts.dashboard_url.as_deref(),
    );
    // The drift marks move in the same transaction as the alert they announce.
    plan.append(&mut extra);
    let results = d1::batch(&services.calls, services.db, &plan).await?;
    Ok(store::seqs(&results))
}

async fn send(calls: &Calls, env: &Env, seqs: &[i64], log: &mut Line) {
    if seqs.is_empty() {
        return;
    }
    let jobs: Vec<Job> = seqs.iter().map(|&seq| Job::Alert { seq }).collect();
    let (sent, result) = queue::send_all(calls, env, &jobs).await;
    log.set("alerts_queued", sent as u64);
    if let Err(error) = result {
        // The cron finds them due: late, never lost.
        log.set("alert_queue_error", error.to_string());
    }
}

thread_local! {
    /// What this isolate last learned of the cron (ms): a request reads D1 only when it is old.
    static LAST_CRON_RUN: Cell<i64> = const { Cell::new(0) };
    /// When this isolate last read it (ms): at most one read a minute while it stays old.
    static LAST_LOOK: Cell<i64> = const { Cell::new(0) };
}
const LOOK_EVERY_MS: i64 = 60_000;

/// The cron tells its own isolate that it ran.
pub fn cron_ran(at: Timestamp) {
    LAST_CRON_RUN.with(|c| c.set(c.get().max(at.timestamp_millis())));
    LAST_LOOK.with(|c| c.set(0));
}

/// Noticed on any request, after its answer is sent (`wait_until`): has the cron stopped? And
/// after a 500 (`failed`), is the configuration unusable?
/// Costs nothing while this isolate knows of a recent run; otherwise one D1 read a minute,
/// and writes only when the alert is raised.
pub async fn notice_on_request(env: Env, failed: bool) {
    if failed {
        if let Err(error) = config::load(&env) {
            let mut log = Line::new("alerts");
            configuration_error(&env, error.key, &mut log).await;
            return log.emit(&Calls::new(0));
        }
    }
    let now = clock::now();
    let now_ms = now.timestamp_millis();
    let stalled_after = (CRON_PERIOD * kyc_core::alerts::STALLED_AFTER_PERIODS).num_milliseconds();
    let known = LAST_CRON_RUN.with(Cell::get);
    if known > 0 && now_ms - known <= stalled_after {
        return;
    }
    if now_ms - LAST_LOOK.with(Cell::get) < LOOK_EVERY_MS {
        return;
    }
    LAST_LOOK.with(|c| c.set(now_ms));
    let mut log = Line::new("alerts");
    let calls = Calls::new(8);
    let config = match config::load(&env) {
        Ok(config) => config,
        // Every request answers 500 then: the operator hears of it (once a minute at most
        // per isolate, and raised once).
        Err(error) => {
            let mut log = Line::new("alerts");
            configuration_error(&env, error.key, &mut log).await;
            return log.emit(&Calls::new(0));
        }
    };
    let result = async {
        let db = d1::database(&env)?;
        let services = Services {
            env: &env,
            config: &config,
            db: &db,
            calls: calls.share(),
            gather: None,
        };
        let read = StallReads::read(&d1::batch(&services.calls, &db, &store::stall_reads()).await?);
        if let Some(last) = read.last_run {
            LAST_CRON_RUN.with(|c| c.set(c.get().max(last.timestamp_millis())));
        }
        let readings = Readings {
            last_cron_run: Some(read.last_run),
            cron_period: CRON_PERIOD,
            ..Readings::default()
        };
        // A request never resolves the stall: the next run does, and says so.
        if readings.conditions(now).is_empty() {
            return Ok::<_, StoreError>(false);
        }
        let seqs = apply(&services, &readings, &read.open, now, vec![], &mut log).await?;
        send(&services.calls, &env, &seqs, &mut log).await;
        Ok(true)
    }
    .await;
    match result {
        Ok(false) => return,
        Ok(true) => {}
        Err(error) => {
            log.error(error);
        }
    }
    log.emit(&calls);
}

/// Attempt one alert message from the queue.
pub async fn deliver(services: &Services<'_>, seq: i64, log: &mut Line) -> Result<(), StoreError> {
    log.set("seq", seq);
    let Some(delivery) = &services.config.alerts.delivery else {
        log.set("outcome", "not configured");
        return Ok(());
    };
    services.calls.reserve(4)?;
    let retry = attempt(&services.calls, services.db, delivery, seq, log).await?;
    if let Some(delay) = retry.filter(|delay| *delay <= QUEUED_RETRY_LIMIT) {
        let delay = (delay.num_milliseconds().max(0) / 1000 + 1) as u32;
        if let Err(error) =
            queue::send_later(&services.calls, services.env, &Job::Alert { seq }, delay).await
        {
            log.set("queue_error", error.to_string());
        }
    }
    Ok(())
}

/// Claim, POST (signed when ALERT_WEBHOOK_SECRET is set), settle. Returns how long until the
/// retry, if there is one.
async fn attempt(
    calls: &Calls,
    db: &D1Database,
    delivery: &AlertDelivery,
    seq: i64,
    log: &mut Line,
) -> Result<Option<TimeDelta>, StoreError> {
    let now = clock::now();
    let claimed = d1::run(calls, db, &store::claim(seq, now, now + ATTEMPT_LEASE)).await?;
    let Some(message) = claimed.first() else {
        log.set("outcome", "not claimed");
        return Ok(None);
    };
    let body = message
        .get("body")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let attempts = message.get("attempts").and_then(Value::as_u64).unwrap_or(1) as u32;
    let id = format!("alert_{seq}");
    let timestamp = clock::now().timestamp();
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        (
            "user-agent",
            format!("kyc-edge/{}", env!("CARGO_PKG_VERSION")),
        ),
    ];
    if let Some(keys) = &delivery.keys {
        headers.push((WEBHOOK_ID, id.clone()));
        headers.push((WEBHOOK_TIMESTAMP, timestamp.to_string()));
        headers.push((
            WEBHOOK_SIGNATURE,
            keys.sign(&id, timestamp, body.as_bytes()),
        ));
    }
    let reply = outbound::post(calls, &delivery.url, &headers, body, delivery.timeout).await;
    let (ok, response) = match reply {
        Ok(reply) => (
            (200..300).contains(&reply.status),
            describe_reply(reply.status, reply.location.as_deref()),
        ),
        Err(NotSent::Failed(error)) => (false, error.to_string()),
        Err(NotSent::OverBudget) => return Err(StoreError::OverBudget),
    };
    let now = clock::now();
    log.set("attempt", attempts)
        .set("response", response.as_str());
    if ok {
        log.set("outcome", "delivered");
        d1::run(calls, db, &store::delivered(seq, &response, now)).await?;
        return Ok(None);
    }
    let retry_at = (attempts < delivery.max_attempts).then(|| now + retry_delay(attempts));
    log.set("outcome", if retry_at.is_some() { "retry" } else { "dead" });
    d1::run(calls, db, &store::failed(seq, &response, now, retry_at)).await?;
    Ok(retry_at.map(|at| at - now))
}

thread_local! {
    /// When this isolate last announced a configuration error (ms): at most once a minute.
    static LAST_CONFIG_ALERT: Cell<i64> = const { Cell::new(0) };
}

/// The configuration is unusable (`key` names the variable). Announced from the cron and from
/// requests (after answering, at most once a minute per isolate) and sent inline, since the
/// queue consumer needs a valid configuration; the cron also retries what is due. Only the
/// alert settings themselves must be valid.
pub async fn configuration_error(env: &Env, key: &str, log: &mut Line) {
    let now = clock::now();
    let last = LAST_CONFIG_ALERT.with(Cell::get);
    if now.timestamp_millis() - last < LOOK_EVERY_MS {
        return;
    }
    LAST_CONFIG_ALERT.with(|c| c.set(now.timestamp_millis()));
    let settings = match Alerts::from_lookup(&|k| env.var(k).ok().map(|v| v.to_string())) {
        Ok(settings) => settings,
        Err(error) => {
            log.set("alerts_error", format!("alert settings unusable: {error}"));
            return;
        }
    };
    let calls = Calls::new(16);
    let result = async {
        let db = d1::database(env)?;
        let statements = store::configuration_reads(now, DUE_PER_RUN);
        let read = ConfigurationReads::read(&d1::batch(&calls, &db, &statements).await?);
        let readings = Readings {
            configuration_error: Some(Some(key.to_owned())),
            ..Readings::default()
        };
        let steps = evaluate(
            &readings.conditions(now),
            &read.open,
            &readings.scope(),
            now,
            settings.remind_after,
        );
        let mut seqs = read.due;
        if !steps.is_empty() {
            let plan = store::plan(
                &steps,
                now,
                settings.delivery.is_some(),
                settings.dashboard_url.as_deref(),
            );
            seqs.extend(store::seqs(&d1::batch(&calls, &db, &plan).await?));
        }
        if let Some(delivery) = &settings.delivery {
            for seq in seqs {
                let mut line = Line::new("alert");
                line.set("seq", seq);
                if let Err(error) = attempt(&calls, &db, delivery, seq, &mut line).await {
                    line.error(error);
                }
                line.emit(&calls);
            }
        }
        Ok::<_, StoreError>(())
    }
    .await;
    if let Err(error) = result {
        log.set("alerts_error", error.to_string());
    }
}
