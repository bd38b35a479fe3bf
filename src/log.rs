//! Structured logs: one JSON line per request, per job and per cron run, readable with
//! `wrangler tail --format json`. Fields are ids, routes, outcomes, figures and error
//! classes: never a secret, a token, a body or a PII value.
//!
//! The line is written as it is built, into one string: no map of fields, no intermediate
//! JSON tree, one `console.log` at the end. A key set twice appears twice and the later value
//! is the one a JSON reader keeps, as when fields were a map.

use crate::calls::Calls;
use serde::Serialize;
use serde_json::Value;
use worker::{console_error, console_log};

pub struct Line {
    json: Vec<u8>,
    error: bool,
}

impl Line {
    /// `kind`: "request", "job", "batch" or "cron".
    pub fn new(kind: &str) -> Self {
        let mut json = Vec::with_capacity(256);
        json.extend_from_slice(b"{\"kind\":");
        push_json(&mut json, kind);
        Self { json, error: false }
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.json.push(b',');
        push_json(&mut self.json, key);
        self.json.push(b':');
        push_json(&mut self.json, &value.into());
        self
    }

    /// An error worth attention: the line is written at error level.
    pub fn error(&mut self, error: impl std::fmt::Display) -> &mut Self {
        self.error = true;
        self.set("error", error.to_string())
    }

    pub fn emit(mut self, calls: &Calls) {
        self.json.extend_from_slice(b",\"meter\":");
        push_json(&mut self.json, &calls.meter());
        self.json.push(b'}');
        // Only JSON was written: valid UTF-8.
        let line = String::from_utf8_lossy(&self.json);
        if self.error {
            console_error!("{line}");
        } else {
            console_log!("{line}");
        }
    }
}

/// Writing JSON into memory fails only for a map with non-string keys, which no field has;
/// such a value would be written as `null`.
fn push_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mark = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(mark);
        out.extend_from_slice(b"null");
    }
}
