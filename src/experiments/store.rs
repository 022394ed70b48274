//! The experiment tables in the ledger file: feedback scores and the ramp
//! log (`feedback`, `experiment_ramp`; created with the ledger schema), and
//! the reads the report, the ramp and `POST /v1/feedback` make.
//!
//! These are low-volume writes (one per feedback, one per ramp step), made
//! on their own short-lived connection; the ledger writer keeps its batches.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection};

pub(crate) async fn connect(path: &Path, read_only: bool) -> Result<SqliteConnection, String> {
    let mut opts = SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_secs(5))
        .disable_statement_logging();
    opts = if read_only {
        opts.read_only(true)
    } else {
        opts.journal_mode(SqliteJournalMode::Wal)
    };
    SqliteConnection::connect_with(&opts)
        .await
        .map_err(|e| format!("cannot open ledger {}: {e}", path.display()))
}

/// Whether `table` exists (older ledger files lack the experiment tables).
pub(crate) async fn has_table(conn: &mut SqliteConnection, table: &str) -> Result<bool, String> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?")
        .bind(table)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| format!("ledger query failed: {e}"))?;
    Ok(n > 0)
}

/// Whether the ledger table has `column`.
pub(crate) async fn has_column(conn: &mut SqliteConnection, column: &str) -> Result<bool, String> {
    let rows = sqlx::query("PRAGMA table_info(ledger)")
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| format!("ledger query failed: {e}"))?;
    Ok(rows.iter().any(|r| r.get::<String, _>(1) == column))
}

/// What the ledger knows of a request, for feedback.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestInfo {
    pub key_name: Option<String>,
    pub experiment: Option<String>,
    pub arm: Option<String>,
    /// For a shadow call: the live request it copied.
    pub parent_request_id: Option<String>,
}

/// The ledger's record of `request_id` (its first row), if any.
pub async fn lookup_request(path: &Path, request_id: &str) -> Result<Option<RequestInfo>, String> {
    let mut conn = connect(path, true).await?;
    let row = sqlx::query(
        "SELECT key_name, experiment, arm, parent_request_id FROM ledger WHERE request_id = ? ORDER BY id LIMIT 1",
    )
        .bind(request_id)
        .fetch_optional(&mut conn)
        .await
        .map_err(|e| format!("ledger query failed: {e}"))?;
    Ok(row.map(|r| RequestInfo {
        key_name: r.get(0),
        experiment: r.get(1),
        arm: r.get(2),
        parent_request_id: r.get(3),
    }))
}

/// [`lookup_request`] on a PostgreSQL ledger.
pub async fn lookup_request_pg(pool: &sqlx::PgPool, request_id: &str) -> Result<Option<RequestInfo>, String> {
    let row = sqlx::query(
        "SELECT key_name, experiment, arm, parent_request_id FROM ledger WHERE request_id = $1 ORDER BY id LIMIT 1",
    )
    .bind(request_id)
    .fetch_optional(pool)
    .await
    .map_err(|e| format!("ledger query failed: {e}"))?;
    Ok(row.map(|r| RequestInfo {
        key_name: r.get(0),
        experiment: r.get(1),
        arm: r.get(2),
        parent_request_id: r.get(3),
    }))
}

/// Stores one feedback score; returns its id.
pub async fn insert_feedback(
    path: &Path,
    request_id: &str,
    ts_ms: i64,
    key_name: Option<&str>,
    score: f64,
    comment: Option<&str>,
) -> Result<i64, String> {
    let mut conn = connect(path, false).await?;
    let r = sqlx::query(
        "INSERT INTO feedback (request_id, ts_ms, key_name, score, comment) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(request_id)
    .bind(ts_ms)
    .bind(key_name)
    .bind(score)
    .bind(comment)
    .execute(&mut conn)
    .await
    .map_err(|e| format!("cannot store feedback: {e}"))?;
    Ok(r.last_insert_rowid())
}

/// One line of the ramp log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RampRow {
    pub ts_ms: i64,
    pub experiment: String,
    #[serde(skip)]
    pub fingerprint: String,
    /// Index into the ramp's steps.
    pub step: usize,
    /// The candidate's share from then on.
    pub share: f64,
    pub paused: bool,
    /// start, advance, complete, rollback or reset.
    pub action: String,
    pub reason: String,
}

/// Every ramp log line, oldest first (empty for ledgers without the table).
pub async fn ramp_log(path: &Path) -> Result<Vec<RampRow>, String> {
    let mut conn = connect(path, true).await?;
    if !has_table(&mut conn, "experiment_ramp").await? {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT ts_ms, experiment, fingerprint, step, share, paused, action, reason FROM experiment_ramp ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|e| format!("ledger query failed: {e}"))?;
    Ok(rows
        .iter()
        .map(|r| RampRow {
            ts_ms: r.get(0),
            experiment: r.get(1),
            fingerprint: r.get(2),
            step: r.get::<i64, _>(3).max(0) as usize,
            share: r.get(4),
            paused: r.get(5),
            action: r.get(6),
            reason: r.get(7),
        })
        .collect())
}

pub async fn insert_ramp(path: &Path, row: &RampRow) -> Result<(), String> {
    let mut conn = connect(path, false).await?;
    sqlx::query(
        "INSERT INTO experiment_ramp (ts_ms, experiment, fingerprint, step, share, paused, action, reason) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(row.ts_ms)
    .bind(&row.experiment)
    .bind(&row.fingerprint)
    .bind(row.step as i64)
    .bind(row.share)
    .bind(row.paused)
    .bind(&row.action)
    .bind(&row.reason)
    .execute(&mut conn)
    .await
    .map_err(|e| format!("cannot store the ramp step: {e}"))?;
    let _ = conn.close().await;
    Ok(())
}
