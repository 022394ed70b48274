//! Drives the shared-state admission (`Shared::admit`) in batches of exactly
//! BATCH: ROUNDS rounds, each BATCH admissions queued at one instant on a
//! current-thread runtime (so the batcher sends each round as one script call,
//! as `tests/shared_state.rs::concurrent_admissions_share_one_call_and_stay_exact`
//! checks). Each admission is a request's: a key with RPM, TPM and a concurrency
//! cap, and a daily global plus per-key budget in estimate mode; every slot and
//! reservation is given back after each round, as a finished request does.
//! Used by bench/admit_icount.sh under callgrind (Redis's instructions and this
//! client's per admission). Prints `admissions calls`.
//!
//! `cargo run --release --example admit_bench -- REDIS_URL PREFIX BATCH ROUNDS [WARMUP_ROUNDS]`

use std::sync::Arc;

use switchyard::accounting::budget::{Limits, Scope};
use switchyard::state::shared::{Ask, BudgetAsk, KeyAsk, Shared};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: admit_bench REDIS_URL PREFIX BATCH ROUNDS [WARMUP_ROUNDS]");
        std::process::exit(2);
    }
    let num = |i: usize, what: &str| -> usize {
        args.get(i).and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            eprintln!("{what}: expected a number");
            std::process::exit(2)
        })
    };
    let (batch, rounds) = (num(2, "BATCH").max(1), num(3, "ROUNDS"));
    let warm = if args.len() > 4 {
        num(4, "WARMUP_ROUNDS")
    } else {
        0
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let settings = switchyard::config::state::StateSettings {
            redis_url: Some(switchyard::config::Secret::new(args[0].clone())),
            key_prefix: args[1].clone(),
            timeout: std::time::Duration::from_secs(10),
            admit_batch: batch,
            ..Default::default()
        };
        let stop = tokio_util::sync::CancellationToken::new();
        let sh: Arc<Shared> = match Shared::connect(&settings, stop.clone()).await {
            Ok(Some(s)) => s,
            _ => {
                eprintln!("cannot connect to {}", args[0]);
                std::process::exit(1)
            }
        };
        let scopes = vec![
            (
                Scope::Global,
                Limits {
                    daily: Some(1e9),
                    monthly: None,
                },
            ),
            (
                Scope::Key("bench".into()),
                Limits {
                    daily: Some(1e9),
                    monthly: None,
                },
            ),
        ];
        let keys = sh.budget_keys(&scopes, 20_000, 657);
        let now = 1_765_000_000_000i64;
        let ask = KeyAsk {
            key_id: "bench",
            now_ms: now,
            rpm: Some(1_000_000_000),
            slot: Some(100_000),
            tpm: Some((1_000_000_000_000, 1200)),
        };
        let asks = vec![ask; batch];
        let mut calls0 = 0;
        for round in 0..warm + rounds {
            if round == warm {
                // The measured window starts here (bench/admit_icount.sh zeroes
                // the counters when this line appears).
                println!("measuring");
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
                calls0 = sh.calls().0;
            }
            let results = futures_util::future::join_all(asks.iter().map(|a| {
                sh.admit(
                    Some(a),
                    Some(BudgetAsk {
                        scopes: &scopes,
                        keys: &keys,
                        ask: Ask::Fixed(0.01),
                    }),
                )
            }))
            .await;
            for r in results {
                match r {
                    Some(Ok(a)) => {
                        if a.slot {
                            sh.release_slot("bench");
                        }
                        if let Some((_, amount)) = a.budget {
                            sh.charge(&keys, amount / 2.0);
                            sh.release(&keys, amount);
                        }
                        sh.adjust("bench", "tpm", 1_000_000_000_000, -200.0, now);
                    }
                    other => {
                        eprintln!("admission failed: {other:?}");
                        std::process::exit(1)
                    }
                }
            }
            sh.flush(std::time::Duration::from_secs(10)).await;
        }
        println!("{} {}", rounds * batch, sh.calls().0 - calls0);
        stop.cancel();
    });
}
