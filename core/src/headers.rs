//! Header names, once, for the adapter and the tests.

/// Align's webhook signature: hex HMAC-SHA256 of the raw body keyed with the API key.
pub const ALIGN_SIGNATURE: &str = "x-hmac-signature";
/// Align REST authentication: the raw API key, no scheme (see providers.md §1.2).
pub const ALIGN_AUTHORIZATION: &str = "authorization";
/// ARGOS REST authentication.
pub const ARGOS_API_KEY: &str = "x-api-key";
/// The client address Cloudflare puts on every request.
pub const CF_CONNECTING_IP: &str = "cf-connecting-ip";
/// Bearer token of the application-facing API.
pub const AUTHORIZATION: &str = "authorization";
/// Seconds (or an HTTP date) a rate-limited provider asks us to wait.
pub const RETRY_AFTER: &str = "retry-after";
