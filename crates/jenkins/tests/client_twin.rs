//! The wire client against the Jenkins twin: every call, and every error diagnosis.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use jenkins::ssrf::AllowEntry;
use jenkins::{BuildSelector, Credentials, Error, JenkinsClient, JobPath, Limits};
use jenkins_twin::{Twin, TwinServer, scenario};
use secrecy::SecretString;

const TOKEN: &str = "11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

const SCENARIO: &str = r#"
[controller]
quiet_period = 0

[[users]]
name = "reader"
password = "readerpass"
token = "11bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
permissions = ["Overall/Read", "Job/Read"]

[[folders]]
path = "team"

[[jobs]]
path = "team/api"
script = "echo hello $BUILD_NUMBER"
[[jobs.builds]]
result = "SUCCESS"
[[jobs.builds]]
result = "FAILURE"
tests = { passed = ["a.B.ok"], failed = [{ name = "a.B.bad", error = "boom" }] }

[[jobs]]
path = "param"
script = "echo ENV=$ENV"
[[jobs.parameters]]
name = "ENV"
default = "dev"

[[jobs]]
path = "slow"
concurrent = true
script = "echo start\nsleep 2\necho end"

[[jobs]]
path = "off"
disabled = true

[[jobs]]
path = "pipe"
kind = "pipeline"
script = "pipeline { agent any\n stages { stage('One') { steps { echo 'one' } }\n stage('Two') { steps { sh 'exit 2' } } } }"

[[jobs]]
path = "huge"
[[jobs.builds]]
result = "SUCCESS"
log_bytes = 1073741824
log = "the very end"
"#;

async fn twin(toml: &str) -> TwinServer {
    jenkins_twin::start(toml, &[("admin".into(), "adminpass".into(), TOKEN.into())]).await.expect("twin").1
}

fn allow(server: &TwinServer) -> AllowEntry {
    format!("127.0.0.1/32:{}", server.addr().port()).parse().expect("allow entry")
}

fn client(server: &TwinServer, user: &str, secret: &str) -> JenkinsClient {
    JenkinsClient::builder(server.url())
        .credentials(Credentials::api_token(user, SecretString::from(secret.to_string())))
        .allow_private(allow(server))
        .build()
        .expect("client")
}

fn admin(server: &TwinServer) -> JenkinsClient {
    client(server, "admin", TOKEN)
}

fn path(s: &str) -> JobPath {
    JobPath::parse(s).expect("path")
}

#[tokio::test]
async fn connection_test_reports_version_identity_and_plugins() {
    let s = twin(SCENARIO).await;
    let r = admin(&s).test_connection().await.expect("connection test");
    assert_eq!(r.version.as_deref(), Some("2.541.2"));
    assert_eq!(r.who_am_i.name, "admin");
    assert!(!r.crumbs_required, "API tokens need no crumb");
    assert_eq!(r.capabilities.pipeline_rest_api, Some(true));
    assert_eq!(r.capabilities.notification, Some(false));
    // A user who may not list plugins still passes, with unknown capabilities.
    let r = client(&s, "reader", "11bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb").test_connection().await.expect("reader");
    assert!(!r.capabilities.plugins_visible);
    assert_eq!(r.capabilities.pipeline_rest_api, None);
    // Passwords need crumbs.
    let pw = JenkinsClient::builder(s.url())
        .credentials(Credentials::password("admin", SecretString::from("adminpass".to_string())))
        .allow_private(allow(&s))
        .build()
        .expect("client");
    assert!(pw.test_connection().await.expect("pw").crumbs_required);
}

#[tokio::test]
async fn jobs_builds_and_trees() {
    let s = twin(SCENARIO).await;
    let c = admin(&s);
    let root = c.list_items(None, 1).await.expect("root items");
    assert!(root.iter().any(|i| i.name == "team" && i.is_folder() && i.color.is_none()));
    let all = c.list_items(None, 3).await.expect("recursive");
    let team = all.iter().find(|i| i.name == "team").expect("team");
    assert_eq!(team.jobs.as_ref().map(|j| j[0].full_name.clone()), Some(Some("team/api".to_string())));
    let job = c.job(&path("team/api")).await.expect("job");
    assert_eq!(job.full_name, "team/api");
    assert_eq!(job.last_failed_build.as_ref().map(|b| b.number), Some(2));
    let params = c.job(&path("param")).await.expect("param").parameters();
    assert_eq!(params[0].name, "ENV");
    assert_eq!(params[0].default, Some(serde_json::json!("dev")));
    let b = c.build(&path("team/api"), BuildSelector::LastFailedBuild).await.expect("build");
    assert_eq!((b.number, b.result.as_deref()), (2, Some("FAILURE")));
    assert_eq!(b.test_counts(), Some((1, 0, 2)));
    let report = c.test_report(&path("team/api"), 2).await.expect("report").expect("has tests");
    assert_eq!(report["failCount"], 1);
    assert!(c.test_report(&path("team/api"), 1).await.expect("no report").is_none());
}

#[tokio::test]
async fn trigger_maps_exactly_to_the_build_under_concurrency() {
    let s = twin(SCENARIO).await;
    let c = Arc::new(admin(&s));
    let job = path("slow");
    let mut handles = Vec::new();
    for _ in 0..4 {
        let c = c.clone();
        let job = job.clone();
        handles.push(tokio::spawn(async move {
            // Each trigger carries a distinct cause set: the twin merges only identical items, so
            // distinct parameters are not available here; the exactness comes from queueId.
            let id = c.trigger(&job, &[]).await.expect("trigger");
            let b =
                c.wait_for_build(&job, id, Duration::from_secs(20), Duration::from_millis(50)).await.expect("build");
            let full = c.build(&job, BuildSelector::Number(b.number)).await.expect("build info");
            assert_eq!(full.queue_id, Some(id), "build #{} came from queue item {id}", b.number);
            b.number
        }));
    }
    let mut numbers = Vec::new();
    for h in handles {
        numbers.push(h.await.expect("task"));
    }
    numbers.sort();
    numbers.dedup();
    assert!(!numbers.is_empty());
    // With parameters: distinct items, distinct builds.
    let p = path("param");
    let a = c.trigger(&p, &[("ENV".into(), "a".into())]).await.expect("a");
    let b = c.trigger(&p, &[("ENV".into(), "b".into())]).await.expect("b");
    assert_ne!(a, b);
    let ba = c.wait_for_build(&p, a, Duration::from_secs(20), Duration::from_millis(50)).await.expect("build a");
    let bb = c.wait_for_build(&p, b, Duration::from_secs(20), Duration::from_millis(50)).await.expect("build b");
    let pa = c.build(&p, ba.number.into()).await.expect("a info").parameters();
    let pb = c.build(&p, bb.number.into()).await.expect("b info").parameters();
    assert_eq!(pa[0].1, Some(serde_json::json!("a")));
    assert_eq!(pb[0].1, Some(serde_json::json!("b")));
}

#[tokio::test]
async fn queue_cancel_stop_and_follow() {
    let s = twin(&SCENARIO.replace("quiet_period = 0", "quiet_period = 3600")).await;
    let c = admin(&s);
    let id = c.trigger(&path("team/api"), &[]).await.expect("trigger");
    let q = c.queue().await.expect("queue");
    assert!(q.iter().any(|i| i.id == id && i.why.as_deref().is_some_and(|w| w.contains("quiet period"))));
    c.cancel_queue_item(id).await.expect("cancel");
    let err = c.wait_for_build(&path("team/api"), id, Duration::from_secs(5), Duration::from_millis(20)).await;
    assert!(matches!(err, Err(Error::Conflict { .. })), "{err:?}");

    let s = twin(SCENARIO).await;
    let c = admin(&s);
    let job = path("slow");
    let id = c.trigger(&job, &[]).await.expect("trigger");
    let b = c.wait_for_build(&job, id, Duration::from_secs(10), Duration::from_millis(20)).await.expect("started");
    let mut text = Vec::new();
    let mut follow = Box::pin(c.follow_console(&job, b.number, 0, Duration::from_millis(50), 4096));
    while let Some(chunk) = follow.next().await {
        text.extend_from_slice(&chunk.expect("chunk"));
    }
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("start") && text.contains("end") && text.ends_with("Finished: SUCCESS\n"), "{text}");

    let id = c.trigger(&job, &[]).await.expect("trigger");
    let b = c.wait_for_build(&job, id, Duration::from_secs(10), Duration::from_millis(20)).await.expect("started");
    c.stop_build(&job, b.number).await.expect("stop");
    for _ in 0..100 {
        let info = c.build(&job, b.number.into()).await.expect("info");
        if !info.building {
            assert_eq!(info.result.as_deref(), Some("ABORTED"));
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the build did not stop");
}

#[tokio::test]
async fn config_create_copy_delete_enable() {
    let s = twin(SCENARIO).await;
    let c = admin(&s);
    let xml = c.config_xml(&path("team/api")).await.expect("config");
    assert!(xml.contains("echo hello"));
    c.create_job(Some(&path("team")), "made", &xml).await.expect("create");
    let dup = c.create_job(Some(&path("team")), "made", &xml).await;
    assert!(matches!(&dup, Err(Error::BadRequest { message, .. }) if message.contains("already exists")), "{dup:?}");
    c.update_config_xml(&path("team/made"), &xml.replace("echo hello", "echo changed")).await.expect("update");
    assert!(c.config_xml(&path("team/made")).await.expect("read").contains("echo changed"));
    c.copy_job(Some(&path("team")), "copied", "made").await.expect("copy");
    c.set_enabled(&path("team/copied"), false).await.expect("disable");
    assert_eq!(c.job(&path("team/copied")).await.expect("job").color.as_deref(), Some("disabled"));
    let err = c.trigger(&path("team/copied"), &[]).await;
    assert!(matches!(err, Err(Error::Conflict { .. })), "{err:?}");
    c.set_enabled(&path("team/copied"), true).await.expect("enable");
    c.delete_job(&path("team/copied")).await.expect("delete");
    assert!(matches!(c.job(&path("team/copied")).await, Err(Error::NotFound { .. })));
}

#[tokio::test]
async fn nodes_views_pipelines() {
    let s = twin(SCENARIO).await;
    let c = admin(&s);
    let nodes = c.nodes().await.expect("nodes");
    assert_eq!(nodes.computer[0].display_name, "Built-In Node");
    assert_eq!(c.node("").await.expect("built-in").num_executors, 2);
    let views = c.views().await.expect("views");
    assert_eq!(views[0].name, "all");
    assert!(!c.view("all").await.expect("view").jobs.is_empty());
    let job = path("pipe");
    let id = c.trigger(&job, &[]).await.expect("trigger");
    let b = c.wait_for_build(&job, id, Duration::from_secs(10), Duration::from_millis(20)).await.expect("build");
    let mut run = c.pipeline_run(&job, b.number).await.expect("run");
    for _ in 0..100 {
        if run.status != "IN_PROGRESS" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        run = c.pipeline_run(&job, b.number).await.expect("run");
    }
    assert_eq!(run.status, "FAILED");
    assert_eq!(run.stages.iter().map(|s| s.status.as_str()).collect::<Vec<_>>(), ["SUCCESS", "FAILED"]);
    let failed = &run.stages[1];
    assert_eq!(failed.error.as_ref().map(|e| e.message.as_str()), Some("script returned exit code 2"));
    let node = c.pipeline_node(&job, b.number, &failed.id).await.expect("node");
    let step = node.stage_flow_nodes.unwrap_or_default().into_iter().next().expect("a step");
    let log = c.pipeline_node_log(&job, b.number, &step.id).await.expect("node log");
    assert!(log.text.contains("exit 2"), "{}", log.text);
    assert_eq!(c.pipeline_runs(&job).await.expect("runs").len(), 1);
    // A freestyle job has no stages: explained, not a bare 404.
    let err = c.pipeline_run(&path("team/api"), 1).await;
    assert!(
        matches!(&err, Err(Error::BadRequest { message, .. }) if message.contains("not a Pipeline job")),
        "{err:?}"
    );
}

#[tokio::test]
async fn wfapi_absence_is_explained() {
    let s =
        twin(&SCENARIO.replace("quiet_period = 0", "quiet_period = 0\nremove_plugins = [\"pipeline-rest-api\"]")).await;
    let err = admin(&s).pipeline_runs(&path("pipe")).await;
    assert!(matches!(err, Err(Error::PluginMissing { plugin: "pipeline-rest-api", .. })), "{err:?}");
}

#[tokio::test]
async fn gigabyte_console_tail_with_bounded_memory() {
    let s = twin(SCENARIO).await;
    let c = admin(&s);
    let stream = c.console_stream(&path("huge"), 1).await.expect("stream");
    let tail = jenkins::logs::tail(stream, 3, 4096).await.expect("tail");
    let last: Vec<&str> = tail.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(last[1..], ["the very end", "Finished: SUCCESS"]);
    assert!(tail.total_bytes > 1 << 30);
}

/// Every diagnosis, from the twin's real answers.
#[tokio::test]
async fn errors_explain_themselves() {
    let s = twin(SCENARIO).await;
    // 401: revoked token.
    let err = client(&s, "admin", "wrong-token").job(&path("team/api")).await;
    match &err {
        Err(e @ Error::Unauthorized { user, token_url }) => {
            assert_eq!(user, "admin");
            assert!(token_url.ends_with("/user/admin/security"));
            assert!(!e.to_string().contains("wrong-token"), "secrets never in errors");
        }
        other => panic!("{other:?}"),
    }
    // 403 naming the permission.
    let err = client(&s, "reader", "11bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb").trigger(&path("team/api"), &[]).await;
    match &err {
        Err(e @ Error::Forbidden { permission, .. }) => {
            assert_eq!(permission.as_deref(), Some("hudson.model.Item.Build"));
            assert!(e.to_string().contains("Job/Build"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // 403 for anonymous: anonymous read is off.
    let anon = JenkinsClient::builder(s.url()).allow_private(allow(&s)).build().expect("client");
    let err = anon.job(&path("team/api")).await;
    assert!(
        matches!(&err, Err(e @ Error::Forbidden { .. }) if e.to_string().contains("anonymous read access is off")),
        "{err:?}"
    );
    // 404 with the folder hint.
    let err = admin(&s).job(&path("team/nope")).await;
    assert!(matches!(&err, Err(e @ Error::NotFound { .. }) if e.to_string().contains("/job/a/job/b/")), "{err:?}");
    // 409 disabled, 400 not parameterized.
    assert!(matches!(admin(&s).trigger(&path("off"), &[]).await, Err(Error::Conflict { .. })));
    let err = admin(&s).trigger(&path("team/api"), &[("X".into(), "1".into())]).await;
    assert!(
        matches!(&err, Err(e @ Error::BadRequest { .. }) if e.to_string().contains("without parameters")),
        "{err:?}"
    );

    // 500 with the first line of Jenkins' stack trace.
    let f = twin("[faults]\nerror_500_rate = 1.0\npath_prefix = \"/job/\"\n[[jobs]]\npath = \"x\"\n").await;
    let err = admin(&f).job(&path("x")).await;
    assert!(
        matches!(&err, Err(Error::Server { first_line, .. }) if first_line.starts_with("java.lang.NullPointerException")),
        "{err:?}"
    );
    // 503 while starting, retried (reads only) and then explained.
    let sc = scenario::parse("").expect("sc");
    let t = Twin::new(&sc, &[("admin".into(), "p".into(), TOKEN.into())]).expect("twin");
    t.set_faults(scenario::FaultSpec::default(), Duration::from_secs(3600));
    let starting = t.serve("127.0.0.1:0".parse().expect("addr")).await.expect("serve");
    let quick = Limits { retry_base_delay: Duration::from_millis(1), ..Limits::default() };
    let c = JenkinsClient::builder(starting.url())
        .credentials(Credentials::api_token("admin", SecretString::from(TOKEN.to_string())))
        .allow_private(allow(&starting))
        .limits(quick)
        .build()
        .expect("client");
    let err = c.version().await;
    assert!(matches!(&err, Err(Error::Unavailable { detail }) if detail.contains("starting")), "{err:?}");
}

#[tokio::test]
async fn transport_failures_explain_themselves() {
    let s = twin(SCENARIO).await;
    // The twin on loopback without the allow-list entry: refused before any connection.
    let refused = JenkinsClient::builder(s.url()).build();
    match refused {
        Err(e @ Error::Refused(_)) => assert!(e.to_string().contains("allow"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Nothing listens: connection refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let c = JenkinsClient::builder(format!("http://127.0.0.1:{port}"))
        .allow_private(format!("127.0.0.1/32:{port}").parse().expect("entry"))
        .limits(Limits { read_attempts: 1, ..Limits::default() })
        .build()
        .expect("client");
    assert!(matches!(c.version().await, Err(Error::Connect { .. })));
    // https against the plain-http twin: a TLS failure.
    let tls = JenkinsClient::builder(s.url().replace("http://", "https://"))
        .allow_private(allow(&s))
        .limits(Limits { read_attempts: 1, ..Limits::default() })
        .build()
        .expect("client");
    let tls_err = tls.version().await;
    assert!(matches!(tls_err, Err(Error::Tls { .. })), "https to an http port is a TLS error: {tls_err:?}");
    // A slow controller: timeout.
    let slow = twin("[faults]\nlatency_ms = 3000\n").await;
    let c = JenkinsClient::builder(slow.url())
        .allow_private(allow(&slow))
        .limits(Limits { request_timeout: Duration::from_millis(200), read_attempts: 1, ..Limits::default() })
        .build()
        .expect("client");
    assert!(matches!(c.version().await, Err(Error::Timeout { .. })));
}

#[tokio::test]
async fn password_sessions_fetch_crumbs() {
    let s = twin(SCENARIO).await;
    let c = JenkinsClient::builder(s.url())
        .credentials(Credentials::password("admin", SecretString::from("adminpass".to_string())))
        .allow_private(allow(&s))
        .build()
        .expect("client");
    let id = c.trigger(&path("team/api"), &[]).await.expect("POST with crumb and session cookie");
    assert!(id > 0);
}

#[tokio::test]
async fn reads_are_retried_writes_never() {
    let toml = "[controller]\nquiet_period = 0\n[faults]\nerror_503_rate = 1.0\n[[jobs]]\npath = \"j\"\n";
    let (t, s) = jenkins_twin::start(toml, &[("admin".into(), "p".into(), TOKEN.into())]).await.expect("twin");
    let c = JenkinsClient::builder(s.url())
        .credentials(Credentials::api_token("admin", SecretString::from(TOKEN.to_string())))
        .allow_private(allow(&s))
        .limits(Limits { read_attempts: 3, retry_base_delay: Duration::from_millis(1), ..Limits::default() })
        .build()
        .expect("client");
    let before = t.requests_received();
    assert!(matches!(c.job(&path("j")).await, Err(Error::Unavailable { .. })));
    assert_eq!(t.requests_received() - before, 3, "an idempotent read is tried 3 times");
    let before = t.requests_received();
    assert!(matches!(c.trigger(&path("j"), &[]).await, Err(Error::Unavailable { .. })));
    assert_eq!(t.requests_received() - before, 1, "a write is never retried");
}

struct FailingLookup;
impl jenkins::ssrf::Lookup for FailingLookup {
    fn lookup(
        &self,
        host: &str,
        _port: u16,
    ) -> futures_util::future::BoxFuture<'static, std::io::Result<Vec<std::net::SocketAddr>>> {
        let host = host.to_string();
        Box::pin(async move { Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("no such host {host}"))) })
    }
}

#[tokio::test]
async fn dns_size_and_wait_diagnoses() {
    let c = JenkinsClient::builder("http://jenkins.example.invalid:8080/")
        .lookup(Arc::new(FailingLookup))
        .limits(Limits { read_attempts: 1, ..Limits::default() })
        .build()
        .expect("client");
    let err = c.version().await;
    assert!(matches!(&err, Err(Error::Dns { host, .. }) if host == "jenkins.example.invalid"), "{err:?}");

    let s = twin(&SCENARIO.replace(
        "[[jobs]]\npath = \"off\"",
        "[[jobs]]\npath = \"stuck\"\nlabel = \"nowhere\"\n\n[[jobs]]\npath = \"off\"",
    ))
    .await;
    let small = JenkinsClient::builder(s.url())
        .credentials(Credentials::api_token("admin", SecretString::from(TOKEN.to_string())))
        .allow_private(allow(&s))
        .limits(Limits { max_body_bytes: 100, ..Limits::default() })
        .build()
        .expect("client");
    assert!(matches!(small.job(&path("team/api")).await, Err(Error::TooLarge { limit: 100, .. })));
    let c = admin(&s);
    let id = c.trigger(&path("stuck"), &[]).await.expect("trigger");
    let err = c.wait_for_build(&path("stuck"), id, Duration::from_millis(300), Duration::from_millis(50)).await;
    assert!(matches!(&err, Err(e @ Error::WaitTimeout { .. }) if e.to_string().contains("why")), "{err:?}");
    let item = c.queue_item(id).await.expect("item");
    assert_eq!(item.why.as_deref(), Some("There are no nodes with the label ‘nowhere’"));
    assert!(item.stuck);
}

/// A server that is not Jenkins: answers every request with `response`.
async fn fake_server(response: &'static str) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let h = tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let _ = sock.write_all(response.as_bytes()).await;
        }
    });
    (addr, h)
}

#[tokio::test]
async fn non_jenkins_answers_are_explained() {
    let (addr, _h) = fake_server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    let c = JenkinsClient::builder(format!("http://{addr}"))
        .allow_private(format!("127.0.0.1/32:{}", addr.port()).parse().expect("entry"))
        .build()
        .expect("client");
    let err = c.test_connection().await;
    assert!(matches!(&err, Err(e @ Error::Protocol { .. }) if e.to_string().contains("X-Jenkins")), "{err:?}");

    let (addr, _h) = fake_server("HTTP/1.1 302 Found\r\nLocation: https://sso.example.com/login\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
    let c = JenkinsClient::builder(format!("http://{addr}"))
        .allow_private(format!("127.0.0.1/32:{}", addr.port()).parse().expect("entry"))
        .build()
        .expect("client");
    let err = c.version().await;
    assert!(
        matches!(&err, Err(Error::Redirected { location, .. }) if location == "https://sso.example.com/login"),
        "{err:?}"
    );

    let (addr, _h) = fake_server("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Jenkins: 2.541.2\r\nContent-Length: 19\r\nConnection: close\r\n\r\n<html>login</html>\n").await;
    let c = JenkinsClient::builder(format!("http://{addr}"))
        .allow_private(format!("127.0.0.1/32:{}", addr.port()).parse().expect("entry"))
        .build()
        .expect("client");
    let err = c.job(&path("x")).await;
    assert!(
        matches!(&err, Err(e @ Error::Protocol { .. }) if e.to_string().contains("not the expected JSON")),
        "{err:?}"
    );
}

#[tokio::test]
async fn ca_bundles_are_validated() {
    let err = JenkinsClient::builder("https://ci.example.com")
        .tls(jenkins::TlsOptions {
            ca_bundle_pem: Some(b"not a certificate".to_vec()),
            danger_accept_invalid_certs: false,
        })
        .build();
    assert!(matches!(&err, Err(e @ Error::Config { .. }) if e.to_string().contains("BEGIN CERTIFICATE")), "{err:?}");
}

#[tokio::test]
async fn crumb_failures_are_explained() {
    let (addr, _h) = fake_server(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/html\r\nContent-Length: 51\r\nConnection: close\r\n\r\n<h2>No valid crumb was included in the request</h2>",
    )
    .await;
    let c = JenkinsClient::builder(format!("http://{addr}"))
        .credentials(Credentials::password("admin", SecretString::from("pw".to_string())))
        .allow_private(format!("127.0.0.1/32:{}", addr.port()).parse().expect("entry"))
        .build()
        .expect("client");
    let err = c.trigger(&path("x"), &[]).await;
    assert!(matches!(&err, Err(e @ Error::Crumb) if e.to_string().contains("API token")), "{err:?}");
}

#[tokio::test]
async fn replay_is_accepted_once_and_its_refusals_say_what_to_do() {
    let toml = r#"
[controller]
quiet_period = 0
[[users]]
name = "builder"
password = "builderpass"
token = "11bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
permissions = ["Overall/Read", "Job/Read", "Job/Build"]
[[jobs]]
path = "pipe"
kind = "pipeline"
script = "node { echo 'original' }"
[[jobs.builds]]
result = "SUCCESS"
[[jobs]]
path = "free"
[[jobs.builds]]
result = "SUCCESS"
"#;
    let s = twin(toml).await;
    let script = "node { echo 'SCRIPT-TEXT-91' }";
    // A password session: the POST carries the crumb the client fetched.
    let pw = JenkinsClient::builder(s.url())
        .credentials(Credentials::password("admin", SecretString::from("adminpass".to_string())))
        .allow_private(allow(&s))
        .build()
        .expect("client");
    pw.replay(&path("pipe"), 1, script).await.expect("accepted");
    admin(&s).replay(&path("pipe"), 1, script).await.expect("accepted with a token");
    let e = admin(&s).replay(&path("free"), 1, script).await.expect_err("freestyle");
    assert!(matches!(e, Error::NotFound { .. }) && e.to_string().contains("Pipeline job"), "{e}");
    let builder = client(&s, "builder", "11bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    let e = builder.replay(&path("pipe"), 1, script).await.expect_err("no Run/Replay");
    assert!(matches!(e, Error::Forbidden { .. }) && e.to_string().contains("Run/Replay"), "{e}");
    for e in [e.to_string(), format!("{e:?}")] {
        assert!(!e.contains("SCRIPT-TEXT-91"), "the script is in an error: {e}");
    }
}
