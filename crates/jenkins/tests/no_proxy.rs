//! Proxies from the environment are ignored: a proxy would resolve names itself and bypass the
//! SSRF guard. (Its own test binary: it changes the process environment.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jenkins::{Credentials, JenkinsClient};
use secrecy::SecretString;

#[tokio::test]
async fn environment_proxies_are_ignored() {
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let proxy_addr = proxy.local_addr().expect("addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    tokio::spawn(async move {
        while let Ok((_sock, _)) = proxy.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });
    // SAFETY: this test binary has a single test, so no other thread reads the environment.
    unsafe {
        for var in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
            std::env::set_var(var, format!("http://{proxy_addr}"));
        }
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
    }
    let (_twin, server) = jenkins_twin::start("", &[("admin".into(), "p".into(), "tok".into())]).await.expect("twin");
    let c = JenkinsClient::builder(server.url())
        .credentials(Credentials::api_token("admin", SecretString::from("tok".to_string())))
        .allow_private(format!("127.0.0.1/32:{}", server.addr().port()).parse().expect("entry"))
        .build()
        .expect("client");
    assert_eq!(c.version().await.expect("direct connection").as_deref(), Some("2.541.2"));
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the proxy from the environment was not used");
}
