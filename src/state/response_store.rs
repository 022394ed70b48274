//! Stored `/v1/responses` answers, for `previous_response_id` and
//! `GET /v1/responses/{id}`: the `responses` table in the ledger database.
//!
//! A row holds the conversation the response answered (its input items,
//! with every earlier turn of the chain already expanded) and the response
//! object, so a follow-up needs one read. Rows expire after
//! `ledger.responses_ttl_secs`; expired rows are deleted as new ones are
//! written. A row belongs to the client key that created it: another key
//! cannot read or continue it.
//!
//! Writes never hold up a request: the response is kept in memory until its
//! row is written by a background task (one queue, so writes and deletes
//! apply in order), and reads look there first, so a follow-up sent right
//! after an answer finds it. Shutdown waits for the queue to drain.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{ConnectOptions, Row};
use tokio::sync::{mpsc, oneshot};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    key_name TEXT,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    context TEXT NOT NULL,
    response TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_expires ON responses (expires_ms);
";

/// One stored response.
#[derive(Debug, Clone)]
pub struct Stored {
    pub key_name: Option<String>,
    pub expires_ms: i64,
    /// The input items the response answered (earlier turns included).
    pub context: Vec<Value>,
    /// The response object.
    pub response: Value,
}

impl Stored {
    /// The conversation a follow-up continues: the context, then the response's output.
    pub fn history(&self) -> Vec<Value> {
        let mut h = self.context.clone();
        if let Some(out) = self.response.get("output").and_then(Value::as_array) {
            h.extend(out.iter().cloned());
        }
        h
    }
}

pub struct ResponseStore {
    path: PathBuf,
    pool: tokio::sync::OnceCell<Option<SqlitePool>>,
    /// Responses whose row is not written yet.
    pending: Mutex<HashMap<String, Arc<Stored>>>,
    /// The writer task's queue: writes and deletes are applied in order.
    ops: std::sync::OnceLock<mpsc::UnboundedSender<Op>>,
}

enum Op {
    Put(String, Arc<Stored>, i64),
    Delete(String, oneshot::Sender<Result<(), String>>),
    Flush(oneshot::Sender<()>),
}

impl ResponseStore {
    pub fn new(path: PathBuf) -> ResponseStore {
        ResponseStore {
            path,
            pool: tokio::sync::OnceCell::new(),
            pending: Mutex::new(HashMap::new()),
            ops: std::sync::OnceLock::new(),
        }
    }

    async fn pool(&self) -> Option<&SqlitePool> {
        self.pool
            .get_or_init(|| async {
                let opts = SqliteConnectOptions::new()
                    .filename(&self.path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(5))
                    .disable_statement_logging();
                let pool = match SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect_with(opts)
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!("response store: cannot open {}: {e}", self.path.display());
                        return None;
                    }
                };
                if let Err(e) = sqlx::raw_sql(SCHEMA).execute(&pool).await {
                    tracing::error!("response store: cannot create the responses table: {e}");
                    return None;
                }
                Some(pool)
            })
            .await
            .as_ref()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Stored>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer task's queue (started on first use, from a request).
    fn queue(self: &Arc<Self>) -> &mpsc::UnboundedSender<Op> {
        self.ops.get_or_init(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<Op>();
            // The task holds the store weakly: it ends when the store is gone.
            let weak = Arc::downgrade(self);
            tokio::spawn(async move {
                while let Some(op) = rx.recv().await {
                    let Some(this) = weak.upgrade() else { break };
                    match op {
                        Op::Put(id, stored, now_ms) => {
                            if let Err(e) = this.write(&id, &stored, now_ms).await {
                                tracing::warn!(response_id = %id, "response store: row not written: {e}");
                            }
                            let mut p = this.pending();
                            if p.get(&id).is_some_and(|s| Arc::ptr_eq(s, &stored)) {
                                p.remove(&id);
                            }
                        }
                        Op::Delete(id, done) => {
                            let _ = done.send(this.remove(&id).await);
                        }
                        Op::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
            tx
        })
    }

    /// Keeps a response (returns at once; the row is written in the background).
    pub fn put(self: &Arc<Self>, id: String, stored: Stored, now_ms: i64) {
        let stored = Arc::new(stored);
        self.pending().insert(id.clone(), stored.clone());
        if self.queue().send(Op::Put(id.clone(), stored, now_ms)).is_err() {
            self.pending().remove(&id);
        }
    }

    /// Waits until every response kept so far is written (at shutdown).
    pub async fn flush(self: &Arc<Self>) {
        if self.ops.get().is_none() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        if self.queue().send(Op::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    async fn write(&self, id: &str, s: &Stored, now_ms: i64) -> Result<(), String> {
        let pool = self.pool().await.ok_or("store unavailable")?;
        let context = serde_json::to_string(&s.context).map_err(|e| e.to_string())?;
        let response = serde_json::to_string(&s.response).map_err(|e| e.to_string())?;
        sqlx::query(
            "INSERT OR REPLACE INTO responses (id, key_name, created_ms, expires_ms, context, response) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(s.key_name.as_deref())
        .bind(now_ms)
        .bind(s.expires_ms)
        .bind(context)
        .bind(response)
        .execute(pool)
        .await
        .map_err(|e| e.to_string())?;
        sqlx::query("DELETE FROM responses WHERE expires_ms <= ?")
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), String> {
        let pool = self.pool().await.ok_or("store unavailable")?;
        sqlx::query("DELETE FROM responses WHERE id = ?")
            .bind(id)
            .execute(pool)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The stored response `id`, if it exists, has not expired and belongs to `key_name`.
    pub async fn get(
        &self,
        id: &str,
        key_name: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<Arc<Stored>>, String> {
        let visible = |s: &Stored| s.expires_ms > now_ms && s.key_name.as_deref() == key_name;
        if let Some(s) = self.pending().get(id).cloned() {
            return Ok(visible(&s).then_some(s));
        }
        let pool = self.pool().await.ok_or("store unavailable")?;
        let row = sqlx::query("SELECT key_name, expires_ms, context, response FROM responses WHERE id = ?")
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(|e| e.to_string())?;
        let Some(row) = row else { return Ok(None) };
        let context: String = row.get(2);
        let response: String = row.get(3);
        let s = Stored {
            key_name: row.get(0),
            expires_ms: row.get(1),
            context: serde_json::from_str(&context).map_err(|e| e.to_string())?,
            response: serde_json::from_str(&response).map_err(|e| e.to_string())?,
        };
        Ok(visible(&s).then(|| Arc::new(s)))
    }

    /// Deletes a stored response; whether one was there for this key.
    pub async fn delete(
        self: &Arc<Self>,
        id: &str,
        key_name: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, String> {
        if self.get(id, key_name, now_ms).await?.is_none() {
            return Ok(false);
        }
        self.pending().remove(id);
        // Through the writer's queue, so a write still queued for it cannot bring it back.
        let (tx, rx) = oneshot::channel();
        self.queue()
            .send(Op::Delete(id.to_string(), tx))
            .map_err(|_| "store closed".to_string())?;
        rx.await.map_err(|_| "store closed".to_string())??;
        Ok(true)
    }
}
