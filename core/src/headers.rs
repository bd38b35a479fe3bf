//! Header names, once, for the adapter and the tests.
//! Provider protocols' own headers live in their modules (`providers/<name>`).

/// The client address Cloudflare puts on every request.
pub const CF_CONNECTING_IP: &str = "cf-connecting-ip";
/// Bearer token of the application-facing API.
pub const AUTHORIZATION: &str = "authorization";
/// Seconds (or an HTTP date) a rate-limited provider asks us to wait.
pub const RETRY_AFTER: &str = "retry-after";
/// The IETF RateLimit header fields' reset: seconds until the quota refills. Read on a
/// non-2xx answer without a `Retry-After`.
pub const RATELIMIT_RESET: &str = "ratelimit-reset";
/// A request's id: echoed when the caller sent a usable one, else generated; in every
/// answer and in the request's log line.
pub const REQUEST_ID: &str = "x-request-id";
/// Where a subject's answer was read from: `kv` or `d1`.
pub const READ_FROM: &str = "x-kyc-edge-read";
/// Body size the sender declares.
pub const CONTENT_LENGTH: &str = "content-length";
pub const CONTENT_TYPE: &str = "content-type";

/// A caller's request id worth echoing: 1 to 128 visible characters of a safe alphabet, so
/// it cannot inject anything into a header or a log line.
pub fn usable_request_id(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Whether a `Content-Type` is an HTML form's. A webhook is never a form post, and a
/// cross-site form is the one request a browser sends anywhere without asking: refused
/// before the body is read. Any other type is accepted: providers do not document theirs,
/// and the signature and the JSON parser judge the bytes, whatever they are labelled.
pub fn is_form(content_type: &str) -> bool {
    content_type.split(';').next().is_some_and(|media| {
        let media = media.trim();
        media.eq_ignore_ascii_case("application/x-www-form-urlencoded")
            || media.eq_ignore_ascii_case("multipart/form-data")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_echoed_only_when_safe() {
        assert!(usable_request_id("req-7f3a_9.2:x"));
        for bad in ["", "a b", "a\nb", "x\"y", &"a".repeat(129), "é"] {
            assert!(!usable_request_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn form_posts_are_told_apart() {
        for form in [
            "application/x-www-form-urlencoded",
            "Multipart/Form-Data; boundary=x",
            " application/x-www-form-urlencoded ;charset=utf-8",
        ] {
            assert!(is_form(form), "{form}");
        }
        for other in [
            "application/json",
            "text/plain;charset=UTF-8",
            "",
            "application/octet-stream",
        ] {
            assert!(!is_form(other), "{other}");
        }
    }
}
