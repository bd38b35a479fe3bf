//! The yardstick: answers `GET /` with 200 and anything else with 404. What a request costs
//! here is what the platform, workers-rs and the wasm boundary cost before any work of ours.

use worker::{event, Context, Env, Method, Request, Response, Result};

#[event(fetch)]
async fn fetch(req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    if req.method() == Method::Get && req.path() == "/" {
        Response::ok("ok")
    } else {
        Response::error("not found", 404)
    }
}
