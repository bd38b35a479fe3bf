//! Reading a body stream (a request's, a provider's or the application's answer) within a limit.

use worker::js_sys::{Reflect, Uint8Array};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::web_sys::{ReadableStream, ReadableStreamDefaultReader};

/// Every byte of `stream` while they total at most `limit`; `None` as soon as they pass it (the
/// rest is never read).
///
/// Read through the stream's own reader, whose lock is never released: the body is consumed or
/// abandoned here. Releasing a reader's lock creates a TypeError, stack trace and all (the
/// Streams standard rejects the reader's `closed` promise with one), which was the largest
/// single cost of a webhook's ingress in the worker's own CPU profile.
pub async fn read_within(stream: ReadableStream, limit: usize) -> Result<Option<Vec<u8>>, JsValue> {
    let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let (done, value) = (JsValue::from_str("done"), JsValue::from_str("value"));
    let mut body = Vec::new();
    loop {
        let result = JsFuture::from(reader.read()).await?;
        if Reflect::get(&result, &done)?.is_truthy() {
            return Ok(Some(body));
        }
        let chunk: Uint8Array = Reflect::get(&result, &value)?
            .dyn_into()
            .map_err(|_| JsValue::from_str("a body chunk that is not bytes"))?;
        let length = chunk.length() as usize;
        // body.len() <= limit holds throughout, so this cannot underflow.
        if length > limit - body.len() {
            return Ok(None);
        }
        let start = body.len();
        body.resize(start + length, 0);
        chunk.copy_to(&mut body[start..]);
    }
}
