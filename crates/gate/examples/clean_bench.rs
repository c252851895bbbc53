//! How fast the sanitizer cleans console text (MB/s), on lines shaped like a build log.
//!
//! ```text
//! cargo run --release -p gate --example clean_bench -- [MiB]
//! ```

use std::time::Instant;

use gate::sanitize::{KnownSecrets, Sanitizer};

fn main() {
    let mib: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let mut known = KnownSecrets::new();
    known.add("11bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    let mut s = Sanitizer::new(known);
    let lines = [
        "[INFO] Compiling module core (42 files) at /home/jenkins/workspace/app/src/main/java\n",
        "+ ./gradlew test --info -Dorg.gradle.jvmargs=-Xmx2g\n",
        "2026-12-01T10:00:00.123Z  Downloading https://repo.maven.apache.org/maven2/org/slf4j/slf4j-api/2.0.9/slf4j-api-2.0.9.pom\n",
        "Tests run: 128, Failures: 0, Errors: 0, Skipped: 2, Time elapsed: 3.21 s - in com.example.OrdersTest\n",
        "\x1b[32mBUILD SUCCESSFUL\x1b[0m in 42s\n",
    ];
    let mut chunk = String::new();
    while chunk.len() < 64 * 1024 {
        for l in lines {
            chunk.push_str(l);
        }
    }
    let total = mib << 20;
    let t = Instant::now();
    let mut done = 0usize;
    let mut out = 0usize;
    while done < total {
        out += s.clean(&chunk).len();
        done += chunk.len();
    }
    let secs = t.elapsed().as_secs_f64();
    println!("cleaned {} MiB in {:.2} s: {:.1} MB/s ({} bytes out)", done >> 20, secs, done as f64 / secs / 1e6, out);
}
