//! Benchmark: tail a 1 GiB console log streamed over HTTP from the in-process Jenkins twin.
//!
//! ```text
//! cargo run --release -p jenkins --example tail_bench
//! ```
//!
//! Prints the bytes read, the throughput, the memory bound of the tail ring buffer and the
//! process's peak resident set size (Linux `VmHWM`). The peak RSS should stay far below the log
//! size: only one HTTP chunk and the ring buffer are held at a time. A second run tails the same
//! amount of data from memory (one 64 KiB chunk repeated) to show the splitter's own speed without
//! HTTP and log generation.

use std::time::Instant;

use bytes::Bytes;
use futures_util::stream;
use jenkins::logs;

const LOG_BYTES: u64 = 1 << 30;
const TAIL_LINES: usize = 100;
const MAX_LINE_BYTES: usize = 4096;

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mb_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let toml = format!("[[jobs]]\npath = \"huge\"\n[[jobs.builds]]\nresult = \"SUCCESS\"\nlog_bytes = {LOG_BYTES}\n");
    let (_twin, server) = jenkins_twin::start(&toml, &[("admin".into(), "admin".into(), "tok".into())]).await?;
    let url = format!("{}/job/huge/1/consoleText", server.url().trim_end_matches('/'));
    println!("rss before: {} KiB", peak_rss_kib().unwrap_or(0));

    let client = reqwest::Client::new();
    let started = Instant::now();
    let resp = client.get(&url).basic_auth("admin", Some("tok")).send().await?.error_for_status()?;
    let tail = logs::tail(resp.bytes_stream(), TAIL_LINES, MAX_LINE_BYTES).await?;
    let secs = started.elapsed().as_secs_f64();

    let last = tail.lines.last().ok_or("empty log")?;
    println!(
        "http tail:   {} bytes, {} lines in {secs:.2} s = {:.0} MB/s",
        tail.total_bytes,
        tail.total_lines,
        mb_per_s(tail.total_bytes, secs)
    );
    println!("             last line #{}: {:?}", last.number, last.text);
    println!("tail bound:  {TAIL_LINES} lines x {MAX_LINE_BYTES} bytes = {} KiB", TAIL_LINES * MAX_LINE_BYTES / 1024);
    println!("peak rss:    {} KiB (VmHWM)", peak_rss_kib().unwrap_or(0));
    if tail.total_bytes < LOG_BYTES || last.number != tail.total_lines || !last.text.starts_with("Finished:") {
        return Err("unexpected tail".into());
    }

    // The same volume from memory: what the splitter and ring buffer cost on their own.
    let line = b"[2024-01-01T00:00:00.000Z] compiling module with a typical line of build output .....\n";
    let chunk = Bytes::from(line.repeat(64 * 1024 / line.len()));
    let count = LOG_BYTES / chunk.len() as u64;
    let chunks = stream::iter((0..count).map(|_| Ok::<_, std::convert::Infallible>(chunk.clone())));
    let started = Instant::now();
    let mem = logs::tail(chunks, TAIL_LINES, MAX_LINE_BYTES).await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "memory tail: {} bytes, {} lines in {secs:.2} s = {:.0} MB/s",
        mem.total_bytes,
        mem.total_lines,
        mb_per_s(mem.total_bytes, secs)
    );
    println!("peak rss:    {} KiB (VmHWM)", peak_rss_kib().unwrap_or(0));
    Ok(())
}
