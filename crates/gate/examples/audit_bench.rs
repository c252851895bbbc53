//! How long one audit append takes (the record every call waits for before it answers): one
//! record at a time, and eight callers at once (group commit), on SQLite in a temporary directory.
//!
//! ```text
//! cargo run --release -p gate --example audit_bench -- [records]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use gate::secrets::MasterKey;
use gate::store::Store;

// The integration tests' helpers: the read record appended here is theirs.
#[path = "../tests/common/mod.rs"]
mod common;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3000);
    let dir = std::env::temp_dir().join(format!("jgate-audit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = Store::open(&dir.join("jgate.db").display().to_string()).await?;
    let (master, _) =
        MasterKey::load_or_create("JGATE_AUDIT_BENCH_UNSET", &dir.join("master.key")).map_err(|e| e.to_string())?;
    let gate = Arc::new(gate::Gate::open(store, master, None).await?);
    for _ in 0..200 {
        gate.record(common::entry("bench")).await?;
    }
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        gate.record(common::entry("bench")).await?;
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "one at a time: {n} records, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms",
        pct(&times, 0.5),
        pct(&times, 0.9),
        pct(&times, 0.99)
    );
    let t = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let gate = gate.clone();
            tokio::spawn(async move {
                for _ in 0..n / 8 {
                    gate.record(common::entry("bench")).await?;
                }
                Ok::<_, gate::store::StoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    println!("eight callers: {} records/s", (n / 8 * 8) as f64 / t.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
