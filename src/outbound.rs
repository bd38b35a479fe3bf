//! Outbound GETs to provider APIs, with a timeout. A non-2xx answer, a timeout and a
//! transport failure are typed errors; a 2xx answer is its body.

use crate::calls::{Call, Calls};
use crate::clock;
use futures_util::future::{select, Either};
use kyc_core::headers::RETRY_AFTER;
use kyc_core::outbound::OutboundError;
use kyc_core::providers::StatusRequest;
use kyc_core::schedule::parse_retry_after;
use kyc_core::time::TimeDelta;
use std::time::Duration;
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

/// Why a call was not made at all.
pub enum NotSent {
    /// The invocation's subrequests are spent.
    OverBudget,
    Failed(OutboundError),
}

pub async fn get(
    calls: &Calls,
    request: &StatusRequest,
    timeout: TimeDelta,
) -> Result<Vec<u8>, NotSent> {
    calls.spend(Call::Fetch).map_err(|_| NotSent::OverBudget)?;
    let transport = |_| NotSent::Failed(OutboundError::Transport);
    let headers = Headers::new();
    for (name, value) in &request.headers {
        headers.set(name, value).map_err(transport)?;
    }
    headers
        .set("accept", "application/json")
        .map_err(transport)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let req = Request::new_with_init(&request.url, &init).map_err(transport)?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async {
        let mut response = Fetch::Request(req)
            .send_with_signal(&signal)
            .await
            .map_err(|_| OutboundError::Transport)?;
        let status = response.status_code();
        if !(200..300).contains(&status) {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .ok()
                .flatten()
                .and_then(|value| parse_retry_after(&value, clock::now()));
            return Err(OutboundError::Http {
                status,
                retry_after,
            });
        }
        response.bytes().await.map_err(|_| OutboundError::Transport)
    };
    let timeout = Delay::from(Duration::from_millis(
        timeout.num_milliseconds().max(1) as u64
    ));
    futures_util::pin_mut!(call);
    match select(call, timeout).await {
        Either::Left((answer, _)) => answer.map_err(NotSent::Failed),
        Either::Right(((), _)) => {
            controller.abort();
            Err(NotSent::Failed(OutboundError::Timeout))
        }
    }
}

/// The application's answer to a notification: its status and any `Retry-After`.
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<TimeDelta>,
}

/// POST a notification's body with its headers. Any HTTP answer is a `Reply` (what it means
/// is the caller's to judge); a timeout or transport failure is an error.
pub async fn post(
    calls: &Calls,
    url: &str,
    headers: &[(&str, String)],
    body: &str,
    timeout: TimeDelta,
) -> Result<Reply, NotSent> {
    calls.spend(Call::Fetch).map_err(|_| NotSent::OverBudget)?;
    let transport = |_| NotSent::Failed(OutboundError::Transport);
    let request_headers = Headers::new();
    for (name, value) in headers {
        request_headers.set(name, value).map_err(transport)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(request_headers)
        .with_body(Some(body.into()));
    let req = Request::new_with_init(url, &init).map_err(transport)?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async {
        let response = Fetch::Request(req)
            .send_with_signal(&signal)
            .await
            .map_err(|_| OutboundError::Transport)?;
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .ok()
            .flatten()
            .and_then(|value| parse_retry_after(&value, clock::now()));
        Ok(Reply {
            status: response.status_code(),
            retry_after,
        })
    };
    let timeout = Delay::from(Duration::from_millis(
        timeout.num_milliseconds().max(1) as u64
    ));
    futures_util::pin_mut!(call);
    match select(call, timeout).await {
        Either::Left((reply, _)) => reply.map_err(NotSent::Failed),
        Either::Right(((), _)) => {
            controller.abort();
            Err(NotSent::Failed(OutboundError::Timeout))
        }
    }
}
