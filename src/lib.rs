//! kyc-edge: the worker adapter. Routes, storage and outbound calls live here; every
//! decision is made by `kyc_core`, which has no worker types and is tested on the host.

mod alerts;
mod backfill;
mod calls;
mod clock;
mod config;
mod consumer;
mod cron;
mod d1;
mod error;
mod gather;
mod kv;
mod log;
mod notify;
mod outbound;
mod queue;
mod random;
mod reconcile;
mod routes;
mod services;
mod stream;

use kyc_core::time::{epoch, from_millis};
use worker::{
    event, Context, Env, MessageBatch, Request, Response, Result, ScheduleContext, ScheduledEvent,
};

/// A panic aborts the instance (and every request in flight on it): if one ever happens, its
/// place in the code is in the log. Input never reaches a panic by design.
#[event(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map_or_else(String::new, |l| format!("{}:{}", l.file(), l.line()));
        worker::console_error!("{{\"kind\":\"panic\",\"at\":\"{location}\"}}");
    }));
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let response = routes::handle(req, &env).await;
    // After the answer, never before it: a stalled cron or a configuration error (every
    // request answers 500 then) is noticed without slowing anyone.
    let failed = response.as_ref().map_or(true, |r| r.status_code() == 500);
    ctx.wait_until(alerts::notice_on_request(env, failed));
    response
}

/// Never returns an error: the macro turns one into a panic that aborts the instance.
/// Each message is acked or retried on its own.
#[event(queue)]
async fn queue(batch: MessageBatch<serde_json::Value>, env: Env, _ctx: Context) -> Result<()> {
    consumer::consume(&batch, &env).await;
    Ok(())
}

#[event(scheduled)]
async fn scheduled(event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let scheduled_at = from_millis(event.schedule() as i64).unwrap_or_else(epoch);
    cron::run(scheduled_at, &env).await;
}
