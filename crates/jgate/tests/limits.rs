//! Rate limits through the Jenkins-compatible proxy of a real `jgate serve`: a trigger over the
//! agent's hourly limit is answered 429 with `Retry-After`, as HTTP clients expect; reads are not
//! triggers.

mod common;

use common::{Env, TOKEN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_answers_429_with_retry_after_over_a_limit() {
    let toml = "[controller]\nquiet_period = 0\n[[jobs]]\npath = \"team/api\"\nscript = \"echo hi\"\n";
    let (_twin, server) =
        jenkins_twin::start(toml, &[("admin".into(), "admin".into(), TOKEN.into())]).await.expect("twin");
    let env = Env::new("limits", None);
    env.add_twin("prod", &server.url(), server.addr().port());
    let key = env.agent("ci-bot");
    env.ok(&["grant", "ci-bot", "status", "read"]);
    env.ok(&["grant", "ci-bot", "build", "full", "--jobs", "team/api"]);
    env.ok(&["agent", "limits", "ci-bot", "--triggers-per-hour", "1"]);
    let serve = env.serve(&[]);
    let base = serve.base.trim_end_matches('/').to_string();
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
    drop(serve);
    env.remove();
}
