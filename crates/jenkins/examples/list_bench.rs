//! Benchmark: listing a controller with 10,000 jobs in 100 folders. The client asks for the whole
//! hierarchy with one `tree=` request; this prints the time, the request count and the bytes.
//! Run with `cargo xtask bench` (release build).

use std::time::Instant;

use jenkins::ssrf::AllowEntry;
use jenkins::{Credentials, JenkinsClient};
use secrecy::SecretString;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut toml = String::from("[controller]\nquiet_period = 0\n");
    for f in 0..100 {
        for j in 0..100 {
            toml.push_str(&format!("[[jobs]]\npath = \"team-{f:03}/service-{j:03}\"\n"));
        }
    }
    let (twin, server) = jenkins_twin::start(&toml, &[("admin".into(), "admin".into(), "tok".into())]).await?;
    let entry: AllowEntry = format!("127.0.0.1/32:{}", server.addr().port()).parse()?;
    let client = JenkinsClient::builder(server.url())
        .credentials(Credentials::api_token("admin", SecretString::from("tok".to_string())))
        .allow_private(entry)
        .build()?;
    // Warm up the connection.
    client.version().await?;
    for round in 0..3 {
        let before = twin.requests_received();
        let started = Instant::now();
        let items = client.list_items(None, 2).await?;
        let elapsed = started.elapsed();
        let jobs: usize = items.iter().map(|f| f.jobs.as_ref().map_or(0, Vec::len)).sum();
        println!(
            "round {round}: listed {} folders / {jobs} jobs in {:.1} ms with {} request(s)",
            items.len(),
            elapsed.as_secs_f64() * 1000.0,
            twin.requests_received() - before
        );
    }
    Ok(())
}
