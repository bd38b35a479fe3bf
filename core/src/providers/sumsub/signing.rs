//! Signing API requests: `X-App-Access-Sig` = hex HMAC-SHA256(secret key, ts + METHOD +
//! path with query exactly as sent + body), `X-App-Access-Ts` in Unix seconds.

use crate::secret::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const TOKEN_HEADER: &str = "x-app-token";
pub const TS_HEADER: &str = "x-app-access-ts";
pub const SIG_HEADER: &str = "x-app-access-sig";

/// The signature of one request. `path_with_query` starts with `/` and is byte for byte what
/// goes on the wire (percent-encoding included); a GET has an empty body.
pub fn signature(
    secret_key: &Secret,
    ts_seconds: i64,
    method: &str,
    path_with_query: &str,
    body: &[u8],
) -> String {
    // HMAC accepts keys of any length: this cannot fail, but is not unwrapped.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret_key.expose().as_bytes()) else {
        return String::new();
    };
    mac.update(ts_seconds.to_string().as_bytes());
    mac.update(method.as_bytes());
    mac.update(path_with_query.as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The path and query of an absolute URL: what follows its authority (`/` when nothing does).
pub fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.find('/').map_or("/", |at| &rest[at..])
}
