//! The ledger: one row per request that reached an upstream.
//!
//! Request handlers send a [`LedgerEntry`] down an unbounded channel (never
//! blocking, never touching disk on the request path); one background writer
//! drains the channel in batches, each batch one multi-row INSERT inside one
//! transaction. The writer exits only when every sender is gone and the
//! channel is empty, so a graceful shutdown loses nothing.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, QueryBuilder, SqliteConnection};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::api::usage::Usage;

/// Rows per INSERT statement (bounded by SQLite's parameter limit of 32766:
/// 32 parameters per row).
const ROWS_PER_STATEMENT: usize = 800;

/// One ledger row.
#[derive(Debug, Clone)]
pub struct LedgerEntry {
    pub request_id: String,
    /// Unix time in milliseconds when the request arrived.
    pub ts_ms: i64,
    /// Virtual key name (None until keys are configured).
    pub key_name: Option<String>,
    pub endpoint: &'static str,
    pub requested_model: String,
    pub served_model: Arc<str>,
    pub provider: Arc<str>,
    pub upstream_model: Arc<str>,
    /// HTTP status the client saw (499: client closed the connection).
    pub status: u16,
    pub stream: bool,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub usage: Option<Usage>,
    /// None: unknown (no price, or no usage).
    pub cost_usd: Option<f64>,
    pub usage_estimated: bool,
    pub error: Option<String>,
    /// 1-based attempt number within the client request (retries and fallbacks add rows).
    pub attempt: u32,
    /// Routing decision, for requests sent to a route such as `auto`.
    pub routing: Option<Box<RoutingRecord>>,
    /// The experiment arm this request ran in, if any.
    pub experiment: Option<Box<ExperimentTag>>,
}

/// An experiment assignment, as recorded in the ledger.
#[derive(Debug, Clone)]
pub struct ExperimentTag {
    pub name: Arc<str>,
    /// `control` or the candidate's model name.
    pub arm: Arc<str>,
    /// A shadow copy: sent in the background, never seen by the client.
    pub shadow: bool,
    /// The live request a shadow copies.
    pub parent_request_id: Option<String>,
    /// The shadow answer's text, truncated to `record_output_chars`.
    pub output: Option<String>,
}

impl LedgerEntry {
    /// A row for an attempt about to start: identity filled in, outcome
    /// (status, latency, usage, cost) pending until the `Recorder` writes it.
    #[allow(clippy::too_many_arguments)]
    pub fn pending(
        request_id: String,
        ts_ms: i64,
        endpoint: &'static str,
        requested_model: String,
        served_model: Arc<str>,
        provider: Arc<str>,
        upstream_model: Arc<str>,
        stream: bool,
    ) -> LedgerEntry {
        LedgerEntry {
            request_id,
            ts_ms,
            key_name: None,
            endpoint,
            requested_model,
            served_model,
            provider,
            upstream_model,
            status: 0,
            stream,
            latency_ms: 0.0,
            ttft_ms: None,
            usage: None,
            cost_usd: None,
            usage_estimated: false,
            error: None,
            attempt: 1,
            routing: None,
            experiment: None,
        }
    }
}

/// What a route decided, as recorded in the ledger.
#[derive(Debug, Clone)]
pub struct RoutingRecord {
    pub route: String,
    pub task: String,
    pub confidence: f32,
    pub complexity: f32,
    pub tier: String,
    pub reason: String,
}

/// Cheap, cloneable sender side of the ledger.
#[derive(Clone)]
pub struct LedgerHandle {
    tx: mpsc::UnboundedSender<LedgerEntry>,
    stats: Arc<LedgerStats>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Log one `switchyard::access` line per row.
    access_log: bool,
}

/// Counters shared between handles and the writer.
#[derive(Default)]
pub struct LedgerStats {
    pub queued: AtomicU64,
    pub written: AtomicU64,
    pub failed: AtomicU64,
}

impl LedgerHandle {
    /// Queues a row. Never blocks.
    pub fn record(&self, entry: LedgerEntry) {
        if let Some(m) = &self.metrics {
            // Client traffic only: shadow calls are in the ledger, reports and budgets.
            if !entry.experiment.as_deref().is_some_and(|x| x.shadow) {
                m.observe(&entry);
            }
        }
        if self.access_log {
            let r = entry.routing.as_deref();
            tracing::info!(
                target: "switchyard::access",
                request_id = %entry.request_id,
                key = entry.key_name.as_deref().unwrap_or("-"),
                endpoint = entry.endpoint,
                route = r.map_or("-", |r| r.route.as_str()),
                task = r.map_or("-", |r| r.task.as_str()),
                model = %entry.served_model,
                provider = %entry.provider,
                status = entry.status,
                latency_ms = (entry.latency_ms * 1000.0).round() / 1000.0,
                cost_usd = entry.cost_usd,
                estimated = entry.usage_estimated,
                attempt = entry.attempt,
                "request"
            );
        }
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.tx.send(entry) {
            // Only possible if the writer died: keep the row in the log rather than drop it silently.
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(request_id = %e.0.request_id, "ledger writer is gone; row not persisted: {:?}", e.0);
        }
    }

    /// Also feeds every recorded row to `metrics`, and with `access_log` to
    /// the log (one line per upstream attempt).
    pub fn with_observers(mut self, metrics: Arc<crate::metrics::Metrics>, access_log: bool) -> Self {
        self.metrics = Some(metrics);
        self.access_log = access_log;
        self
    }

    /// Whether the writer is alive.
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Rows queued but not yet written.
    pub fn depth(&self) -> u64 {
        let s = &self.stats;
        s.queued
            .load(Ordering::Relaxed)
            .saturating_sub(s.written.load(Ordering::Relaxed) + s.failed.load(Ordering::Relaxed))
    }

    pub fn stats(&self) -> &LedgerStats {
        &self.stats
    }
}

/// The background writer; await [`LedgerWriter::finish`] after every handle is dropped.
pub struct LedgerWriter {
    join: JoinHandle<()>,
}

impl LedgerWriter {
    /// Waits until the writer has drained the channel and exited.
    pub async fn finish(self) {
        if let Err(e) = self.join.await {
            tracing::error!("ledger writer ended abnormally: {e}");
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    key_name TEXT,
    endpoint TEXT NOT NULL,
    requested_model TEXT NOT NULL,
    served_model TEXT NOT NULL,
    provider TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    status INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    ttft_ms REAL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cached_tokens INTEGER,
    cache_write_tokens INTEGER,
    reasoning_tokens INTEGER,
    cost_usd REAL,
    usage_estimated INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    route TEXT,
    task TEXT,
    task_confidence REAL,
    complexity REAL,
    tier TEXT,
    route_reason TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    experiment TEXT,
    arm TEXT,
    shadow INTEGER NOT NULL DEFAULT 0,
    parent_request_id TEXT,
    output TEXT
);
CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts_ms);
CREATE INDEX IF NOT EXISTS ledger_request_id ON ledger (request_id);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    key_name TEXT,
    score REAL NOT NULL,
    comment TEXT
);
CREATE INDEX IF NOT EXISTS feedback_request_id ON feedback (request_id);
CREATE TABLE IF NOT EXISTS experiment_ramp (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    experiment TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    step INTEGER NOT NULL,
    share REAL NOT NULL,
    paused INTEGER NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL
);
";

/// Indexes on columns that older ledger files get by migration.
const MIGRATED_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS ledger_experiment ON ledger (experiment);
";

/// Opens (creating if needed) the SQLite ledger and starts its writer.
pub async fn open_sqlite(
    path: &Path,
    batch_size: usize,
    flush_interval: Duration,
) -> Result<(LedgerHandle, LedgerWriter), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    let mut conn = SqliteConnection::connect_with(&opts)
        .await
        .map_err(|e| format!("cannot open ledger {}: {e}", path.display()))?;
    sqlx::raw_sql(SCHEMA)
        .execute(&mut conn)
        .await
        .map_err(|e| format!("cannot create ledger schema in {}: {e}", path.display()))?;
    add_missing_columns(&mut conn)
        .await
        .map_err(|e| format!("cannot migrate ledger {}: {e}", path.display()))?;
    sqlx::raw_sql(MIGRATED_INDEXES)
        .execute(&mut conn)
        .await
        .map_err(|e| format!("cannot migrate ledger {}: {e}", path.display()))?;
    let (tx, rx) = mpsc::unbounded_channel();
    let stats = Arc::new(LedgerStats::default());
    let join = tokio::spawn(run_writer(conn, rx, batch_size, flush_interval, stats.clone()));
    Ok((
        LedgerHandle {
            tx,
            stats,
            metrics: None,
            access_log: false,
        },
        LedgerWriter { join },
    ))
}

/// Spend of one ledger row, as budgets need it at start.
#[derive(Debug, Clone)]
pub struct SpendRow {
    pub ts_ms: i64,
    pub key_name: Option<String>,
    pub route: Option<String>,
    pub cost_usd: f64,
    /// The experiment, for a shadow call (charged to its own scope, not the route's or key's).
    pub shadow_of: Option<String>,
}

/// Every priced row since `since_ms` (budget state is derived from these at start).
pub async fn spend_since(path: &Path, since_ms: i64) -> Result<Vec<SpendRow>, String> {
    use sqlx::Row;
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(Duration::from_secs(5));
    let mut conn = SqliteConnection::connect_with(&opts)
        .await
        .map_err(|e| format!("cannot read ledger {}: {e}", path.display()))?;
    let rows = sqlx::query(
        "SELECT ts_ms, key_name, route, cost_usd, CASE WHEN shadow = 1 THEN experiment END \
         FROM ledger WHERE ts_ms >= ? AND cost_usd IS NOT NULL",
    )
    .bind(since_ms)
    .fetch_all(&mut conn)
    .await
    .map_err(|e| format!("cannot read ledger {}: {e}", path.display()))?;
    Ok(rows
        .iter()
        .map(|r| SpendRow {
            ts_ms: r.get(0),
            key_name: r.get(1),
            route: r.get(2),
            cost_usd: r.get(3),
            shadow_of: r.get(4),
        })
        .collect())
}

/// Columns added after the first schema: (name, SQL type). Older ledger
/// files get them with ALTER TABLE at start.
const ADDED_COLUMNS: &[(&str, &str)] = &[
    ("route", "TEXT"),
    ("task", "TEXT"),
    ("task_confidence", "REAL"),
    ("complexity", "REAL"),
    ("tier", "TEXT"),
    ("route_reason", "TEXT"),
    ("attempt", "INTEGER NOT NULL DEFAULT 1"),
    ("experiment", "TEXT"),
    ("arm", "TEXT"),
    ("shadow", "INTEGER NOT NULL DEFAULT 0"),
    ("parent_request_id", "TEXT"),
    ("output", "TEXT"),
];

async fn add_missing_columns(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    use sqlx::Row;
    let rows = sqlx::query("PRAGMA table_info(ledger)")
        .fetch_all(&mut *conn)
        .await?;
    let have: Vec<String> = rows.iter().map(|r| r.get::<String, _>(1)).collect();
    for (name, ty) in ADDED_COLUMNS {
        if !have.iter().any(|h| h == name) {
            sqlx::raw_sql(&format!("ALTER TABLE ledger ADD COLUMN {name} {ty}"))
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

async fn run_writer(
    mut conn: SqliteConnection,
    mut rx: mpsc::UnboundedReceiver<LedgerEntry>,
    batch_size: usize,
    flush_interval: Duration,
    stats: Arc<LedgerStats>,
) {
    let mut batch = Vec::with_capacity(batch_size);
    // recv_many returns 0 only when the channel is closed and empty.
    while rx.recv_many(&mut batch, batch_size).await > 0 {
        // Let the batch fill for up to `flush_interval`: one transaction per
        // interval instead of one per request keeps the writer's CPU off the
        // request path under load. A closed channel ends the wait at once.
        let deadline = tokio::time::Instant::now() + flush_interval;
        while batch.len() < batch_size {
            let room = batch_size - batch.len();
            match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
        let mut attempt = 0u32;
        loop {
            match write_batch(&mut conn, &batch).await {
                Ok(()) => {
                    stats.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    break;
                }
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::warn!("ledger write failed (attempt {attempt}), retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
                Err(e) => {
                    stats.failed.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    tracing::error!("ledger write failed for {} rows: {e}", batch.len());
                    for row in &batch {
                        tracing::error!(request_id = %row.request_id, "unpersisted ledger row: {row:?}");
                    }
                    break;
                }
            }
        }
        batch.clear();
    }
    let _ = conn.close().await;
}

async fn write_batch(conn: &mut SqliteConnection, batch: &[LedgerEntry]) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    for chunk in batch.chunks(ROWS_PER_STATEMENT) {
        let mut qb = QueryBuilder::new(
            "INSERT INTO ledger (request_id, ts_ms, key_name, endpoint, requested_model, served_model, provider, \
             upstream_model, status, stream, latency_ms, ttft_ms, prompt_tokens, completion_tokens, cached_tokens, \
             cache_write_tokens, reasoning_tokens, cost_usd, usage_estimated, error, route, task, \
             task_confidence, complexity, tier, route_reason, attempt, experiment, arm, shadow, \
             parent_request_id, output) ",
        );
        qb.push_values(chunk, |mut b, e| {
            let u = e.usage;
            b.push_bind(&e.request_id)
                .push_bind(e.ts_ms)
                .push_bind(&e.key_name)
                .push_bind(e.endpoint)
                .push_bind(&e.requested_model)
                .push_bind(&*e.served_model)
                .push_bind(&*e.provider)
                .push_bind(&*e.upstream_model)
                .push_bind(e.status as i64)
                .push_bind(e.stream)
                .push_bind(e.latency_ms)
                .push_bind(e.ttft_ms)
                .push_bind(u.map(|u| u.prompt_tokens as i64))
                .push_bind(u.map(|u| u.completion_tokens as i64))
                .push_bind(u.map(|u| u.cached_tokens as i64))
                .push_bind(u.map(|u| u.cache_write_tokens as i64))
                .push_bind(u.map(|u| u.reasoning_tokens as i64))
                .push_bind(e.cost_usd)
                .push_bind(e.usage_estimated)
                .push_bind(&e.error);
            let r = e.routing.as_deref();
            b.push_bind(r.map(|r| r.route.as_str()))
                .push_bind(r.map(|r| r.task.as_str()))
                .push_bind(r.map(|r| r.confidence as f64))
                .push_bind(r.map(|r| r.complexity as f64))
                .push_bind(r.map(|r| r.tier.as_str()))
                .push_bind(r.map(|r| r.reason.as_str()))
                .push_bind(e.attempt as i64);
            let x = e.experiment.as_deref();
            b.push_bind(x.map(|x| &*x.name))
                .push_bind(x.map(|x| &*x.arm))
                .push_bind(x.is_some_and(|x| x.shadow))
                .push_bind(x.and_then(|x| x.parent_request_id.as_deref()))
                .push_bind(x.and_then(|x| x.output.as_deref()));
        });
        qb.build().execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// Default ledger path under a data directory.
pub fn default_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("ledger.sqlite")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: usize) -> LedgerEntry {
        LedgerEntry {
            request_id: format!("r{i}"),
            ts_ms: 1,
            key_name: None,
            endpoint: "chat",
            requested_model: "m".into(),
            served_model: Arc::from("m"),
            provider: Arc::from("p"),
            upstream_model: Arc::from("u"),
            status: 200,
            stream: false,
            latency_ms: 1.0,
            ttft_ms: None,
            usage: Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                ..Default::default()
            }),
            cost_usd: Some(0.5),
            usage_estimated: false,
            error: None,
            attempt: 1,
            routing: None,
            experiment: None,
        }
    }

    #[tokio::test]
    async fn all_rows_written_on_close() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("l.sqlite");
        let (h, w) = open_sqlite(&path, 64, Duration::from_millis(50))
            .await
            .expect("open");
        for i in 0..2_500 {
            h.record(entry(i));
        }
        drop(h);
        w.finish().await;
        let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&path))
            .await
            .expect("c");
        let (n, cost): (i64, f64) = sqlx::query_as("SELECT COUNT(*), SUM(cost_usd) FROM ledger")
            .fetch_one(&mut conn)
            .await
            .expect("q");
        assert_eq!(n, 2_500);
        assert!((cost - 1_250.0).abs() < 1e-9);
    }
}
