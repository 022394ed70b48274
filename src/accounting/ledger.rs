//! The ledger: one row per request that reached an upstream.
//!
//! Request handlers send a [`LedgerEntry`] down an unbounded channel (never
//! blocking, never touching disk on the request path); one background writer
//! drains the channel in batches, each batch one multi-row INSERT inside one
//! transaction. The writer exits only when every sender is gone and the
//! channel is empty, so a graceful shutdown loses nothing.
//!
//! A batch that cannot be written (the database is locked by another
//! process, the disk is full) is never dropped: it is retried with backoff,
//! and rows queue behind it in order, first in memory (up to
//! `max_pending_rows`), then appended to a spool file next to the ledger
//! (`<ledger>.spool`, JSON lines), which is replayed in order once writes
//! succeed again, or at the next start. Rows still unwritten at shutdown
//! go to the spool as well.
//!
//! Durability ([`Durability`]): `batch` (default) writes every
//! `flush_interval` or `batch_size` rows with `synchronous = NORMAL`, so a
//! SIGKILL loses the rows of at most the batch being collected (rows queued
//! in memory) and a power loss may lose the last commits; `sync` writes at
//! once with `synchronous = FULL` (group commit: whatever queued while the
//! previous commit ran goes in the next), and the server holds each response
//! until its rows are on disk ([`LedgerHandle::durable`]).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::api::usage::Usage;

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
    /// Served from the exact response cache: what the original call cost
    /// (columns `cache_hit = 1`, `saved_usd`); None for an upstream call.
    pub cache_saved_usd: Option<f64>,
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
            cache_saved_usd: None,
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

/// When a row counts as persisted (`[ledger] durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Batched writes every `flush_interval` (or `batch_size` rows); responses never wait.
    #[default]
    Batch,
    /// Group commit with fsync (`synchronous = FULL`); each response waits
    /// until its rows are on disk (in the database or the fsynced spool).
    Sync,
}

/// How the writer runs.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub durability: Durability,
    /// Rows kept in memory behind a failing write before they go to the spool file.
    pub max_pending_rows: usize,
    /// First retry delay after a failed write (doubling up to `retry_max`).
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// SQLite's busy timeout for the writer's connection.
    pub busy_timeout: Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            batch_size: 512,
            flush_interval: Duration::from_millis(100),
            durability: Durability::Batch,
            max_pending_rows: 10_000,
            retry_base: Duration::from_millis(50),
            retry_max: Duration::from_secs(2),
            busy_timeout: Duration::from_secs(1),
        }
    }
}

/// Cheap, cloneable sender side of the ledger.
#[derive(Clone)]
pub struct LedgerHandle {
    tx: mpsc::UnboundedSender<LedgerEntry>,
    stats: Arc<LedgerStats>,
    /// Rows of the channel's prefix that are durable (sync mode); None in batch mode.
    durable: Option<tokio::sync::watch::Receiver<u64>>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Log one `switchyard::access` line per row.
    access_log: bool,
}

/// Whether access lines go out as one preformatted message (see [`text_access_lines`]).
static TEXT_ACCESS_LINES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// With plain-text logs (no JSON, no colours) the access line is written by
/// [`access_line`] as the event's message: the same text the log formatter
/// writes for the structured fields, at a fraction of its cost (the
/// formatter's per-field `Debug` machinery was the most expensive part of a
/// request with the access log on). JSON logs keep the structured fields.
pub fn text_access_lines(on: bool) {
    TEXT_ACCESS_LINES.store(on, Ordering::Relaxed);
}

/// Where plain-text access lines are written directly (the log's own
/// background writer), bypassing the log formatter: see [`direct_access_lines`].
static ACCESS_WRITER: std::sync::OnceLock<tracing_appender::non_blocking::NonBlocking> =
    std::sync::OnceLock::new();

/// With plain-text logs, access lines are written straight to the log's
/// writer as the formatter would write them (`<RFC 3339 time, microseconds>
/// INFO switchyard::access: request ...`), still only when the log filter
/// lets `switchyard::access` info events through. The formatter scans every
/// message character by character for ANSI escapes and formats its
/// timestamp through `core::fmt`: about 15,000 instructions a line, most of
/// what the access log cost a request. Access lines hold no ANSI escapes
/// (every client-chosen text in them is quoted with `Debug` escaping).
pub fn direct_access_lines(writer: tracing_appender::non_blocking::NonBlocking) {
    let _ = ACCESS_WRITER.set(writer);
}

/// `ms` since the epoch as the log formatter writes times: `2026-12-04T21:49:15.051470Z`.
fn push_rfc3339_micros(s: &mut String, micros: i64) {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    for (v, n, sep) in [
        (y, 4, '-'),
        (m, 2, '-'),
        (d, 2, 'T'),
        (tod / 3_600, 2, ':'),
        (tod / 60 % 60, 2, ':'),
        (tod % 60, 2, '.'),
        (frac, 6, 'Z'),
    ] {
        for i in (0..n).rev() {
            s.push(char::from(b'0' + ((v / 10i64.pow(i)) % 10) as u8));
        }
        s.push(sep);
    }
}

/// Writes one access line directly (see [`direct_access_lines`]); false when
/// that is off, and the line goes through `tracing`.
fn write_access_line(entry: &LedgerEntry) -> bool {
    let Some(w) = ACCESS_WRITER.get() else {
        return false;
    };
    if !tracing::enabled!(target: "switchyard::access", tracing::Level::INFO) {
        return true;
    }
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64);
    let mut line = String::with_capacity(320);
    push_rfc3339_micros(&mut line, micros);
    line.push_str("  INFO switchyard::access: ");
    access_line_into(&mut line, entry);
    line.push('\n');
    let _ = std::io::Write::write_all(&mut w.clone(), line.as_bytes());
    true
}

/// The access line of a row as structured fields.
fn access_event(entry: &LedgerEntry) {
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

/// [`access_event`]'s fields as the text formatter writes them (strings
/// quoted as `Debug` quotes them, `%` fields as they are, numbers as `Debug`,
/// an absent cost left out), after the message `request`.
fn access_line(entry: &LedgerEntry) -> String {
    let mut s = String::with_capacity(256);
    access_line_into(&mut s, entry);
    s
}

/// [`access_line`], appended to `s`.
fn access_line_into(s: &mut String, entry: &LedgerEntry) {
    use std::fmt::Write as _;
    fn quoted(s: &mut String, v: &str) {
        if v.bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            s.push('"');
            s.push_str(v);
            s.push('"');
        } else {
            let _ = write!(s, "{v:?}");
        }
    }
    let r = entry.routing.as_deref();
    s.push_str("request request_id=");
    s.push_str(&entry.request_id);
    s.push_str(" key=");
    quoted(s, entry.key_name.as_deref().unwrap_or("-"));
    s.push_str(" endpoint=");
    quoted(s, entry.endpoint);
    s.push_str(" route=");
    quoted(s, r.map_or("-", |r| r.route.as_str()));
    s.push_str(" task=");
    quoted(s, r.map_or("-", |r| r.task.as_str()));
    s.push_str(" model=");
    s.push_str(&entry.served_model);
    s.push_str(" provider=");
    s.push_str(&entry.provider);
    // Integers and the flag pushed as digits; only the floats go through
    // `core::fmt` (`Debug`'s shortest round-trip form, as the formatter writes them).
    s.push_str(" status=");
    s.push_str(itoa::Buffer::new().format(entry.status));
    let _ = write!(
        s,
        " latency_ms={:?}",
        (entry.latency_ms * 1000.0).round() / 1000.0
    );
    if let Some(c) = entry.cost_usd {
        let _ = write!(s, " cost_usd={c:?}");
    }
    s.push_str(if entry.usage_estimated {
        " estimated=true attempt="
    } else {
        " estimated=false attempt="
    });
    s.push_str(itoa::Buffer::new().format(entry.attempt));
}

/// Counters shared between handles and the writer.
#[derive(Default)]
pub struct LedgerStats {
    pub queued: AtomicU64,
    pub written: AtomicU64,
    /// Rows that could be neither written nor spooled (they are logged in full).
    pub failed: AtomicU64,
    /// Rows waiting behind a failing write, in memory or in the spool file.
    pub pending: AtomicU64,
    /// Rows ever appended to the spool file.
    pub spooled: AtomicU64,
    /// Failed write attempts (each retried).
    pub retries: AtomicU64,
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
            if TEXT_ACCESS_LINES.load(Ordering::Relaxed) {
                // Written directly (or filtered out) when the log's writer is known.
                if !write_access_line(&entry) {
                    let line = access_line(&entry);
                    tracing::info!(target: "switchyard::access", "{line}");
                }
            } else {
                access_event(&entry);
            }
        }
        // Counted before it is sent: a row's position in the channel is then
        // never beyond the count a later `durable()` reads (see there).
        self.stats.queued.fetch_add(1, Ordering::SeqCst);
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

    /// In `sync` durability: waits until every row queued so far (this
    /// request's included) is on disk. Returns at once in `batch` mode, or
    /// if the writer is gone.
    pub async fn durable(&self) {
        let Some(rx) = &self.durable else { return };
        let target = self.stats.queued.load(Ordering::SeqCst);
        let mut rx = rx.clone();
        let _ = rx.wait_for(|d| *d >= target).await;
    }

    /// Whether responses wait for their rows (`durability = "sync"`).
    pub fn is_sync(&self) -> bool {
        self.durable.is_some()
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
    output TEXT,
    cache_hit INTEGER NOT NULL DEFAULT 0,
    saved_usd REAL
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

/// Indexes on columns that older ledger files get by migration. The
/// experiment index holds only rows in an experiment (`experiment = ?`, the
/// report's filter, implies `IS NOT NULL`, so SQLite still uses it): every
/// other row skips a B-tree insert of a NULL key (report queries measured in
/// bench/RESULTS.md, 2026-12-07). Files from before it have the full index
/// `ledger_experiment`, replaced once here.
const MIGRATED_INDEXES: &str = "
DROP INDEX IF EXISTS ledger_experiment;
CREATE INDEX IF NOT EXISTS ledger_experiment_set ON ledger (experiment) WHERE experiment IS NOT NULL;
";

/// Opens (creating if needed) the SQLite ledger and starts its writer.
pub async fn open_sqlite(
    path: &Path,
    batch_size: usize,
    flush_interval: Duration,
) -> Result<(LedgerHandle, LedgerWriter), String> {
    open_sqlite_with(
        path,
        WriterOptions {
            batch_size,
            flush_interval,
            ..Default::default()
        },
    )
    .await
}

/// The spool file of a ledger: rows waiting for the database, one JSON object a line.
pub fn spool_path(ledger: &Path) -> std::path::PathBuf {
    let mut p = ledger.as_os_str().to_owned();
    p.push(".spool");
    std::path::PathBuf::from(p)
}

/// [`open_sqlite`] with every writer option. Rows left in the spool file by
/// an earlier run are written first (or stay queued, if the database is
/// not writable yet).
pub async fn open_sqlite_with(
    path: &Path,
    opts: WriterOptions,
) -> Result<(LedgerHandle, LedgerWriter), String> {
    let conn = prepare_sqlite(path, &opts).await?;
    let _ = conn.close().await;
    let writer =
        SqliteWriter::open(path, &opts).map_err(|e| format!("cannot open ledger {}: {e}", path.display()))?;
    start_writer(WriterDb::Sqlite(writer), spool_path(path), opts).await
}

/// Creates (or migrates) the SQLite file without starting a writer: with a
/// PostgreSQL ledger the local file still holds the experiment ramp log,
/// feedback and stored responses.
pub async fn init_sqlite(path: &Path) -> Result<(), String> {
    let conn = prepare_sqlite(path, &WriterOptions::default()).await?;
    let _ = conn.close().await;
    Ok(())
}

/// Opens the SQLite file, creating the schema and adding missing columns.
async fn prepare_sqlite(path: &Path, opts: &WriterOptions) -> Result<SqliteConnection, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let sync = if opts.durability == Durability::Sync {
        SqliteSynchronous::Full
    } else {
        SqliteSynchronous::Normal
    };
    let connect = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sync)
        .busy_timeout(Duration::from_secs(5));
    let mut conn = SqliteConnection::connect_with(&connect)
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
    // The key table lives in this file too; created here, before the writer
    // prepares its INSERTs, so that the gateway's start (which opens the key
    // store after the ledger) changes no schema under them: on a new file that
    // expired all six, and each was prepared again at its first use, on a
    // request's row (1.2M instructions for two of them in one 300-request
    // count; bench/RESULTS.md, 2026-12-07 evening).
    sqlx::raw_sql(crate::auth::keys::SCHEMA)
        .execute(&mut conn)
        .await
        .map_err(|e| format!("cannot create the key table in {}: {e}", path.display()))?;
    // From here on the writer handles a busy database itself (retry, spool).
    sqlx::raw_sql(&format!(
        "PRAGMA busy_timeout = {}",
        opts.busy_timeout.as_millis()
    ))
    .execute(&mut conn)
    .await
    .map_err(|e| format!("cannot configure ledger {}: {e}", path.display()))?;
    Ok(conn)
}

/// Starts the background writer on an open database.
async fn start_writer(
    conn: WriterDb,
    spool: std::path::PathBuf,
    opts: WriterOptions,
) -> Result<(LedgerHandle, LedgerWriter), String> {
    let (tx, rx) = mpsc::unbounded_channel();
    let stats = Arc::new(LedgerStats::default());
    let (durable_tx, durable_rx) = tokio::sync::watch::channel(0u64);
    let mut w = Writer {
        conn,
        rx,
        backlog: std::collections::VecDeque::new(),
        spool: Spool::new(spool),
        stats: stats.clone(),
        received: 0,
        durable_tx,
        failing_since: None,
        opts: opts.clone(),
    };
    w.replay_leftover_spool().await;
    let join = tokio::spawn(w.run());
    Ok((
        LedgerHandle {
            tx,
            stats,
            durable: (opts.durability == Durability::Sync).then_some(durable_rx),
            metrics: None,
            access_log: false,
        },
        LedgerWriter { join },
    ))
}

/// The PostgreSQL ledger schema: the SQLite columns with PostgreSQL types
/// (flags stay integers 0/1 so the same SQL reads both), plus a unique index
/// on a row's identity that makes spool replay idempotent. The identity is
/// (request_id, attempt, ts_ms, status, latency_ms), the same the SQLite
/// replay checks: `request_id` alone may come from the client's
/// `x-request-id`, and two client requests reusing one must both be kept.
pub const PG_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id TEXT NOT NULL,
    ts_ms BIGINT NOT NULL,
    key_name TEXT,
    endpoint TEXT NOT NULL,
    requested_model TEXT NOT NULL,
    served_model TEXT NOT NULL,
    provider TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    status INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL,
    ttft_ms DOUBLE PRECISION,
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    cached_tokens BIGINT,
    cache_write_tokens BIGINT,
    reasoning_tokens BIGINT,
    cost_usd DOUBLE PRECISION,
    usage_estimated INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    route TEXT,
    task TEXT,
    task_confidence DOUBLE PRECISION,
    complexity DOUBLE PRECISION,
    tier TEXT,
    route_reason TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    experiment TEXT,
    arm TEXT,
    shadow INTEGER NOT NULL DEFAULT 0,
    parent_request_id TEXT,
    output TEXT,
    cache_hit INTEGER NOT NULL DEFAULT 0,
    saved_usd DOUBLE PRECISION
);
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS cache_hit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ledger ADD COLUMN IF NOT EXISTS saved_usd DOUBLE PRECISION;
CREATE UNIQUE INDEX IF NOT EXISTS ledger_row_identity ON ledger (request_id, attempt, ts_ms, status, latency_ms);
CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts_ms);
CREATE INDEX IF NOT EXISTS ledger_key_ts ON ledger (key_name, ts_ms);
CREATE INDEX IF NOT EXISTS ledger_experiment ON ledger (experiment);
";

/// A pool on a PostgreSQL ledger URL (at most `max` connections), with the
/// schema created if missing.
pub async fn pg_pool(url: &str, max: u32) -> Result<sqlx::PgPool, String> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(max.max(1))
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        // The URL may hold a password: never in the message.
        .map_err(|e| format!("cannot connect to the PostgreSQL ledger: {}", redact_pg(&e)))?;
    sqlx::raw_sql(PG_SCHEMA)
        .execute(&pool)
        .await
        .map_err(|e| format!("cannot create the PostgreSQL ledger schema: {}", redact_pg(&e)))?;
    Ok(pool)
}

/// A sqlx error for a message: sqlx's texts carry no URL, only the kind.
fn redact_pg(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Configuration(_) => "invalid URL".into(),
        other => other.to_string(),
    }
}

/// Opens the PostgreSQL ledger (creating its tables) and starts its writer.
/// Rows the database cannot take are kept in memory, then in `spool`
/// (JSON lines), and replayed in order when it is back.
/// `pool` comes from [`pg_pool`] (schema in place).
pub async fn open_postgres_with(
    pool: sqlx::PgPool,
    spool: &Path,
    opts: WriterOptions,
) -> Result<(LedgerHandle, LedgerWriter), String> {
    if let Some(dir) = spool.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    start_writer(WriterDb::Pg(pool), spool.to_path_buf(), opts).await
}

/// The writer's database.
enum WriterDb {
    Sqlite(SqliteWriter),
    Pg(sqlx::PgPool),
}

/// Why a batch was not written (SQLite, PostgreSQL or the spool file).
type WriteError = Box<dyn std::error::Error + Send + Sync>;

impl WriterDb {
    /// Writes `rows` in one transaction and hands them back (a failed batch
    /// is kept and retried by the caller).
    async fn write(&mut self, rows: Vec<LedgerEntry>) -> (Vec<LedgerEntry>, Result<(), WriteError>) {
        if rows.is_empty() {
            return (rows, Ok(()));
        }
        match self {
            WriterDb::Sqlite(w) => w.write(rows).await,
            WriterDb::Pg(p) => {
                let r = write_batch_pg(p, &rows).await.map_err(WriteError::from);
                (rows, r)
            }
        }
    }

    /// `rows` without those already in the ledger (a spool replay after a
    /// run that wrote some of them before it stopped). PostgreSQL skips
    /// them itself: its unique row-identity index and ON CONFLICT DO NOTHING.
    async fn unseen(&mut self, rows: Vec<LedgerEntry>) -> Vec<LedgerEntry> {
        match self {
            WriterDb::Sqlite(w) => w.unseen(rows).await,
            WriterDb::Pg(_) => rows,
        }
    }

    async fn close(self) {
        match self {
            WriterDb::Sqlite(w) => {
                let conn = w.conn;
                let _ = tokio::task::spawn_blocking(move || drop(conn)).await;
            }
            WriterDb::Pg(p) => p.close().await,
        }
    }
}

/// The SQLite ledger's writing connection. Rows are bound straight into
/// prepared statements on a blocking thread, one thread hop per batch (see
/// [`RawInsert`] for why not through sqlx or rusqlite's statements). sqlx
/// still opens the file first (schema, migrations) and serves every read.
struct SqliteWriter {
    /// Locked only by the blocking closure of the one write in progress.
    conn: Arc<std::sync::Mutex<LedgerDb>>,
}

/// The writer's connection and its prepared INSERTs.
struct LedgerDb {
    /// The INSERT of `2^i` rows at `i`, prepared at open. Declared
    /// before `conn`: statements are finalized before the connection closes.
    inserts: [Option<RawInsert>; SQLITE_SIZES],
    conn: rusqlite::Connection,
}

impl SqliteWriter {
    fn open(path: &Path, opts: &WriterOptions) -> rusqlite::Result<SqliteWriter> {
        let conn = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // The journal mode (WAL) is the file's own, set when sqlx created it.
        let sync = if opts.durability == Durability::Sync {
            "FULL"
        } else {
            "NORMAL"
        };
        conn.pragma_update(None, "synchronous", sync)?;
        // A busy database is the writer's to handle (retry with backoff, spool).
        conn.busy_timeout(opts.busy_timeout)?;
        let mut db = LedgerDb {
            inserts: Default::default(),
            conn,
        };
        // All six now: preparing the 32-row text costs more than writing its rows.
        for i in 0..SQLITE_SIZES {
            db.insert(i)?;
        }
        Ok(SqliteWriter {
            conn: Arc::new(std::sync::Mutex::new(db)),
        })
    }

    /// Runs `f` on the connection on a blocking thread. The rows go in an
    /// `Arc` and come back whatever happens there (a panic included), so a
    /// failed batch is never lost.
    async fn blocking<T, F>(&self, rows: Vec<LedgerEntry>, f: F) -> (Vec<LedgerEntry>, Result<T, WriteError>)
    where
        T: Send + 'static,
        F: FnOnce(&mut LedgerDb, &[LedgerEntry]) -> rusqlite::Result<T> + Send + 'static,
    {
        let rows = Arc::new(rows);
        let (conn, shared) = (self.conn.clone(), rows.clone());
        let r = tokio::task::spawn_blocking(move || {
            // A panic in an earlier write leaves the lock poisoned, not the connection unusable.
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c, &shared)
        })
        .await;
        // The closure (and its clone of the Arc) is gone once the join completes.
        let rows = Arc::try_unwrap(rows).unwrap_or_else(|a| a.as_ref().clone());
        let r = match r {
            Ok(r) => r.map_err(WriteError::from),
            Err(e) => Err(WriteError::from(format!("ledger write did not complete: {e}"))),
        };
        (rows, r)
    }

    async fn write(&mut self, rows: Vec<LedgerEntry>) -> (Vec<LedgerEntry>, Result<(), WriteError>) {
        self.blocking(rows, write_rows_sqlite).await
    }

    async fn unseen(&mut self, rows: Vec<LedgerEntry>) -> Vec<LedgerEntry> {
        let (rows, seen) = self
            .blocking(rows, |db, rows| {
                let mut st = db.conn.prepare_cached(
                    "SELECT 1 FROM ledger WHERE request_id = ? AND attempt = ? AND ts_ms = ? AND status = ? AND latency_ms = ? LIMIT 1",
                )?;
                // A row whose check fails is written again rather than lost.
                Ok(rows
                    .iter()
                    .map(|r| {
                        st.exists(rusqlite::params![
                            r.request_id,
                            r.attempt as i64,
                            r.ts_ms,
                            r.status as i64,
                            r.latency_ms
                        ])
                        .unwrap_or(false)
                    })
                    .collect::<Vec<bool>>())
            })
            .await;
        match seen {
            Ok(seen) => rows
                .into_iter()
                .zip(seen)
                .filter_map(|(r, seen)| (!seen).then_some(r))
                .collect(),
            Err(_) => rows,
        }
    }
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
    ("cache_hit", "INTEGER NOT NULL DEFAULT 0"),
    ("saved_usd", "REAL"),
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

/// An experiment tag in the spool: name, arm, shadow, parent_request_id, output.
type SpoolExperiment = (String, String, bool, Option<String>, Option<String>);

/// A row as the spool file keeps it (one JSON object a line).
#[derive(serde::Serialize, serde::Deserialize)]
struct SpoolRow {
    request_id: String,
    ts_ms: i64,
    key_name: Option<String>,
    endpoint: String,
    requested_model: String,
    served_model: String,
    provider: String,
    upstream_model: String,
    status: u16,
    stream: bool,
    latency_ms: f64,
    ttft_ms: Option<f64>,
    /// prompt, completion, cached, cache_write, reasoning.
    usage: Option<[u64; 5]>,
    cost_usd: Option<f64>,
    usage_estimated: bool,
    error: Option<String>,
    attempt: u32,
    /// route, task, confidence, complexity, tier, reason.
    routing: Option<(String, String, f32, f32, String, String)>,
    /// name, arm, shadow, parent_request_id, output.
    experiment: Option<SpoolExperiment>,
    /// Response-cache hit: the saving.
    #[serde(default)]
    cache_saved_usd: Option<f64>,
}

impl SpoolRow {
    fn from_entry(e: &LedgerEntry) -> SpoolRow {
        SpoolRow {
            request_id: e.request_id.clone(),
            ts_ms: e.ts_ms,
            key_name: e.key_name.clone(),
            endpoint: e.endpoint.to_string(),
            requested_model: e.requested_model.clone(),
            served_model: e.served_model.to_string(),
            provider: e.provider.to_string(),
            upstream_model: e.upstream_model.to_string(),
            status: e.status,
            stream: e.stream,
            latency_ms: e.latency_ms,
            ttft_ms: e.ttft_ms,
            usage: e.usage.map(|u| {
                [
                    u.prompt_tokens,
                    u.completion_tokens,
                    u.cached_tokens,
                    u.cache_write_tokens,
                    u.reasoning_tokens,
                ]
            }),
            cost_usd: e.cost_usd,
            usage_estimated: e.usage_estimated,
            error: e.error.clone(),
            attempt: e.attempt,
            routing: e.routing.as_deref().map(|r| {
                (
                    r.route.clone(),
                    r.task.clone(),
                    r.confidence,
                    r.complexity,
                    r.tier.clone(),
                    r.reason.clone(),
                )
            }),
            experiment: e.experiment.as_deref().map(|x| {
                (
                    x.name.to_string(),
                    x.arm.to_string(),
                    x.shadow,
                    x.parent_request_id.clone(),
                    x.output.clone(),
                )
            }),
            cache_saved_usd: e.cache_saved_usd,
        }
    }

    fn into_entry(self) -> LedgerEntry {
        LedgerEntry {
            request_id: self.request_id,
            ts_ms: self.ts_ms,
            key_name: self.key_name,
            endpoint: intern(self.endpoint),
            requested_model: self.requested_model,
            served_model: Arc::from(self.served_model),
            provider: Arc::from(self.provider),
            upstream_model: Arc::from(self.upstream_model),
            status: self.status,
            stream: self.stream,
            latency_ms: self.latency_ms,
            ttft_ms: self.ttft_ms,
            usage: self.usage.map(|u| Usage {
                prompt_tokens: u[0],
                completion_tokens: u[1],
                cached_tokens: u[2],
                cache_write_tokens: u[3],
                reasoning_tokens: u[4],
            }),
            cost_usd: self.cost_usd,
            usage_estimated: self.usage_estimated,
            error: self.error,
            attempt: self.attempt,
            routing: self
                .routing
                .map(|(route, task, confidence, complexity, tier, reason)| {
                    Box::new(RoutingRecord {
                        route,
                        task,
                        confidence,
                        complexity,
                        tier,
                        reason,
                    })
                }),
            experiment: self.experiment.map(|(name, arm, shadow, parent, output)| {
                Box::new(ExperimentTag {
                    name: Arc::from(name),
                    arm: Arc::from(arm),
                    shadow,
                    parent_request_id: parent,
                    output,
                })
            }),
            cache_saved_usd: self.cache_saved_usd,
        }
    }
}

/// The `&'static str` of an endpoint name read back from the spool: the
/// known names, else leaked once per distinct name (a handful at most).
fn intern(name: String) -> &'static str {
    static NAMES: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(n) = names.iter().find(|n| **n == name) {
        return n;
    }
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    names.push(leaked);
    leaked
}

/// The spool file: appended behind a failing write, read back in order.
struct Spool {
    path: std::path::PathBuf,
    /// Bytes of the file already read back into memory.
    read_pos: u64,
    /// Whether the file holds rows not yet read back.
    active: bool,
}

impl Spool {
    fn new(path: std::path::PathBuf) -> Spool {
        let active = std::fs::metadata(&path).is_ok_and(|m| m.len() > 0);
        Spool {
            path,
            read_pos: 0,
            active,
        }
    }

    /// Appends rows (fsynced when `sync`), off the async threads.
    async fn append(&mut self, rows: &[LedgerEntry], sync: bool) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(rows.len() * 256);
        for r in rows {
            serde_json::to_writer(&mut buf, &SpoolRow::from_entry(r)).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            f.write_all(&buf)?;
            if sync {
                f.sync_data()?;
            }
            Ok::<(), std::io::Error>(())
        })
        .await
        .map_err(std::io::Error::other)??;
        self.active = true;
        Ok(())
    }

    /// Up to `max` rows from where reading stopped. Lines that do not parse
    /// (a torn last line after a crash) are counted and skipped.
    async fn read_chunk(&mut self, max: usize) -> std::io::Result<(Vec<LedgerEntry>, u64)> {
        let (path, pos) = (self.path.clone(), self.read_pos);
        let (rows, bad, new_pos, at_end) = tokio::task::spawn_blocking(move || {
            use std::io::{BufRead, Seek};
            let f = std::fs::File::open(&path)?;
            let len = f.metadata()?.len();
            let mut r = std::io::BufReader::new(f);
            r.seek(std::io::SeekFrom::Start(pos))?;
            let (mut rows, mut bad, mut at) = (Vec::new(), 0u64, pos);
            let mut line = Vec::new();
            while rows.len() < max {
                line.clear();
                let n = r.read_until(b'\n', &mut line)?;
                if n == 0 {
                    break;
                }
                at += n as u64;
                match serde_json::from_slice::<SpoolRow>(&line) {
                    Ok(row) => rows.push(row.into_entry()),
                    Err(_) => bad += 1,
                }
            }
            Ok::<_, std::io::Error>((rows, bad, at, at >= len))
        })
        .await
        .map_err(std::io::Error::other)??;
        self.read_pos = new_pos;
        if at_end {
            self.active = false;
        }
        Ok((rows, bad))
    }

    /// Removes the file once everything in it is in the database.
    async fn clear(&mut self) {
        let (path, pos) = (self.path.clone(), self.read_pos);
        let _ = tokio::task::spawn_blocking(move || {
            if std::fs::metadata(&path).is_ok_and(|m| m.len() <= pos) {
                let _ = std::fs::remove_file(&path);
            }
        })
        .await;
        self.read_pos = 0;
    }

    /// Puts `rows` (older than anything in the file) in front of the unread
    /// part of the file, fsynced: what shutdown does with rows it could not write.
    async fn prepend(&mut self, rows: &[LedgerEntry]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(rows.len() * 256);
        for r in rows {
            serde_json::to_writer(&mut buf, &SpoolRow::from_entry(r)).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        let (path, pos) = (self.path.clone(), self.read_pos);
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Seek, Write};
            let mut rest = Vec::new();
            if let Ok(mut f) = std::fs::File::open(&path) {
                f.seek(std::io::SeekFrom::Start(pos))?;
                f.read_to_end(&mut rest)?;
            }
            let mut tmp_path = path.as_os_str().to_owned();
            tmp_path.push(".tmp");
            let mut f = std::fs::File::create(&tmp_path)?;
            f.write_all(&buf)?;
            f.write_all(&rest)?;
            f.sync_all()?;
            std::fs::rename(&tmp_path, &path)
        })
        .await
        .map_err(std::io::Error::other)??;
        self.read_pos = 0;
        self.active = true;
        Ok(())
    }
}

/// The background writer's state.
struct Writer {
    conn: WriterDb,
    rx: mpsc::UnboundedReceiver<LedgerEntry>,
    /// Rows behind a failing write, oldest first, each with its channel
    /// position if it is not on disk anywhere yet (sync mode's watermark).
    backlog: std::collections::VecDeque<(LedgerEntry, Option<u64>)>,
    spool: Spool,
    stats: Arc<LedgerStats>,
    /// Rows taken from the channel so far.
    received: u64,
    durable_tx: tokio::sync::watch::Sender<u64>,
    /// When writes started failing (None: they succeed).
    failing_since: Option<std::time::Instant>,
    opts: WriterOptions,
}

impl Writer {
    fn sync(&self) -> bool {
        self.opts.durability == Durability::Sync
    }

    /// Publishes how much of the channel's prefix is on disk.
    fn publish_durable(&self) {
        let mark = self
            .backlog
            .iter()
            .find_map(|(_, seq)| *seq)
            .map_or(self.received, |s| s.saturating_sub(1));
        self.durable_tx.send_replace(mark);
    }

    fn write_failed(&mut self, e: &WriteError, rows: usize) {
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        match self.failing_since {
            None => {
                self.failing_since = Some(std::time::Instant::now());
                tracing::warn!(
                    rows,
                    "ledger write failed, keeping the rows and retrying with backoff: {e}"
                );
            }
            Some(t) => tracing::warn!(
                pending = self.stats.pending.load(Ordering::Relaxed),
                spooled = self.stats.spooled.load(Ordering::Relaxed),
                failing_for_ms = t.elapsed().as_millis() as u64,
                "ledger write still failing, rows kept: {e}"
            ),
        }
    }

    fn recovered(&mut self) {
        if let Some(t) = self.failing_since.take() {
            tracing::info!(
                failing_for_ms = t.elapsed().as_millis() as u64,
                "ledger writes succeed again; every kept row is written"
            );
        }
    }

    /// Queues fresh rows (channel positions `first..`) behind the failing
    /// head: in memory up to the bound (none in sync mode), else the spool.
    async fn enqueue(&mut self, rows: Vec<LedgerEntry>, first: u64) {
        if rows.is_empty() {
            return;
        }
        let to_spool =
            self.spool.active || self.sync() || self.backlog.len() + rows.len() > self.opts.max_pending_rows;
        if to_spool {
            let sync = self.sync();
            match self.spool.append(&rows, sync).await {
                Ok(()) => {
                    self.stats.spooled.fetch_add(rows.len() as u64, Ordering::Relaxed);
                    self.stats.pending.fetch_add(rows.len() as u64, Ordering::Relaxed);
                    return;
                }
                Err(e) => tracing::error!(
                    path = %self.spool.path.display(),
                    "cannot spool {} ledger rows, keeping them in memory: {e}",
                    rows.len()
                ),
            }
        }
        self.stats.pending.fetch_add(rows.len() as u64, Ordering::Relaxed);
        for (i, r) in rows.into_iter().enumerate() {
            self.backlog.push_back((r, Some(first + i as u64 + 1)));
        }
    }

    /// Moves what the channel holds now behind the head (never waits).
    async fn drain_channel(&mut self) {
        let mut fresh = Vec::new();
        while let Ok(e) = self.rx.try_recv() {
            fresh.push(e);
            if fresh.len() >= self.opts.batch_size.max(1024) {
                let first = self.received;
                self.received += fresh.len() as u64;
                self.enqueue(std::mem::take(&mut fresh), first).await;
            }
        }
        let first = self.received;
        self.received += fresh.len() as u64;
        self.enqueue(fresh, first).await;
    }

    /// Writes the oldest kept rows; Ok(true) when nothing is kept any more.
    async fn write_head(&mut self) -> Result<bool, WriteError> {
        if self.backlog.is_empty() && self.spool.active {
            match self.spool.read_chunk(self.opts.batch_size.max(1)).await {
                Ok((rows, bad)) => {
                    if bad > 0 {
                        self.stats.failed.fetch_add(bad, Ordering::Relaxed);
                        tracing::error!(bad, "unreadable lines in the ledger spool were skipped");
                        self.stats.pending.fetch_sub(
                            bad.min(self.stats.pending.load(Ordering::Relaxed)),
                            Ordering::Relaxed,
                        );
                    }
                    self.backlog.extend(rows.into_iter().map(|r| (r, None)));
                }
                Err(e) => {
                    tracing::error!(path = %self.spool.path.display(), "cannot read the ledger spool: {e}");
                    return Err(e.into());
                }
            }
        }
        let n = self.backlog.len().min(self.opts.batch_size.max(1));
        if n > 0 {
            let head: Vec<LedgerEntry> = self.backlog.iter().take(n).map(|(e, _)| e.clone()).collect();
            self.conn.write(head).await.1?;
            self.backlog.drain(..n);
            self.stats.written.fetch_add(n as u64, Ordering::Relaxed);
            let p = self.stats.pending.load(Ordering::Relaxed);
            self.stats
                .pending
                .store(p.saturating_sub(n as u64), Ordering::Relaxed);
        }
        if self.backlog.is_empty() && !self.spool.active {
            self.spool.clear().await;
            return Ok(true);
        }
        Ok(false)
    }

    /// Rows an earlier run left in the spool: written now, before anything
    /// reads the ledger (budgets are rebuilt from it), skipping rows the
    /// earlier run did write before it stopped.
    async fn replay_leftover_spool(&mut self) {
        if !self.spool.active {
            return;
        }
        let mut replayed = 0usize;
        while self.spool.active {
            let rows = match self.spool.read_chunk(self.opts.batch_size.max(1)).await {
                Ok((rows, _)) => rows,
                Err(e) => {
                    tracing::error!("cannot read the ledger spool: {e}");
                    return;
                }
            };
            let fresh = self.conn.unseen(rows).await;
            let (fresh, written) = self.conn.write(fresh).await;
            if let Err(e) = written {
                // Not writable yet: the writer keeps them queued and retries.
                tracing::warn!("ledger spool replay deferred: {e}");
                self.stats
                    .pending
                    .fetch_add(fresh.len() as u64, Ordering::Relaxed);
                self.backlog.extend(fresh.into_iter().map(|r| (r, None)));
                self.failing_since = Some(std::time::Instant::now());
                return;
            }
            // Not counted in `written`: these were queued by an earlier run.
            replayed += fresh.len();
        }
        self.spool.clear().await;
        tracing::info!(
            rows = replayed,
            "ledger rows replayed from the spool of an earlier run"
        );
    }

    async fn run(mut self) {
        let batch_size = self.opts.batch_size.max(1);
        let mut batch = Vec::with_capacity(batch_size);
        let mut delay = self.opts.retry_base;
        let mut closing_tries = 0u32;
        loop {
            if self.backlog.is_empty() && !self.spool.active {
                // The common case: nothing kept, wait for rows.
                // recv_many returns 0 only when the channel is closed and empty.
                if self.rx.recv_many(&mut batch, batch_size).await == 0 {
                    break;
                }
                if self.sync() {
                    // Group commit: whatever queued meanwhile goes in this transaction.
                    while batch.len() < batch_size {
                        match self.rx.try_recv() {
                            Ok(e) => batch.push(e),
                            Err(_) => break,
                        }
                    }
                } else {
                    // Let the batch fill for up to `flush_interval`: one
                    // transaction per interval instead of one per request keeps
                    // the writer's CPU off the request path under load. A
                    // closed channel ends the wait at once.
                    let deadline = tokio::time::Instant::now() + self.opts.flush_interval;
                    while batch.len() < batch_size {
                        let room = batch_size - batch.len();
                        match tokio::time::timeout_at(deadline, self.rx.recv_many(&mut batch, room)).await {
                            Ok(n) if n > 0 => continue,
                            _ => break,
                        }
                    }
                }
                let first = self.received;
                self.received += batch.len() as u64;
                let (rows, written) = self.conn.write(std::mem::take(&mut batch)).await;
                batch = rows;
                match written {
                    Ok(()) => {
                        self.stats
                            .written
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                        batch.clear();
                        self.publish_durable();
                    }
                    Err(e) => {
                        self.write_failed(&e, batch.len());
                        self.enqueue(std::mem::take(&mut batch), first).await;
                        self.publish_durable();
                        delay = self.opts.retry_base;
                        tokio::time::sleep(delay).await;
                    }
                }
                continue;
            }
            // Behind a failed write: take in what arrived, retry the oldest.
            self.drain_channel().await;
            self.publish_durable();
            let closed = self.rx.is_closed() && self.rx.is_empty();
            match self.write_head().await {
                Ok(done) => {
                    delay = self.opts.retry_base;
                    if done {
                        self.recovered();
                    }
                    self.publish_durable();
                }
                Err(e) => {
                    let kept = self.backlog.len();
                    self.write_failed(&e, kept);
                    if closed {
                        closing_tries += 1;
                        if closing_tries >= 3 {
                            self.spool_backlog_at_exit().await;
                            break;
                        }
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.opts.retry_max);
                }
            }
        }
        self.conn.close().await;
    }

    /// At shutdown with the database still failing: the kept rows go to the
    /// spool (in order, fsynced) for the next start to replay.
    async fn spool_backlog_at_exit(&mut self) {
        let rows: Vec<LedgerEntry> = self.backlog.drain(..).map(|(e, _)| e).collect();
        match self.spool.prepend(&rows).await {
            Ok(()) => {
                self.stats.spooled.fetch_add(rows.len() as u64, Ordering::Relaxed);
                tracing::error!(
                    rows = rows.len(),
                    path = %self.spool.path.display(),
                    "ledger not writable at shutdown: rows kept in the spool, replayed at the next start"
                );
            }
            Err(e) => {
                self.stats.failed.fetch_add(rows.len() as u64, Ordering::Relaxed);
                tracing::error!("ledger not writable and spool failed at shutdown: {e}");
                for row in &rows {
                    tracing::error!(request_id = %row.request_id, "unpersisted ledger row: {row:?}");
                }
            }
        }
    }
}

/// The INSERT both ledger writers start from; the values follow in this order.
const INSERT_ROWS: &str = "INSERT INTO ledger (request_id, ts_ms, key_name, endpoint, requested_model, served_model, \
     provider, upstream_model, status, stream, latency_ms, ttft_ms, prompt_tokens, completion_tokens, cached_tokens, \
     cache_write_tokens, reasoning_tokens, cost_usd, usage_estimated, error, route, task, task_confidence, \
     complexity, tier, route_reason, attempt, experiment, arm, shadow, parent_request_id, output, cache_hit, \
     saved_usd) ";

/// Rows per SQLite INSERT statement, at most (34 columns: 1,088 parameters,
/// well under SQLite's limit of 32,766).
const SQLITE_ROWS_PER_STATEMENT: usize = 32;

/// The SQLite INSERT of `2^i` rows (`i` < 6): `INSERT_ROWS` with a
/// `VALUES (?, ...)` group per row. The six texts never change, so SQLite
/// parses and plans each once (sqlx keeps the prepared statements; parsing
/// costs more than writing the rows). A batch is written as 32-row statements
/// and one statement per set bit of the rest (13 rows: 8 + 4 + 1), so the
/// per-statement work (a round trip to sqlx's SQLite thread, a statement
/// lookup, a reset) is paid once per up to 32 rows instead of once per row.
fn insert_sqlite(i: usize) -> &'static str {
    static SQL: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        let columns = INSERT_ROWS.matches(',').count() + 1;
        debug_assert_eq!(columns, LEDGER_COLUMNS);
        let mut group = String::from("(?");
        group.push_str(&",?".repeat(columns - 1));
        group.push(')');
        (0..SQLITE_SIZES)
            .map(|i| 1usize << i)
            .map(|n| {
                let mut sql = String::from(INSERT_ROWS);
                sql.push_str("VALUES ");
                for i in 0..n {
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&group);
                }
                sql
            })
            .collect()
    });
    &SQL[i.min(SQLITE_SIZES - 1)]
}

/// Statement sizes: 1, 2, 4, 8, 16 and 32 rows.
const SQLITE_SIZES: usize = SQLITE_ROWS_PER_STATEMENT.trailing_zeros() as usize + 1;

/// A prepared statement of the writer's own, bound through SQLite's C API
/// with `SQLITE_STATIC` texts (SQLite reads them in place, no copy). Through
/// sqlx a pass-through request's row cost 22,200 instructions on sqlx's
/// SQLite thread plus 6,800 in the writer task (every value encoded into an
/// argument list, copied into owned strings to cross to sqlx's thread, bound
/// after a name lookup per parameter, each statement found by hashing its
/// SQL text); through rusqlite's cached statements 20,500 (6,700 of them in
/// `bind_parameter`: a copy of every text, 3,100 finding and returning the
/// statement); this way about 13,500, 9,300-11,000 of them `sqlite3_step`
/// (bench/RESULTS.md, 2026-12-07).
struct RawInsert {
    stmt: std::ptr::NonNull<rusqlite::ffi::sqlite3_stmt>,
}

// SAFETY: a statement is used only together with its connection, inside
// `LedgerDb`, which one thread at a time holds (under the writer's mutex);
// the connection is opened with SQLITE_OPEN_NO_MUTEX ("multi-thread" mode:
// any thread, one at a time).
unsafe impl Send for RawInsert {}

impl Drop for RawInsert {
    fn drop(&mut self) {
        // SAFETY: the statement is live (finalized only here) and its connection open (see `LedgerDb`).
        unsafe {
            rusqlite::ffi::sqlite3_finalize(self.stmt.as_ptr());
        }
    }
}

/// The error of the last call on `db`, as rusqlite reports it.
fn sqlite_error(db: &rusqlite::Connection, rc: std::os::raw::c_int) -> rusqlite::Error {
    // SAFETY: the handle is live while `db` is; sqlite3_errmsg returns a NUL-terminated string it owns.
    let msg = unsafe {
        let m = rusqlite::ffi::sqlite3_errmsg(db.handle());
        (!m.is_null()).then(|| std::ffi::CStr::from_ptr(m).to_string_lossy().into_owned())
    };
    rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rc), msg)
}

impl LedgerDb {
    /// The INSERT of `2^i` rows, prepared once (at open).
    fn insert(&mut self, i: usize) -> rusqlite::Result<*mut rusqlite::ffi::sqlite3_stmt> {
        if let Some(st) = &self.inserts[i] {
            return Ok(st.stmt.as_ptr());
        }
        let sql = insert_sqlite(i);
        let mut stmt = std::ptr::null_mut();
        // SAFETY: a live handle, a valid SQL text of the given length, an out pointer.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_prepare_v2(
                self.conn.handle(),
                sql.as_ptr().cast(),
                sql.len() as std::os::raw::c_int,
                &mut stmt,
                std::ptr::null_mut(),
            )
        };
        let Some(stmt) = std::ptr::NonNull::new(stmt).filter(|_| rc == rusqlite::ffi::SQLITE_OK) else {
            let e = sqlite_error(&self.conn, rc);
            if !stmt.is_null() {
                // SAFETY: a statement SQLite handed out and nothing else holds.
                unsafe { rusqlite::ffi::sqlite3_finalize(stmt) };
            }
            return Err(e);
        };
        self.inserts[i] = Some(RawInsert { stmt });
        Ok(stmt.as_ptr())
    }
}

/// One bound value.
enum Val<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
}

impl<'a> From<&'a str> for Val<'a> {
    fn from(v: &'a str) -> Self {
        Val::Text(v)
    }
}
impl<'a> From<Option<&'a str>> for Val<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Val::Null, Val::Text)
    }
}
impl From<i64> for Val<'_> {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<Option<i64>> for Val<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Val::Null, Val::Int)
    }
}
impl From<bool> for Val<'_> {
    fn from(v: bool) -> Self {
        Val::Int(v.into())
    }
}
impl From<f64> for Val<'_> {
    fn from(v: f64) -> Self {
        Val::Real(v)
    }
}
impl From<Option<f64>> for Val<'_> {
    fn from(v: Option<f64>) -> Self {
        v.map_or(Val::Null, Val::Real)
    }
}

/// One row's 34 values, in `INSERT_ROWS` order.
fn sqlite_row(e: &LedgerEntry) -> [Val<'_>; LEDGER_COLUMNS] {
    let u = e.usage;
    let r = e.routing.as_deref();
    let x = e.experiment.as_deref();
    [
        e.request_id.as_str().into(),
        e.ts_ms.into(),
        e.key_name.as_deref().into(),
        e.endpoint.into(),
        e.requested_model.as_str().into(),
        (&*e.served_model).into(),
        (&*e.provider).into(),
        (&*e.upstream_model).into(),
        i64::from(e.status).into(),
        e.stream.into(),
        e.latency_ms.into(),
        e.ttft_ms.into(),
        u.map(|u| u.prompt_tokens as i64).into(),
        u.map(|u| u.completion_tokens as i64).into(),
        u.map(|u| u.cached_tokens as i64).into(),
        u.map(|u| u.cache_write_tokens as i64).into(),
        u.map(|u| u.reasoning_tokens as i64).into(),
        e.cost_usd.into(),
        e.usage_estimated.into(),
        e.error.as_deref().into(),
        r.map(|r| r.route.as_str()).into(),
        r.map(|r| r.task.as_str()).into(),
        r.map(|r| r.confidence as f64).into(),
        r.map(|r| r.complexity as f64).into(),
        r.map(|r| r.tier.as_str()).into(),
        r.map(|r| r.reason.as_str()).into(),
        i64::from(e.attempt).into(),
        x.map(|x| &*x.name).into(),
        x.map(|x| &*x.arm).into(),
        x.is_some_and(|x| x.shadow).into(),
        x.and_then(|x| x.parent_request_id.as_deref()).into(),
        x.and_then(|x| x.output.as_deref()).into(),
        e.cache_saved_usd.is_some().into(),
        e.cache_saved_usd.into(),
    ]
}

/// Binds `rows` into `stmt` (34 parameters a row, in order), runs it, and
/// leaves it reset with no bindings.
///
/// # Safety
/// `stmt` is a live statement of `db` with `34 * rows.len()` parameters.
/// Its parameters must all be NULL (new, or left so by this function): NULL
/// values are not bound.
unsafe fn insert_rows(
    db: &rusqlite::Connection,
    stmt: *mut rusqlite::ffi::sqlite3_stmt,
    rows: &[LedgerEntry],
) -> rusqlite::Result<()> {
    use rusqlite::ffi;
    let mut rc = ffi::SQLITE_OK;
    let mut at: std::os::raw::c_int = 0;
    'rows: for e in rows {
        for v in sqlite_row(e) {
            at += 1;
            rc = match v {
                // Every parameter is NULL already: the statement is new or was
                // cleared after its last run (below). Most of a pass-through
                // row's 34 columns are NULL.
                Val::Null => ffi::SQLITE_OK,
                Val::Int(n) => ffi::sqlite3_bind_int64(stmt, at, n),
                Val::Real(f) => ffi::sqlite3_bind_double(stmt, at, f),
                // SQLITE_STATIC: the text outlives the statement's use of
                // it (bindings are cleared below, before `rows` can go).
                Val::Text(t) => match std::os::raw::c_int::try_from(t.len()) {
                    Ok(n) => ffi::sqlite3_bind_text(stmt, at, t.as_ptr().cast(), n, ffi::SQLITE_STATIC()),
                    Err(_) => ffi::SQLITE_TOOBIG,
                },
            };
            if rc != ffi::SQLITE_OK {
                break 'rows;
            }
        }
    }
    if rc == ffi::SQLITE_OK {
        rc = ffi::sqlite3_step(stmt);
        if rc == ffi::SQLITE_DONE {
            rc = ffi::SQLITE_OK;
        }
    }
    let err = (rc != ffi::SQLITE_OK).then(|| sqlite_error(db, rc));
    ffi::sqlite3_reset(stmt);
    ffi::sqlite3_clear_bindings(stmt);
    err.map_or(Ok(()), Err)
}

/// Writes a batch in one transaction, in prepared INSERTs of up to 32 rows
/// (see [`insert_sqlite`]); rows keep their order. Runs on a blocking
/// thread (see [`SqliteWriter`]).
fn write_rows_sqlite(db: &mut LedgerDb, batch: &[LedgerEntry]) -> rusqlite::Result<()> {
    if !db.conn.is_autocommit() {
        // An earlier write stopped inside its transaction (its COMMIT failed, or it panicked): start clean.
        db.conn.execute_batch("ROLLBACK")?;
    }
    db.conn.execute_batch("BEGIN")?;
    let mut rest = batch;
    let mut written = Ok(());
    while !rest.is_empty() {
        // The largest power of two that fits, at most 32 rows.
        let i = (usize::BITS - 1 - rest.len().leading_zeros()) as usize;
        let i = i.min(SQLITE_SIZES - 1);
        let (rows, tail) = rest.split_at(1 << i);
        written = db.insert(i).and_then(|stmt| {
            // SAFETY: `insert(i)` is the live statement of `2^i` rows of 34 parameters on `db.conn`,
            // only ever run through `insert_rows`, which leaves its parameters NULL.
            unsafe { insert_rows(&db.conn, stmt, rows) }
        });
        if written.is_err() {
            break;
        }
        rest = tail;
    }
    match written {
        Ok(()) => db.conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = db.conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Columns a row binds (`INSERT_ROWS`).
const LEDGER_COLUMNS: usize = 34;

/// The PostgreSQL INSERT: every column bound as one array, the rows made by
/// UNNEST. One statement text whatever the batch size, so sqlx prepares it once
/// per connection and PostgreSQL plans it once; the multi-row VALUES form it
/// replaced had a new text (a new PARSE and plan of up to 800 x 34 parameters)
/// for every batch size it met. A row whose identity is already there is
/// skipped (spool replay; see [`PG_SCHEMA`]).
const PG_INSERT_UNNEST: &str = "INSERT INTO ledger (request_id, ts_ms, key_name, endpoint, requested_model, \
     served_model, provider, upstream_model, status, stream, latency_ms, ttft_ms, prompt_tokens, \
     completion_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, cost_usd, usage_estimated, error, \
     route, task, task_confidence, complexity, tier, route_reason, attempt, experiment, arm, shadow, \
     parent_request_id, output, cache_hit, saved_usd) \
     SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
     $8::text[], $9::int4[], $10::int4[], $11::float8[], $12::float8[], $13::int8[], $14::int8[], $15::int8[], \
     $16::int8[], $17::int8[], $18::float8[], $19::int4[], $20::text[], $21::text[], $22::text[], $23::float8[], \
     $24::float8[], $25::text[], $26::text[], $27::int4[], $28::text[], $29::text[], $30::int4[], $31::text[], \
     $32::text[], $33::int4[], $34::float8[]) \
     ON CONFLICT (request_id, attempt, ts_ms, status, latency_ms) DO NOTHING";

/// Rows per PostgreSQL INSERT (arrays of this length).
const PG_ROWS_PER_STATEMENT: usize = 1000;

/// [`write_rows_sqlite`] on PostgreSQL: one transaction, one [`PG_INSERT_UNNEST`] per
/// up to [`PG_ROWS_PER_STATEMENT`] rows; rows keep their order.
async fn write_batch_pg(pool: &sqlx::PgPool, batch: &[LedgerEntry]) -> Result<(), sqlx::Error> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    fn r(e: &LedgerEntry) -> Option<&RoutingRecord> {
        e.routing.as_deref()
    }
    fn x(e: &LedgerEntry) -> Option<&ExperimentTag> {
        e.experiment.as_deref()
    }
    for chunk in batch.chunks(PG_ROWS_PER_STATEMENT) {
        fn col<'a, T>(rows: &'a [LedgerEntry], f: impl Fn(&'a LedgerEntry) -> T) -> Vec<T> {
            rows.iter().map(f).collect()
        }
        let tok = |f: fn(&Usage) -> u64| col(chunk, move |e| e.usage.as_ref().map(|u| f(u) as i64));
        sqlx::query(PG_INSERT_UNNEST)
            .bind(col(chunk, |e| e.request_id.as_str()))
            .bind(col(chunk, |e| e.ts_ms))
            .bind(col(chunk, |e| e.key_name.as_deref()))
            .bind(col(chunk, |e| e.endpoint))
            .bind(col(chunk, |e| e.requested_model.as_str()))
            .bind(col(chunk, |e| &*e.served_model))
            .bind(col(chunk, |e| &*e.provider))
            .bind(col(chunk, |e| &*e.upstream_model))
            .bind(col(chunk, |e| e.status as i32))
            .bind(col(chunk, |e| e.stream as i32))
            .bind(col(chunk, |e| e.latency_ms))
            .bind(col(chunk, |e| e.ttft_ms))
            .bind(tok(|u| u.prompt_tokens))
            .bind(tok(|u| u.completion_tokens))
            .bind(tok(|u| u.cached_tokens))
            .bind(tok(|u| u.cache_write_tokens))
            .bind(tok(|u| u.reasoning_tokens))
            .bind(col(chunk, |e| e.cost_usd))
            .bind(col(chunk, |e| e.usage_estimated as i32))
            .bind(col(chunk, |e| e.error.as_deref()))
            .bind(col(chunk, |e| r(e).map(|r| r.route.as_str())))
            .bind(col(chunk, |e| r(e).map(|r| r.task.as_str())))
            .bind(col(chunk, |e| r(e).map(|r| r.confidence as f64)))
            .bind(col(chunk, |e| r(e).map(|r| r.complexity as f64)))
            .bind(col(chunk, |e| r(e).map(|r| r.tier.as_str())))
            .bind(col(chunk, |e| r(e).map(|r| r.reason.as_str())))
            .bind(col(chunk, |e| e.attempt as i32))
            .bind(col(chunk, |e| x(e).map(|x| &*x.name)))
            .bind(col(chunk, |e| x(e).map(|x| &*x.arm)))
            .bind(col(chunk, |e| x(e).is_some_and(|x| x.shadow) as i32))
            .bind(col(chunk, |e| x(e).and_then(|x| x.parent_request_id.as_deref())))
            .bind(col(chunk, |e| x(e).and_then(|x| x.output.as_deref())))
            .bind(col(chunk, |e| e.cache_saved_usd.is_some() as i32))
            .bind(col(chunk, |e| e.cache_saved_usd))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// [`spend_since`] on a PostgreSQL ledger.
pub async fn spend_since_pg(pool: &sqlx::PgPool, since_ms: i64) -> Result<Vec<SpendRow>, String> {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT ts_ms, key_name, route, cost_usd, CASE WHEN shadow = 1 THEN experiment END \
         FROM ledger WHERE ts_ms >= $1 AND cost_usd IS NOT NULL ORDER BY id",
    )
    .bind(since_ms)
    .fetch_all(pool)
    .await
    .map_err(|e| format!("cannot read the PostgreSQL ledger: {}", redact_pg(&e)))?;
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

/// Default ledger path under a data directory.
pub fn default_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("ledger.sqlite")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_line_times_read_as_rfc3339_with_microseconds() {
        for micros in [
            0i64,
            1_764_883_755_051_470,
            951_782_400_000_001,   // 2000-02-29
            4_102_444_799_999_999, // 2099-12-31T23:59:59.999999
            1_709_251_199_123_456, // 2024-02-29T23:59:59
        ] {
            let mut s = String::new();
            push_rfc3339_micros(&mut s, micros);
            let want = chrono::DateTime::from_timestamp_micros(micros)
                .expect("in range")
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string();
            assert_eq!(s, want);
        }
    }

    #[test]
    fn preformatted_access_lines_read_as_the_structured_ones() {
        #[derive(Clone, Default)]
        struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(move || w.clone())
            .finish();
        let mut rows = Vec::new();
        let mut e = entry(1);
        rows.push(e.clone());
        e.key_name = Some("team \"a\"\tb\u{e9}".into());
        e.cost_usd = Some(0.000_482);
        e.latency_ms = 3.236_4;
        e.usage_estimated = true;
        e.attempt = 2;
        e.routing = Some(Box::new(RoutingRecord {
            route: "auto".into(),
            task: "translation".into(),
            confidence: 0.5,
            complexity: 0.25,
            tier: "frontier".into(),
            reason: "x".into(),
        }));
        rows.push(e.clone());
        e.cost_usd = Some(1e-9);
        e.latency_ms = 12_345_678.9;
        e.status = 499;
        rows.push(e);
        tracing::subscriber::with_default(sub, || {
            for r in &rows {
                access_event(r);
                let line = access_line(r);
                tracing::info!(target: "switchyard::access", "{line}");
            }
        });
        let text = String::from_utf8(buf.0.lock().unwrap_or_else(|p| p.into_inner()).clone()).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 * rows.len(), "{text}");
        for pair in lines.chunks(2) {
            assert_eq!(pair[0], pair[1]);
        }
        assert!(
            lines[2].contains("cost_usd=0.000482") && lines[0].contains("key=\"-\""),
            "{text}"
        );
    }

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
            cache_saved_usd: None,
        }
    }

    #[tokio::test]
    async fn spool_round_trips_every_field_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut spool = Spool::new(dir.path().join("l.sqlite.spool"));
        assert!(!spool.active);
        let mut rows: Vec<LedgerEntry> = (0..5).map(entry).collect();
        rows[1].routing = Some(Box::new(RoutingRecord {
            route: "auto".into(),
            task: "code".into(),
            confidence: 0.75,
            complexity: 0.5,
            tier: "economy".into(),
            reason: "classifier".into(),
        }));
        rows[2].experiment = Some(Box::new(ExperimentTag {
            name: Arc::from("exp"),
            arm: Arc::from("cand"),
            shadow: true,
            parent_request_id: Some("r0".into()),
            output: Some("text \"quoted\"\n".into()),
        }));
        rows[3].endpoint = "messages";
        rows[4].usage = None;
        rows[4].error = Some("boom".into());
        spool.append(&rows[..3], true).await.expect("append");
        spool.append(&rows[3..], false).await.expect("append");
        let (a, bad) = spool.read_chunk(2).await.expect("read");
        let (b, _) = spool.read_chunk(10).await.expect("read");
        assert_eq!(bad, 0);
        assert!(!spool.active, "all read");
        let back: Vec<LedgerEntry> = a.into_iter().chain(b).collect();
        assert_eq!(format!("{back:?}"), format!("{rows:?}"));
        spool.clear().await;
        assert!(!dir.path().join("l.sqlite.spool").exists());
    }

    /// NULL values are not bound (the statement's parameters are NULL after each
    /// run): a row with every optional value after one with none of them set
    /// reuses the 1-row INSERT and must not read the earlier row's values.
    #[tokio::test]
    async fn null_columns_do_not_keep_the_previous_rows_values() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("l.sqlite");
        let (h, w) = open_sqlite(&path, 1, Duration::from_millis(1))
            .await
            .expect("open");
        let mut full = entry(0);
        full.key_name = Some("k".into());
        full.ttft_ms = Some(2.0);
        full.error = Some("e".into());
        full.routing = Some(Box::new(RoutingRecord {
            route: "auto".into(),
            task: "code".into(),
            confidence: 0.75,
            complexity: 0.5,
            tier: "economy".into(),
            reason: "classifier".into(),
        }));
        full.experiment = Some(Box::new(ExperimentTag {
            name: Arc::from("exp"),
            arm: Arc::from("cand"),
            shadow: true,
            parent_request_id: Some("r9".into()),
            output: Some("out".into()),
        }));
        full.cache_saved_usd = Some(0.25);
        let mut bare = entry(1);
        bare.usage = None;
        bare.cost_usd = None;
        // Batches of one row: the second row goes through the same 1-row statement.
        h.record(full);
        h.record(bare);
        drop(h);
        w.finish().await;
        let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&path))
            .await
            .expect("c");
        let nulls =
            "key_name IS NULL AND ttft_ms IS NULL AND prompt_tokens IS NULL AND completion_tokens IS NULL \
             AND cached_tokens IS NULL AND cache_write_tokens IS NULL AND reasoning_tokens IS NULL \
             AND cost_usd IS NULL AND error IS NULL AND route IS NULL AND task IS NULL \
             AND task_confidence IS NULL AND complexity IS NULL AND tier IS NULL AND route_reason IS NULL \
             AND experiment IS NULL AND arm IS NULL AND parent_request_id IS NULL AND output IS NULL \
             AND saved_usd IS NULL AND shadow = 0 AND cache_hit = 0";
        let q = format!("SELECT request_id, {nulls} FROM ledger ORDER BY id");
        let rows: Vec<(String, bool)> = sqlx::query_as(&q).fetch_all(&mut conn).await.expect("q");
        assert_eq!(rows, vec![("r0".to_string(), false), ("r1".to_string(), true)]);
        let (key, arm, saved): (String, String, f64) =
            sqlx::query_as("SELECT key_name, arm, saved_usd FROM ledger WHERE request_id = 'r0'")
                .fetch_one(&mut conn)
                .await
                .expect("q");
        assert_eq!((key.as_str(), arm.as_str(), saved), ("k", "cand", 0.25));
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
