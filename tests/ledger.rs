//! Ledger durability end to end: a database locked by another process
//! (rows kept, spooled, replayed once, in order), shutdown while locked, and
//! SIGKILL of the real binary under load in both durability modes.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use sqlx::{Connection, Row as _};

/// Another process's view of the ledger: holds `BEGIN EXCLUSIVE` until dropped or released.
async fn lock_ledger(path: &Path) -> sqlx::SqliteConnection {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_secs(30));
    let mut c = sqlx::SqliteConnection::connect_with(&opts).await.expect("open");
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut c)
        .await
        .expect("lock");
    c
}

async fn release(mut c: sqlx::SqliteConnection) {
    sqlx::raw_sql("ROLLBACK").execute(&mut c).await.expect("unlock");
    c.close().await.expect("close");
}

/// A gauge or counter from /metrics.
async fn metric(gw: &Gw, name: &str) -> u64 {
    let text = client()
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
async fn until<F, Fut>(what: &str, mut cond: F)
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

async fn request_ids(path: &Path) -> Vec<String> {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let mut c = sqlx::SqliteConnection::connect_with(&opts).await.expect("open");
    sqlx::query("SELECT request_id FROM ledger ORDER BY id")
        .fetch_all(&mut c)
        .await
        .expect("query")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn send(gw_base: &str, id: &str, stream: bool) -> u16 {
    let r = client()
        .post(format!("{gw_base}/v1/chat/completions"))
        .header("x-request-id", id)
        .json(&json!({"model": "fast", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    r.bytes().await.expect("body");
    status
}

/// With another connection holding an exclusive lock, requests keep being
/// served; their rows wait (10 in memory, the rest in the spool file) and
/// all arrive once the lock is gone: each once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_ledger_keeps_every_row_and_writes_each_once_in_order() {
    let fake = start_fake().await;
    let cfg = config_for(
        fake.addr,
        "[ledger]\nmax_pending_rows = 10\nflush_interval_ms = 10\n",
    );
    let mut gw = start_gateway(&cfg).await;
    let ledger = gw.ledger.clone();
    let spool = switchyard::accounting::ledger::spool_path(&ledger);
    let lock = lock_ledger(&ledger).await;
    let n = 60;
    let ids: Vec<String> = (0..n).map(|i| format!("locked-{i:03}")).collect();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            send(&gw.base, id, i % 2 == 1).await,
            200,
            "served while the ledger is locked"
        );
    }
    // Every row is kept: in memory up to the bound, the rest spooled.
    until("every row kept", || async {
        metric(&gw, "switchyard_ledger_rows_pending").await == n as u64
    })
    .await;
    assert!(metric(&gw, "switchyard_ledger_rows_spooled_total").await >= (n - 10) as u64);
    assert!(metric(&gw, "switchyard_ledger_write_retries_total").await >= 1);
    assert_eq!(metric(&gw, "switchyard_ledger_rows_failed_total").await, 0);
    assert!(spool.exists(), "spool file at {}", spool.display());
    assert!(
        request_ids(&ledger).await.is_empty(),
        "nothing written while locked"
    );
    release(lock).await;
    until("the backlog written", || async {
        metric(&gw, "switchyard_ledger_rows_pending").await == 0
    })
    .await;
    gw.stop().await;
    assert_eq!(request_ids(&ledger).await, ids, "every row once, in order");
    assert!(!spool.exists(), "spool removed once replayed");
}

/// Shutdown while the ledger is still locked: the kept rows go to the
/// spool, and the next start writes them (once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_kept_at_shutdown_are_replayed_at_the_next_start() {
    let fake = start_fake().await;
    let cfg = config_for(
        fake.addr,
        "[ledger]\nmax_pending_rows = 5\nflush_interval_ms = 10\n",
    );
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = dir.path().join("ledger.sqlite");
    let spool = switchyard::accounting::ledger::spool_path(&ledger);
    let mut gw = start_gateway_with(&cfg, tempfile::tempdir().expect("tmp"), ledger.clone()).await;
    let lock = lock_ledger(&ledger).await;
    let ids: Vec<String> = (0..20).map(|i| format!("kept-{i:02}")).collect();
    for id in &ids {
        assert_eq!(send(&gw.base, id, false).await, 200);
    }
    until("every row kept", || async {
        metric(&gw, "switchyard_ledger_rows_pending").await == 20
    })
    .await;
    gw.stop().await; // the writer gives up on the lock and spools what it kept
    assert!(spool.exists());
    release(lock).await;
    let mut gw = start_gateway_with(&cfg, tempfile::tempdir().expect("tmp"), ledger.clone()).await;
    assert_eq!(
        request_ids(&ledger).await,
        ids,
        "replayed at start, in order, once"
    );
    assert!(!spool.exists());
    assert_eq!(send(&gw.base, "after", false).await, 200);
    gw.stop().await;
    let mut want = ids.clone();
    want.push("after".into());
    assert_eq!(request_ids(&ledger).await, want);
}

/// Load on the real binary, then SIGKILL. Returns (upstream calls the fake
/// saw, ledger rows, ids whose response the clients received in full).
async fn kill_under_load(durability: &str, clients: usize) -> (usize, usize, Vec<String>, Vec<String>) {
    let fake = start_fake().await;
    let dir = tempfile::tempdir().expect("tmp");
    let ledger = dir.path().join("ledger.sqlite");
    let cfg_path = dir.path().join("switchyard.toml");
    let port = free_port();
    let cfg = config_for(
        fake.addr,
        &format!("[ledger]\ndurability = \"{durability}\"\nbatch_size = 32\nflush_interval_ms = 100\n"),
    )
    .replace(
        "[server]\n",
        &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    std::fs::write(&cfg_path, &cfg).expect("write");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--config", cfg_path.to_str().expect("utf8"), "--ledger"])
        .arg(&ledger)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve");
    // Killed on every path out of here, a failed assertion included.
    struct Guard(std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Guard(child);
    let base = format!("http://127.0.0.1:{port}");
    until("the server is ready", || {
        let url = format!("{base}/ready");
        async move { client().get(url).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (base, stop, done) = (base.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut completed = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("kill-{c}-{i}");
                i += 1;
                let r = client()
                    .post(format!("{base}/v1/chat/completions"))
                    .header("x-request-id", &id)
                    .json(&json!({"model": "fast", "stream": i % 2 == 0,
                                  "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await;
                let Ok(r) = r else { break };
                if r.status() != 200 {
                    break;
                }
                match r.bytes().await {
                    Ok(b) if !b.is_empty() && (i % 2 == 1 || b.ends_with(b"[DONE]\n\n")) => {
                        completed.push(id);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
            completed
        }));
    }
    // Kill after a fixed number of answers (a count, not a time).
    until("load", || {
        let done = done.clone();
        async move { done.load(Ordering::Relaxed) >= 600 }
    })
    .await;
    child.0.kill().expect("SIGKILL"); // std's kill() is SIGKILL on Unix
    let _ = child.0.wait();
    stop.store(true, Ordering::Relaxed);
    let mut completed = Vec::new();
    for t in tasks {
        completed.extend(t.await.expect("client"));
    }
    let rows = request_ids(&ledger).await;
    (fake.hits(), rows.len(), rows, completed)
}

/// `batch` durability: a SIGKILL loses only rows not yet committed: the
/// requests in flight and the rows of the batch being collected (the
/// README's bound: at most `clients` + `batch_size` rows per flush cycle).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_batch_mode_loses_at_most_the_uncommitted_batch() {
    let clients = 8;
    let (hits, written, rows, completed) = kill_under_load("batch", clients).await;
    assert!(written <= hits, "{written} rows for {hits} calls");
    let lost = hits - written;
    eprintln!(
        "batch: {hits} upstream calls, {written} rows, {lost} lost, {} answered",
        completed.len()
    );
    // Documented: in flight (<= clients) + one batch collecting (<= 32) +
    // rows queued while that batch commits; 4 batches is a generous count.
    assert!(lost <= clients + 4 * 32, "lost {lost} of {hits} rows");
    let mut sorted = rows.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), rows.len(), "no row twice");
    assert!(completed.len() >= 600);
}

/// `sync` durability: every answer a client received in full has its row;
/// only requests in flight at the kill can be missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_sync_mode_loses_no_answered_request() {
    let clients = 8;
    let (hits, written, rows, completed) = kill_under_load("sync", clients).await;
    let have: std::collections::HashSet<&String> = rows.iter().collect();
    let missing: Vec<&String> = completed.iter().filter(|id| !have.contains(id)).collect();
    eprintln!(
        "sync: {hits} upstream calls, {written} rows, {} lost, {} answered",
        hits - written,
        completed.len()
    );
    assert!(missing.is_empty(), "answered but not in the ledger: {missing:?}");
    assert!(written <= hits);
    assert!(
        hits - written <= clients,
        "lost {} rows with {clients} in flight",
        hits - written
    );
}
