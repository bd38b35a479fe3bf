//! Storage: D1 is the truth, KV a projection of subjects for fast reads.

pub mod bookkeeping;
pub mod kv;
pub mod subjects;
pub mod webhooks;

use wasm_bindgen::JsValue;
use worker::{D1Database, Env, Result};

pub const DB_BINDING: &str = "DB";

pub fn db(env: &Env) -> Result<D1Database> {
    env.d1(DB_BINDING)
}

/// D1 has no BigInt: millisecond timestamps travel as f64, exact below 2^53.
pub fn int(value: i64) -> JsValue {
    JsValue::from_f64(value as f64)
}

pub fn opt_int(value: Option<i64>) -> JsValue {
    value.map_or(JsValue::NULL, int)
}

pub fn text(value: &str) -> JsValue {
    JsValue::from_str(value)
}

/// `None` must bind as NULL: `undefined` is a D1 type error.
pub fn opt_text(value: Option<&str>) -> JsValue {
    value.map_or(JsValue::NULL, JsValue::from_str)
}

/// Rows changed by a write statement.
pub fn changes(result: &worker::D1Result) -> Result<usize> {
    Ok(result.meta()?.and_then(|m| m.changes).unwrap_or(0))
}
