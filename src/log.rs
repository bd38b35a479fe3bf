//! Structured logs: one JSON line per request, per job and per cron run, readable with
//! `wrangler tail --format json`. Fields are ids, routes, outcomes, figures and error
//! classes: never a secret, a token, a body or a PII value.

use crate::calls::Calls;
use serde_json::{Map, Value};
use worker::{console_error, console_log};

pub struct Line {
    fields: Map<String, Value>,
    error: bool,
}

impl Line {
    /// `kind`: "request", "job" or "cron".
    pub fn new(kind: &str) -> Self {
        let mut fields = Map::new();
        fields.insert("kind".into(), Value::from(kind));
        Self {
            fields,
            error: false,
        }
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) -> &mut Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    /// An error worth attention: the line is written at error level.
    pub fn error(&mut self, error: impl std::fmt::Display) -> &mut Self {
        self.error = true;
        self.set("error", error.to_string())
    }

    pub fn emit(mut self, calls: &Calls) {
        if let Ok(meter) = serde_json::to_value(calls.meter()) {
            self.fields.insert("meter".into(), meter);
        }
        let line = Value::Object(self.fields).to_string();
        if self.error {
            console_error!("{line}");
        } else {
            console_log!("{line}");
        }
    }
}
