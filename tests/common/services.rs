//! Helpers for tests against the real PostgreSQL and Redis servers named by
//! `DATABASE_URL` and `REDIS_URL` (each test in its own schema or key prefix,
//! so parallel runs cannot collide), plus polling and /metrics readers.

use std::time::Duration;

use sqlx::Row as _;

use super::Gw;

/// A schema of its own on the test server; dropped by [`Schema::drop`].
pub struct Schema {
    pub admin: sqlx::PgPool,
    pub name: String,
    /// The URL a gateway uses: the server's, with this schema as search_path.
    pub url: String,
}

impl Schema {
    pub async fn new() -> Option<Schema> {
        let Ok(base) = std::env::var("DATABASE_URL") else {
            println!("SKIPPED: DATABASE_URL is not set (PostgreSQL ledger tests need a server)");
            return None;
        };
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&base)
            .await
            .expect("connect to DATABASE_URL");
        let name = format!("sy_{:016x}", rand_u64());
        sqlx::raw_sql(&format!("CREATE SCHEMA {name}"))
            .execute(&admin)
            .await
            .expect("create schema");
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-csearch_path%3D{name}");
        Some(Schema { admin, name, url })
    }

    pub async fn exec(&self, sql: &str) {
        sqlx::raw_sql(&sql.replace("{s}", &self.name))
            .execute(&self.admin)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// (request_id, attempt) of every ledger row, in insertion order.
    pub async fn request_ids(&self) -> Vec<String> {
        sqlx::query(&format!(
            "SELECT request_id FROM {}.ledger ORDER BY id",
            self.name
        ))
        .fetch_all(&self.admin)
        .await
        .expect("query ledger")
        .iter()
        .map(|r| r.get(0))
        .collect()
    }

    pub async fn drop(self) {
        self.exec("DROP SCHEMA {s} CASCADE").await;
        self.admin.close().await;
    }
}

pub fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// A gauge or counter from /metrics.
pub async fn metric(gw: &Gw, name: &str) -> u64 {
    let text = super::client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

/// Polls `cond` until it holds (generous deadline: the machine may be loaded).
pub async fn until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A key prefix of its own on the Redis server in `REDIS_URL`; its keys are
/// deleted by [`RedisPrefix::clean`].
pub struct RedisPrefix {
    pub url: String,
    pub prefix: String,
}

impl RedisPrefix {
    pub fn new() -> Option<RedisPrefix> {
        let Ok(url) = std::env::var("REDIS_URL") else {
            println!("SKIPPED: REDIS_URL is not set (shared-state tests need a Redis server)");
            return None;
        };
        Some(RedisPrefix {
            url,
            prefix: format!("sy_test_{:016x}", rand_u64()),
        })
    }

    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url.as_str())
            .expect("REDIS_URL")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to REDIS_URL")
    }

    /// Instances subscribed to the prefix's event channel.
    pub async fn subscribers(&self) -> u64 {
        let mut c = self.conn().await;
        let v: (String, u64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(format!("{{{}}}:events", self.prefix))
            .query_async(&mut c)
            .await
            .expect("PUBSUB NUMSUB");
        v.1
    }

    /// Every key under the prefix.
    pub async fn keys(&self) -> Vec<String> {
        let mut c = self.conn().await;
        redis::cmd("KEYS")
            .arg(format!("{{{}}}:*", self.prefix))
            .query_async(&mut c)
            .await
            .expect("KEYS")
    }

    pub async fn clean(&self) {
        let keys = self.keys().await;
        if !keys.is_empty() {
            let mut c = self.conn().await;
            let _: () = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut c)
                .await
                .expect("DEL");
        }
    }
}

/// A TCP relay to `upstream` that a test can cut (refusing new connections and
/// closing open ones) and restore: a server going away and coming back.
pub struct Relay {
    pub addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    pub async fn start(upstream: std::net::SocketAddr) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind relay");
        let addr = listener.local_addr().expect("addr");
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (o, c) = (open.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !o.load(Ordering::Acquire) {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                c.lock().expect("relay lock").push(task.abort_handle());
            }
        });
        Relay { addr, open, conns }
    }

    /// Refuses new connections and drops the open ones.
    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::Release);
        for h in self.conns.lock().expect("relay lock").drain(..) {
            h.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// The address in a `redis://host:port[/db]` URL.
pub fn redis_addr(url: &str) -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    let rest = url.trim_start_matches("redis://");
    let hostport = rest.split('/').next().unwrap_or(rest);
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:6379")
    };
    hostport
        .to_socket_addrs()
        .expect("resolve REDIS_URL")
        .next()
        .expect("an address")
}
