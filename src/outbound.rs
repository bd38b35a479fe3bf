//! Provider API calls, with a timeout.

use futures_util::future::{select, Either};
use kyc_core::headers::RETRY_AFTER;
use kyc_core::providers::StatusRequest;
use std::time::Duration;
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

/// GET the request; `Err` is a transport failure or a timeout, described without secrets.
pub async fn get(request: &StatusRequest, timeout_ms: u32) -> Result<Answer, String> {
    let headers = Headers::new();
    for (name, value) in &request.headers {
        headers
            .set(name, value)
            .map_err(|_| format!("invalid value for header {name}"))?;
    }
    headers
        .set("accept", "application/json")
        .map_err(|e| e.to_string())?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let req = Request::new_with_init(&request.url, &init)
        .map_err(|_| "invalid provider URL".to_owned())?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async {
        let fetch = Fetch::Request(req);
        let mut response = fetch
            .send_with_signal(&signal)
            .await
            .map_err(|e| format!("fetch failed: {e}"))?;
        let status = response.status_code();
        let retry_after = response.headers().get(RETRY_AFTER).ok().flatten();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("reading body failed: {e}"))?;
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    };
    let timeout = Delay::from(Duration::from_millis(u64::from(timeout_ms)));
    futures_util::pin_mut!(call);
    match select(call, timeout).await {
        Either::Left((answer, _)) => answer,
        Either::Right(((), _)) => {
            controller.abort();
            Err(format!("timed out after {timeout_ms} ms"))
        }
    }
}
