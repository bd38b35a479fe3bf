//! Host tests run the statements D1 runs on SQLite, with the real migrations applied in
//! order, as `wrangler d1 migrations apply` does.

use super::{Rows, SqlValue, Statement};
use rusqlite::types::{Value as Cell, ValueRef};
use rusqlite::{params_from_iter, Connection};
use serde_json::{Map, Value};

pub(crate) const MIGRATIONS: [&str; 11] = [
    include_str!("../../../migrations/0001_init.sql"),
    include_str!("../../../migrations/0002_compare_and_set.sql"),
    include_str!("../../../migrations/0003_notifications.sql"),
    include_str!("../../../migrations/0004_stuck_subjects.sql"),
    include_str!("../../../migrations/0005_partial_external_id_index.sql"),
    include_str!("../../../migrations/0006_adoption.sql"),
    include_str!("../../../migrations/0007_plain_rowids.sql"),
    include_str!("../../../migrations/0008_reading_windows.sql"),
    include_str!("../../../migrations/0009_alerts.sql"),
    include_str!("../../../migrations/0010_status_moves.sql"),
    include_str!("../../../migrations/0011_webhook_rows_one_index.sql"),
];

/// An in-memory database with every migration applied.
pub fn database() -> Connection {
    let db = Connection::open_in_memory().unwrap();
    for migration in MIGRATIONS {
        db.execute_batch(migration).unwrap();
    }
    db
}

fn cell(value: &SqlValue) -> Cell {
    match value {
        SqlValue::Null => Cell::Null,
        SqlValue::Integer(n) => Cell::Integer(*n),
        SqlValue::Text(s) => Cell::Text(s.clone()),
    }
}

/// Runs one statement; returns the rows it produced (`RETURNING` or `SELECT`).
pub fn run(db: &Connection, statement: &Statement) -> Rows {
    let mut prepared = db
        .prepare_cached(&statement.sql)
        .unwrap_or_else(|e| panic!("{e}: {}", statement.sql));
    let names: Vec<String> = prepared
        .column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut rows = prepared
        .query(params_from_iter(statement.params.iter().map(cell)))
        .unwrap_or_else(|e| panic!("{e}: {}", statement.sql));
    let mut out = vec![];
    while let Some(row) = rows.next().unwrap() {
        let mut object = Map::new();
        for (i, name) in names.iter().enumerate() {
            let value = match row.get_ref(i).unwrap() {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => Value::from(n),
                ValueRef::Real(f) => Value::from(f),
                ValueRef::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(_) => panic!("no blobs in this schema"),
            };
            object.insert(name.clone(), value);
        }
        out.push(object);
    }
    out
}

/// Runs statements as one transaction, as `D1Database::batch` does; the rows of each. A
/// savepoint, so a batch also nests inside a caller's transaction (the schedule explorer
/// rolls whole schedules back).
pub fn batch(db: &Connection, statements: &[Statement]) -> Vec<Rows> {
    db.execute_batch("SAVEPOINT batch").unwrap();
    let results = statements.iter().map(|s| run(db, s)).collect();
    db.execute_batch("RELEASE batch").unwrap();
    results
}

/// `EXPLAIN QUERY PLAN` of a statement, one detail line per step.
pub fn query_plan(db: &Connection, statement: &Statement) -> Vec<String> {
    let explain = Statement::new(
        format!("EXPLAIN QUERY PLAN {}", statement.sql),
        statement.params.clone(),
    );
    run(db, &explain)
        .into_iter()
        .map(|row| row["detail"].as_str().unwrap().to_owned())
        .collect()
}
