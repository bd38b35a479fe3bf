//! The SQL kyc-edge runs on D1, as values: statements with their parameters, built by pure
//! functions and executed by the adapter (D1) or by the host tests (SQLite, with the real
//! migrations). Both are SQLite, so what the tests prove is what D1 runs.

pub mod alerts;
pub mod backfills;
pub mod events;
pub mod notifications;
pub mod runs;
pub mod subjects;
pub mod tallies;

use crate::time::Timestamp;
use std::borrow::Cow;

/// A bound parameter. Integers stay below 2^53: D1 hands numbers to JavaScript as f64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Text(String),
}

impl From<i64> for SqlValue {
    fn from(value: i64) -> Self {
        SqlValue::Integer(value)
    }
}

impl From<u32> for SqlValue {
    fn from(value: u32) -> Self {
        SqlValue::Integer(i64::from(value))
    }
}

impl From<bool> for SqlValue {
    fn from(value: bool) -> Self {
        SqlValue::Integer(i64::from(value))
    }
}

impl From<&str> for SqlValue {
    fn from(value: &str) -> Self {
        SqlValue::Text(value.to_owned())
    }
}

impl From<String> for SqlValue {
    fn from(value: String) -> Self {
        SqlValue::Text(value)
    }
}

impl From<&String> for SqlValue {
    fn from(value: &String) -> Self {
        SqlValue::Text(value.clone())
    }
}

/// Timestamps are stored as milliseconds since the epoch.
impl From<Timestamp> for SqlValue {
    fn from(value: Timestamp) -> Self {
        SqlValue::Integer(value.timestamp_millis())
    }
}

impl<T: Into<SqlValue>> From<Option<T>> for SqlValue {
    fn from(value: Option<T>) -> Self {
        value.map_or(SqlValue::Null, Into::into)
    }
}

/// One SQL statement and its parameters (`?1`, `?2`, … in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sql: Cow<'static, str>,
    pub params: Vec<SqlValue>,
}

impl Statement {
    pub fn new(sql: impl Into<Cow<'static, str>>, params: Vec<SqlValue>) -> Self {
        Self {
            sql: sql.into(),
            params,
        }
    }
}

/// `Statement::new(sql, vec![a.into(), b.into(), …])`.
#[macro_export]
macro_rules! statement {
    ($sql:expr $(, $param:expr)* $(,)?) => {
        $crate::db::Statement::new($sql, vec![$($crate::db::SqlValue::from($param)),*])
    };
}

/// One row, a JSON object (the shape D1 hands the adapter).
pub type Row = serde_json::Map<String, serde_json::Value>;
/// The rows one statement returned.
pub type Rows = Vec<Row>;

/// Read one row into a typed shape.
pub fn row<T: serde::de::DeserializeOwned>(row: &Row) -> Result<T, serde_json::Error> {
    serde_json::from_value(serde_json::Value::Object(row.clone()))
}

#[cfg(test)]
pub(crate) mod sqlite;
#[cfg(test)]
mod tests;
