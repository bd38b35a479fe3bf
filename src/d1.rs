//! Runs the core's statements on D1. Parameters bind as JavaScript values: integers as
//! numbers (exact below 2^53), text as strings, `Null` as `null` (`undefined` would be a D1
//! type error). Rows come back as JSON objects, the shape the core reads.

use crate::calls::{Call, Calls};
use crate::error::StoreError;
use crate::gather::{self, Joined};
use kyc_core::db::{Rows, SqlValue, Statement};
use serde_json::Value;
use std::time::Duration;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result, Delay, Env};

pub const BINDING: &str = "DB";

pub fn database(env: &Env) -> Result<D1Database, StoreError> {
    env.d1(BINDING).map_err(StoreError::D1)
}

fn js(value: &SqlValue) -> JsValue {
    match value {
        SqlValue::Null => JsValue::NULL,
        SqlValue::Integer(n) => JsValue::from_f64(*n as f64),
        SqlValue::Text(s) => JsValue::from_str(s),
    }
}

fn prepare(db: &D1Database, statement: &Statement) -> Result<D1PreparedStatement, StoreError> {
    let params: Vec<JsValue> = statement.params.iter().map(js).collect();
    db.prepare(statement.sql.as_ref())
        .bind(&params)
        .map_err(StoreError::D1)
}

fn prepare_all(
    db: &D1Database,
    statements: &[Statement],
) -> Result<Vec<D1PreparedStatement>, StoreError> {
    statements.iter().map(|s| prepare(db, s)).collect()
}

fn rows(result: &D1Result) -> Result<Rows, StoreError> {
    let values: Vec<Value> = result.results().map_err(StoreError::D1)?;
    Ok(values
        .into_iter()
        .filter_map(|value| match value {
            Value::Object(row) => Some(row),
            _ => None,
        })
        .collect())
}

fn meter(calls: &Calls, results: &[D1Result]) {
    let (mut read, mut written) = (0, 0);
    for result in results {
        if let Ok(Some(meta)) = result.meta() {
            read += meta.rows_read.unwrap_or(0) as u64;
            written += meta.rows_written.unwrap_or(0) as u64;
        }
    }
    calls.record_d1(results.len() as u32, read, written);
}

/// Runs statements as one D1 batch (one transaction, one call); the rows of each.
pub async fn batch(
    calls: &Calls,
    db: &D1Database,
    statements: &[Statement],
) -> Result<Vec<Rows>, StoreError> {
    calls.spend(Call::D1)?;
    send(calls, db, statements).await
}

/// The batch call itself, its calls already counted.
async fn send(
    calls: &Calls,
    db: &D1Database,
    statements: &[Statement],
) -> Result<Vec<Rows>, StoreError> {
    let results = db
        .batch(prepare_all(db, statements)?)
        .await
        .map_err(StoreError::D1)?;
    meter(calls, &results);
    results.iter().map(rows).collect()
}

/// Runs a batch of a fixed number of statements; their answers as an array, to bind each to a
/// name (`let [loaded, written] = d1::batch_of(…, [load, write]).await?`) instead of reading
/// them by position.
pub async fn batch_of<const N: usize>(
    calls: &Calls,
    db: &D1Database,
    statements: [Statement; N],
) -> Result<[Rows; N], StoreError> {
    let results = batch(calls, db, &statements).await?;
    let answered = results.len();
    results.try_into().map_err(|_| {
        StoreError::D1(worker::Error::RustError(format!(
            "a batch of {N} statements answered {answered} results"
        )))
    })
}

/// Runs one statement; its rows.
pub async fn run(
    calls: &Calls,
    db: &D1Database,
    statement: &Statement,
) -> Result<Rows, StoreError> {
    calls.spend(Call::D1)?;
    let result = prepare(db, statement)?
        .all()
        .await
        .map_err(StoreError::D1)?;
    meter(calls, std::slice::from_ref(&result));
    rows(&result)
}

/// The first row of a statement's rows as a typed value, if any.
pub fn first<T: serde::de::DeserializeOwned>(rows: &Rows) -> Result<Option<T>, StoreError> {
    rows.first()
        .map(|row| kyc_core::db::row(row).map_err(StoreError::Unreadable))
        .transpose()
}

/// Every row of a statement's rows as a typed value; one unreadable row fails them all.
pub fn all<T: serde::de::DeserializeOwned>(rows: &Rows) -> Result<Vec<T>, StoreError> {
    rows.iter()
        .map(kyc_core::db::row)
        .collect::<Result<_, _>>()
        .map_err(StoreError::Unreadable)
}

/// How long the first of a queue batch's jobs to reach D1 waits for the others (crate::gather):
/// long enough for a batch's provider answers, which arrive together, and short beside the
/// work of a job still doing something else (a KV put, a slow provider).
const GATHER_WAIT: Duration = Duration::from_millis(5);

/// The D1 calls of a queue batch's jobs, gathered.
pub type Gather = gather::Gather<D1PreparedStatement, D1Result>;

/// Runs statements as one D1 batch with those of the other jobs calling now (crate::gather);
/// the rows of each. One D1 batch is one transaction: the gathered jobs' statements run as if
/// each job's batch ran right after the one before, an interleaving the ordering proof already
/// covers (docs/ordering.md), and each job's are contiguous, so a `changes() = 1` guard still
/// reads its own job's statement before it.
pub async fn gathered_batch(
    gather: &Gather,
    calls: &Calls,
    db: &D1Database,
    statements: &[Statement],
) -> Result<Vec<Rows>, StoreError> {
    calls.spend(Call::D1)?;
    let joined = gather
        .call(
            prepare_all(db, statements)?,
            || Delay::from(GATHER_WAIT),
            |prepared| async move { db.batch(prepared).await.map_err(|e| e.to_string()) },
        )
        .await;
    match joined {
        Joined::Answered(results) => {
            meter(calls, &results);
            results.iter().map(rows).collect()
        }
        Joined::Failed(error) => Err(StoreError::D1(worker::Error::RustError(error))),
        // The gathered batch failed: a failing statement (another job's, perhaps) writes
        // nothing, and an answer lost after D1 committed makes the re-sent guard fail, so the
        // job re-reads and decides again.
        Joined::Alone { pays: true } => batch(calls, db, statements).await,
        Joined::Alone { pays: false } => send(calls, db, statements).await,
    }
}
