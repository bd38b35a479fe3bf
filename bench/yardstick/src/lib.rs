//! The yardstick: answers `GET /` with 200 and anything else with 404. What a request costs
//! here is what the platform, workers-rs and the wasm boundary cost before any work of ours.
//!
//! `GET /log` answers the same after writing one log line shaped like kyc-edge's request line
//! (built in Rust, one `console.log`): the difference between the two is what a request's log
//! line costs, which the bench reports.

use worker::{console_log, event, Context, Date, Env, Method, Request, Response, Result};

#[event(fetch)]
async fn fetch(req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    if req.method() != Method::Get {
        return Response::error("not found", 404);
    }
    match req.path().as_str() {
        "/" => Response::ok("ok"),
        "/log" => {
            let started = Date::now().as_millis();
            let line = format!(
                "{{\"kind\":\"request\",\"request_id\":\"{:024x}\",\"method\":\"GET\",\
                 \"route\":\"health\",\"status\":200,\"duration_ms\":{},\"meter\":{{\
                 \"d1_calls\":0,\"d1_statements\":0,\"d1_rows_read\":0,\"d1_rows_written\":0,\
                 \"kv_reads\":0,\"kv_writes\":0,\"queue_messages\":0,\"fetches\":0}}}}",
                started,
                Date::now().as_millis().saturating_sub(started)
            );
            console_log!("{line}");
            Response::ok("ok")
        }
        _ => Response::error("not found", 404),
    }
}
