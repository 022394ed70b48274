//! Virtual API keys: created, listed and revoked from the CLI or the admin
//! API, stored hashed (SHA-256) in the ledger's SQLite file.
//!
//! A key is `sk-sy-` followed by 40 random base-62 characters (238 bits from
//! the OS generator), shown once at creation. Only its hash and a short
//! display prefix are kept. The server holds every active key in memory
//! (looked up by hash, never compared byte by byte) and re-reads the table
//! every few seconds, so keys created or revoked by another process take
//! effect without a restart; the admin API updates memory at once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Connection, Row, SqliteConnection};

use super::limiter::{Bucket, Concurrency};
use crate::accounting::budget::Clock;

pub const KEY_PREFIX: &str = "sk-sy-";
const KEY_CHARS: usize = 40;

/// The SQLite key table. The ledger creates it too, with its own tables
/// (`accounting::ledger`): a table created after the ledger writer has
/// prepared its INSERTs would expire them (SQLite re-prepares a statement
/// whenever the schema changed), a cost paid again on the request path.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    display TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER,
    rpm INTEGER,
    tpm INTEGER,
    max_concurrency INTEGER,
    daily_budget REAL,
    models TEXT NOT NULL DEFAULT '[]',
    tags TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys (name) WHERE revoked_ms IS NULL;
";

/// What a key may do. Also the body of `POST /admin/keys`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// USD per day (in the budget time zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_budget: Option<f64>,
    /// Models and routes the key may use; empty: all.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl KeySpec {
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err("name must be 1-64 characters of A-Z, a-z, 0-9, '-', '_' or '.'".into());
        }
        if self.rpm == Some(0) || self.tpm == Some(0) || self.max_concurrency == Some(0) {
            return Err("rpm, tpm and max_concurrency must be at least 1 when set".into());
        }
        if let Some(b) = self.daily_budget {
            if !(b.is_finite() && b >= 0.0) {
                return Err("daily_budget must be a non-negative number of USD".into());
            }
        }
        if self.models.iter().any(|m| m.is_empty()) {
            return Err("models must not contain empty names".into());
        }
        Ok(())
    }
}

/// A stored key (never the secret).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyRecord {
    pub id: String,
    /// `sk-sy-abcd...wxyz`: enough to recognise a key, not to use it.
    pub display: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
    #[serde(flatten)]
    pub spec: KeySpec,
}

/// A key as the server uses it: its record and its limiters.
#[derive(Debug)]
pub struct ActiveKey {
    pub record: KeyRecord,
    pub rpm: Option<Bucket>,
    pub tpm: Option<Bucket>,
    pub concurrency: Option<Concurrency>,
}

impl ActiveKey {
    fn new(record: KeyRecord, now_ms: i64) -> ActiveKey {
        ActiveKey {
            rpm: record.spec.rpm.map(|n| Bucket::per_minute(u64::from(n), now_ms)),
            tpm: record.spec.tpm.map(|n| Bucket::per_minute(n, now_ms)),
            concurrency: record.spec.max_concurrency.map(Concurrency::new),
            record,
        }
    }

    pub fn name(&self) -> &str {
        &self.record.spec.name
    }

    /// Whether the key may use `model` (a model, alias or route name).
    pub fn allows(&self, model: &str) -> bool {
        let m = &self.record.spec.models;
        m.is_empty()
            || m.iter()
                .any(|x| x == model || (x.ends_with('*') && model.starts_with(&x[..x.len() - 1])))
    }
}

/// SHA-256 of a presented key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn hex(b: &[u8]) -> String {
    hex::encode(b)
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// A new random key from the OS generator.
fn generate() -> Result<String, String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::from(KEY_PREFIX);
    let mut buf = [0u8; 64];
    while out.len() < KEY_PREFIX.len() + KEY_CHARS {
        getrandom::getrandom(&mut buf).map_err(|e| format!("no randomness from the OS: {e}"))?;
        // Rejection sampling keeps every character uniform.
        for b in buf {
            if (b as usize) < 248 && out.len() < KEY_PREFIX.len() + KEY_CHARS {
                out.push(ALPHABET[(b as usize) % 62] as char);
            }
        }
    }
    Ok(out)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The key table in PostgreSQL (`[ledger] url`): the SQLite columns, integers as BIGINT.
pub const PG_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    display TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT,
    rpm BIGINT,
    tpm BIGINT,
    max_concurrency BIGINT,
    daily_budget DOUBLE PRECISION,
    models TEXT NOT NULL DEFAULT '[]',
    tags TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys (name) WHERE revoked_ms IS NULL;
";

/// The key table: in a SQLite file (the ledger's), or in PostgreSQL, where
/// every instance on the same database shares the keys.
pub struct KeyDb {
    backend: Backend,
}

enum Backend {
    Sqlite(PathBuf),
    Pg(sqlx::PgPool),
}

impl KeyDb {
    pub fn new(path: &Path) -> KeyDb {
        KeyDb {
            backend: Backend::Sqlite(path.to_path_buf()),
        }
    }

    /// The key table in PostgreSQL (created if missing).
    pub async fn postgres(pool: sqlx::PgPool) -> Result<KeyDb, String> {
        sqlx::raw_sql(PG_SCHEMA)
            .execute(&pool)
            .await
            .map_err(|e| format!("cannot create the key table in PostgreSQL: {e}"))?;
        Ok(KeyDb {
            backend: Backend::Pg(pool),
        })
    }

    async fn connect(&self) -> Result<SqliteConnection, String> {
        let Backend::Sqlite(path) = &self.backend else {
            return Err("internal: SQLite connection asked of a PostgreSQL key table".into());
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        let mut c = SqliteConnection::connect_with(&opts)
            .await
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        for stmt in SCHEMA.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            sqlx::query(stmt)
                .execute(&mut c)
                .await
                .map_err(|e| format!("cannot create the key table in {}: {e}", path.display()))?;
        }
        Ok(c)
    }

    /// Creates a key; returns its record and the secret (shown once).
    pub async fn create(&self, spec: KeySpec) -> Result<(KeyRecord, String), String> {
        spec.validate()?;
        let secret = generate()?;
        let mut id_bytes = [0u8; 6];
        getrandom::getrandom(&mut id_bytes).map_err(|e| format!("no randomness from the OS: {e}"))?;
        let record = KeyRecord {
            id: format!("key_{}", hex(&id_bytes)),
            display: format!(
                "{}...{}",
                &secret[..KEY_PREFIX.len() + 4],
                &secret[secret.len() - 4..]
            ),
            created_ms: now_ms(),
            revoked_ms: None,
            spec,
        };
        let models = serde_json::to_string(&record.spec.models).map_err(|e| e.to_string())?;
        let tags = serde_json::to_string(&record.spec.tags).map_err(|e| e.to_string())?;
        const INSERT: &str = "INSERT INTO api_keys (id, name, key_hash, display, created_ms, rpm, tpm, \
             max_concurrency, daily_budget, models, tags) VALUES ";
        macro_rules! insert {
            ($q:expr) => {
                $q.bind(&record.id)
                    .bind(&record.spec.name)
                    .bind(hex(&hash_key(&secret)))
                    .bind(&record.display)
                    .bind(record.created_ms)
                    .bind(record.spec.rpm.map(i64::from))
                    .bind(record.spec.tpm.map(|v| v.min(i64::MAX as u64) as i64))
                    .bind(record.spec.max_concurrency.map(i64::from))
                    .bind(record.spec.daily_budget)
                    .bind(&models)
                    .bind(&tags)
            };
        }
        let r = match &self.backend {
            Backend::Sqlite(_) => {
                let mut c = self.connect().await?;
                let sql = format!("{INSERT}(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
                insert!(sqlx::query(&sql)).execute(&mut c).await.map(|_| ())
            }
            Backend::Pg(pool) => {
                let sql = format!("{INSERT}($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)");
                insert!(sqlx::query(&sql)).execute(pool).await.map(|_| ())
            }
        };
        match r {
            Ok(()) => Ok((record, secret)),
            Err(e)
                if e.as_database_error().is_some_and(|d| d.is_unique_violation())
                    || e.to_string().contains("UNIQUE") =>
            {
                Err(format!(
                    "an active key named {:?} already exists",
                    record.spec.name
                ))
            }
            Err(e) => Err(format!("cannot store the key: {e}")),
        }
    }

    /// Every key, newest first; revoked ones too when `all`.
    pub async fn list(&self, all: bool) -> Result<Vec<KeyRecord>, String> {
        Ok(self
            .load()
            .await?
            .into_iter()
            .map(|(r, _)| r)
            .filter(|r| all || r.revoked_ms.is_none())
            .collect())
    }

    async fn load(&self) -> Result<Vec<(KeyRecord, [u8; 32])>, String> {
        const SELECT: &str = "SELECT id, name, key_hash, display, created_ms, revoked_ms, rpm, tpm, \
             max_concurrency, daily_budget, models, tags FROM api_keys ORDER BY created_ms DESC, id";
        match &self.backend {
            Backend::Sqlite(_) => {
                let mut c = self.connect().await?;
                let rows = sqlx::query(SELECT)
                    .fetch_all(&mut c)
                    .await
                    .map_err(|e| format!("cannot read keys: {e}"))?;
                Ok(records(&rows))
            }
            Backend::Pg(pool) => {
                let rows = sqlx::query(SELECT)
                    .fetch_all(pool)
                    .await
                    .map_err(|e| format!("cannot read keys: {e}"))?;
                Ok(records(&rows))
            }
        }
    }

    /// Revokes the active key with this id or name. Returns the revoked record.
    pub async fn revoke(&self, id_or_name: &str) -> Result<Option<KeyRecord>, String> {
        let at = now_ms();
        let id: Option<String> = match &self.backend {
            Backend::Sqlite(_) => {
                let mut c = self.connect().await?;
                sqlx::query_scalar(
                    "UPDATE api_keys SET revoked_ms = ? WHERE revoked_ms IS NULL AND (id = ? OR name = ?) RETURNING id",
                )
                .bind(at)
                .bind(id_or_name)
                .bind(id_or_name)
                .fetch_optional(&mut c)
                .await
            }
            Backend::Pg(pool) => {
                sqlx::query_scalar(
                    "UPDATE api_keys SET revoked_ms = $1 WHERE revoked_ms IS NULL AND (id = $2 OR name = $3) RETURNING id",
                )
                .bind(at)
                .bind(id_or_name)
                .bind(id_or_name)
                .fetch_optional(pool)
                .await
            }
        }
        .map_err(|e| format!("cannot revoke: {e}"))?;
        let Some(id) = id else { return Ok(None) };
        Ok(self.list(true).await?.into_iter().find(|k| k.id == id))
    }
}

/// Key records (with their hashes) from `SELECT`'s twelve columns, either database.
fn records<R>(rows: &[R]) -> Vec<(KeyRecord, [u8; 32])>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    String: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    i64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    f64: for<'a> sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let hash: String = r.get(2);
            let Some(hash) = unhex(&hash) else { continue };
            let models: String = r.get(10);
            let tags: String = r.get(11);
            out.push((
                KeyRecord {
                    id: r.get(0),
                    display: r.get(3),
                    created_ms: r.get(4),
                    revoked_ms: r.get(5),
                    spec: KeySpec {
                        name: r.get(1),
                        rpm: r
                            .get::<Option<i64>, _>(6)
                            .map(|v| v.clamp(1, u32::MAX as i64) as u32),
                        tpm: r.get::<Option<i64>, _>(7).map(|v| v.max(1) as u64),
                        max_concurrency: r
                            .get::<Option<i64>, _>(8)
                            .map(|v| v.clamp(1, u32::MAX as i64) as u32),
                        daily_budget: r.get(9),
                        models: serde_json::from_str(&models).unwrap_or_default(),
                        tags: serde_json::from_str(&tags).unwrap_or_default(),
                    },
                },
                hash,
            ));
        }
        out
    }
}

/// The server's view of the keys: active keys by hash, with their limiters.
pub struct KeyStore {
    db: KeyDb,
    clock: Clock,
    by_hash: ArcSwap<HashMap<[u8; 32], Arc<ActiveKey>>>,
    /// Whether any key was ever created (revoked ones included).
    configured: std::sync::atomic::AtomicBool,
}

impl KeyStore {
    pub async fn open(path: &Path, clock: Clock) -> Result<Arc<KeyStore>, String> {
        KeyStore::open_db(KeyDb::new(path), clock).await
    }

    /// [`KeyStore::open`] on any key table (e.g. [`KeyDb::postgres`]).
    pub async fn open_db(db: KeyDb, clock: Clock) -> Result<Arc<KeyStore>, String> {
        let s = Arc::new(KeyStore {
            db,
            clock,
            by_hash: ArcSwap::from_pointee(HashMap::new()),
            configured: std::sync::atomic::AtomicBool::new(false),
        });
        s.refresh().await?;
        Ok(s)
    }

    pub fn db(&self) -> &KeyDb {
        &self.db
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Whether keys are in use: any key was ever created, even if all are
    /// revoked now (revoking the last key must not open the gateway).
    pub fn any(&self) -> bool {
        self.configured.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The active key for a presented secret.
    pub fn lookup(&self, presented: &str) -> Option<Arc<ActiveKey>> {
        if !presented.starts_with(KEY_PREFIX) {
            return None;
        }
        self.by_hash.load().get(&hash_key(presented)).cloned()
    }

    /// Active keys' daily budgets, by name (for budget snapshots).
    pub fn budgets(&self) -> HashMap<String, crate::accounting::budget::Limits> {
        self.by_hash
            .load()
            .values()
            .filter_map(|k| {
                k.record.spec.daily_budget.map(|d| {
                    (
                        k.name().to_string(),
                        crate::accounting::budget::Limits {
                            daily: Some(d),
                            monthly: None,
                        },
                    )
                })
            })
            .collect()
    }

    /// Re-reads the table. Keys whose record did not change keep their limiter state.
    pub async fn refresh(&self) -> Result<(), String> {
        let rows = self.db.load().await?;
        if !rows.is_empty() {
            self.configured.store(true, std::sync::atomic::Ordering::Release);
        }
        let old = self.by_hash.load_full();
        let now = self.clock.now_ms();
        let mut next = HashMap::with_capacity(rows.len());
        for (rec, hash) in rows.into_iter().filter(|(r, _)| r.revoked_ms.is_none()) {
            let entry = match old.get(&hash) {
                Some(k) if k.record == rec => k.clone(),
                _ => Arc::new(ActiveKey::new(rec, now)),
            };
            next.insert(hash, entry);
        }
        self.by_hash.store(Arc::new(next));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_look_right() {
        let a = generate().expect("random");
        let b = generate().expect("random");
        assert!(a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + KEY_CHARS);
        assert_ne!(a, b);
        assert!(a[KEY_PREFIX.len()..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(unhex(&hex(&hash_key(&a))), Some(hash_key(&a)));
    }

    #[tokio::test]
    async fn lifecycle_create_list_revoke() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ledger.sqlite");
        let store = KeyStore::open(&path, Clock::system()).await.expect("open");
        assert!(!store.any());
        let spec = KeySpec {
            name: "team-a".into(),
            rpm: Some(10),
            models: vec!["auto".into(), "gpt-5*".into()],
            ..Default::default()
        };
        let (rec, secret) = store.db().create(spec.clone()).await.expect("create");
        assert!(
            store.db().create(spec).await.is_err(),
            "names of active keys are unique"
        );
        store.refresh().await.expect("refresh");
        let k = store.lookup(&secret).expect("active");
        assert_eq!(k.record.id, rec.id);
        assert!(k.allows("auto") && k.allows("gpt-5.4-mini") && !k.allows("claude-opus-4.7"));
        assert!(store.lookup("sk-sy-wrong").is_none());
        let listed = store.db().list(false).await.expect("list");
        assert_eq!(listed.len(), 1);
        assert!(!serde_json::to_string(&listed)
            .expect("json")
            .contains(&secret[10..]));
        store.db().revoke("team-a").await.expect("revoke").expect("found");
        store.refresh().await.expect("refresh");
        assert!(store.lookup(&secret).is_none());
        assert!(store.db().list(false).await.expect("list").is_empty());
        assert_eq!(store.db().list(true).await.expect("list").len(), 1);
    }
}
