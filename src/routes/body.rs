//! Request bodies, read within a limit: refused on the declared `Content-Length` before a byte
//! is read, and a body without one is read as a stream and abandoned as soon as it passes the
//! limit. No route buffers more than its limit, whatever the caller sends.

use crate::error::ApiError;
use kyc_core::api::ErrorCode;
use kyc_core::headers::CONTENT_LENGTH;
use worker::Request;

/// Routes whose body is one small JSON object (`{"external_id"}`, `{"since"}`).
pub const SMALL_BODY_BYTES: usize = 16 * 1024;

/// The body, or a 413 naming the limit.
pub async fn read(req: &mut Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)?
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    read_at_most(req, limit)
        .await?
        .ok_or_else(|| too_large(limit))
}

pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("body exceeds {limit} bytes"),
    )
}

/// The body, read as a stream and abandoned (the rest is never read) as soon as it passes
/// `limit` bytes: `None` then.
pub async fn read_at_most(req: &mut Request, limit: usize) -> worker::Result<Option<Vec<u8>>> {
    // No body at all (not even an empty stream): nothing to read.
    let Some(stream) = req.inner().body() else {
        return Ok(Some(Vec::new()));
    };
    Ok(crate::stream::read_within(stream, limit).await?)
}
