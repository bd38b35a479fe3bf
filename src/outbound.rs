//! Outbound calls, with a timeout: GETs to provider APIs (a non-2xx answer, a timeout and a
//! transport failure are typed errors; a 2xx answer is its body, read within a byte cap) and
//! POSTs of notifications (any HTTP answer is a reply). Redirects are never followed: the
//! request carries a key or a signature meant for the configured origin, so a 3xx is a failed
//! call that names its `Location`.

use crate::calls::{Call, Calls};
use crate::clock;
use futures_util::future::{select, Either};
use kyc_core::headers::{CONTENT_LENGTH, RATELIMIT_RESET, RETRY_AFTER};
use kyc_core::outbound::{is_redirect, location_for_record, CappedBody, OutboundError};
use kyc_core::providers::StatusRequest;
use kyc_core::schedule::{parse_ratelimit_reset, parse_retry_after};
use kyc_core::time::TimeDelta;
use std::future::Future;
use std::time::Duration;
use worker::{
    AbortController, Delay, Fetch, Headers, Method, Request, RequestInit, RequestRedirect,
    Response, ResponseBody,
};

/// Why a call was not made at all.
pub enum NotSent {
    /// The invocation's subrequests are spent.
    OverBudget,
    Failed(OutboundError),
}

/// GET a provider's API; a 2xx body of at most `limit` bytes.
pub async fn get(
    calls: &Calls,
    request: &StatusRequest,
    timeout: TimeDelta,
    limit: usize,
) -> Result<Vec<u8>, NotSent> {
    let mut headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    headers.push(("accept", "application/json"));
    let req = prepare(calls, Method::Get, &request.url, &headers, None)?;
    send(req, timeout, |mut response| async move {
        let status = response.status_code();
        if is_redirect(status) {
            return Err(OutboundError::Redirect {
                status,
                location: location(&response),
            });
        }
        if !(200..300).contains(&status) {
            return Err(OutboundError::Http {
                status,
                retry_after: retry_after(&response),
            });
        }
        read_capped(&mut response, limit).await
    })
    .await
}

/// The body, refused on a declared length over `limit` and abandoned once the bytes read pass
/// it (the rest is never read).
async fn read_capped(response: &mut Response, limit: usize) -> Result<Vec<u8>, OutboundError> {
    let declared = response.headers().get(CONTENT_LENGTH).ok().flatten();
    let mut body = CappedBody::new(limit, declared.as_deref())?;
    let stream = match response.body() {
        ResponseBody::Empty => return Ok(body.finish()),
        ResponseBody::Body(bytes) => {
            body.push(bytes)?;
            return Ok(body.finish());
        }
        ResponseBody::Stream(stream) => stream.clone(),
    };
    match crate::stream::read_within(stream, limit).await {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(OutboundError::TooLarge { limit }),
        Err(_) => Err(OutboundError::Transport),
    }
}

/// A redirect's `Location`, made safe to log and record.
fn location(response: &Response) -> Option<String> {
    response
        .headers()
        .get("location")
        .ok()
        .flatten()
        .map(|raw| location_for_record(&raw))
}

/// The application's answer to a notification: its status and any `Retry-After`.
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<TimeDelta>,
    /// A 3xx's `Location` (not followed), for the operator to fix `APP_WEBHOOK_URL`.
    pub location: Option<String>,
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
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    let req = prepare(calls, Method::Post, url, &headers, Some(body))?;
    send(req, timeout, |response| async move {
        let status = response.status_code();
        Ok(Reply {
            status,
            retry_after: retry_after(&response),
            location: if is_redirect(status) {
                location(&response)
            } else {
                None
            },
        })
    })
    .await
}

/// The request, once its call is paid for.
fn prepare(
    calls: &Calls,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<Request, NotSent> {
    calls.spend(Call::Fetch).map_err(|_| NotSent::OverBudget)?;
    let transport = |_| NotSent::Failed(OutboundError::Transport);
    let request_headers = Headers::new();
    for (name, value) in headers {
        request_headers.set(name, value).map_err(transport)?;
    }
    let mut init = RequestInit::new();
    // Never follow a redirect: it would resend the key or the signed body to wherever the
    // answer points, and (for a POST) turn it into a GET that "succeeds".
    init.with_method(method)
        .with_headers(request_headers)
        .with_redirect(RequestRedirect::Manual);
    if let Some(body) = body {
        init.with_body(Some(body.into()));
    }
    Request::new_with_init(url, &init).map_err(transport)
}

/// Sends `req` and reads its answer with `read`, both within `timeout`: past it the request is
/// aborted and the call is a timeout.
async fn send<T, Read, Reading>(req: Request, timeout: TimeDelta, read: Read) -> Result<T, NotSent>
where
    Read: FnOnce(Response) -> Reading,
    Reading: Future<Output = Result<T, OutboundError>>,
{
    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async {
        let response = Fetch::Request(req)
            .send_with_signal(&signal)
            .await
            .map_err(|_| OutboundError::Transport)?;
        read(response).await
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

/// `Retry-After`, else the IETF `RateLimit-Reset` (seconds until the quota refills).
fn retry_after(response: &Response) -> Option<TimeDelta> {
    let header = |name| response.headers().get(name).ok().flatten();
    let now = clock::now();
    header(RETRY_AFTER)
        .and_then(|value| parse_retry_after(&value, now))
        .or_else(|| header(RATELIMIT_RESET).and_then(|value| parse_ratelimit_reset(&value, now)))
}
