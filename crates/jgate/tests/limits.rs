//! Rate limits through the Jenkins-compatible proxy of a real `jgate serve`: a trigger over the
//! agent's hourly limit is answered 429 with `Retry-After`, as HTTP clients expect; reads are not
//! triggers.

use std::io::BufRead;
use std::process::{Command, Stdio};

const TOKEN: &str = "11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn jgate(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_jgate"));
    c.env("JGATE_DATA_DIR", dir)
        .env_remove("JGATE_MASTER_KEY")
        .env_remove("JGATE_DB")
        .env_remove("JGATE_AUDIT_FILE")
        .env("USER", "ops-admin")
        .env("NO_COLOR", "1");
    c
}

fn ok(dir: &std::path::Path, args: &[&str]) -> String {
    let o = jgate(dir).args(args).env("TWIN_TOKEN", TOKEN).output().expect("run jgate");
    assert!(
        o.status.success(),
        "jgate {args:?}:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stops the server this test started when the test ends, however it ends.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_answers_429_with_retry_after_over_a_limit() {
    let toml = "[controller]\nquiet_period = 0\n[[jobs]]\npath = \"team/api\"\nscript = \"echo hi\"\n";
    let (_twin, server) =
        jenkins_twin::start(toml, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let dir = std::env::temp_dir().join(format!(
        "jgate-limits-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    ));
    let allow = format!("127.0.0.1:{}", server.addr().port());
    ok(
        &dir,
        &[
            "controller",
            "add",
            "prod",
            "--url",
            &server.url(),
            "--username",
            "admin",
            "--token-env",
            "TWIN_TOKEN",
            "--allow-private",
            &allow,
        ],
    );
    let created: serde_json::Value =
        serde_json::from_str(&ok(&dir, &["--json", "agent", "create", "ci-bot"])).expect("agent json");
    let key = created["key"].as_str().expect("key").to_string();
    ok(&dir, &["grant", "ci-bot", "status", "read"]);
    ok(&dir, &["grant", "ci-bot", "build", "full", "--jobs", "team/api"]);
    ok(&dir, &["agent", "limits", "ci-bot", "--triggers-per-hour", "1"]);

    let mut child = jgate(&dir)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("jgate serve");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first).expect("ready line");
    let _serve = Serve(child);
    let base =
        first.split_whitespace().find(|w| w.starts_with("http://")).expect("address").trim_end_matches('/').to_string();
    let job = format!("{base}/jenkins/prod/job/team/job/api");
    let http = reqwest::Client::new();

    let trigger = || http.post(format!("{job}/build")).basic_auth("ci-bot", Some(&key)).send();
    let r = trigger().await.expect("first trigger");
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text().await);
    // Three triggers: whichever hour they fall in, one of the last two is over the limit.
    let mut refused = None;
    for _ in 0..2 {
        let r = trigger().await.expect("trigger");
        if r.status().as_u16() == 429 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("a trigger over the hourly limit is answered 429");
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=3600).contains(&retry), "{retry}");
    let body = r.text().await.expect("body");
    assert!(body.contains("limit of 1 trigger per hour is reached"), "{body}");
    assert!(body.contains("jgate agent limits ci-bot --triggers-per-hour N"), "{body}");

    // Reads are not triggers.
    let r = http.get(format!("{job}/api/json")).basic_auth("ci-bot", Some(&key)).send().await.expect("read");
    assert_eq!(r.status().as_u16(), 200);
}
